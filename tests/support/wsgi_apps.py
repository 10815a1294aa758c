"""WSGI applications for the tests: a plain PEP 3333 one, a Flask one and a Django one.

The plain applications the tests serve for their normal behaviour are wrapped in the
stdlib's ``wsgiref.validate.validator``, which raises ``AssertionError`` inside the call
for any breach of PEP 3333 by the server or the application (an environ key missing or
of the wrong type, ``wsgi.input`` read the wrong way, ``close()`` never called...). The
server answers such a call 500 and logs the traceback, so a test that checks "no 500,
nothing logged" also checks the validator raised nothing. Not wrapped: the deliberately
broken applications of the failure tests (``broken_*``: breaking PEP 3333 is their
point), the zero-copy file application (see :func:`files_app_for`), and Flask and Django
(werkzeug reads ``wsgi.input.read()`` without a size, which the validator refuses under
gunicorn too; the plain applications cover the same server paths).

The module is importable by ``ioreactor serve support.wsgi_apps:NAME --app-dir tests``
(a real server process) and by gunicorn (the differential test's reference).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

StartResponse = Callable[..., Callable[[bytes], object]]
Environ = dict[str, Any]

#: The environ keys :func:`environ_app` reports (everything but the objects).
REPORTED = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "wsgi.version",
)

#: Bytes of the file :func:`files_app` serves (its tests write it there first).
FILE_SIZE = 300_000


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _environ_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``/env``: the environ as JSON (the HTTP_* keys too); ``/body``: the body read back
    in the way the query asks (``read``, ``lines``, ``iter``, ``chunks``)."""
    path = environ["PATH_INFO"]
    if path.endswith("/body"):
        stream = environ["wsgi.input"]
        how = environ["QUERY_STRING"] or "read"
        size = int(environ.get("CONTENT_LENGTH") or 0)
        if how == "lines":
            data = b"".join(stream.readlines())
        elif how == "iter":
            data = b"".join(stream)
        elif how == "chunks":
            parts = []
            while block := stream.read(7):
                parts.append(block)
            data = b"".join(parts)
        else:
            data = stream.read(size)
        return _text(start_response, data)
    report: dict[str, Any] = {key: environ[key] for key in REPORTED if key in environ}
    report.update({k: v for k, v in environ.items() if k.startswith("HTTP_")})
    report["file_wrapper"] = "wsgi.file_wrapper" in environ
    body = json.dumps(report, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


environ_app = validator(_environ_app)


class Closing:
    """A body iterable that records its ``close()`` (PEP 3333: the server must call it,
    also when the client has gone)."""

    closed: list[str] = []  # noqa: RUF012  (a record shared with the tests)

    def __init__(self, name: str, blocks: Iterable[bytes]) -> None:
        self.name = name
        self.blocks = iter(blocks)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self.blocks)

    def close(self) -> None:
        Closing.closed.append(self.name)


def _responses_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """One route per way a WSGI application answers (see each branch)."""
    path = environ["PATH_INFO"]
    query = environ["QUERY_STRING"]
    if path == "/chunked":  # no Content-Length: chunked on 1.1, close-delimited on 1.0
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("chunked", [b"one,", b"two,", b"three"])
    if path == "/generator":  # blocks yielded over time, no length
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("generator", (b"tick %d\n" % i for i in range(int(query or 3))))
    if path == "/write":  # the legacy write() callable, then an iterable
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written,")
        write(b"also written,")
        return [b"returned"]
    if path == "/exc-info":  # an error page replaces the response before the head
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("the first response was not meant")
        except ValueError:
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/reason":
        return _text(start_response, b"custom", "299 Custom Reason")
    if path == "/no-content":  # a 204 with a length the server must drop
        start_response("204 No Content", [("Content-Length", "0")])
        return []
    if path == "/not-modified":
        start_response("304 Not Modified", [])
        return []
    if path == "/longer":  # more body than Content-Length: cut
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"12345", b"67890"]
    if path == "/cookies":  # repeated fields keep their order
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("Content-Length", "7"),
            ],
        )
        return [b"cookies"]
    if path == "/large":  # a big streamed body with a length
        size = int(query or 10_000_000)
        block = bytes(range(256)) * 256  # 64 KiB
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        return Closing(
            "large", (block[: min(len(block), size - i)] for i in range(0, size, len(block)))
        )
    if path == "/sleep":
        time.sleep(float(query or 0.1))
        return _text(start_response, b"slept")
    return _text(start_response, b"not found", "404 Not Found")


responses_app = validator(_responses_app)


def _echo_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The echo server's routes as a WSGI application: ``/`` says hello, ``POST|PUT
    /echo`` returns the body, ``GET /echo`` the request line and fields."""
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path == "/" and method in ("GET", "HEAD"):
        return _text(start_response, b"Hello, World!")
    if path == "/echo" and method in ("POST", "PUT"):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        return _text(start_response, environ["wsgi.input"].read(size))
    if path == "/echo" and method == "GET":
        query = environ["QUERY_STRING"]
        lines = [f"{method} {path}{'?' + query if query else ''} {environ['SERVER_PROTOCOL']}"]
        lines += [f"{k}: {v}" for k, v in sorted(environ.items()) if k.startswith("HTTP_")]
        return _text(start_response, "\n".join(lines).encode("latin-1"))
    return _text(start_response, b"not found", "404 Not Found")


echo_app = validator(_echo_app)


def files_app_for(directory: str) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """``/file`` answered with ``wsgi.file_wrapper`` over ``directory/data.bin``;
    ``/file-no-length`` the same without Content-Length; ``/file-at`` from offset 1000.

    Not wrapped in the validator: its iterator wrapper hides the file wrapper from the
    server, and the zero-copy path is what this application is for.
    """

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        name = os.path.join(directory, "data.bin")
        handle = open(name, "rb")  # noqa: SIM115  (closed by the wrapper's close())
        size = os.fstat(handle.fileno()).st_size
        headers = [("Content-Type", "application/octet-stream")]
        if path == "/file-at":
            handle.seek(1000)
            size -= 1000
        if path != "/file-no-length":
            headers.append(("Content-Length", str(size)))
        start_response("200 OK", headers)
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](handle, 65536)
        return wrapper

    return app


# -- applications that break PEP 3333 on purpose (not validated) ----------------------------


def broken_raises(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("the application raised")


def broken_not_iterable(environ: Environ, start_response: StartResponse) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return 42


def broken_start_twice(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never"]


def broken_fails_midway(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"a first block\n"
    raise RuntimeError("the body failed after its head went out")


#: Released by the tests that hang :func:`broken_hangs` (or by the process ending).
HANG = threading.Event()


def broken_hangs(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``/hang`` never returns (until ``HANG`` is set, or 60 s); anything else answers."""
    if environ["PATH_INFO"] == "/hang":
        HANG.wait(60)
    return _text(start_response, b"answered")


# -- frameworks ------------------------------------------------------------------------------


def build_flask() -> Any:
    """A Flask application: routing, forms and JSON, an upload, a streamed response,
    ``send_file``, and an exception turned into its 500 page."""
    from flask import Flask, Response, jsonify, request, send_file, stream_with_context

    app = Flask("wsgi_tests")

    @app.route("/")
    def hello() -> str:
        return "Hello, World!"

    @app.route("/users/<int:user_id>")
    def user(user_id: int) -> Any:
        return jsonify(id=user_id, name=f"user{user_id}", q=request.args.get("q"))

    @app.route("/form", methods=["POST"])
    def form() -> Any:
        return jsonify(sorted(request.form.items()))

    @app.route("/json", methods=["POST", "PUT"])
    def echo_json() -> Any:
        return jsonify(got=request.get_json(), method=request.method)

    @app.route("/upload", methods=["POST"])
    def upload() -> Any:
        sent = request.files["file"]
        data = sent.read()
        return jsonify(name=sent.filename, size=len(data), total=sum(data) % 65521)

    @app.route("/stream")
    def stream() -> Response:
        def lines() -> Iterator[str]:
            for i in range(5):
                yield f"line {i}\n"

        return Response(stream_with_context(lines()), mimetype="text/plain")

    @app.route("/file")
    def file() -> Response:
        return send_file(os.environ.get("WSGI_TEST_FILE", __file__), mimetype="text/plain")

    @app.route("/fail")
    def fail() -> str:
        raise RuntimeError("a view failed")

    @app.route("/redirect")
    def redirect_to_root() -> Any:
        from flask import redirect

        return redirect("/")

    @app.route("/cookie")
    def cookie() -> Response:
        response = Response("cookie set", mimetype="text/plain")
        response.set_cookie("session", "abc")
        response.set_cookie("theme", "dark")
        return response

    return app


def build_django() -> Any:
    """A Django application on test settings (SQLite in memory; no model is needed):
    a JSON view, a form post (CSRF exempt), a streamed response and a 404."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _django_views() -> list[Any]:
    from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    def hello(request: Any) -> Any:
        return JsonResponse({"message": "Hello, World!", "q": request.GET.get("q")})

    @csrf_exempt
    def form(request: Any) -> Any:
        return JsonResponse({"items": sorted(request.POST.items()), "method": request.method})

    def stream(request: Any) -> Any:
        return StreamingHttpResponse((f"part {i}\n" for i in range(4)), content_type="text/plain")

    def text(request: Any) -> Any:
        return HttpResponse("plain text", content_type="text/plain")

    return [
        path("", hello),
        path("json", hello),
        path("form", form),
        path("stream", stream),
        path("text", text),
    ]


def __getattr__(name: str) -> Any:
    """The framework applications, built on first use (a test that does not serve them
    does not import Flask or Django)."""
    if name == "flask_app":
        return build_flask()
    if name == "django_app":
        return build_django()
    if name == "urlpatterns":  # Django's ROOT_URLCONF is this module
        return _django_views()
    raise AttributeError(name)
