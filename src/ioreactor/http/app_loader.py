"""Find the application that ``ioreactor serve MODULE:ATTR`` runs, and what kind it is.

::

    "myproj.web:app" --import myproj.web (APP_DIR first on sys.path)--> module
        --getattr "app" (dotted: "api.app")--> object --(--factory: call it)--> app
        --first kind in APP_KINDS that accepts it--> LoadedApp(spec, kind, app)
        --LoadedApp.handler_factory(options)--> make_handler() in every serving process

An application kind knows how to recognise an object and how to turn it into the
handler factory a server runs. The kinds are a table, :data:`APP_KINDS`, searched in
order: ``native`` (an :class:`~ioreactor.http.app.App`), ``wsgi`` (a PEP 3333 callable,
run by :class:`~ioreactor.http.wsgi.WsgiDispatcher`) and ``asgi`` (an ASGI 3 application,
or ASGI 2 through a wrapper: FastAPI, Starlette, Django's ASGI handler..., run by
:class:`~ioreactor.http.asgi.AsgiDispatcher`). ``--interface NAME`` names the kind instead.

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

from ioreactor.http.access_log import AccessLog
from ioreactor.http.app import App
from ioreactor.http.dispatch import AppDispatcher, Dispatcher
from ioreactor.http.forwarding import ForwardedHeaders, ForwardingDispatcher
from ioreactor.http.handler import HttpHandler
from ioreactor.http.health import HEALTH_PATH, add_health_route
from ioreactor.http.limits import Limits
from ioreactor.http.metrics import (
    CountingDispatcher,
    MeteredHttpHandler,
    MetricsObserver,
    ObservingDispatcher,
)
from ioreactor.http.observers import ResponseObserver, combine
from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.http")

#: Where ``ioreactor serve`` mounts ``--static DIR`` in any application.
STATIC_PREFIX = "/static"


class AppLoadError(ValueError):
    """The application cannot be loaded; the message is one line saying what and where."""


@dataclass(frozen=True)
class ServeOptions:
    """What every kind of application is served with (the ``serve`` flags)."""

    limits: Limits
    access_log: bool = False
    static_dir: str | None = None
    #: Where the application is mounted (WSGI's ``SCRIPT_NAME``, ASGI's ``root_path``):
    #: "" or "/a/b".
    root_path: str = ""
    #: The ASGI lifespan protocol: ``auto``, ``on`` or ``off``
    #: (:data:`ioreactor.http.asgi.lifespan.LIFESPAN_MODES`).
    lifespan: str = "auto"
    #: Threads of the pool that runs a WSGI application, per serving process.
    threads: int | None = None
    #: Run a WSGI application at the request head, ``wsgi.input`` fed as the body arrives.
    stream_body: bool = False
    #: Seconds a request handed to the WSGI pool may go unanswered (then 503).
    pool_timeout: float | None = None
    #: Other processes serve the same application (``--workers`` > 1).
    multiprocess: bool = False
    #: Trusted forwarding headers (``--proxy-headers``): None to ignore them.
    forwarded: ForwardedHeaders | None = None
    #: The path the server answers for health checks (None: none added).
    health_path: str | None = HEALTH_PATH
    #: ``combined``, ``common`` or ``json`` (with ``access_log``).
    access_log_format: str = "combined"
    #: Count the requests of each process (``--max-requests``).
    count_requests: bool = False
    #: Keep the HTTP metrics of each process (``--metrics-listen``).
    metrics: bool = False

    def observer(self) -> ResponseObserver | None:
        """Who watches the responses: the access log, the metrics, both or nobody."""
        return combine(
            AccessLog(self.access_log_format) if self.access_log else None,
            MetricsObserver() if self.metrics else None,
        )

    def observed(self, dispatcher: Dispatcher, forwarding: bool = True) -> Dispatcher:
        """``dispatcher`` with the forwarding headers (unless it reads them itself:
        ``forwarding`` False) and the request counting asked for."""
        if self.forwarded is not None and forwarding:
            dispatcher = ForwardingDispatcher(dispatcher, self.forwarded)
        if self.metrics:
            dispatcher = ObservingDispatcher(dispatcher)
        elif self.count_requests:
            dispatcher = CountingDispatcher(dispatcher)
        return dispatcher

    def handler(
        self,
        dispatcher: Dispatcher,
        kind: type[HttpHandler] = HttpHandler,
        metered: type[HttpHandler] = MeteredHttpHandler,
        *,
        forwarding: bool = True,
    ) -> HttpHandler:
        """The connection handler of a serving process for ``dispatcher``: ``kind``, or
        ``metered`` (its subclass that counts back-pressure) with the metrics on."""
        handler_class = metered if self.metrics else kind
        return handler_class(
            self.observed(dispatcher, forwarding), self.limits, observer=self.observer()
        )


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


# The WSGI and ASGI kinds import their servers when used: serving a native App loads
# neither (nor asyncio).


def _is_native(obj: object) -> bool:
    return isinstance(obj, App)


def _serve_native(app: object, options: ServeOptions) -> Callable[[], Handler]:
    assert isinstance(app, App)
    if options.static_dir is not None:
        app.static(STATIC_PREFIX, options.static_dir)  # after the app's own routes
    if options.health_path is not None:
        add_health_route(app, options.health_path)

    def make_handler() -> Handler:
        return options.handler(AppDispatcher(app))

    return make_handler


NATIVE = AppKind("native", "an ioreactor.http.App", _is_native, _serve_native)


def _is_wsgi(obj: object) -> bool:
    from ioreactor.http.wsgi.dispatcher import is_wsgi_callable

    return is_wsgi_callable(obj)


def _serve_wsgi(app: object, options: ServeOptions) -> Callable[[], Handler]:
    from ioreactor.http.static import StaticFiles
    from ioreactor.http.wsgi.dispatcher import DEFAULT_THREADS, POOL_TIMEOUT, WsgiDispatcher

    static = StaticFiles(options.static_dir) if options.static_dir is not None else None

    def make_handler() -> Handler:
        dispatcher = WsgiDispatcher(
            app,
            threads=options.threads or DEFAULT_THREADS,
            root_path=options.root_path,
            stream_body=options.stream_body,
            pool_timeout=options.pool_timeout or POOL_TIMEOUT,
            static=static,
            static_prefix=STATIC_PREFIX,
            multiprocess=options.multiprocess,
        )
        return options.handler(dispatcher)

    return make_handler


def _is_asgi(obj: object) -> bool:
    from ioreactor.http.asgi.app import asgi_version

    return asgi_version(obj) is not None


def _serve_asgi(app: object, options: ServeOptions) -> Callable[[], Handler]:
    from ioreactor.http.asgi import AsgiDispatcher, as_asgi3
    from ioreactor.http.asgi.handler import AsgiHandler, MeteredAsgiHandler

    asgi_app = as_asgi3(app)

    def make_handler() -> Handler:
        dispatcher = AsgiDispatcher(
            asgi_app,
            root_path=options.root_path,
            forwarded=options.forwarded,
            lifespan=options.lifespan,
        )
        # (the scope takes the client and the scheme from the forwarding headers)
        return options.handler(dispatcher, AsgiHandler, MeteredAsgiHandler, forwarding=False)

    return make_handler


WSGI = AppKind("wsgi", "a WSGI application (PEP 3333)", _is_wsgi, _serve_wsgi)
ASGI = AppKind("asgi", "an ASGI application", _is_asgi, _serve_asgi)

#: Every kind ``ioreactor serve`` can run, tried in this order (an ASGI 3 function has
#: three parameters and a WSGI one two, so they are told apart; a class is ASGI).
APP_KINDS: tuple[AppKind, ...] = (NATIVE, ASGI, WSGI)


@dataclass(frozen=True)
class LoadedApp:
    """An application found by :func:`load_app` (or given directly, like the echo app)."""

    spec: str
    kind: AppKind
    app: object

    def handler_factory(self, options: ServeOptions) -> Callable[[], Handler]:
        """The ``make_handler`` that ``run_server`` calls in each serving process."""
        return self.kind.build(self.app, options)


def classify(obj: object) -> AppKind | None:
    """The first kind in :data:`APP_KINDS` that accepts ``obj``, or None."""
    for kind in APP_KINDS:
        if kind.accepts(obj):
            return kind
    return None


#: ``interface`` of :func:`load_app`: the first kind that accepts the object.
AUTO = "auto"


def kind_named(name: str) -> AppKind:
    """The kind called ``name`` in :data:`APP_KINDS` (ValueError if none is)."""
    for kind in APP_KINDS:
        if kind.name == name:
            return kind
    known = ", ".join(kind.name for kind in APP_KINDS)
    raise ValueError(f"unknown application kind {name!r}; known: {known}")


def load_app(
    spec: str, *, app_dir: str | None = None, factory: bool = False, interface: str = AUTO
) -> LoadedApp:
    """Import ``MODULE:ATTR`` from ``app_dir`` (default: the current directory).

    ``app_dir`` goes first on ``sys.path``. With ``factory``, ATTR is called without
    arguments and what it returns is the application. ``interface`` names its kind
    instead of detecting it: any callable is then served as that kind (a C callable or
    a ``*args`` wrapper has no signature to detect it by); a native app must be an App.
    """
    named = None
    if interface != AUTO:
        try:
            named = kind_named(interface)
        except ValueError as exc:
            raise AppLoadError(f"{spec}: {exc}") from None
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
    if named is not None:
        if named.accepts(obj):
            return LoadedApp(spec, named, obj)
        other = classify(obj)
        if other is None and named is not NATIVE and callable(obj):
            return LoadedApp(spec, named, obj)  # nothing in its signature says otherwise
        hint = f"; it is {other.description} (--interface {other.name})" if other else ""
        raise AppLoadError(
            f"{spec}: --interface {interface}: {attr} is {_a(obj)}, not "
            f"{named.description}{hint} ({context})"
        )
    kind = classify(obj)
    if kind is None:
        expected = " or ".join(k.description for k in APP_KINDS)
        made = "returned by the factory " if factory else ""
        hint = ""
        if callable(obj):
            hint = "; a WSGI application whose signature does not say so? add --interface wsgi"
            if not factory:
                hint += "; a function that builds the application? add --factory"
        raise AppLoadError(f"{spec}: {attr} {made}is {_a(obj)}, not {expected}{hint} ({context})")
    return LoadedApp(spec, kind, obj)


def reload_app(
    spec: str, *, app_dir: str | None = None, factory: bool = False, interface: str = AUTO
) -> LoadedApp:
    """:func:`load_app` from the code on disk now: the modules imported from
    ``app_dir`` (not the installed packages, not ioreactor) are forgotten first, so the
    import runs them again (a reload: SIGHUP)."""
    where = os.path.abspath(app_dir if app_dir is not None else os.getcwd()) + os.sep
    installed = tuple(
        os.path.abspath(p) + os.sep for p in {sys.prefix, sys.base_prefix, *site_packages()}
    )
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (
            path is not None
            and os.path.abspath(path).startswith(where)
            and not os.path.abspath(path).startswith(installed)
            and name.partition(".")[0] not in ("ioreactor", "ioreactor_tools")
        ):
            del sys.modules[name]
    importlib.invalidate_caches()
    return load_app(spec, app_dir=app_dir, factory=factory, interface=interface)


def site_packages() -> list[str]:
    """The directories installed packages are imported from."""
    import site

    return [*site.getsitepackages(), site.getusersitepackages()]


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
