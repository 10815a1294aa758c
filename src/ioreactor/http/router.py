"""Map ``(method, path)`` to a handler, with ``{name}`` path parameters.

Patterns: ``/users/{id}`` matches one path segment; ``/static/{path:path}`` matches the
rest of the path, slashes included. Paths without parameters are found with one dict
lookup (the common case, and the benchmark's); the others are tried in the order they
were added. ``HEAD`` is served by the ``GET`` handler when no ``HEAD`` route exists (the
server drops the body). A path that exists with other methods answers 405 with ``Allow``.
A handler may be an ``async def`` (``Route.awaits``): it is awaited on the asyncio loop.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ioreactor.http.errors import HttpError
from ioreactor.http.request import NO_PARAMS

Handler = Callable[..., object]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")


@dataclass(slots=True)
class Route:
    """One registered handler.

    ``blocking``: run in the loop's worker pool (the response still goes out in request
    order). ``stream_body``: call the handler when the head is complete; it returns a
    :class:`~ioreactor.http.request.BodyConsumer` that receives the body in chunks.
    ``awaits``: the handler is an ``async def``, awaited on the asyncio loop that drives
    the connection's reactor (:mod:`ioreactor.aio`).
    """

    pattern: str
    methods: frozenset[str]
    handler: Handler
    blocking: bool = False
    stream_body: bool = False
    regex: re.Pattern[str] | None = field(default=None, repr=False)
    awaits: bool = False


def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """The regex for a pattern with parameters, or None for a literal path."""
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern must start with '/': {pattern!r}")
    if "{" not in pattern:
        return None
    parts = []
    pos = 0
    for match in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[pos : match.start()]))
        name, kind = match.group(1), match.group(2)
        parts.append(f"(?P<{name}>.*)" if kind == "path" else f"(?P<{name}>[^/]+)")
        pos = match.end()
    rest = pattern[pos:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"malformed parameter in route pattern {pattern!r}")
    parts.append(re.escape(rest))
    return re.compile("".join(parts) + r"\Z")


class Router:
    """Routes in registration order; literal paths in a dict."""

    def __init__(self) -> None:
        self._literal: dict[str, dict[str, Route]] = {}
        #: The dispatcher's first lookup, for the literal routes that run on the loop and
        #: take the whole body: path -> method -> the route's handler (any other request
        #: is resolved). The handler itself, not its Route: a call without an attribute
        #: lookup per request.
        self.plain: dict[str, dict[str, Handler]] = {}
        self._patterns: list[tuple[re.Pattern[str], dict[str, Route]]] = []

    def add(
        self,
        pattern: str,
        handler: Handler,
        methods: Iterable[str] = ("GET",),
        *,
        blocking: bool = False,
        stream_body: bool = False,
    ) -> Route:
        if blocking and stream_body:
            raise ValueError("a route cannot be both blocking and stream_body")
        awaits = inspect.iscoroutinefunction(handler)
        if awaits and (blocking or stream_body):
            raise ValueError("an async def route runs on the loop: not blocking nor stream_body")
        # Interned, as the server's request methods and cached targets are: a lookup
        # in the plain table then matches by identity, without comparing strings.
        names = frozenset(sys.intern(m.upper()) for m in methods)
        if not names:
            raise ValueError("a route needs at least one method")
        regex = compile_pattern(pattern)
        route = Route(pattern, names, handler, blocking, stream_body, regex, awaits)
        if regex is None:
            table = self._literal.setdefault(pattern, {})
        else:
            table = self._pattern_table(regex)
        for method in names:
            if method in table:
                raise ValueError(f"{method} {pattern} is already routed")
            table[method] = route
            if regex is None and not (blocking or stream_body or awaits):
                self.plain.setdefault(sys.intern(pattern), {})[method] = handler
        return route

    def _pattern_table(self, regex: re.Pattern[str]) -> dict[str, Route]:
        for existing, table in self._patterns:
            if existing.pattern == regex.pattern:
                return table
        table = {}
        self._patterns.append((regex, table))
        return table

    def resolve(self, method: str, path: str) -> tuple[Route, Mapping[str, str]]:
        """The route and path parameters for a request; raises 404 or 405."""
        table = self._literal.get(path)
        if table is not None:
            route = table.get(method)
            if route is not None:
                return route, NO_PARAMS
            return self._by_method(table, method), NO_PARAMS
        allowed: set[str] = set()
        for regex, table in self._patterns:
            match = regex.match(path)
            if match is not None:
                route = table.get(method) or (table.get("GET") if method == "HEAD" else None)
                if route is not None:
                    return route, match.groupdict()
                allowed.update(table)
        if allowed:
            raise _not_allowed(allowed)
        raise HttpError(404, "Not Found")

    def _by_method(self, table: dict[str, Route], method: str) -> Route:
        if method == "HEAD" and "GET" in table:
            return table["GET"]
        raise _not_allowed(table)

    def awaits(self) -> bool:
        """Some route is an ``async def`` (its server must run on an asyncio loop)."""
        return any(route.awaits for route in self.routes())

    def routes(self) -> list[Route]:
        seen: dict[int, Route] = {}
        for table in [*self._literal.values(), *(t for _, t in self._patterns)]:
            for route in table.values():
                seen.setdefault(id(route), route)
        return list(seen.values())


def _not_allowed(methods: Iterable[str]) -> HttpError:
    names = set(methods)
    if "GET" in names:
        names.add("HEAD")
    return HttpError(405, "Method Not Allowed", headers=(("Allow", ", ".join(sorted(names))),))
