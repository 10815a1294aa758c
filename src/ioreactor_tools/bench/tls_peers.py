"""The TLS peers of ``ioreactor bench tls``: the same minimal servers as the HTTP and echo
benchmarks, with ``ssl=`` (asyncio's ``sslproto``, uvloop's Cython twin), and nginx.

::

    uvloop-https / asyncio-https   HelloProtocol (httptools) behind create_server(ssl=ctx)
    uvloop-tls-echo                EchoProtocol behind create_server(ssl=ctx)
    nginx                          :mod:`~ioreactor_tools.bench.nginx_peers` with ``ssl``

Every server gets the same certificate and key (a throwaway ECDSA P-256 pair made with
the ``openssl`` tool: :func:`make_certificate`) and OpenSSL's default ciphers: TLS 1.3,
TLS_AES_256_GCM_SHA384 with X25519 for every client here. Run a Python peer as
``python -m ioreactor_tools.bench.tls_peers uvloop-https --port N --certfile C --keyfile K``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ioreactor_tools.bench import nginx_peers
from ioreactor_tools.bench.http_peers import HelloProtocol
from ioreactor_tools.bench.peers import PEER_BACKLOG, EchoProtocol, uvloop_available

#: Peer names this module serves.
TLS_PEERS = ("uvloop-https", "asyncio-https", "uvloop-tls-echo", "asyncio-tls-echo")


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate and its key, as files in ``directory``."""

    directory: Path
    certfile: Path
    keyfile: Path


def make_certificate(directory: Path | None = None) -> Certificate:
    """A throwaway self-signed ECDSA P-256 certificate for ``localhost`` and
    ``127.0.0.1`` (the load generators do not verify it), made by ``openssl req``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the benchmark needs the openssl command line tool")
    where = directory or Path(tempfile.mkdtemp(prefix="ioreactor-bench-tls-"))
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(where, cert, key)


def nginx_command(port: int, cert: Certificate) -> list[str]:
    """nginx serving ``Hello, World!`` over TLS on 127.0.0.1:``port``, in the foreground
    (its configuration and scratch files in a directory beside the certificate's)."""
    return nginx_peers.nginx_command(cert.directory / f"nginx-{port}", port, cert)


def _context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


async def _serve(name: str, host: str, port: int, context: ssl.SSLContext) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    protocol = EchoProtocol if name.endswith("tls-echo") else HelloProtocol
    server = await loop.create_server(
        protocol, host, port, backlog=PEER_BACKLOG, ssl=context, ssl_handshake_timeout=10.0
    )
    async with server:
        await stop.wait()


def run_tls_peer(name: str, host: str, port: int, certfile: str, keyfile: str) -> None:
    """Serve until SIGTERM/SIGINT."""
    serve = _serve(name, host, port, _context(certfile, keyfile))
    if name.startswith("uvloop"):
        import uvloop

        uvloop.run(serve)
    else:
        asyncio.run(serve)


def tls_peer_command(name: str, port: int, cert: Certificate) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ioreactor_tools.bench.tls_peers",
        name,
        "--port",
        str(port),
        "--certfile",
        str(cert.certfile),
        "--keyfile",
        str(cert.keyfile),
    ]


def unavailable(name: str) -> str | None:
    """None if peer ``name`` can run here, else why not."""
    if name.startswith("uvloop"):
        return uvloop_available()
    if name == "nginx":
        return nginx_peers.nginx_unavailable()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ioreactor_tools.bench.tls_peers", description="minimal TLS servers"
    )
    parser.add_argument("peer", choices=TLS_PEERS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    args = parser.parse_args(argv)
    if (reason := unavailable(args.peer)) is not None:
        parser.error(reason)
    run_tls_peer(args.peer, args.host, args.port, args.certfile, args.keyfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
