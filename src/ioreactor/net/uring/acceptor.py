"""``UringAcceptor``: an :class:`Acceptor` whose accepts the kernel performs (multishot).

One multishot ``ACCEPT`` (Linux 5.19+) stays armed on the listening socket: each new
connection is one completion carrying the new fd (already ``SOCK_NONBLOCK|CLOEXEC``), no
readiness event and no ``accept`` call. Where the kernel lacks multishot accept (EINVAL)
it falls back to a one-shot accept re-armed after each completion.

EMFILE/ENFILE end the multishot like any error: the spare-fd trick of the base class
(``_shed_one``) closes the oldest pending connection, then the accept is re-armed --
so an fd-exhausted server serves one shed per iteration instead of spinning, exactly
as on epoll. With no spare fd left to shed with, the accept is re-armed only after
``EXHAUSTED_PAUSE``. A connection that died in the backlog is skipped. Closing cancels the
accept by its user_data before the listener is closed.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioreactor.loop.uring.completion import (
    ACCEPT,
    UNWATCHED,
    CompletionPoller,
    channel_key,
    register_kind,
)
from ioreactor.loop.uring.ring import CQE_F_MORE
from ioreactor.net.acceptor import EXHAUSTED_PAUSE, FD_EXHAUSTED, TRANSIENT_ERRORS, Acceptor

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.acceptor")

#: Seconds before re-arming an accept that failed for an unexpected reason (no spin).
ACCEPT_ERROR_BACKOFF = 0.1


class UringAcceptor(Acceptor):
    """Calls ``on_accept(sock, peer)`` for each new connection, from accept completions."""

    def __init__(
        self,
        loop: EventLoop,
        listener: socket.socket,
        on_accept: Callable[[socket.socket, Any], None],
        **options: int,
    ) -> None:
        port = loop.poller
        if not isinstance(port, CompletionPoller):
            raise TypeError(f"UringAcceptor needs a completion-mode uring loop, not {loop!r}")
        super().__init__(loop, listener, on_accept, **options)
        self._port = port
        self._user_data = channel_key(self) | ACCEPT
        self._armed = False
        #: False once the kernel refused multishot accept: one-shot accepts, re-armed.
        self.multishot = True

    def start(self) -> None:
        self._listening = True
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        port = self._port
        port.ring.prep_accept(self.listener.fileno(), self._user_data, multishot=self.multishot)
        port.ops[self._user_data] = self
        self._armed = True

    def _accept_done(self, res: int, flags: int) -> None:
        if not flags & CQE_F_MORE:
            del self._port.ops[self._user_data]
            self._armed = False
        if res >= 0:
            self._adopt(res)
        elif not self._accept_failed(-res):
            return
        if self._listening and not self._armed:
            self._arm()

    def _adopt(self, fd: int) -> None:
        if not self._listening:
            os.close(fd)  # accepted just before the cancel took effect
            return
        listener = self.listener
        # family/type/proto given: no getsockopt calls; the fd is already non-blocking.
        sock = socket.socket(
            listener.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, listener.proto, fd
        )
        try:
            peer = sock.getpeername()
        except OSError:  # reset before we got to it
            sock.close()
            return
        self.on_accept(sock, peer)

    def _accept_failed(self, err: int) -> bool:
        """Handle a failed accept; True if it may be re-armed now."""
        if err == errno.ECANCELED or not self._listening:
            return False
        if err == errno.EINVAL and self.multishot:
            log.info("multishot accept unsupported here (EINVAL): one-shot accepts")
            self.multishot = False
            return True
        if err in FD_EXHAUSTED:
            if self._shed_one(OSError(err, os.strerror(err))):
                return True
            # Nothing to shed with (the spare fd is gone too): try again after a pause,
            # not at once -- an accept re-armed now fails again now, a spin.
            if not self._armed:
                self.loop.call_later(EXHAUSTED_PAUSE, self._rearm_after_error)
            return False
        if err in TRANSIENT_ERRORS:
            return True
        log.error("accept on %s failed: %s", self.listener.getsockname(), os.strerror(err))
        if not self._armed:
            self.loop.call_later(ACCEPT_ERROR_BACKOFF, self._rearm_after_error)
        return False

    def _rearm_after_error(self) -> None:
        if self._listening and not self._armed:
            self._arm()

    def close(self) -> None:
        """Cancel the accept, then close the listening socket (and the spare fd)."""
        self._listening = False
        if self._armed and not self._port.ring.closed:
            self._port.ring.prep_cancel(self._user_data, UNWATCHED)
        self.listener.close()
        if self._spare_fd >= 0:
            os.close(self._spare_fd)
            self._spare_fd = -1


register_kind(ACCEPT, UringAcceptor._accept_done)
