"""Non-blocking connect with a timeout and capped, jittered exponential back-off.

A non-blocking ``connect`` returns EINPROGRESS; the socket turns writable when the
handshake ends, and ``SO_ERROR`` then tells success from failure. Two traps handled here:

* **Self-connect.** Connecting to a local port with no listener can pick that same port
  as the ephemeral source port and "succeed" by connecting the socket to itself (TCP
  simultaneous open). It is detected (local address == peer address) and retried.
* **Retry storms.** Retries back off exponentially from ``backoff_initial`` up to
  ``backoff_max``, each delay scaled by a random factor in [0.5, 1) so that many
  clients that lost the same server do not reconnect in lockstep.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioreactor.loop.poller import WRITE

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.loop.timers import TimerHandle
    from ioreactor.net.address import Address

log = logging.getLogger("ioreactor.connector")

CONNECT_TIMEOUT = 10.0
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
#: Doublings of ``backoff_initial`` considered; beyond them ``backoff_max`` applies anyway.
MAX_DOUBLINGS = 64

#: Errors after which trying again later may succeed.
_RETRYABLE = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ETIMEDOUT,
        errno.EAGAIN,
        errno.EADDRNOTAVAIL,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ECONNABORTED,
        # Out of fds or memory for the socket itself: free again later.
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
    }
)
#: A Unix socket path that does not exist yet (the server has not started, or removed
#: its socket file when it stopped) is "connection refused" for AF_UNIX.
_RETRYABLE_UNIX = _RETRYABLE | {errno.ENOENT}


class Connector:
    """Connects to ``address``; ``on_connected(sock, peer)`` receives the socket."""

    def __init__(
        self,
        loop: EventLoop,
        address: Address,
        on_connected: Callable[[socket.socket, Any], None],
        on_failed: Callable[[OSError], None] | None = None,
        *,
        timeout: float = CONNECT_TIMEOUT,
        retry: bool = True,
        max_attempts: int | None = None,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.loop = loop
        self.address = address
        self.on_connected = on_connected
        self.on_failed = on_failed
        self.timeout = timeout
        self.retry = retry
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.attempts = 0
        self.self_connects = 0
        self._sock: socket.socket | None = None
        self._timer: TimerHandle | None = None
        self._stopped = True

    def start(self) -> None:
        """Begin (or restart) connecting, with the back-off reset (loop thread).

        A restart abandons the attempt in progress and any scheduled retry first.
        """
        self._cancel_timer()
        self._drop_socket()
        self._stopped = False
        self.attempts = 0
        self._connect()

    def stop(self) -> None:
        """Abandon the attempt in progress and any scheduled retry."""
        self._stopped = True
        self._cancel_timer()
        self._drop_socket()

    def next_delay(self) -> float:
        """Back-off before the next attempt: exponential, capped, jittered."""
        # The exponent is capped too: 2.0 ** 1024 overflows, which a client retrying
        # every 30 s reaches after about eight hours.
        doublings = min(max(0, self.attempts - 1), MAX_DOUBLINGS)
        base = min(self.backoff_max, self.backoff_initial * 2.0**doublings)
        return base * random.uniform(0.5, 1.0)

    def _connect(self) -> None:
        if self._stopped:
            return
        self.attempts += 1
        try:
            sock = socket.socket(self.address.family, socket.SOCK_STREAM)
        except OSError as exc:  # out of fds (EMFILE/ENFILE) or memory: retryable
            self._failed(exc)
            return
        sock.setblocking(False)
        try:
            err = sock.connect_ex(self.address.sockaddr)
        except OSError as exc:  # name resolution or an invalid address
            sock.close()
            self._failed(exc)
            return
        if err in (0, errno.EINPROGRESS, errno.EINTR):
            try:
                self.loop.watch(sock.fileno(), WRITE, self._handle_write)
            except ValueError as exc:  # select() and an fd >= FD_SETSIZE: not retryable
                sock.close()
                self._failed(OSError(errno.EINVAL, str(exc)))
                return
            self._sock = sock
            self._timer = self.loop.call_later(self.timeout, self._on_timeout)
        else:
            sock.close()
            self._failed(OSError(err, f"connect to {self.address}: {errno.errorcode.get(err)}"))

    def _handle_write(self, events: int) -> None:
        sock = self._sock
        if sock is None:
            return
        self.loop.unwatch(sock.fileno())
        self._cancel_timer()
        self._sock = None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            self._failed(OSError(err, f"connect to {self.address}: {errno.errorcode.get(err)}"))
            return
        try:
            local, peer = sock.getsockname(), sock.getpeername()
        except OSError as exc:
            sock.close()
            self._failed(exc)
            return
        if local == peer:
            self.self_connects += 1
            log.warning(
                "connect to %s connected to itself (port %s); retrying", self.address, local[1]
            )
            sock.close()
            self._failed(OSError(errno.ECONNREFUSED, "self-connect"))
            return
        self.on_connected(sock, peer)

    def _on_timeout(self) -> None:
        self._timer = None
        self._drop_socket()
        self._failed(OSError(errno.ETIMEDOUT, f"connect to {self.address} timed out"))

    def _failed(self, exc: OSError) -> None:
        exhausted = self.max_attempts is not None and self.attempts >= self.max_attempts
        retryable = _RETRYABLE_UNIX if self.address.family == socket.AF_UNIX else _RETRYABLE
        if self.retry and not exhausted and exc.errno in retryable and not self._stopped:
            delay = self.next_delay()
            log.info(
                "connect to %s failed (%s); retry %d in %.2f s",
                self.address,
                exc.strerror,
                self.attempts,
                delay,
            )
            self._timer = self.loop.call_later(delay, self._retry)
            return
        self._stopped = True
        if self.on_failed is not None:
            self.on_failed(exc)
        else:
            log.error("connect to %s failed: %s", self.address, exc)

    def _retry(self) -> None:
        self._timer = None
        self._connect()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self.loop.unwatch(self._sock.fileno())
            self._sock.close()
            self._sock = None
