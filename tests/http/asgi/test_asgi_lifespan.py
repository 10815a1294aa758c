"""The lifespan protocol: startup before accepting, shutdown after, the three modes, and
what counts as a failure (in process, on ioreactor.aio's loop)."""

from __future__ import annotations

from typing import Any

import pytest

import ioreactor.aio
from ioreactor.http.asgi import Lifespan, LifespanError
from support.asgi import Receive, Scope, Send


async def speaks_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "lifespan"
    assert (await receive())["type"] == "lifespan.startup"
    scope["state"]["pool"] = "open"
    await send({"type": "lifespan.startup.complete"})
    assert (await receive())["type"] == "lifespan.shutdown"
    scope["state"]["pool"] = "closed"
    await send({"type": "lifespan.shutdown.complete"})


async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']}")


async def refuses(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})


def run(lifespan: Lifespan) -> list[Any]:
    async def main() -> list[Any]:
        await lifespan.startup()
        started = dict(lifespan.state)
        await lifespan.shutdown()
        return [started, dict(lifespan.state), lifespan.supported]

    return ioreactor.aio.run(main())


def test_startup_and_shutdown_share_the_state() -> None:
    started, ended, supported = run(Lifespan(speaks_lifespan, "on"))
    assert started == {"pool": "open"} and ended == {"pool": "closed"} and supported


def test_auto_goes_on_without_an_app_that_does_not_speak_it() -> None:
    assert run(Lifespan(http_only, "auto"))[2] is False


@pytest.mark.parametrize(
    ("app", "mode", "message"),
    [
        (http_only, "on", "ValueError"),
        (refuses, "auto", "no database"),
        (refuses, "on", "no database"),
    ],
)
def test_a_failed_startup_raises(app: Any, mode: str, message: str) -> None:
    with pytest.raises(LifespanError, match=message):
        run(Lifespan(app, mode))


def test_off_never_calls_the_app() -> None:
    assert run(Lifespan(refuses, "off")) == [{}, {}, False]
