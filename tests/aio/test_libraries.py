"""Real asyncio libraries on ioreactor.aio, exchanging real traffic over loopback:
aiohttp (server and client), httpx's async client, websockets (server and client)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import websockets
from aio_support import run
from aiohttp import web

from ioreactor.aio import Loop


async def start_aiohttp_app() -> tuple[web.AppRunner, int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.match_info['name']}")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"got": await request.json()})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(100):
            await response.write(b"%d," % i * 100)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def test_aiohttp_server_and_client(aio_loop: Loop) -> None:
    async def main() -> None:
        runner, port = await start_aiohttp_app()
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for i in range(20):  # keep-alive: one connection, many requests
                async with session.get(f"{base}/hello/n{i}") as resp:
                    assert resp.status == 200
                    assert await resp.text() == f"hello n{i}"
            async with session.post(f"{base}/echo", json={"a": [1, 2, 3]}) as resp:
                assert await resp.json() == {"got": {"a": [1, 2, 3]}}
            async with session.get(f"{base}/stream") as resp:
                body = await resp.read()
                assert body == b"".join(b"%d," % i * 100 for i in range(100))
        await runner.cleanup()

    run(aio_loop, main(), timeout=30)


def test_httpx_async_client_against_an_aiohttp_server(aio_loop: Loop) -> None:
    async def main() -> None:
        runner, port = await start_aiohttp_app()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            responses = await asyncio.gather(*[client.get(f"/hello/x{i}") for i in range(10)])
            assert [r.text for r in responses] == [f"hello x{i}" for i in range(10)]
            r = await client.post("/echo", content=json.dumps([1, "two"]))
            assert r.json() == {"got": [1, "two"]}
        await runner.cleanup()

    run(aio_loop, main(), timeout=30)


def test_websockets_server_and_client(aio_loop: Loop) -> None:
    async def handler(ws: websockets.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message[::-1] if isinstance(message, str) else bytes(message))

    async def main() -> None:
        async with websockets.serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                for i in range(50):
                    await ws.send(f"message {i}")
                    assert await ws.recv() == f"message {i}"[::-1]
                big = bytes(range(256)) * 4096  # 1 MiB, several frames' worth of reads
                await ws.send(big)
                assert await ws.recv() == big

    run(aio_loop, main(), timeout=30)
