"""Application-level heartbeat: PING/PONG over length-prefixed frames, on both ends.

Why not only TCP keepalive: see ``docs/heartbeat.md``. In short, the kernel's defaults
notice a silent peer after 2 h + 9 x 75 s, keepalive probes are answered by the peer's
kernel even when its process is stuck, and a connection that always has data queued
never sends probes at all. Only the application can tell that the *application* on
the other end is alive.

Wire format (one frame)::

    +----------------+--------+-----------------+
    | length: 4 B BE | type:1 | payload         |   length = 1 + len(payload)
    +----------------+--------+-----------------+
    type 0 DATA (application bytes), 1 PING, 2 PONG (echoes the PING's payload)

The PING payload is a sequence number and the sender's clock (``!Qd``), so the PONG
gives the round-trip time without any state on the answering side.

Timing, with ``i = interval`` and ``m = misses``, measured from the last bytes received
from the peer (``conn.last_read``: any traffic counts, data included):

* the *active* end (by default the client) sends a PING after ``i`` of silence, and
  again after each further ``i``: at ``i, 2i, ..., m*i``;
* the *passive* end (by default the server) does the same a quarter interval later
  (``1.25i, 2.25i, ...``), so in the steady state only the active end pings and the
  passive end just answers, instead of both pinging at once every interval;
* after ``(m + 1/2) * i`` of silence -- ``m`` PINGs unanswered -- the peer is declared
  dead: the reason is logged, ``conn.error`` is a :class:`PeerSilentError`, and the
  connection is closed at once.

So a peer that goes silent without a FIN is declared dead between ``m*i`` and
``(m+1)*i`` after its last traffic, on both ends, with half an interval of margin for
the wheel's tick (``i/16``) and scheduling delays on either side. The verdict also needs
the ``m`` PINGs to have really gone out: after a stall of this process itself the PINGs
start again instead of condemning the peer on stale silence (see ``_check``).

Each connection costs one timing-wheel entry, visited about once per interval; reads and
writes cost nothing beyond the timestamp the connection records anyway.
"""

from __future__ import annotations

import enum
import logging
import math
import struct

from ioreactor.codec.base import CorruptFrameError
from ioreactor.codec.handler import FrameHandler
from ioreactor.codec.length_field import LengthFieldCodec
from ioreactor.loop.timing_wheel import PerLoopWheels, TimingWheel, WheelEntry
from ioreactor.net.connection import TcpConnection

log = logging.getLogger("ioreactor.heartbeat")

#: Default seconds of silence before a PING.
INTERVAL = 5.0
#: Default unanswered PINGs before the peer is declared dead.
MISSES = 3
#: Default limit on one frame, header included.
MAX_FRAME_LENGTH = 1024 * 1024
#: The passive end pings this fraction of an interval after the active end would.
PASSIVE_DELAY = 0.25
#: The last PING gets this fraction of an interval to be answered before the verdict
#: (more than PASSIVE_DELAY, so the passive end's last PING gets some time too).
VERDICT_GRACE = 0.5
#: The last PING gets at least this fraction of an interval, even after a stall of our own.
LAST_PING_GRACE = VERDICT_GRACE - PASSIVE_DELAY
#: Timing-wheel ticks per interval (events are at most interval/16 late).
TICKS_PER_INTERVAL = 16

_HEADER = struct.Struct("!IB")
_PROBE = struct.Struct("!Qd")


class MessageType(enum.IntEnum):
    DATA = 0
    PING = 1
    PONG = 2


class PeerSilentError(TimeoutError):
    """The peer sent nothing for too long: the heartbeat's verdict, in ``conn.error``."""


class _Peer:
    """Heartbeat state of one connection."""

    __slots__ = ("conn", "entry", "last_ping", "pings", "read_mark", "rtt", "seq", "wheel")

    def __init__(self, conn: TcpConnection, wheel: TimingWheel) -> None:
        self.conn = conn
        self.wheel = wheel
        self.entry: WheelEntry[_Peer] | None = None
        #: PINGs sent since the peer was last heard from (at ``read_mark``).
        self.pings = 0
        self.last_ping = 0.0
        self.read_mark = conn.last_read
        self.seq = 0
        self.rtt = math.nan


class HeartbeatHandler(FrameHandler):
    """Heartbeat on every connection it handles; override :meth:`on_data` for payloads.

    ``active``: True for the end that pings first (the client), False for the end that
    mostly answers (the server); both detect a dead peer. ``log_traffic`` logs every
    PING and PONG at INFO (the demo CLI does; a server with many connections should not).
    A subclass overriding ``on_connection``/``on_close`` must call ``super()``.
    """

    def __init__(
        self,
        interval: float = INTERVAL,
        misses: int = MISSES,
        *,
        active: bool = True,
        max_frame_length: int = MAX_FRAME_LENGTH,
        log_traffic: bool = False,
        wheel: TimingWheel | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if misses < 1:
            raise ValueError(f"misses must be >= 1, got {misses}")
        super().__init__(
            LengthFieldCodec(4, initial_bytes_to_strip=4, max_frame_length=max_frame_length)
        )
        self.interval = interval
        self.misses = misses
        self.active = active
        self.max_frame_length = max_frame_length
        self.log_traffic = log_traffic
        self._first_ping = interval if active else interval * (1 + PASSIVE_DELAY)
        self._verdict_after = interval * (misses + VERDICT_GRACE)
        self._last_ping_grace = interval * LAST_PING_GRACE
        self._wheel = wheel
        self._wheels = PerLoopWheels(tick=interval / TICKS_PER_INTERVAL)
        self._peers: dict[TcpConnection, _Peer] = {}
        self._visit = self._check
        self._info = log.info if log_traffic else log.debug
        #: Counters over all connections (for reports and tests).
        self.pings_sent = 0
        self.pings_answered = 0
        self.pongs_received = 0
        self.peers_declared_dead = 0

    def __len__(self) -> int:
        """Connections with a heartbeat running."""
        return len(self._peers)

    # -- connection lifecycle ------------------------------------------------------------

    def on_connection(self, conn: TcpConnection) -> None:
        wheel = self._wheel if self._wheel is not None else self._wheels.for_loop(conn.loop)
        peer = _Peer(conn, wheel)
        self._peers[conn] = peer
        peer.entry = wheel.schedule(conn.last_read + self._first_ping, self._visit, peer)

    def on_close(self, conn: TcpConnection) -> None:
        peer = self._peers.pop(conn, None)
        if peer is not None and peer.entry is not None:
            peer.wheel.cancel(peer.entry)
            peer.entry = None

    # -- frames in -----------------------------------------------------------------------

    def on_frames(self, conn: TcpConnection, frames: list[bytes]) -> None:
        for frame in frames:
            kind = frame[0] if frame else -1
            if kind == MessageType.DATA:
                self.on_data(conn, frame[1:])
            elif kind == MessageType.PING:
                conn.send(_HEADER.pack(len(frame), MessageType.PONG) + frame[1:])
                self.pings_answered += 1
                if self.log_traffic:
                    self._log_ping_answered(conn, frame)
            elif kind == MessageType.PONG:
                self._pong(conn, frame)
            else:
                error = CorruptFrameError(f"heartbeat frame of unknown type {kind}", len(frame))
                self.on_frame_error(conn, error)
                return

    def on_data(self, conn: TcpConnection, payload: bytes) -> None:
        """A DATA frame's payload. The default ignores it."""

    def _log_ping_answered(self, conn: TcpConnection, frame: bytes) -> None:
        seq = _PROBE.unpack_from(frame, 1)[0] if len(frame) == 1 + _PROBE.size else -1
        log.info("ping seq=%d from %s answered", seq, conn.peer)

    def _pong(self, conn: TcpConnection, frame: bytes) -> None:
        self.pongs_received += 1
        peer = self._peers.get(conn)
        if peer is None or len(frame) != 1 + _PROBE.size:
            return
        seq, sent_at = _PROBE.unpack_from(frame, 1)
        peer.rtt = conn.loop.time() - sent_at
        self.on_pong(conn, seq, peer.rtt)

    def on_pong(self, conn: TcpConnection, seq: int, rtt: float) -> None:
        """The answer to our PING ``seq`` arrived after ``rtt`` seconds. The default logs it."""
        self._info("pong seq=%d from %s rtt=%.3f ms", seq, conn.peer, rtt * 1000)

    # -- frames out ----------------------------------------------------------------------

    def encode(self, kind: MessageType, payload: bytes | bytearray | memoryview = b"") -> bytes:
        """One frame of ``kind`` carrying ``payload``."""
        size = 1 + len(payload)
        if _HEADER.size - 1 + size > self.max_frame_length:
            raise ValueError(
                f"a {len(payload)}-byte payload exceeds max_frame_length {self.max_frame_length}"
            )
        return b"".join((_HEADER.pack(size, kind), payload))

    def send_data(self, conn: TcpConnection, payload: bytes | bytearray | memoryview) -> None:
        """Send ``payload`` as a DATA frame (it also tells the peer we are alive)."""
        conn.send(self.encode(MessageType.DATA, payload))

    def rtt(self, conn: TcpConnection) -> float:
        """The last PING round trip on ``conn`` in seconds (NaN before the first PONG)."""
        peer = self._peers.get(conn)
        return peer.rtt if peer is not None else math.nan

    # -- the timer -------------------------------------------------------------------------

    def _check(self, peer: _Peer, now: float) -> None:
        """The connection's wheel entry came up: ping, give the verdict, or re-slot.

        The verdict needs ``misses`` PINGs actually sent, one interval apart, the last
        one at least ``LAST_PING_GRACE`` intervals ago. Normally they went out on
        schedule and this changes nothing; but if this process itself was stopped (a
        long GC pause, SIGSTOP, a suspended VM), the peer's answers may be sitting
        unread in our socket, and stale silence alone must not condemn it: the PINGs
        start again from now instead.
        """
        conn = peer.conn
        last = conn.last_read
        if last != peer.read_mark:  # heard from the peer since the last check
            peer.read_mark = last
            peer.pings = 0
        interval = self.interval
        pings = peer.pings
        if pings >= self.misses:
            due = max(last + self._verdict_after, peer.last_ping + self._last_ping_grace)
            if due <= now:
                self._declare_dead(peer, now - last)
                return
        else:
            due = last + self._first_ping + pings * interval
            if pings:
                due = max(due, peer.last_ping + interval)
            if due <= now:
                if pings:
                    self._missed(peer, now - last)
                self._ping(peer, now)
                if peer.pings < self.misses:
                    due = max(last + self._first_ping + peer.pings * interval, now + interval)
                else:
                    due = max(last + self._verdict_after, now + self._last_ping_grace)
        entry = peer.entry
        if entry is not None:
            peer.wheel.reschedule(entry, due)

    def _ping(self, peer: _Peer, now: float) -> None:
        peer.pings += 1
        peer.last_ping = now
        peer.seq += 1
        self.pings_sent += 1
        conn = peer.conn
        conn.send(_HEADER.pack(1 + _PROBE.size, MessageType.PING) + _PROBE.pack(peer.seq, now))
        self._info("ping seq=%d to %s (silent %.2f s)", peer.seq, conn.peer, now - conn.last_read)

    def _missed(self, peer: _Peer, silent: float) -> None:
        log.info(
            "miss %d/%d: no pong from %s to ping seq=%d (silent %.2f s)",
            peer.pings,
            self.misses,
            peer.conn.peer,
            peer.seq,
            silent,
        )

    def _declare_dead(self, peer: _Peer, silent: float) -> None:
        conn = peer.conn
        if peer.pings:
            self._missed(peer, silent)
        self.peers_declared_dead += 1
        reason = (
            f"peer {conn.peer} is dead: nothing received for {silent:.2f} s, "
            f"{peer.pings} pings unanswered (interval {self.interval:g} s, "
            f"misses {self.misses})"
        )
        log.warning("%s; closing", reason)
        conn.error = PeerSilentError(reason)
        conn.force_close()
