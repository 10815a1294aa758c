"""Find the application that ``ioreactor serve MODULE:ATTR`` runs, and what kind it is.

::

    "myproj.web:app" --import myproj.web (APP_DIR first on sys.path)--> module
        --getattr "app" (dotted: "api.app")--> object --(--factory: call it)--> app
        --first kind in APP_KINDS that accepts it--> LoadedApp(spec, kind, app)
        --LoadedApp.handler_factory(options)--> make_handler() in every serving process

An application kind knows how to recognise an object and how to turn it into the
handler factory a server runs. The kinds are a table, :data:`APP_KINDS`, searched in
order: ``native`` (an :class:`~ioreactor.http.app.App`), ``asgi`` (an ASGI 3
application, or ASGI 2 through a wrapper: FastAPI, Starlette, Django's ASGI handler...);
``--interface NAME`` skips the search and asks for one kind (:data:`INTERFACES`).

Every failure is an :class:`AppLoadError` whose message is one line naming what was
looked for and where (module, attribute, app directory), raised in the calling process
before any worker starts. The traceback of an exception raised by the user's module is
logged at DEBUG.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioreactor.http.limits import Limits

if TYPE_CHECKING:
    from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.http")

#: Where ``ioreactor serve`` mounts ``--static DIR`` in any application.
STATIC_PREFIX = "/static"


class AppLoadError(ValueError):
    """The application cannot be loaded; the message is one line saying what and where."""


#: ``--lifespan``: run the ASGI lifespan protocol if the application speaks it, always
#: (its failure stops the server), or never.
LIFESPAN_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class ServeOptions:
    """What every kind of application is served with (the ``serve`` flags)."""

    limits: Limits
    access_log: bool = False
    static_dir: str | None = None
    #: The path prefix the application is mounted under (ASGI ``root_path``).
    root_path: str = ""
    #: One of :data:`LIFESPAN_MODES`: the ASGI lifespan protocol.
    lifespan: str = "auto"
    #: Peers whose ``Forwarded`` / ``X-Forwarded-*`` fields are applied (None: none).
    forwarded_allow_ips: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AppKind:
    """One kind of application: how to recognise it and how to serve it.

    ``build(app, options)`` runs once, in the process that loaded the application, and
    returns the factory each serving process calls (after the fork) for its handler.
    """

    name: str
    #: What an object of this kind is, for errors ("an ioreactor.http.App").
    description: str
    accepts: Callable[[object], bool]
    build: Callable[[object, ServeOptions], Callable[[], Handler]]


# The kinds import their servers when used: the command line imports this module to
# build its parser (INTERFACES), and must not load httptools for that.


def _is_native(obj: object) -> bool:
    from ioreactor.http.app import App

    return isinstance(obj, App)


def _serve_native(app: object, options: ServeOptions) -> Callable[[], Handler]:
    from ioreactor.http.app import App
    from ioreactor.http.handler import HttpHandler

    assert isinstance(app, App)
    if options.static_dir is not None:
        app.static(STATIC_PREFIX, options.static_dir)  # after the app's own routes
    limits, access_log = options.limits, options.access_log

    def make_handler() -> Handler:
        return HttpHandler(app, limits, access_log=access_log)

    return make_handler


NATIVE = AppKind("native", "an ioreactor.http.App", _is_native, _serve_native)


def _is_asgi(obj: object) -> bool:
    from ioreactor.http.asgi.app import asgi_version

    return asgi_version(obj) is not None


def _serve_asgi(app: object, options: ServeOptions) -> Callable[[], Handler]:
    from ioreactor.http.asgi import (
        AsgiDispatcher,
        AsgiHandler,
        TrustedProxies,
        as_asgi3,
    )

    asgi_app = as_asgi3(app)
    allow = options.forwarded_allow_ips
    proxies = TrustedProxies(allow) if allow is not None else None

    def make_handler() -> Handler:
        dispatcher = AsgiDispatcher(
            asgi_app, root_path=options.root_path, proxies=proxies, lifespan=options.lifespan
        )
        return AsgiHandler(dispatcher, options.limits, access_log=options.access_log)

    return make_handler


ASGI = AppKind("asgi", "an ASGI application", _is_asgi, _serve_asgi)

#: Every kind ``ioreactor serve`` can run, tried in this order.
APP_KINDS: tuple[AppKind, ...] = (NATIVE, ASGI)
#: ``--interface``: ``auto`` (the first kind that accepts the object) or a kind's name.
INTERFACES: tuple[str, ...] = ("auto", *(kind.name for kind in APP_KINDS))


@dataclass(frozen=True)
class LoadedApp:
    """An application found by :func:`load_app` (or given directly, like the echo app)."""

    spec: str
    kind: AppKind
    app: object

    def handler_factory(self, options: ServeOptions) -> Callable[[], Handler]:
        """The ``make_handler`` that ``run_server`` calls in each serving process."""
        return self.kind.build(self.app, options)


def classify(obj: object, interface: str = "auto") -> AppKind | None:
    """The first kind in :data:`APP_KINDS` that accepts ``obj`` (only the kind named
    ``interface`` unless it is ``auto``), or None."""
    for kind in APP_KINDS:
        if (interface == "auto" or kind.name == interface) and kind.accepts(obj):
            return kind
    return None


def load_app(
    spec: str, *, app_dir: str | None = None, factory: bool = False, interface: str = "auto"
) -> LoadedApp:
    """Import ``MODULE:ATTR`` from ``app_dir`` (default: the current directory).

    ``app_dir`` goes first on ``sys.path``. With ``factory``, ATTR is called without
    arguments and what it returns is the application. ``interface``: ``auto``, or the
    name of the kind the application must be.
    """
    if interface not in INTERFACES:
        raise AppLoadError(
            f"{spec}: unknown interface {interface!r}; known: {', '.join(INTERFACES)}"
        )
    module_name, attr = split_spec(spec)
    where = os.path.abspath(app_dir if app_dir is not None else os.getcwd())
    if where not in sys.path:
        sys.path.insert(0, where)
    context = f"app-dir {where}"
    module = _import(spec, module_name, context)
    context = f"module {module_name} from {_origin(module)}, {context}"
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"{spec}: no attribute {attr!r} ({context})") from None
    if factory:
        if not callable(obj):
            raise AppLoadError(
                f"{spec}: --factory needs a callable that returns the application; "
                f"{attr} is {_a(obj)} ({context})"
            )
        try:
            obj = obj()
        except Exception as exc:
            log.debug("%s: the factory failed", spec, exc_info=True)
            raise AppLoadError(
                f"{spec}: calling the factory {attr}() failed: {_one_line(exc)} ({context})"
            ) from None
    kind = classify(obj, interface)
    if kind is None:
        kinds = [k for k in APP_KINDS if interface in ("auto", k.name)]
        expected = " or ".join(k.description for k in kinds)
        made = "returned by the factory " if factory else ""
        other = classify(obj) if interface != "auto" else None
        if other is not None:
            hint = f"; it is {other.description} (--interface {other.name})"
        elif callable(obj) and not factory:
            hint = "; a function that builds it? add --factory"
        else:
            hint = ""
        raise AppLoadError(f"{spec}: {attr} {made}is {_a(obj)}, not {expected}{hint} ({context})")
    return LoadedApp(spec, kind, obj)


def split_spec(spec: str) -> tuple[str, str]:
    """``("myproj.web", "app")`` from ``"myproj.web:app"``; AppLoadError if malformed."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"{spec!r}: expected MODULE:ATTR, e.g. myproj.web:app")
    for name, what in ((module_name, "module"), (attr, "attribute")):
        if not all(part.isidentifier() for part in name.split(".")):
            raise AppLoadError(f"{spec!r}: {name!r} is not a dotted {what} name")
    return module_name, attr


def _import(spec: str, module_name: str, context: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AppLoadError(f"{spec}: no module named {missing!r} ({context})") from None
        log.debug("importing %s failed", module_name, exc_info=True)
        raise AppLoadError(
            f"{spec}: importing {module_name} failed: {_one_line(exc)} ({context})"
        ) from None
    except Exception as exc:  # the module's own code raised (SyntaxError included)
        log.debug("importing %s failed", module_name, exc_info=True)
        raise AppLoadError(
            f"{spec}: importing {module_name} failed: {_one_line(exc)} ({context})"
        ) from None


def _origin(module: object) -> str:
    return str(getattr(module, "__file__", None) or "a namespace package")


def _a(obj: object) -> str:
    """``a str``, ``an int``, ``a function``: what the object found is."""
    name = "function" if callable(obj) and type(obj).__name__ == "function" else type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _one_line(exc: BaseException) -> str:
    """``ZeroDivisionError: division by zero at app.py:3``: the exception and where."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    if isinstance(exc, SyntaxError):
        return text  # "invalid syntax (app.py, line 3)" says where already
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" at {os.path.basename(last.filename)}:{last.lineno}"
    return text
