"""Certificates for TLS tests, made by ``trustme`` (a throwaway CA per test session: no
key is ever committed), and blocking TLS clients built on the standard ``ssl`` module.

:func:`shared_pki` (one per test process) holds a CA and what it issued -- the server's certificate
(``localhost``, ``127.0.0.1``, ``::1``), a client certificate, an expired one, one for
another host, SNI names -- plus a second CA whose certificates nobody trusts; each also
written to files for the command-line tools (curl, openssl, ``ioreactor serve``).
"""

from __future__ import annotations

import atexit
import datetime
import functools
import logging
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from support.processes import terminate
from support.programs import require_program
from support.server_process import wait_accepting

#: Seconds a blocking TLS client waits for anything (generous: the machine is shared).
TIMEOUT = 20.0


@dataclass(frozen=True)
class CertFiles:
    """One certificate chain and its key, as files."""

    cert: str
    key: str
    both: str  # key and chain in one file (curl --cert, openssl -cert)


class Pki:
    """A CA, the certificates it issued, and a CA nobody trusts (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA(organization_name="ioreactor test CA")
        self.other_ca = trustme.CA(organization_name="untrusted test CA")
        self._server = self.ca.issue_cert("localhost", "127.0.0.1", "::1")
        self._client = self.ca.issue_cert("client@ioreactor.test", common_name="client")
        self._stranger = self.other_ca.issue_cert("client@ioreactor.test", common_name="stranger")
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
        self._expired = self.ca.issue_cert(
            "localhost", "127.0.0.1", not_before=past, not_after=past + datetime.timedelta(days=1)
        )
        self._other_host = self.ca.issue_cert("elsewhere.test")
        self._sni = {
            name: self.ca.issue_cert(name, common_name=name)
            for name in ("a.ioreactor.test", "b.ioreactor.test", "*.wild.ioreactor.test")
        }
        self.ca_file = self._write("ca.pem", self.ca.cert_pem.bytes())
        self.other_ca_file = self._write("other-ca.pem", self.other_ca.cert_pem.bytes())
        self.server = self._files("server", self._server)
        self.client = self._files("client", self._client)
        self.stranger = self._files("stranger", self._stranger)
        self.expired = self._files("expired", self._expired)
        self.other_host = self._files("other-host", self._other_host)
        self.sni = {
            name: self._files(name.replace("*", "star"), cert) for name, cert in self._sni.items()
        }

    def _write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        return str(path)

    def _files(self, name: str, cert: trustme.LeafCert) -> CertFiles:
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        key = cert.private_key_pem.bytes()
        return CertFiles(
            self._write(f"{name}.crt", chain),
            self._write(f"{name}.key", key),
            self._write(f"{name}.pem", key + chain),
        )

    # -- contexts ---------------------------------------------------------------------------

    def server_context(self, files: CertFiles | None = None) -> ssl.SSLContext:
        """A plain server context with ``files`` (default: the server certificate)."""
        files = files or self.server
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files.cert, files.key)
        return context

    def client_context(self, *, cert: CertFiles | None = None) -> ssl.SSLContext:
        """A client context that trusts the test CA (and presents ``cert`` if given)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if cert is not None:
            context.load_cert_chain(cert.cert, cert.key)
        return context


@functools.cache
def shared_pki() -> Pki:
    """The test process's PKI (made once; its files are removed when the process exits)."""
    directory = Path(tempfile.mkdtemp(prefix="ioreactor-pki-"))
    atexit.register(shutil.rmtree, directory, True)
    return Pki(directory)


def tls_connect(
    address: tuple[str, int] | str,
    context: ssl.SSLContext,
    server_hostname: str | None = "localhost",
) -> ssl.SSLSocket:
    """A blocking TLS client socket, handshake done (TCP address, or a Unix path)."""
    if isinstance(address, str):
        raw = socket.socket(socket.AF_UNIX)
        raw.settimeout(TIMEOUT)
        raw.connect(address)
    else:
        raw = socket.create_connection(address, timeout=TIMEOUT)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def client_hello(context: ssl.SSLContext, server_hostname: str = "localhost") -> bytes:
    """The bytes of a real ClientHello (what a trickling client sends one by one)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        sslobj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class MemoryTlsClient:
    """A TLS client over a plain socket whose records the test controls (to truncate one,
    or to leave without close_notify): the ``SSLObject`` writes into a memory BIO and the
    test decides which bytes reach the socket."""

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                data = self.sock.recv(65536)
                assert data, "server closed during the handshake"
                self.incoming.write(data)
        self.sock.sendall(self.outgoing.read())

    def record(self, plaintext: bytes) -> bytes:
        """The ciphertext of ``plaintext`` (not sent)."""
        self.sslobj.write(plaintext)
        return self.outgoing.read()

    def receive(self, n: int) -> bytes:
        """Read and decrypt until ``n`` bytes of plaintext arrived."""
        data = bytearray()
        while len(data) < n:
            try:
                data += self.sslobj.read(n - len(data))
            except ssl.SSLWantReadError:
                chunk = self.sock.recv(65536)
                assert chunk, f"EOF after {len(data)} of {n} bytes"
                self.incoming.write(chunk)
        return bytes(data)

    def close(self) -> None:
        self.sock.close()


def openssl_program() -> str:
    """The openssl command line tool, or skip saying so."""
    return require_program(
        "openssl", "the openssl command line tool (Debian: apt-get install openssl)"
    )


def run_openssl_client(
    port: int, *args: str, lines: Iterable[bytes] = (), pause: float = 0.25
) -> str:
    """``openssl s_client -connect 127.0.0.1:PORT ARGS``, typing ``lines`` one by one
    ``pause`` seconds apart (so ``R`` and ``K`` arrive as commands, not data), then
    closing its input; its output and errors, once it exited."""
    process = subprocess.Popen(
        [openssl_program(), "s_client", "-connect", f"127.0.0.1:{port}", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        for line in lines:
            time.sleep(pause)
            try:
                process.stdin.write(line)
                process.stdin.flush()
            except BrokenPipeError:
                break
        time.sleep(pause)
        output, _ = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return output.decode(errors="replace")


def tls_log_records(
    records: Iterable[logging.LogRecord], level: int | None = None
) -> Iterator[logging.LogRecord]:
    """The log records of the TLS layer (``ioreactor.tls``), at ``level`` if given."""
    for record in records:
        if record.name == "ioreactor.tls" and (level is None or record.levelno == level):
            yield record


def tls_echo(
    address: tuple[str, int], context: ssl.SSLContext, data: bytes, *, chunk: int = 65536
) -> bytes:
    """Send ``data`` through an echo server over TLS while reading the echo (asyncio's
    TLS client: one SSL object must never be used by two threads at once)."""
    import asyncio

    async def run() -> bytes:
        reader, writer = await asyncio.open_connection(
            *address, ssl=context, server_hostname="localhost"
        )

        async def send() -> None:
            for i in range(0, len(data), chunk):
                writer.write(data[i : i + chunk])
                await writer.drain()

        sending = asyncio.create_task(send())
        received = await reader.readexactly(len(data))
        await sending
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
        return received

    return asyncio.run(asyncio.wait_for(run(), TIMEOUT))


class Served:
    """``python -m ioreactor ARGS`` in a process of its own, serving on ``port``: ready
    once the port accepts, stopped with SIGTERM (it must exit 0 without a traceback).
    Its log goes to a file (a pipe nobody reads could fill and block it)."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        import sys

        self.port = port
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ioreactor", *args], stdout=self._log, stderr=self._log
        )

    def __enter__(self) -> Served:
        try:
            wait_accepting(self.port, self.process, TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log()}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        terminate(self.process, TIMEOUT)
        self._log.close()
        if exc_info[0] is None:
            assert self.process.returncode == 0, self.log()
            assert "Traceback" not in self.log(), self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """The pids of its child processes (the workers under a supervisor)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]
