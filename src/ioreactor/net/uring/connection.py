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
bytes arrive; the completion handler gives the buffer back and hands a view of it to the
read step shared with :class:`TcpConnection` (``on_read`` in place, or a copy into
``input`` and ``on_message``). The kernel sees returned buffers only when the completion
batch ends, so it can never overwrite bytes still in use, and the view stays valid for
that call. An idle connection holds no buffer at all. Pausing reading (the handler's
``pause_reading``, the high water mark, ``close()``, EOF) cancels the receive; resuming
re-arms it.

Writing: one send in flight per connection (two sends on one socket could complete out
of order). What ``on_message`` sends leaves in one ``SEND`` as soon as it returns (flush
on read-complete, as on epoll); what is sent from anywhere else leaves at the end of the
iteration (several small chunks are joined; large ones go as one ``SENDMSG`` gather).
The chunks in flight stay at the front of ``_out`` -- so the base class's drain, close
and shutdown logic sees them as unsent output -- and referenced until the completion,
even if the connection is closed meanwhile (then the loop's table keeps them): the
kernel never reads freed memory. ``MSG_WAITALL`` lets the kernel finish a stream send
itself; a short completion is still handled: the rest goes out next, before newer
output. Output queued while a send is in flight goes out when it completes.

Closing: cancel the in-flight receive and send by user_data, then ``CLOSE`` the detached
fd through the ring (``SHUTDOWN`` too, for half-close). ``on_close`` fires at once, exactly
once; the completions that follow (``-ECANCELED``, a last buffer) only release memory.
The fd itself is released by the next ``io_uring_enter`` -- the start of the next loop
iteration -- so the peer's FIN (and a count of open fds) may lag ``on_close`` by that.

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
from ioreactor.loop.uring.completion import (
    RECV,
    SEND,
    SHUTDOWN,
    UNWATCHED,
    CompletionPoller,
    channel_key,
    register_kind,
)
from ioreactor.loop.uring.ring import (
    BYTES_DATA_OFFSET,
    CQE_BUFFER_SHIFT,
    CQE_F_BUFFER,
    CQE_F_MORE,
)
from ioreactor.net.connection import DISCONNECTED, IOV_MAX, TcpConnection

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

# _recv_state: the receive's state in the low bits, plus flags.
_IDLE, _ARMED, _CANCELLING = 0, 1, 2
_STATE = 0b11
#: Bytes arrived while reading was paused, not yet shown to the handler.
_HELD = 0b100
#: ... and then the peer's EOF, which must wait for them (and for reading to resume).
_EOF_HELD = 0b1000
_KEPT = _HELD | _EOF_HELD


class UringConnection(TcpConnection):
    """A connected stream socket whose I/O goes through the loop's io_uring (see the
    module docstring). Build it only on a completion-mode loop (``loop.completion_mode``;
    :func:`ioreactor.net.channels.connection_class` picks it).

    Four slots more than :class:`TcpConnection` (memory per connection is a feature):
    the operation keys derive from ``id(self)``.
    """

    __slots__ = ("_inflight", "_port", "_recv_state", "_send_offset")

    def __init__(self, loop: EventLoop, *args: Any, **options: Any) -> None:
        """The arguments of :class:`TcpConnection`; ``loop`` must be completion-mode."""
        port = loop.poller
        if not isinstance(port, CompletionPoller):
            raise TypeError(f"UringConnection needs a completion-mode uring loop, not {loop!r}")
        super().__init__(loop, *args, **options)
        #: The loop's ring, its operation table and its provided buffers.
        self._port = port
        self._recv_state = _IDLE
        #: How many chunks at the front of ``_out`` the send in flight covers.
        self._inflight = 0
        #: Bytes of ``_out[0]`` already sent (after a short send).
        self._send_offset = 0

    # -- reading -------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the receive (unless reading is paused already) and announce the
        connection (loop thread only)."""
        if not self._read_paused:
            self._events = READ
            self._arm_recv()
        self._announce()

    def _set_events(self, events: int) -> None:
        """Only the READ bit means anything here: it arms or cancels the receive."""
        if events == self._events or self._state == DISCONNECTED:
            return
        self._events = events
        state = self._recv_state
        if events & READ:
            if state & _STATE == _IDLE and not state & _EOF_HELD:
                self._arm_recv()
            # (_CANCELLING: the cancelled receive's last completion re-arms it)
            if state & _HELD:
                self.loop.call_soon(self._deliver_held)
        elif state & _STATE == _ARMED:
            self._cancel(channel_key(self) | RECV)
            self._recv_state = state & _KEPT | _CANCELLING

    def _arm_recv(self) -> None:
        port = self._port
        user_data = channel_key(self) | RECV
        port.ring.prep_recv(self.fd, port.buffers, user_data, multishot=True)
        port.ops[user_data] = self
        self._recv_state = self._recv_state & _KEPT | _ARMED

    def _recv_done(self, res: int, flags: int) -> None:
        """A receive completion: bytes in a provided buffer, EOF, or an error.

        A buffer recycled here goes back to the kernel only when the completion batch
        ends (``ProvidedBuffers.publish``), so the read step (and a handler's
        ``on_read``) may read it in place within this call.
        """
        data: memoryview | None = None
        if flags & CQE_F_BUFFER:
            buffers = self._port.buffers
            if res > 0 and self._state != DISCONNECTED:
                start = (flags >> CQE_BUFFER_SHIFT) * buffers.bufsize
                data = buffers.data[start : start + res]
            buffers.recycle(flags)
        if not flags & CQE_F_MORE:
            del self._port.ops[channel_key(self) | RECV]
            self._recv_state &= _KEPT  # _IDLE
            if res <= 0:
                self._recv_ended(res)
                return
            if self._events & READ and self._state != DISCONNECTED:
                self._arm_recv()  # the kernel ended the multishot early: keep reading
        if data is None or self._state == DISCONNECTED:
            return
        if self._events & READ:
            self._received(data)
        else:  # arrived while paused: kept, shown when reading resumes
            self._hold(data)
            self._recv_state |= _HELD

    def _hold(self, data: memoryview) -> None:
        """Keep bytes that arrived while reading was paused (the buffer goes back to the
        kernel): in ``input`` until reading resumes (a TLS connection keeps the
        ciphertext in its BIO instead)."""
        self.input.append_received(data)

    def _recv_ended(self, res: int) -> None:
        """The receive's final completion without data: EOF, cancelled, dry, or failed."""
        if self._state == DISCONNECTED:
            return
        if res == 0:
            if self._recv_state & _HELD or not self._events & READ:
                # After what arrived while paused, once reading resumes (as epoll sees
                # a FIN only when it reads again): an EOF now would drop those bytes.
                self._recv_state |= _HELD | _EOF_HELD
                return
            self._handle_eof()
        elif res == -errno.ECANCELED or res == -errno.ENOBUFS:
            if res == -errno.ENOBUFS:
                self._port.enobufs += 1  # the bytes wait in the socket: just re-arm
            if self._events & READ and not self._peer_eof:
                self._arm_recv()
        else:
            self._handle_error(OSError(-res, os.strerror(-res)))

    def _deliver_held(self) -> None:
        """Reading resumed: what arrived while it was paused, then the EOF if it came
        meanwhile (held again if the handler pauses once more)."""
        state = self._recv_state
        if not (state & _HELD and self._events & READ):
            return
        self._recv_state = state & _STATE
        if self._state == DISCONNECTED:
            return
        self._release_held()
        if state & _EOF_HELD and self._state != DISCONNECTED:
            if self._events & READ:
                self._handle_eof()
            else:
                self._recv_state |= _HELD | _EOF_HELD

    def _release_held(self) -> None:
        """Hand what :meth:`_hold` kept to the handler (``on_message``; what it sends
        leaves at the end of this iteration). A TLS connection decrypts its BIO."""
        if not self.input.is_empty():
            self.last_read = self.loop.now
            self._deliver(self.input)

    # -- writing -------------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand what is queued to the kernel in one operation (none is in flight): one
        SEND (one chunk, or several small ones joined) or one SENDMSG (up to IOV_MAX
        chunks) of the front of ``_out``."""
        self._flush_queued = False
        out = self._out
        if self._state == DISCONNECTED or self._writing or not out:
            return  # nothing queued: a read-complete flush took it (and notified)
        offset = self._send_offset
        if len(out) > 1 and self._out_size <= JOIN_LIMIT:
            out[0] = memoryview(out[0])[offset:]
            joined = b"".join(out)
            out.clear()
            out.append(joined)
            self._send_offset = offset = 0
        port = self._port
        user_data = channel_key(self) | SEND
        if len(out) == 1:  # the common case
            chunk = _pinnable(out, 0)
            port.ring.prep_send_at(
                self.fd,
                id(chunk) + BYTES_DATA_OFFSET + offset,
                len(chunk) - offset,
                user_data,
                SEND_FLAGS,
            )
            count = 1
        else:
            count = min(len(out), IOV_MAX)
            iov = ctypes.create_string_buffer(_MSGHDR.size + _IOVEC.size * count)
            base = ctypes.addressof(iov)
            for i in range(count):
                chunk = _pinnable(out, i)
                skip = offset if i == 0 else 0
                _IOVEC.pack_into(
                    iov,
                    _MSGHDR.size + i * _IOVEC.size,
                    id(chunk) + BYTES_DATA_OFFSET + skip,
                    len(chunk) - skip,
                )
            _MSGHDR.pack_into(iov, 0, 0, 0, base + _MSGHDR.size, count, 0, 0, 0)
            port.pinned[user_data] = iov  # the msghdr and iovec array, until completion
            port.ring.prep_sendmsg_at(self.fd, base, user_data, SEND_FLAGS)
        port.ops[user_data] = self
        self._inflight = count
        self._writing = True

    def _send_done(self, res: int, flags: int) -> None:
        """The send's completion: all sent, part sent (the rest goes next), or failed."""
        port = self._port
        user_data = channel_key(self) | SEND
        del port.ops[user_data]
        self._writing = False
        out = self._out
        inflight = self._inflight
        self._inflight = 0
        if self._state == DISCONNECTED:
            port.pinned.pop(user_data, None)  # the kernel is done: the bytes may go now
            return
        if inflight == 1 and res == len(out[0]) - self._send_offset:
            del out[0]  # everything handed over (the common case)
            self._send_offset = 0
        else:
            port.pinned.pop(user_data, None)  # a SENDMSG's iovecs
            if res < 0:
                self._handle_error(OSError(-res, os.strerror(-res)))
                return
            offset = self._send_offset + res
            done = 0
            while done < len(out) and offset >= len(out[done]):
                offset -= len(out[done])
                done += 1
            del out[:done]
            self._send_offset = offset  # a short send: the rest leaves next, first
        self.last_write = self.loop.now
        self._out_size -= res
        self._output_shrank()
        if out:
            if not self._flush_queued:
                self._flush_queued = True
                self.loop.pending_flush.append(self)
        elif self._notify_drain or self._shutdown_requested or self._close_after_drain:
            self._drained()

    # -- closing -------------------------------------------------------------------------

    def _shutdown_write(self) -> None:
        """Half-close through the ring: ``SHUTDOWN(SHUT_WR)`` after the last send."""
        self._shut_wr = True
        port = self._port
        user_data = channel_key(self) | SHUTDOWN
        port.ring.prep_shutdown(self.fd, socket.SHUT_WR, user_data)
        port.ops[user_data] = self

    def _shutdown_done(self, res: int, flags: int) -> None:
        del self._port.ops[channel_key(self) | SHUTDOWN]
        if res < 0 and self._state != DISCONNECTED:
            self._handle_error(OSError(-res, os.strerror(-res)))

    def _close_now(self) -> None:
        """Cancel what is in flight and close the fd through the ring; then the base
        class's close (state, timers, buffers, ``on_close``, the owner)."""
        if self._state == DISCONNECTED:
            return
        port = self._port
        key = channel_key(self)
        state = self._recv_state & _STATE
        if state == _ARMED:
            self._cancel(key | RECV)
        self._recv_state = _CANCELLING if state else _IDLE
        if self._writing:
            self._cancel(key | SEND)
            # The base class drops _out: the table keeps what the kernel may still read.
            port.pinned[key | SEND] = (self._out[: self._inflight], port.pinned.get(key | SEND))
        fd = self.sock.detach()
        if port.ring.closed:
            os.close(fd)
        else:
            port.ring.prep_close(fd, UNWATCHED)
        super()._close_now()  # the detached socket's close() and unwatch() are no-ops

    def _cancel(self, user_data: int) -> None:
        ring = self._port.ring
        if not ring.closed:
            ring.prep_cancel(user_data, UNWATCHED)


register_kind(RECV, UringConnection._recv_done)
register_kind(SEND, UringConnection._send_done)
register_kind(SHUTDOWN, UringConnection._shutdown_done)


def _pinnable(chunks: list[bytes | memoryview], i: int) -> bytes:
    """``chunks[i]`` as an exact ``bytes`` (whose payload sits at ``id() + offset``).

    The base class queues only ``bytes`` (and ``_flush`` joins its own views);
    anything else is copied once, in place, so the address handed to the kernel is
    always that of an object the list keeps alive.
    """
    chunk = chunks[i]
    if type(chunk) is not bytes:
        chunk = chunks[i] = bytes(chunk)
    return chunk
