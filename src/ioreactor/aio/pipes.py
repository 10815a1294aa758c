"""Pipe transports (``connect_read_pipe``, ``connect_write_pipe``) and subprocesses.

Data flow::

    read pipe:  fd readable -> os.read -> protocol.data_received; b"" -> eof_received
    write pipe: write() -> os.write now; the rest -> buffer -> fd writable -> os.write
    subprocess: Popen -> stdin/stdout/stderr pipe transports
                pidfd_open(pid) readable (the child exited) -> waitpid -> process_exited

Pipes are not sockets, so they are watched as fds (the loop's add_reader machinery,
whose handles route a failing callback to the exception handler) rather than carried
by a TcpConnection. A child is watched through its pidfd on the reactor: no SIGCHLD
handler, no watcher thread, no child watcher to install (Linux 5.3+; elsewhere the
policy's child watcher is used as asyncio does).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import warnings
from asyncio import base_subprocess, events, transports
from collections.abc import Callable
from typing import Any

from ioreactor.aio.datagram import DatagramOps
from ioreactor.aio.stream import FlowControl, ProtocolState
from ioreactor.loop.poller import READ, WRITE

#: Bytes read from a pipe per readiness event (asyncio's max_size).
PIPE_READ_SIZE = 256 * 1024
#: True where the kernel has pidfd_open (Linux 5.3+).
HAVE_PIDFD = hasattr(os, "pidfd_open")


class PipeEnd(ProtocolState):
    """What both ends of a pipe transport share: the pipe (refused unless it is a pipe, a
    socket or a character device), its protocol, started soon, and the warning for an
    end dropped without close()."""

    _pipe: Any
    _fileno: int

    def _open(self, loop: ProcessOps, pipe: Any, protocol: Any, refusal: str) -> int:
        """Take ``pipe`` (its mode is returned) and schedule connection_made."""
        self._pipe = pipe
        self._fileno = pipe.fileno()
        self._protocol = protocol
        self._closing = False
        mode = os.fstat(self._fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            self._pipe = None
            raise ValueError(refusal)
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        return mode

    def _state(self) -> str:
        return "closed" if self._pipe is None else "closing" if self._closing else "open"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_pipe", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()


class ReadPipeTransport(PipeEnd, transports.ReadTransport):
    """The read end of a pipe (or a socket or character device)."""

    _extra: dict[str, Any]  # BaseTransport's slot

    def __init__(
        self, loop: ProcessOps, pipe: Any, protocol: Any, waiter: Any = None, extra: Any = None
    ) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop: ProcessOps | None = loop
        self._paused = False
        self._open(loop, pipe, protocol, "Pipe transport is for pipes/sockets only.")
        loop.call_soon(self._watch)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        return f"<ReadPipeTransport fd={self._fileno} {self._state()}>"

    def _watch(self) -> None:
        if self._loop is not None and not self._closing and not self._paused:
            self._loop._add_watch(self._fileno, READ, self._read_ready, ())

    def _read_ready(self) -> None:
        loop = self._loop
        assert loop is not None
        try:
            data = os.read(self._fileno, PIPE_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data:
            self._protocol.data_received(data)
            return
        self._closing = True
        loop._remove_watch(self._fileno, READ)
        loop.call_soon(self._protocol.eof_received)
        loop.call_soon(self._call_connection_lost, None)

    def pause_reading(self) -> None:
        if not self.is_reading() or self._loop is None:
            return
        self._paused = True
        self._loop._remove_watch(self._fileno, READ)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._watch()

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if not (isinstance(exc, OSError) and exc.errno == errno.EIO) and self._loop is not None:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        if self._loop is not None:
            self._loop._remove_watch(self._fileno, READ)
            self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            if self._pipe is not None:
                self._pipe.close()
            self._pipe = None
            self._loop = None


class WritePipeTransport(PipeEnd, FlowControl, transports.WriteTransport):
    """The write end of a pipe (or a socket or character device)."""

    _extra: dict[str, Any]  # BaseTransport's slot

    def __init__(
        self, loop: ProcessOps, pipe: Any, protocol: Any, waiter: Any = None, extra: Any = None
    ) -> None:
        super().__init__(extra, loop)
        self._extra["pipe"] = pipe
        self._buffer = bytearray()
        self._conn_lost = 0
        self._owner: ProcessOps | None = loop
        mode = self._open(
            loop, pipe, protocol, "Pipe transport is only for pipes, sockets and character devices"
        )
        if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
            # The read side closing shows as readable (EOF) or an error on this end.
            loop.call_soon(self._watch_peer)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        return (
            f"<WritePipeTransport fd={self._fileno} {self._state()} buffered={len(self._buffer)}>"
        )

    def _watch_peer(self) -> None:
        if self._owner is not None and self._pipe is not None and not self._closing:
            self._owner._add_watch(self._fileno, READ, self._peer_closed, ())

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def _peer_closed(self) -> None:
        if self._buffer:
            self._close(BrokenPipeError())
        else:
            self._close()

    def write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if isinstance(data, bytearray):
            data = memoryview(data)
        if not data:
            return
        if self._conn_lost or self._closing:
            self._drop_lost_write("pipe closed by peer or os.write(pipe, data) raised exception.")
            return
        if not self._buffer:
            try:
                n = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            if n > 0:
                data = memoryview(data)[n:]
            assert self._owner is not None
            self._owner._add_watch(self._fileno, WRITE, self._write_ready, ())
        self._buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        owner = self._owner
        assert owner is not None and self._buffer
        try:
            n = os.write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            owner._remove_watch(self._fileno, WRITE)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if n == len(self._buffer):
            self._buffer.clear()
            owner._remove_watch(self._fileno, WRITE)
            self._maybe_resume_protocol()
            if self._closing:
                owner._remove_watch(self._fileno, READ)
                self._call_connection_lost(None)
            return
        if n > 0:
            del self._buffer[:n]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._owner is None:
            return
        self._closing = True
        if not self._buffer:
            self._owner._remove_watch(self._fileno, READ)
            self._owner.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def abort(self) -> None:
        self._close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if not isinstance(exc, OSError) and self._owner is not None:
            self._owner.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        self._closing = True
        owner = self._owner
        if owner is None:
            return
        if self._buffer:
            owner._remove_watch(self._fileno, WRITE)
        self._buffer.clear()
        owner._remove_watch(self._fileno, READ)
        owner.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._pipe is None:
            return
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._owner = None


def _set_result_unless_cancelled(fut: Any, result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio's subprocess transport; the child's exit is watched by the loop."""

    def _start(
        self,
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        **kwargs: Any,
    ) -> None:
        self._proc = subprocess.Popen(
            args,
            shell=shell,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            universal_newlines=False,
            bufsize=bufsize,
            **kwargs,
        )


class ProcessOps(DatagramOps):
    """Pipes and subprocesses."""

    async def connect_read_pipe(self, protocol_factory: Callable[[], Any], pipe: Any) -> Any:
        return await self._connect_pipe(ReadPipeTransport, protocol_factory, pipe)

    async def connect_write_pipe(self, protocol_factory: Callable[[], Any], pipe: Any) -> Any:
        return await self._connect_pipe(WritePipeTransport, protocol_factory, pipe)

    async def _connect_pipe(
        self,
        transport_class: type[ReadPipeTransport | WritePipeTransport],
        protocol_factory: Callable[[], Any],
        pipe: Any,
    ) -> Any:
        """(transport, protocol) for one end of ``pipe``, once connection_made ran."""
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = transport_class(self, pipe, protocol, waiter)
        await self._until_ready(transport, waiter)
        return transport, protocol

    async def subprocess_shell(
        self,
        protocol_factory: Callable[[], Any],
        cmd: bytes | str,
        *,
        stdin: Any = subprocess.PIPE,
        stdout: Any = subprocess.PIPE,
        stderr: Any = subprocess.PIPE,
        universal_newlines: bool = False,
        shell: bool = True,
        bufsize: int = 0,
        encoding: str | None = None,
        errors: str | None = None,
        text: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if not shell:
            raise ValueError("shell must be True")
        _check_subprocess_args(universal_newlines, bufsize, encoding, errors, text)
        return await self._subprocess(
            protocol_factory, cmd, True, stdin, stdout, stderr, bufsize, **kwargs
        )

    async def subprocess_exec(
        self,
        protocol_factory: Callable[[], Any],
        program: Any,
        *args: Any,
        stdin: Any = subprocess.PIPE,
        stdout: Any = subprocess.PIPE,
        stderr: Any = subprocess.PIPE,
        universal_newlines: bool = False,
        shell: bool = False,
        bufsize: int = 0,
        encoding: str | None = None,
        errors: str | None = None,
        text: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        if shell:
            raise ValueError("shell must be False")
        _check_subprocess_args(universal_newlines, bufsize, encoding, errors, text)
        return await self._subprocess(
            protocol_factory, (program, *args), False, stdin, stdout, stderr, bufsize, **kwargs
        )

    async def _subprocess(
        self,
        protocol_factory: Callable[[], Any],
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        extra: Any = None,
        **kwargs: Any,
    ) -> tuple[SubprocessTransport, Any]:
        """(transport, protocol) of a started child, once its pipes are connected."""
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = SubprocessTransport(
            self,
            protocol,
            args,
            shell,
            stdin,
            stdout,
            stderr,
            bufsize,
            waiter=waiter,
            extra=extra,
            **kwargs,
        )
        self._watch_child(transport)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport, protocol

    def _watch_child(self, transport: SubprocessTransport) -> None:
        """Report the child's exit to the transport: its pidfd turns readable when it
        exits (or the policy's child watcher, where there is no pidfd)."""
        pid = transport.get_pid()
        assert pid is not None  # started by SubprocessTransport._start()
        if not HAVE_PIDFD:  # pragma: no cover - Linux before 5.3, other systems
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                watcher = events.get_child_watcher()
            watcher.add_child_handler(
                pid,
                lambda _pid, code, t: self.call_soon_threadsafe(t._process_exited, code),
                transport,
            )
            return
        pidfd = os.pidfd_open(pid)
        self._reactor.watch(pidfd, READ, lambda mask: self._child_exited(pidfd, transport))

    def _child_exited(self, pidfd: int, transport: SubprocessTransport) -> None:
        self._reactor.unwatch(pidfd)
        os.close(pidfd)
        pid = transport.get_pid()
        assert pid is not None
        proc = transport._proc
        try:
            _, status = os.waitpid(pid, os.WNOHANG)
            returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            # Reaped elsewhere (Popen.poll() from close(), or another waiter).
            returncode = (
                proc.returncode if proc is not None and proc.returncode is not None else 255
            )
        if proc is not None and proc.returncode is None:
            proc.returncode = returncode
        transport._process_exited(returncode)


def _check_subprocess_args(
    universal_newlines: bool,
    bufsize: int,
    encoding: str | None,
    errors: str | None,
    text: bool | None,
) -> None:
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")
