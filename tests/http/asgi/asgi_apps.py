"""Real applications for the process-level ASGI tests: a FastAPI app and a Starlette app,
served by ``ioreactor serve asgi_apps:fastapi_app`` (and by uvicorn, the reference, in
the differential test). Each exercises what real code does: routing with parameters,
pydantic JSON bodies and their 422s, streaming and file responses, background tasks,
lifespan state, WebSocket endpoints, a custom exception handler, middleware."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

#: What background tasks did (read back through /background/done).
DONE: list[str] = []
#: The file the file responses send: the same path, bytes and mtime in every process
#: that imports this module (Starlette's ETag is made of the mtime and the size, and the
#: differential test compares it between two servers).
FILE_BODY = bytes(range(256)) * 1000
FILE_PATH = os.path.join(tempfile.gettempdir(), "ioreactor-asgi-tests-file.bin")
FILE_MTIME = 1_700_000_000


def _make_file() -> None:
    fd, scratch = tempfile.mkstemp(dir=os.path.dirname(FILE_PATH))
    with os.fdopen(fd, "wb") as out:
        out.write(FILE_BODY)
    os.utime(scratch, (FILE_MTIME, FILE_MTIME))
    os.replace(scratch, FILE_PATH)  # atomic: a reader never sees half a file


_make_file()


class TeapotError(Exception):
    pass


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    if os.environ.get("ASGI_APPS_FAIL_STARTUP"):
        raise RuntimeError("the database is down")
    yield {"greeting": "hello from lifespan"}


fastapi_app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@fastapi_app.exception_handler(TeapotError)
async def teapot_handler(request: Request, exc: TeapotError) -> JSONResponse:
    return JSONResponse({"detail": "I'm a teapot", "path": request.url.path}, status_code=418)


@fastapi_app.middleware("http")
async def add_header(request: Request, call_next: Any) -> Any:
    response = await call_next(request)
    response.headers["x-middleware"] = "yes"
    return response


@fastapi_app.get("/")
async def root() -> dict[str, str]:
    return {"message": "Hello World"}


@fastapi_app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items", status_code=201)
async def create_item(item: Item) -> dict[str, Any]:
    return {"name": item.name, "total": item.price * 2, "tags": item.tags}


@fastapi_app.get("/sync")
def sync_route() -> PlainTextResponse:  # runs in FastAPI's thread pool (anyio)
    return PlainTextResponse("from a thread")


@fastapi_app.get("/state")
async def state(request: Request) -> dict[str, Any]:
    return {"greeting": request.state.greeting, "root_path": request.scope["root_path"]}


@fastapi_app.get("/stream")
async def stream() -> StreamingResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.01)
            yield b"line %d\n" % i

    return StreamingResponse(numbers(), media_type="text/plain")


@fastapi_app.get("/file")
async def file() -> FileResponse:
    return FileResponse(FILE_PATH, media_type="application/octet-stream")


@fastapi_app.post("/background")
async def background(tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(DONE.append, "task ran")
    return {"scheduled": "yes"}


@fastapi_app.get("/background/done")
async def background_done() -> dict[str, list[str]]:
    return {"done": DONE}


@fastapi_app.get("/teapot")
async def teapot() -> None:
    raise TeapotError()


@fastapi_app.get("/missing")
async def missing() -> None:
    raise HTTPException(status_code=404, detail="nothing here")


@fastapi_app.get("/crash")
async def crash() -> None:
    raise ZeroDivisionError("unhandled")


@fastapi_app.get("/slow")
async def slow(ms: int = 500) -> PlainTextResponse:
    await asyncio.sleep(ms / 1000)
    return PlainTextResponse(f"slept {ms}")


@fastapi_app.get("/hang")
async def hang() -> None:
    await asyncio.Event().wait()


@fastapi_app.websocket("/ws")
async def websocket_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        pass


# -- Starlette alone -----------------------------------------------------------------------


async def homepage(request: Any) -> PlainTextResponse:
    return PlainTextResponse(f"starlette {request.path_params.get('name', 'home')}")


async def starlette_ws(websocket: Any) -> None:
    await websocket.accept(subprotocol="v1")
    data = await websocket.receive_bytes()
    await websocket.send_bytes(data[::-1])
    await websocket.close(code=4000, reason="done")


starlette_app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/hello/{name}", homepage),
        WebSocketRoute("/ws", starlette_ws),
    ]
)


def create_app() -> Starlette:
    """For ``--factory``."""
    return starlette_app


async def raw_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The raw ASGI "hello" of the benchmark."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, World!"})


class Asgi2App:
    """An ASGI 2 application: made per scope, called with receive and send."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})
