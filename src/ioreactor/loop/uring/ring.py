"""A minimal io_uring over ``mmap``, ``ctypes`` and the three syscalls.

Why not a binding: PyPI ``liburing`` (the only maintained one) takes a raw pointer into a
``bytearray`` without keeping a reference, so a buffer freed while a recv is in flight is
written by the kernel after Python has reused the memory (see ``docs/uring.md``). Here
every pointer handed to the kernel is *pinned* -- a reference, and for writable buffers a
buffer export that forbids resizing -- until the operation's last completion is reaped.

Layout shared with the kernel (``io_uring_setup`` fills the offsets)::

    SQ ring:  head | tail | mask | entries | flags | dropped | array[entries]
    CQ ring:  head | tail | mask | entries | overflow | cqes[entries] (16 bytes each)
    SQEs:     64-byte submission entries, slot i is array[i] = i forever (identity map)

We write SQEs and advance our *private* tail; the shared SQ tail is published once, just
before the single ``io_uring_enter`` of the iteration, so the kernel never sees a tail
ahead of the entry contents. CQEs are read in a batch and the CQ head is published once.

Memory ordering: Python cannot emit fences, so the design makes them unnecessary. The
kernel reads the SQ tail only inside our own ``io_uring_enter`` (no SQPOLL), and the
syscall is a full barrier. With ``IORING_SETUP_DEFER_TASKRUN`` (6.1+, our first choice)
the kernel also posts CQEs only inside ``io_uring_enter`` of the issuing thread, so the
CQ tail and entries we read were written before the syscall returned. On the fallback
tiers CQEs can be posted from another CPU; x86's TSO keeps load order, aarch64 does not
(FIXME: on aarch64 without DEFER_TASKRUN a CQE could in theory be read stale).

Threads: ``IORING_SETUP_SINGLE_ISSUER`` binds a ring to one task. The event loop may be
built in one thread and run in another, so the ring is created disabled
(``IORING_SETUP_R_DISABLED``) and enabled by the first thread that enters it; from then
on only that thread may submit (others get ``EEXIST``, reported as such).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import socket
import struct
import time
from collections.abc import Sequence
from typing import Final

# -- syscalls -------------------------------------------------------------------------------

#: ``__NR_io_uring_*``: the same numbers on x86_64 and aarch64 (the generic table).
NR_IO_URING_SETUP: Final = 425
NR_IO_URING_ENTER: Final = 426
NR_IO_URING_REGISTER: Final = 427
_SUPPORTED_MACHINES: Final = frozenset({"x86_64", "amd64", "aarch64", "arm64"})

_libc = ctypes.CDLL(None, use_errno=True)
#: ``syscall(2)`` with seven ``long`` arguments: fixing argtypes converts ints to 64-bit
#: longs (a variadic call would pass them as 32-bit ints); extra ones are ignored.
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long] * 7

#: Where the kernel publishes the io_uring policy (Linux 6.6+); see :func:`explain`.
IO_URING_DISABLED_SYSCTL = "/proc/sys/kernel/io_uring_disabled"
IO_URING_GROUP_SYSCTL = "/proc/sys/kernel/io_uring_group"

# -- constants from <linux/io_uring.h> ------------------------------------------------------

SETUP_CQSIZE: Final = 1 << 3
SETUP_CLAMP: Final = 1 << 4
SETUP_R_DISABLED: Final = 1 << 6
SETUP_SUBMIT_ALL: Final = 1 << 7
SETUP_COOP_TASKRUN: Final = 1 << 8
SETUP_SINGLE_ISSUER: Final = 1 << 12
SETUP_DEFER_TASKRUN: Final = 1 << 13

#: Setup flag sets tried in order; EINVAL (an older kernel) moves to the next one.
SETUP_TIERS: Final[tuple[int, ...]] = (
    SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN | SETUP_R_DISABLED | SETUP_SUBMIT_ALL,  # 6.1
    SETUP_SINGLE_ISSUER | SETUP_COOP_TASKRUN | SETUP_R_DISABLED | SETUP_SUBMIT_ALL,  # 6.0
    SETUP_COOP_TASKRUN | SETUP_SUBMIT_ALL,  # 5.19
    0,
)

FEAT_SINGLE_MMAP: Final = 1 << 0
FEAT_NODROP: Final = 1 << 1
FEAT_EXT_ARG: Final = 1 << 8

ENTER_GETEVENTS: Final = 1 << 0
ENTER_EXT_ARG: Final = 1 << 3

REGISTER_ENABLE_RINGS: Final = 12
REGISTER_PBUF_RING: Final = 22
UNREGISTER_PBUF_RING: Final = 23
REGISTER_PBUF_STATUS: Final = 26

OFF_SQ_RING: Final = 0
OFF_CQ_RING: Final = 0x8000000
OFF_SQES: Final = 0x10000000

OP_NOP: Final = 0
OP_POLL_ADD: Final = 6
OP_POLL_REMOVE: Final = 7
OP_SENDMSG: Final = 9
OP_TIMEOUT: Final = 11
OP_ACCEPT: Final = 13
OP_ASYNC_CANCEL: Final = 14
OP_CLOSE: Final = 19
OP_SEND: Final = 26
OP_RECV: Final = 27
OP_SHUTDOWN: Final = 34

IOSQE_BUFFER_SELECT: Final = 1 << 5
POLL_ADD_MULTI: Final = 1 << 0
#: ``sqe->ioprio`` of a RECV: keep receiving, one completion per buffer (Linux 6.0+).
RECV_MULTISHOT: Final = 1 << 1
ACCEPT_MULTISHOT: Final = 1 << 0
ASYNC_CANCEL_ALL: Final = 1 << 0
ASYNC_CANCEL_FD: Final = 1 << 1
ASYNC_CANCEL_ANY: Final = 1 << 2

CQE_F_BUFFER: Final = 1 << 0
CQE_F_MORE: Final = 1 << 1
CQE_BUFFER_SHIFT: Final = 16

_U32: Final = 0xFFFFFFFF
_SQE: Final = struct.Struct("<BBHiQQIIQHHiQQ")  # struct io_uring_sqe, 64 bytes
_CQE: Final = struct.Struct("<QiI")  # struct io_uring_cqe: user_data, res, flags
_BUF: Final = struct.Struct("<QIH")  # io_uring_buf without resv (entry 0's resv is the tail)
assert _SQE.size == 64 and _CQE.size == 16

#: Where a ``bytes`` object's payload starts, relative to ``id()`` (CPython: the header,
#: ``bytes.__basicsize__`` less the trailing NUL). Checked once against ctypes below.
BYTES_DATA_OFFSET: Final = bytes.__basicsize__ - 1
_probe = b"ioreactor"
assert ctypes.cast(ctypes.c_char_p(_probe), ctypes.c_void_p).value == id(_probe) + BYTES_DATA_OFFSET
del _probe

#: user_data of the cancel-everything request :meth:`Ring.close` submits.
_CLOSE_CANCEL_USER_DATA: Final = (1 << 64) - 1
#: How long :meth:`Ring.close` waits for cancelled operations before giving up.
_CLOSE_DRAIN_SECONDS: Final = 1.0


class _SqOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("dropped", ctypes.c_uint32),
        ("array", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class _CqOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("overflow", ctypes.c_uint32),
        ("cqes", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class _Params(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", _SqOffsets),
        ("cq_off", _CqOffsets),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class _GeteventsArg(ctypes.Structure):
    _fields_ = [
        ("sigmask", ctypes.c_uint64),
        ("sigmask_sz", ctypes.c_uint32),
        ("min_wait_usec", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
    ]


class _BufReg(ctypes.Structure):
    _fields_ = [
        ("ring_addr", ctypes.c_uint64),
        ("ring_entries", ctypes.c_uint32),
        ("bgid", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("resv", ctypes.c_uint64 * 3),
    ]


class _BufStatus(ctypes.Structure):
    _fields_ = [
        ("buf_group", ctypes.c_uint32),
        ("head", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 8),
    ]


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


assert ctypes.sizeof(_Params) == 120 and ctypes.sizeof(_BufReg) == 40


class UringUnavailable(OSError):
    """io_uring cannot be used here; ``strerror`` says why in words an operator can act on."""


def _call(nr: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0, e: int = 0, f: int = 0) -> int:
    """Invoke a raw syscall; raise ``OSError`` from errno on failure."""
    ret: int = _syscall(nr, a, b, c, d, e, f)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _read_sysctl(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def explain(err: int) -> str:
    """Turn an ``io_uring_setup`` errno into the reason an operator needs to see."""
    disabled = _read_sysctl(IO_URING_DISABLED_SYSCTL)
    if err == errno.ENOSYS:
        return (
            "io_uring_setup returned ENOSYS: the kernel has no io_uring (older than 5.1 "
            "or built without CONFIG_IO_URING), or a seccomp filter hides the syscall"
        )
    if err == errno.EPERM:
        if disabled == 2:
            return "io_uring is disabled for every process (sysctl kernel.io_uring_disabled=2)"
        if disabled == 1:
            group = _read_sysctl(IO_URING_GROUP_SYSCTL)
            return (
                "io_uring is restricted (sysctl kernel.io_uring_disabled=1): this process "
                f"needs CAP_SYS_ADMIN or membership of kernel.io_uring_group (gid {group})"
            )
        return (
            "io_uring_setup returned EPERM: forbidden by a seccomp filter or an LSM "
            "(container runtimes block io_uring by default)"
        )
    if err == errno.ENOMEM:
        return (
            "io_uring_setup returned ENOMEM: on kernels before 5.12 rings count against "
            "RLIMIT_MEMLOCK; raise it (ulimit -l) or use fewer entries"
        )
    return f"io_uring_setup failed: {os.strerror(err)}"


def _setup(entries: int, cq_entries: int) -> tuple[int, _Params]:
    """``io_uring_setup`` trying the richest flag tier first; raises UringUnavailable."""
    machine = platform.machine().lower()
    if machine not in _SUPPORTED_MACHINES:
        raise UringUnavailable(errno.ENOSYS, f"io_uring syscall numbers unknown for {machine}")
    if _read_sysctl(IO_URING_DISABLED_SYSCTL) == 2:
        raise UringUnavailable(errno.EPERM, explain(errno.EPERM))
    last = errno.EINVAL
    for tier in SETUP_TIERS:
        params = _Params(flags=tier | SETUP_CLAMP | SETUP_CQSIZE, cq_entries=cq_entries)
        try:
            fd = _call(NR_IO_URING_SETUP, entries, ctypes.addressof(params))
        except OSError as exc:
            last = exc.errno or errno.EINVAL
            if last == errno.EINVAL:
                continue  # a flag this kernel does not know: try the next tier
            raise UringUnavailable(last, explain(last)) from None
        if params.features & (FEAT_EXT_ARG | FEAT_NODROP) != FEAT_EXT_ARG | FEAT_NODROP:
            os.close(fd)
            raise UringUnavailable(
                errno.ENOSYS, "io_uring lacks EXT_ARG/NODROP (kernel older than 5.11)"
            )
        return fd, params
    raise UringUnavailable(last, explain(last))


def _pin_buffer(data: bytes | bytearray | memoryview) -> tuple[int, int, object]:
    """Return (address, length, keep-alive) for memory the kernel will read later.

    Writable buffers are exported through ctypes, which also forbids resizing them until
    the keep-alive is dropped; read-only memoryviews (no export possible) are copied.
    """
    if isinstance(data, bytes):
        ptr = ctypes.c_char_p(data)  # points into the bytes object itself, no copy
        return ctypes.cast(ptr, ctypes.c_void_p).value or 0, len(data), (data, ptr)
    view = memoryview(data)
    if view.readonly:
        copy = view.tobytes()
        ptr = ctypes.c_char_p(copy)
        return ctypes.cast(ptr, ctypes.c_void_p).value or 0, len(copy), (copy, ptr)
    arr = (ctypes.c_char * view.nbytes).from_buffer(view)
    return ctypes.addressof(arr), view.nbytes, arr


class Ring:
    """One io_uring instance: prepare SQEs, submit and wait once, reap CQEs in a batch.

    ``user_data`` is the caller's: it comes back in the completion. Operations that hand
    the kernel a pointer pin it under their ``user_data`` until their final completion
    (one without ``CQE_F_MORE``), so such user_data must be unique while in flight.
    """

    def __init__(self, entries: int = 256, cq_entries: int | None = None) -> None:
        self.fd, params = _setup(entries, cq_entries or 2 * entries)
        self.setup_flags: int = params.flags
        self.features: int = params.features
        self.sq_entries: int = params.sq_entries
        self.cq_entries: int = params.cq_entries
        self._disabled = bool(params.flags & SETUP_R_DISABLED)
        self._closed = False
        try:
            self._map(params)
        except BaseException:
            os.close(self.fd)
            raise
        self._sq_tail = 0  # private tail: SQEs written but not yet published
        self._sq_head = 0  # kernel's SQ head as of the last enter
        #: Operations the kernel owns: submitted, final completion not yet reaped.
        self.in_flight = 0
        self._pinned: dict[int, object] = {}
        #: Set once a multishot op is prepared: from then on completions may be non-final.
        self._multishot = False
        self._buffer_rings: list[BufferRing] = []
        self._ts = _Timespec()
        self._arg = _GeteventsArg(ts=0)
        self._arg_addr = ctypes.addressof(self._arg)
        self._ts_addr = ctypes.addressof(self._ts)

    def _map(self, params: _Params) -> None:
        sq, cq = params.sq_off, params.cq_off
        sq_size = sq.array + params.sq_entries * 4
        cq_size = cq.cqes + params.cq_entries * _CQE.size
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        flags = mmap.MAP_SHARED | mmap.MAP_POPULATE
        single = bool(params.features & FEAT_SINGLE_MMAP)
        if single:
            sq_size = cq_size = max(sq_size, cq_size)
        self._sq_mm = mmap.mmap(self.fd, sq_size, flags, prot, offset=OFF_SQ_RING)
        self._cq_mm = (
            self._sq_mm if single else mmap.mmap(self.fd, cq_size, flags, prot, offset=OFF_CQ_RING)
        )
        self._sqes_mm = mmap.mmap(self.fd, params.sq_entries * 64, flags, prot, offset=OFF_SQES)
        # SQEs are packed through a memoryview: pack_into a memoryview costs half what it
        # costs on the mmap object itself (measured: 0.10 vs 0.25 µs), once per operation.
        self._sqes = memoryview(self._sqes_mm)
        # u32 views: aligned 4-byte loads and stores, released explicitly before unmapping.
        self._sq32 = memoryview(self._sq_mm).cast("I")
        self._cq32 = self._sq32 if single else memoryview(self._cq_mm).cast("I")
        self._cq_bytes = memoryview(self._cq_mm)
        self._sq_head_i = sq.head // 4
        self._sq_tail_i = sq.tail // 4
        self._sq_mask = self._sq32[sq.ring_mask // 4]
        self._cq_head_i = cq.head // 4
        self._cq_tail_i = cq.tail // 4
        self._cq_mask = self._cq32[cq.ring_mask // 4]
        self._cqes_off = cq.cqes
        array = sq.array // 4
        for i in range(params.sq_entries):
            self._sq32[array + i] = i

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _enable(self) -> None:
        """Bind a SINGLE_ISSUER ring to the calling thread (see the module docstring)."""
        _call(NR_IO_URING_REGISTER, self.fd, REGISTER_ENABLE_RINGS, 0, 0)
        self._disabled = False

    def close(self) -> None:
        """Cancel what is in flight, wait for it, then unmap; idempotent.

        Buffer-ring memory is unmapped only once nothing can write into it any more: if
        the cancellations do not all complete (e.g. close() called from a thread that may
        not enter this SINGLE_ISSUER ring), that memory is deliberately kept mapped.
        """
        if self._closed:
            return
        self._close_unsubmitted_fds()
        self._sq_tail = self._sq_head  # never-submitted SQEs are otherwise dropped
        drained = self.in_flight == 0
        if not drained:
            try:
                drained = self._cancel_everything()
            except OSError:
                drained = False
        self._closed = True
        for br in self._buffer_rings:
            br._close(unmap=drained)
        self._buffer_rings.clear()
        self._pinned.clear()
        self._sq32.release()
        self._cq_bytes.release()
        if self._cq32 is not self._sq32:
            self._cq32.release()
            self._cq_mm.close()
        self._sq_mm.close()
        self._sqes.release()
        self._sqes_mm.close()
        os.close(self.fd)

    def _close_unsubmitted_fds(self) -> None:
        """Close directly the fds of CLOSE requests prepared but never submitted: an fd
        handed to the ring for closing must not leak because the ring went first."""
        head, tail = self._sq_head, self._sq_tail
        while head != tail:
            opcode, _, _, fd = _SQE.unpack_from(self._sqes, (head & self._sq_mask) * 64)[:4]
            if opcode == OP_CLOSE and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
            head = (head + 1) & _U32

    def _cancel_everything(self) -> bool:
        self._prep(OP_ASYNC_CANCEL, -1, 0, 0, 0, ASYNC_CANCEL_ANY, _CLOSE_CANCEL_USER_DATA)
        deadline = time.monotonic() + _CLOSE_DRAIN_SECONDS
        sink: list[tuple[int, int, int]] = []
        while self.in_flight:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.submit_and_wait(min(left, 0.05))
            self.reap(sink)
            sink.clear()
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    # -- submission -----------------------------------------------------------------------

    @property
    def sq_pending(self) -> int:
        """SQEs prepared but not yet consumed by the kernel."""
        return (self._sq_tail - self._sq_head) & _U32

    def _prep(
        self,
        opcode: int,
        fd: int,
        addr: int,
        length: int,
        off: int,
        op_flags: int,
        user_data: int,
        sqe_flags: int = 0,
        ioprio: int = 0,
        buf_group: int = 0,
    ) -> None:
        tail = self._sq_tail
        if self._closed or (tail - self._sq_head) & _U32 >= self.sq_entries:
            self._make_room()
        _SQE.pack_into(
            self._sqes,
            (tail & self._sq_mask) * 64,
            opcode,
            sqe_flags,
            ioprio,
            fd,
            off,
            addr,
            length,
            op_flags,
            user_data,
            buf_group,
            0,
            0,
            0,
            0,
        )
        self._sq_tail = (tail + 1) & _U32

    def _make_room(self) -> int:
        """Free SQ slots, submitting what is prepared if the SQ is full; return the count.

        A full SQ means more operations in one iteration than slots: they are handed over
        now, the only case with a second enter per iteration (size the ring to avoid it).
        """
        if self._closed:
            raise ValueError("io_uring ring is closed")
        if self.sq_pending >= self.sq_entries:
            self._enter(0, ENTER_EXT_ARG)
            if self.sq_pending >= self.sq_entries:
                raise OSError(errno.EBUSY, "io_uring submission queue full")
        return self.sq_entries - self.sq_pending

    def _pin(self, user_data: int, keep: object) -> None:
        if user_data in self._pinned:
            raise ValueError(f"user_data {user_data:#x} already has memory pinned in flight")
        self._pinned[user_data] = keep

    def prep_nop(self, user_data: int) -> None:
        self._prep(OP_NOP, -1, 0, 0, 0, 0, user_data)

    def prep_poll_add(self, fd: int, events: int, user_data: int, multishot: bool = False) -> None:
        """Poll ``fd`` for ``events`` (POLLIN/POLLOUT... = the epoll bit values).

        One-shot: exactly one completion whose ``res`` is the ready mask. Multishot: a
        completion with ``CQE_F_MORE`` each time the file's wait queue is woken -- new
        data, not data still unread (edge-like; see ``UringPoller``).
        """
        if multishot:
            self._multishot = True
        self._prep(OP_POLL_ADD, fd, 0, POLL_ADD_MULTI * multishot, 0, events, user_data)

    def prep_poll_adds(
        self, polls: Sequence[tuple[int, int, int]], multishot: bool = False
    ) -> None:
        """Many (fd, events, user_data) POLL_ADDs in one tight loop: a poller's re-arms."""
        if multishot:
            self._multishot = True
        length = POLL_ADD_MULTI * multishot
        pack, sqes, mask = _SQE.pack_into, self._sqes, self._sq_mask
        done = 0
        while done < len(polls):
            room = self._make_room()
            tail = self._sq_tail
            for fd, events, user_data in polls[done : done + room]:
                pack(
                    sqes,
                    (tail & mask) * 64,
                    OP_POLL_ADD,
                    0,
                    0,
                    fd,
                    0,
                    0,
                    length,
                    events,
                    user_data,
                    0,
                    0,
                    0,
                    0,
                    0,
                )
                tail += 1
            done += room
            self._sq_tail = tail & _U32

    def prep_poll_remove(self, target_user_data: int, user_data: int) -> None:
        """Remove the poll submitted as ``target_user_data``: it completes with ECANCELED."""
        self._prep(OP_POLL_REMOVE, -1, target_user_data, 0, 0, 0, user_data)

    def prep_accept(
        self,
        fd: int,
        user_data: int,
        multishot: bool = False,
        flags: int = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
    ) -> None:
        """Accept on listening ``fd``; ``res`` is the new fd.

        No sockaddr is requested: multishot accept cannot fill one shared buffer, and a
        caller that wants the peer asks ``getpeername`` only when it needs it.
        """
        if multishot:
            self._multishot = True
        self._prep(OP_ACCEPT, fd, 0, 0, 0, flags, user_data, ioprio=ACCEPT_MULTISHOT * multishot)

    def prep_recv(
        self,
        fd: int,
        buffers: BufferRing,
        user_data: int,
        flags: int = 0,
        multishot: bool = False,
    ) -> None:
        """Receive into a buffer the kernel picks from ``buffers`` when data arrives.

        No memory is committed while the socket is idle; the completion carries
        ``CQE_F_BUFFER`` and the buffer id (claim it with :meth:`BufferRing.claim`), or
        ``-ENOBUFS`` when the ring was empty. ``multishot`` keeps the receive armed: one
        completion per buffer filled, with ``CQE_F_MORE`` while it stays armed; it ends
        (no ``CQE_F_MORE``) at EOF, on an error, on ``-ENOBUFS`` or when cancelled.
        """
        if multishot:
            self._multishot = True
        self._prep(
            OP_RECV,
            fd,
            0,
            0,
            0,
            flags,
            user_data,
            sqe_flags=IOSQE_BUFFER_SELECT,
            ioprio=RECV_MULTISHOT * multishot,
            buf_group=buffers.bgid,
        )

    def prep_send(
        self,
        fd: int,
        data: bytes | bytearray | memoryview,
        user_data: int,
        flags: int = socket.MSG_NOSIGNAL,
    ) -> None:
        """Send ``data``; it stays pinned (and a bytearray unresizable) until completion."""
        addr, length, keep = _pin_buffer(data)
        self._pin(user_data, keep)
        self._prep(OP_SEND, fd, addr, length, 0, flags, user_data)

    def prep_send_at(self, fd: int, addr: int, length: int, user_data: int, flags: int) -> None:
        """Send ``length`` bytes at ``addr``: the caller keeps that memory alive and
        unchanged until this operation's completion (the completion backend's hot path,
        which pins its ``bytes`` chunks itself instead of paying :func:`_pin_buffer`).

        :meth:`_prep` inlined: this runs once per message.
        """
        tail = self._sq_tail
        if self._closed or (tail - self._sq_head) & _U32 >= self.sq_entries:
            self._make_room()
        _SQE.pack_into(
            self._sqes,
            (tail & self._sq_mask) * 64,
            OP_SEND,
            0,
            0,
            fd,
            0,
            addr,
            length,
            flags,
            user_data,
            0,
            0,
            0,
            0,
            0,
        )
        self._sq_tail = (tail + 1) & _U32

    def prep_sendmsg_at(self, fd: int, msghdr_addr: int, user_data: int, flags: int) -> None:
        """``sendmsg`` of a ``struct msghdr`` at ``msghdr_addr``; the caller pins it, its
        ``iovec`` array and every buffer until completion (as :meth:`prep_send_at`)."""
        self._prep(OP_SENDMSG, fd, msghdr_addr, 1, 0, flags, user_data)

    def prep_sendmsg(
        self,
        fd: int,
        buffers: Sequence[bytes | bytearray | memoryview],
        user_data: int,
        flags: int = socket.MSG_NOSIGNAL,
    ) -> None:
        """Gather-send ``buffers`` in one operation (a whole iteration's output)."""
        iov = (_Iovec * len(buffers))()
        keeps: list[object] = []
        for i, buf in enumerate(buffers):
            addr, length, keep = _pin_buffer(buf)
            iov[i].iov_base = addr
            iov[i].iov_len = length
            keeps.append(keep)
        msg = _Msghdr(msg_iov=ctypes.addressof(iov), msg_iovlen=len(buffers))
        self._pin(user_data, (msg, iov, keeps))
        self._prep(OP_SENDMSG, fd, ctypes.addressof(msg), 1, 0, flags, user_data)

    def prep_close(self, fd: int, user_data: int) -> None:
        """Close ``fd`` in the kernel. Detach it from any Python socket object first."""
        self._prep(OP_CLOSE, fd, 0, 0, 0, 0, user_data)

    def prep_shutdown(self, fd: int, how: int, user_data: int) -> None:
        self._prep(OP_SHUTDOWN, fd, 0, how, 0, 0, user_data)

    def prep_timeout(self, seconds: float, user_data: int, count: int = 0) -> None:
        """Complete with ``-ETIME`` after ``seconds`` (or with 0 after ``count`` others)."""
        sec = int(seconds)
        ts = _Timespec(sec, int((seconds - sec) * 1e9))
        self._pin(user_data, ts)
        self._prep(OP_TIMEOUT, -1, ctypes.addressof(ts), 1, count, 0, user_data)

    def prep_cancel(self, target_user_data: int, user_data: int, flags: int = 0) -> None:
        """Cancel the operation submitted as ``target_user_data`` (``ASYNC_CANCEL_*``)."""
        self._prep(OP_ASYNC_CANCEL, -1, target_user_data, 0, 0, flags, user_data)

    # -- the one syscall per iteration ------------------------------------------------------

    def _enter(self, min_complete: int, flags: int) -> int:
        if self._disabled:
            self._enable()
        to_submit = self.sq_pending
        self._sq32[self._sq_tail_i] = self._sq_tail  # publish after the SQE contents
        try:
            ret = _call(
                NR_IO_URING_ENTER,
                self.fd,
                to_submit,
                min_complete,
                flags,
                self._arg_addr,
                ctypes.sizeof(_GeteventsArg),
            )
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise OSError(
                    errno.EEXIST,
                    "io_uring ring is bound to the thread that first entered it "
                    "(SINGLE_ISSUER); use it only from that thread",
                ) from None
            if exc.errno not in (errno.ETIME, errno.EINTR, errno.EAGAIN, errno.EBUSY):
                raise
            ret = 0  # timed out / interrupted / CQ backlog: reap what is there
        head = self._sq32[self._sq_head_i]
        self.in_flight += (head - self._sq_head) & _U32
        self._sq_head = head
        return ret

    def submit_and_wait(self, timeout: float | None) -> int:
        """Submit every prepared SQE and wait for a completion, in one ``io_uring_enter``.

        ``timeout`` None waits for at least one completion, 0 only submits and collects
        deferred completions, otherwise waits up to that many seconds. Returns how many
        SQEs the kernel consumed.
        """
        before = self._sq_head
        if timeout is not None and timeout <= 0:
            self._arg.ts = 0
            self._enter(0, ENTER_GETEVENTS | ENTER_EXT_ARG)
        else:
            if timeout is None:
                self._arg.ts = 0
            else:
                sec = int(timeout)
                self._ts.tv_sec = sec
                self._ts.tv_nsec = int((timeout - sec) * 1e9)
                self._arg.ts = self._ts_addr
            self._enter(1, ENTER_GETEVENTS | ENTER_EXT_ARG)
        return (self._sq_head - before) & _U32

    def reap(self, out: list[tuple[int, int, int]]) -> int:
        """Append every available completion as (user_data, res, flags); return the count.

        ``res`` < 0 is ``-errno``. Pinned memory is released with the final completion.
        """
        cq32 = self._cq32
        head: int = cq32[self._cq_head_i]
        tail: int = cq32[self._cq_tail_i]
        n = (tail - head) & _U32
        if not n:
            return 0
        first = len(out)
        # Copy the CQEs out with C-speed iter_unpack: one slice, or two if they wrap.
        cqes, base = self._cq_bytes, self._cqes_off
        start = head & self._cq_mask
        stop = start + n
        if stop <= self.cq_entries:
            out.extend(_CQE.iter_unpack(cqes[base + start * 16 : base + stop * 16]))
        else:
            out.extend(_CQE.iter_unpack(cqes[base + start * 16 : base + self.cq_entries * 16]))
            out.extend(_CQE.iter_unpack(cqes[base : base + (stop - self.cq_entries) * 16]))
        cq32[self._cq_head_i] = tail  # hand the slots back only after copying them out
        if not (self._pinned or self._multishot):
            self.in_flight -= n  # every completion is final
            return n
        pinned = self._pinned
        finished = 0
        for i in range(first, first + n):
            user_data, _, flags = out[i]
            if not flags & CQE_F_MORE:
                finished += 1
                if pinned:
                    pinned.pop(user_data, None)
        self.in_flight -= finished
        return n

    # -- provided buffers -------------------------------------------------------------------

    def register_buffer_ring(self, bgid: int, nbufs: int, bufsize: int) -> BufferRing:
        """Register ``nbufs`` buffers of ``bufsize`` bytes as buffer group ``bgid``."""
        br = BufferRing(self, bgid, nbufs, bufsize)
        self._buffer_rings.append(br)
        return br


#: Buffer rings whose memory the kernel might still write: kept mapped on purpose.
_UNSAFE_TO_UNMAP: list[BufferRing] = []


class BufferRing:
    """A provided-buffer ring (``IORING_REGISTER_PBUF_RING``, Linux 5.19+).

    The kernel picks a buffer only when data arrives, so idle sockets hold no memory.
    Each buffer is owned either by the kernel (in the ring) or by the consumer (claimed
    from a completion). It goes back into the ring only through :meth:`release`, when the
    consumer is done with it -- never on completion -- so the kernel cannot overwrite
    bytes still being parsed. The bookkeeping checks both transitions.
    """

    def __init__(self, ring: Ring, bgid: int, nbufs: int, bufsize: int) -> None:
        if nbufs < 1 or nbufs > 32768 or nbufs & (nbufs - 1):
            raise ValueError("nbufs must be a power of two between 1 and 32768")
        if not 0 < bufsize < 1 << 32:
            raise ValueError("bufsize must fit in 32 bits")
        self.bgid = bgid
        self.nbufs = nbufs
        self.bufsize = bufsize
        self._ring = ring
        self._mask = nbufs - 1
        # Anonymous mappings: page aligned, never moved, never freed while registered.
        self._ring_mm = mmap.mmap(-1, max(nbufs * 16, mmap.PAGESIZE))
        self._data_mm = mmap.mmap(-1, nbufs * bufsize)
        ring_anchor = ctypes.c_char.from_buffer(self._ring_mm)
        data_anchor = ctypes.c_char.from_buffer(self._data_mm)
        self._data_addr = ctypes.addressof(data_anchor)
        reg = _BufReg(ring_addr=ctypes.addressof(ring_anchor), ring_entries=nbufs, bgid=bgid)
        self._anchors = (ring_anchor, data_anchor)
        del ring_anchor, data_anchor  # only self._anchors may export the maps (see _unmap)
        self._tail16 = memoryview(self._ring_mm).cast("H")
        self._ring_view = memoryview(self._ring_mm)
        self._data = memoryview(self._data_mm)
        #: All buffers, back to back: buffer ``bid`` starts at ``bid * bufsize``.
        self.data = self._data
        try:
            _call(NR_IO_URING_REGISTER, ring.fd, REGISTER_PBUF_RING, ctypes.addressof(reg), 1)
        except OSError as exc:
            self._unmap()
            if exc.errno == errno.EINVAL:
                raise UringUnavailable(
                    exc.errno, "provided-buffer rings need Linux 5.19+ (PBUF_RING)"
                ) from None
            raise
        self._registered = True
        self._owned = bytearray(nbufs)  # 1 = the consumer holds it
        self._tail = 0
        for bid in range(nbufs):
            self._add(bid)
        self._tail16[7] = self._tail  # tail overlays entry 0's resv field (byte 14)

    def _add(self, bid: int) -> None:
        _BUF.pack_into(
            self._ring_mm,
            (self._tail & self._mask) * 16,
            self._data_addr + bid * self.bufsize,
            self.bufsize,
            bid,
        )
        self._tail = (self._tail + 1) & 0xFFFF

    @property
    def held(self) -> int:
        """Buffers the consumer holds (claimed, not yet released)."""
        return sum(self._owned)

    def claim(self, cqe_flags: int) -> int:
        """Take ownership of the buffer a completion names; return its id."""
        if not cqe_flags & CQE_F_BUFFER:
            raise ValueError("completion carries no buffer (CQE_F_BUFFER unset)")
        bid = cqe_flags >> CQE_BUFFER_SHIFT
        if self._owned[bid]:
            raise RuntimeError(f"buffer {bid} delivered again while the consumer holds it")
        self._owned[bid] = 1
        return bid

    def view(self, bid: int, nbytes: int) -> memoryview:
        """The first ``nbytes`` of a claimed buffer; valid until :meth:`release`."""
        if not self._owned[bid]:
            raise RuntimeError(f"buffer {bid} is not claimed")
        off = bid * self.bufsize
        return self._data[off : off + min(nbytes, self.bufsize)]

    def release(self, bid: int) -> None:
        """Give a claimed buffer back to the kernel (the consumer is done with it)."""
        if not self._owned[bid]:
            raise RuntimeError(f"buffer {bid} released twice or never claimed")
        self._owned[bid] = 0
        self._add(bid)
        self._tail16[7] = self._tail  # entry written before the tail moves

    def recycle(self, cqe_flags: int) -> None:
        """Give the buffer a completion names back to the kernel at the next
        :meth:`publish`.

        For a consumer that copies the bytes out (through :attr:`data`) within the same
        call that received the completion, so the buffer is never held: no claim
        bookkeeping. A buffer currently claimed is refused -- the kernel must never be
        handed memory a consumer still reads. Once per received chunk, hence the entry is
        packed through a memoryview (cheaper than item stores or the mmap itself) and
        the shared tail is stored once per batch, by :meth:`publish`.
        """
        bid = cqe_flags >> CQE_BUFFER_SHIFT
        if self._owned[bid]:
            raise RuntimeError(f"buffer {bid} recycled while the consumer holds it")
        tail = self._tail
        _BUF.pack_into(
            self._ring_view,
            (tail & self._mask) * 16,
            self._data_addr + bid * self.bufsize,
            self.bufsize,
            bid,
        )
        self._tail = (tail + 1) & 0xFFFF

    def publish(self) -> None:
        """Make every recycled buffer visible to the kernel (entries before the tail)."""
        self._tail16[7] = self._tail

    def kernel_head(self) -> int:
        """The kernel's consumer head for this ring (PBUF_STATUS, Linux 6.8+)."""
        status = _BufStatus(buf_group=self.bgid)
        _call(
            NR_IO_URING_REGISTER, self._ring.fd, REGISTER_PBUF_STATUS, ctypes.addressof(status), 1
        )
        return int(status.head)

    @property
    def tail(self) -> int:
        return self._tail

    def _unmap(self) -> None:
        self._tail16.release()
        self._ring_view.release()
        self._data.release()
        del self._anchors
        self._ring_mm.close()
        try:
            self._data_mm.close()
        except BufferError:
            pass  # a consumer still holds a view: unmapped when the last view dies

    def _close(self, unmap: bool) -> None:
        if not self._registered:
            return
        self._registered = False
        if not unmap:
            _UNSAFE_TO_UNMAP.append(self)
            return
        reg = _BufReg(bgid=self.bgid)
        try:
            _call(
                NR_IO_URING_REGISTER, self._ring.fd, UNREGISTER_PBUF_RING, ctypes.addressof(reg), 1
            )
        except OSError:
            _UNSAFE_TO_UNMAP.append(self)  # still registered: the kernel may write there
            return
        self._unmap()
