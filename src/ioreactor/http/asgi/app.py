"""What an ASGI application is: ASGI 3 (``app(scope, receive, send)``), or ASGI 2
(``app(scope)`` returning ``instance(receive, send)``) behind a wrapper.

Detection follows uvicorn's: a class is ASGI 2 (its instance is made per scope); an
object whose ``__call__`` (or itself, for a function) is a coroutine function taking
three arguments is ASGI 3; a plain function of one argument is ASGI 2.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any


def asgi_version(obj: object) -> int | None:
    """3, 2, or None when ``obj`` is not an ASGI application."""
    if inspect.isclass(obj):
        return 2 if _positional(obj.__init__) - 1 == 1 else None
    if not callable(obj):
        return None
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj).__call__
    bound = 0 if inspect.isfunction(obj) or inspect.ismethod(obj) else 1
    count = _positional(call) - bound
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(obj):
        return 3 if count == 3 else None
    if count == 3 and not inspect.isfunction(obj):
        return 3  # a callable object whose __call__ returns an awaitable (middleware)
    if count == 1:
        return 2
    return None


def _positional(func: Any) -> int:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return -1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 3 + (1 if inspect.ismethod(func) else 0)
    return sum(1 for p in parameters if p.kind in kinds)


class ASGI2Middleware:
    """Runs an ASGI 2 application as an ASGI 3 one."""

    __slots__ = ("app",)

    def __init__(self, app: Callable[[dict[str, Any]], Any]) -> None:
        self.app = app

    def __repr__(self) -> str:
        return f"<ASGI2Middleware {self.app!r}>"

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def as_asgi3(obj: object) -> Callable[..., Awaitable[None]]:
    """``obj`` as an ASGI 3 application (ValueError if it is not an ASGI application)."""
    version = asgi_version(obj)
    if version == 3:
        return obj  # type: ignore[return-value]
    if version == 2:
        return ASGI2Middleware(obj)  # type: ignore[arg-type]
    raise ValueError(f"{obj!r} is not an ASGI application")
