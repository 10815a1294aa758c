"""``UringConnection``: a :class:`TcpConnection` whose reads and writes the kernel performs.

Same public API, same handler callbacks, same coalescing and water marks as the epoll
path; only the I/O steps change::

    epoll:   EPOLLIN -> recv_into(scratch) -> input -> on_message
             flush   -> send()/sendmsg()   [-> EPOLLOUT -> send() the rest]
    uring:   multishot RECV completion (a provided buffer) -> input -> on_message
             flush   -> one SEND/SENDMSG SQE (submitted by the next io_uring_enter)
                        -> its completion: drained, or the rest resubmitted

Reading: one multishot ``RECV`` with ``IOSQE_BUFFER_SELECT`` stays armed for the whole
connection. The kernel picks a buffer from the loop's provided-buffer ring only when
bytes arrive; the completion handler copies them into ``input``, gives the buffer back at
once (nothing is ever parsed in place, so the kernel can never overwrite bytes still in
use) and calls ``on_message``. An idle connection holds no buffer at all. Pausing reading
(high water mark, ``close()``, EOF) cancels the receive; resuming re-arms it.

Writing: one send in flight per connection (two sends on one socket could complete out
of order). Everything queued during an iteration leaves in one ``SEND`` (several small
chunks are joined; large ones go as one ``SENDMSG`` gather). The chunks in flight are
kept referenced by the connection -- itself kept by the loop's operation table -- until
the completion, even if the connection is closed meanwhile: the kernel never reads freed
memory. ``MSG_WAITALL`` lets the kernel finish a stream send itself; a short completion
is still handled by resubmitting the rest. Output queued while a send is in flight goes
out when it completes.

Closing: cancel the in-flight receive and send by user_data, then ``CLOSE`` the detached
fd through the ring (``SHUTDOWN`` too, for half-close). ``on_close`` fires at once, exactly
once; the completions that follow (``-ECANCELED``, a last buffer) only release memory.

Completion errors: ``ECONNRESET``/``EPIPE``/any other error close the connection (as a
failed ``recv``/``send`` does on epoll); ``-ENOBUFS`` (the buffer ring ran dry) re-arms the
receive -- the bytes are still in the socket; ``-ECANCELED`` after a pause re-arms only if
reading was resumed meanwhile.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING, Any

from ioreactor.loop.poller import READ
from ioreactor.loop.uring.completion import RECV, SEND, SHUTDOWN, UNWATCHED, CompletionPoller
from ioreactor.loop.uring.ring import (
    BYTES_DATA_OFFSET,
    CQE_BUFFER_SHIFT,
    CQE_F_BUFFER,
    CQE_F_MORE,
)
from ioreactor.net.buffer import CHEAP_PREPEND
from ioreactor.net.connection import (
    CONNECTED,
    DISCONNECTED,
    HIGH_WATER_MARK,
    IOV_MAX,
    LOW_WATER_MARK,
    ConnectionOwner,
    TcpConnection,
)
from ioreactor.net.handler import Handler

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.connection")

#: Queued chunks totalling at most this many bytes are joined into one ``SEND`` (a copy
#: this small costs less than building a ``msghdr``); larger output goes as ``SENDMSG``.
JOIN_LIMIT = 64 * 1024
#: Flags of every send: no SIGPIPE, and let the kernel finish a stream send itself.
SEND_FLAGS = socket.MSG_NOSIGNAL | socket.MSG_WAITALL

_MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen
_IOVEC = struct.Struct("<QQ")
assert _MSGHDR.size == 56

_IDLE, _ARMED, _CANCELLING = 0, 1, 2


class UringConnection(TcpConnection):
    """A connected stream socket whose I/O goes through the loop's io_uring (see the
    module docstring). Build it only on a loop whose poller is a
    :class:`~ioreactor.loop.uring.completion.CompletionPoller`."""

    __slots__ = (
        "_held_input",
        "_iov",
        "_key",
        "_port",
        "_recv_state",
        "_send_len",
        "_send_offset",
        "_sending",
    )

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        peer: Any,
        handler: Handler,
        owner: ConnectionOwner | None = None,
        *,
        high_water_mark: int = HIGH_WATER_MARK,
        low_water_mark: int = LOW_WATER_MARK,
    ) -> None:
        port = loop.poller
        if not isinstance(port, CompletionPoller):
            raise TypeError(f"UringConnection needs a completion-mode uring loop, not {loop!r}")
        super().__init__(
            loop,
            sock,
            peer,
            handler,
            owner,
            high_water_mark=high_water_mark,
            low_water_mark=low_water_mark,
        )
        self._port = port
        self._key = port.new_key()
        self._recv_state = _IDLE
        #: Bytes arrived while reading was paused, not yet shown to the handler.
        self._held_input = False
        #: Chunks of the send in flight (the first ``_send_offset`` bytes already sent);
        #: swapped with ``_out`` on submit, so the kernel's memory stays referenced.
        self._sending: list[bytes | memoryview] | None = None
        self._send_offset = 0
        self._send_len = 0
        #: The msghdr + iovec block of an in-flight SENDMSG (pinned with it).
        self._iov: ctypes.Array[ctypes.c_char] | None = None

    # -- reading -------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the receive and announce the connection (loop thread only)."""
        self._events = READ
        self._arm_recv()
        try:
            self.handler.on_connection(self)
        except Exception as exc:
            self._callback_failed("on_connection", exc)

    def _set_events(self, events: int) -> None:
        """Only the READ bit means anything here: it arms or cancels the receive."""
        if events == self._events or self._state == DISCONNECTED:
            return
        self._events = events
        if events & READ:
            if self._recv_state == _IDLE:
                self._arm_recv()
            # (_CANCELLING: the cancelled receive's last completion re-arms it)
            if self._held_input:
                self.loop.call_soon(self._deliver_held)
        elif self._recv_state == _ARMED:
            self._cancel(self._key | RECV)
            self._recv_state = _CANCELLING

    def _arm_recv(self) -> None:
        port = self._port
        user_data = self._key | RECV
        port.ring.prep_recv(self.fd, port.buffers, user_data, multishot=True)
        port.ops[user_data] = self._recv_done
        self._recv_state = _ARMED

    def _recv_done(self, res: int, flags: int) -> None:
        """A receive completion: bytes in a provided buffer, EOF, or an error."""
        if flags & CQE_F_BUFFER:
            buffers = self._port.buffers
            if res > 0 and self._state != DISCONNECTED:
                start = (flags >> CQE_BUFFER_SHIFT) * buffers.bufsize
                buffer = self.input
                if buffer._r == buffer._w:
                    # Empty buffer (the common case): Buffer.append() inlined.
                    buffer._data[CHEAP_PREPEND:] = buffers.data[start : start + res]
                    buffer._r = CHEAP_PREPEND
                    buffer._w = CHEAP_PREPEND + res
                else:
                    buffer.append(buffers.data[start : start + res])
            buffers.recycle(flags)  # copied out: the kernel may fill it again
        if not flags & CQE_F_MORE:
            del self._port.ops[self._key | RECV]
            self._recv_state = _IDLE
            if res <= 0:
                self._recv_ended(res)
                return
            if self._events & READ and self._state != DISCONNECTED:
                self._arm_recv()  # the kernel ended the multishot early: keep reading
        if self._state == DISCONNECTED:
            return
        if not self._events & READ:
            self._held_input = True  # arrived while paused: shown when reading resumes
            return
        buffer = self.input
        self.last_read = self.loop.now
        try:
            self.handler.on_message(self, buffer)
        except Exception as exc:
            self._callback_failed("on_message", exc)
            return
        if buffer._r == buffer._w and len(buffer._data) > CHEAP_PREPEND:
            del buffer._data[CHEAP_PREPEND:]  # Buffer.release() inlined

    def _recv_ended(self, res: int) -> None:
        """The receive's final completion without data: EOF, cancelled, dry, or failed."""
        if self._state == DISCONNECTED:
            return
        if res == 0:
            self._handle_eof()
        elif res == -errno.ECANCELED or res == -errno.ENOBUFS:
            if res == -errno.ENOBUFS:
                self._port.enobufs += 1  # the bytes wait in the socket: just re-arm
            if self._events & READ and not self._peer_eof:
                self._arm_recv()
        else:
            self._handle_error(OSError(-res, os.strerror(-res)))

    def _deliver_held(self) -> None:
        if self._held_input and self._events & READ:
            self._held_input = False
            self._deliver()

    # -- writing -------------------------------------------------------------------------

    def _flush(self) -> None:
        """End of iteration: one send operation for everything queued (none in flight)."""
        self._flush_queued = False
        if self._state == DISCONNECTED or self._writing:
            return
        out = self._out
        if not out:
            if self._notify_drain or self._shutdown_requested or self._close_after_drain:
                self._drained()
            return
        if len(out) > 1 and self._out_size <= JOIN_LIMIT:
            joined = b"".join(out)
            out.clear()
            out.append(joined)
        sending = self._sending
        self._out = [] if sending is None else sending
        self._sending = out  # referenced until the completion: the kernel reads it
        self._send_offset = 0
        chunk = out[0]
        if len(out) == 1 and type(chunk) is bytes:
            # One chunk (the common case): _submit_send() inlined.
            port = self._port
            user_data = self._key | SEND
            self._send_len = length = len(chunk)
            port.ring.prep_send_at(
                self.fd, id(chunk) + BYTES_DATA_OFFSET, length, user_data, SEND_FLAGS
            )
            port.ops[user_data] = self._send_done
            self._writing = True
        else:
            self._submit_send()

    def _submit_send(self) -> None:
        """One SEND (one chunk) or SENDMSG (up to IOV_MAX chunks) of ``_sending``."""
        sending = self._sending
        assert sending
        port = self._port
        user_data = self._key | SEND
        offset = self._send_offset
        if len(sending) == 1:
            chunk = _pinnable(sending, 0)
            length = len(chunk) - offset
            port.ring.prep_send_at(
                self.fd, id(chunk) + BYTES_DATA_OFFSET + offset, length, user_data, SEND_FLAGS
            )
        else:
            chunks = sending[:IOV_MAX]
            iov = ctypes.create_string_buffer(_MSGHDR.size + _IOVEC.size * len(chunks))
            base = ctypes.addressof(iov)
            length = 0
            for i in range(len(chunks)):
                chunk = _pinnable(sending, i)
                skip = offset if i == 0 else 0
                size = len(chunk) - skip
                _IOVEC.pack_into(
                    iov, _MSGHDR.size + i * _IOVEC.size, id(chunk) + BYTES_DATA_OFFSET + skip, size
                )
                length += size
            _MSGHDR.pack_into(iov, 0, 0, 0, base + _MSGHDR.size, len(chunks), 0, 0, 0)
            self._iov = iov
            port.ring.prep_sendmsg_at(self.fd, base, user_data, SEND_FLAGS)
        self._send_len = length
        port.ops[user_data] = self._send_done
        self._writing = True

    def _send_done(self, res: int, flags: int) -> None:
        """The send's completion: all sent, part sent (resubmit the rest), or failed."""
        del self._port.ops[self._key | SEND]
        self._writing = False
        sending = self._sending
        assert sending is not None
        if res == self._send_len and self._state != DISCONNECTED and len(sending) <= IOV_MAX:
            sending.clear()  # everything handed over (the common case)
        elif not self._send_incomplete(res, sending):
            return
        self._iov = None
        self.last_write = self.loop.now
        self._out_size -= res
        if self._above_high and self._out_size <= self.low_water_mark:
            self._above_high = False
            if not self._peer_eof and self._state == CONNECTED:
                self._set_events(self._events | READ)
        if self._out:
            if not self._flush_queued:
                self._flush_queued = True
                self.loop.pending_flush.append(self)
        elif self._notify_drain or self._shutdown_requested or self._close_after_drain:
            self._drained()

    def _send_incomplete(self, res: int, sending: list[bytes | memoryview]) -> bool:
        """The uncommon send completions. True: fully handed over after all, go on as
        for a complete send; False: handled here (failed, closed, or resubmitted)."""
        self._iov = None
        if self._state == DISCONNECTED:
            sending.clear()  # the kernel is done with these bytes: they may go now
            return False
        if res < 0:
            sending.clear()
            self._handle_error(OSError(-res, os.strerror(-res)))
            return False
        offset = self._send_offset + res
        done = 0
        while done < len(sending) and offset >= len(sending[done]):
            offset -= len(sending[done])
            done += 1
        del sending[:done]
        if not sending:
            self._send_offset = 0
            return True
        # A short send, or more than IOV_MAX chunks: the rest first, then newer output.
        self.last_write = self.loop.now
        self._out_size -= res
        self._send_offset = offset
        self._submit_send()
        return False

    # -- closing -------------------------------------------------------------------------

    def _shutdown_in_loop(self) -> None:
        if self._state != CONNECTED or self._shutdown_requested:
            return
        self._shutdown_requested = True
        if not self._out and not self._flush_queued and not self._writing:
            self._shutdown_write()
            if self._peer_eof:
                self._close_now()

    def _shutdown_write(self) -> None:
        """Half-close through the ring: ``SHUTDOWN(SHUT_WR)`` after the last send."""
        self._shut_wr = True
        port = self._port
        user_data = self._key | SHUTDOWN
        port.ring.prep_shutdown(self.fd, socket.SHUT_WR, user_data)
        port.ops[user_data] = self._shutdown_done

    def _shutdown_done(self, res: int, flags: int) -> None:
        del self._port.ops[self._key | SHUTDOWN]
        if res < 0 and self._state != DISCONNECTED:
            self._handle_error(OSError(-res, os.strerror(-res)))

    def _close_when_drained(self) -> None:
        if self._out or self._flush_queued or self._writing:
            self._close_after_drain = True
        else:
            self._close_now()

    def _close_now(self) -> None:
        """Cancel what is in flight, close the fd through the ring, then ``on_close``."""
        if self._state == DISCONNECTED:
            return
        self._state = DISCONNECTED
        if self._recv_state == _ARMED:
            self._cancel(self._key | RECV)
            self._recv_state = _CANCELLING
        if self._writing:
            self._cancel(self._key | SEND)  # its completion frees the chunks in flight
        fd = self.sock.detach()
        ring = self._port.ring
        if ring.closed:
            os.close(fd)
        else:
            ring.prep_close(fd, UNWATCHED)
        self._out.clear()
        self._out_size = 0
        self._held_input = False
        self.input.retrieve_all()
        self.input.release()
        try:
            self.handler.on_close(self)
        except Exception:
            log.exception("handler on_close failed for peer %s", self.peer)
        if self._owner is not None:
            self._owner._connection_closed(self)

    def _cancel(self, user_data: int) -> None:
        ring = self._port.ring
        if not ring.closed:
            ring.prep_cancel(user_data, UNWATCHED)


def _pinnable(chunks: list[bytes | memoryview], i: int) -> bytes:
    """``chunks[i]`` as an exact ``bytes`` (whose payload sits at ``id() + offset``).

    The base class queues only ``bytes``; anything else is copied once, in place, so the
    address handed to the kernel is always that of an object the list keeps alive.
    """
    chunk = chunks[i]
    if type(chunk) is not bytes:
        chunk = chunks[i] = bytes(chunk)
    return chunk
