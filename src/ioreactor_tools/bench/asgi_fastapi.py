"""The FastAPI application of ``ioreactor bench asgi``'s ``fastapi-json`` workload:
``GET /`` returns ``{"message": "Hello, World!"}`` as JSON (routing, an ``async def``
endpoint, FastAPI's serialisation), the same for every server."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app: Any = FastAPI()


async def root() -> dict[str, str]:
    return {"message": "Hello, World!"}


app.get("/")(root)
