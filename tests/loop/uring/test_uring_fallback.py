"""io_uring missing or forbidden: a clear UringUnavailable, never a crash or a hang."""

from __future__ import annotations

import ctypes
import errno
import gc
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from ioreactor.loop.backends import new_loop
from ioreactor.loop.uring import create_loop
from ioreactor.loop.uring import ring as ring_mod
from ioreactor.loop.uring.ring import Ring, UringUnavailable
from ioreactor.testing import open_fds

RealSyscall = Callable[..., int]


def settled_fds() -> int:
    """Open fds once sockets dropped by earlier tests are collected (a collection during
    the test would close them and skew the count)."""
    gc.collect()
    return open_fds()


def _failing_setup(err: int, calls: list[int]) -> Callable[..., int]:
    """A syscall entry whose io_uring_setup fails with ``err`` (errno set like libc does)."""
    real: RealSyscall = ring_mod._syscall

    def fake(nr: int, *args: int) -> int:
        if nr == ring_mod.NR_IO_URING_SETUP:
            calls.append(nr)
            ctypes.set_errno(err)
            return -1
        return real(nr, *args)

    return fake


@pytest.fixture
def sysctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Point the io_uring_disabled / io_uring_group sysctls at files the test writes."""

    def set_value(disabled: int) -> None:
        (tmp_path / "disabled").write_text(f"{disabled}\n")
        (tmp_path / "group").write_text("4242\n")
        monkeypatch.setattr(ring_mod, "IO_URING_DISABLED_SYSCTL", str(tmp_path / "disabled"))
        monkeypatch.setattr(ring_mod, "IO_URING_GROUP_SYSCTL", str(tmp_path / "group"))

    return set_value


def test_enosys_means_no_io_uring_in_this_kernel(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int], None]
) -> None:
    sysctl(0)
    calls: list[int] = []
    monkeypatch.setattr(ring_mod, "_syscall", _failing_setup(errno.ENOSYS, calls))
    with pytest.raises(UringUnavailable) as exc:
        Ring()
    assert exc.value.errno == errno.ENOSYS
    assert "no io_uring" in str(exc.value) and "seccomp" in str(exc.value)
    assert calls == [ring_mod.NR_IO_URING_SETUP]


def test_eperm_under_io_uring_disabled_1_names_the_group(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int], None]
) -> None:
    sysctl(1)
    monkeypatch.setattr(ring_mod, "_syscall", _failing_setup(errno.EPERM, []))
    with pytest.raises(UringUnavailable, match=r"io_uring_disabled=1.*gid 4242") as exc:
        Ring()
    assert exc.value.errno == errno.EPERM


def test_eperm_without_the_sysctl_blames_seccomp_or_lsm(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int], None]
) -> None:
    sysctl(0)
    monkeypatch.setattr(ring_mod, "_syscall", _failing_setup(errno.EPERM, []))
    with pytest.raises(UringUnavailable, match="seccomp filter or an LSM"):
        Ring()


def test_io_uring_disabled_2_refuses_without_calling_the_kernel(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int], None]
) -> None:
    sysctl(2)
    calls: list[int] = []
    monkeypatch.setattr(ring_mod, "_syscall", _failing_setup(errno.EPERM, calls))
    with pytest.raises(UringUnavailable, match="io_uring_disabled=2"):
        Ring()
    assert calls == []


def test_einval_falls_back_to_an_older_flag_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that rejects SINGLE_ISSUER (pre-6.0) still gets a working ring."""
    real: RealSyscall = ring_mod._syscall
    tried: list[int] = []

    def fake(nr: int, *args: int) -> int:
        if nr == ring_mod.NR_IO_URING_SETUP:
            flags = ring_mod._Params.from_address(args[1]).flags
            tried.append(flags)
            if flags & (ring_mod.SETUP_SINGLE_ISSUER | ring_mod.SETUP_DEFER_TASKRUN):
                ctypes.set_errno(errno.EINVAL)
                return -1
        return real(nr, *args)

    monkeypatch.setattr(ring_mod, "_syscall", fake)
    try:
        r = Ring(8)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")
    with r:
        assert len(tried) == 3
        assert r.setup_flags & ring_mod.SETUP_COOP_TASKRUN
        assert not r.setup_flags & ring_mod.SETUP_SINGLE_ISSUER
        r.prep_nop(1)
        r.submit_and_wait(1.0)
        out: list[tuple[int, int, int]] = []
        r.reap(out)
        assert out == [(1, 0, 0)]


#: Installs a seccomp filter answering io_uring_setup with errno argv[1], then runs on.
_SECCOMP_FILTER = textwrap.dedent(
    """
    import ctypes, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    err = int(sys.argv[1])
    # BPF: load seccomp_data.nr; io_uring_setup -> ERRNO(err); everything else -> ALLOW
    prog = [
        (0x20, 0, 0, 0),
        (0x15, 0, 1, 425),
        (0x06, 0, 0, 0x00050000 | err),
        (0x06, 0, 0, 0x7FFF0000),
    ]
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    filt = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(filt))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    assert libc.prctl(38, 1, 0, 0, 0) == 0, ctypes.get_errno()  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0, ctypes.get_errno()  # FILTER
    """
)

_SECCOMP_CHILD = _SECCOMP_FILTER + textwrap.dedent(
    """
    from ioreactor.loop.uring.ring import Ring, UringUnavailable
    try:
        Ring()
    except UringUnavailable as exc:
        print(exc.errno, exc.strerror)
    else:
        print("ring created despite seccomp")
    """
)

#: The completion-mode loop asked for by name under the filter; the default loop after.
_SECCOMP_LOOP_CHILD = _SECCOMP_FILTER + textwrap.dedent(
    """
    import socket
    from ioreactor.echo import EchoHandler
    from ioreactor.loop.backends import new_loop
    from ioreactor.loop.uring import UringUnavailable
    from ioreactor.net.server import TcpServer
    try:
        new_loop("uring")
    except UringUnavailable as exc:
        print(exc.errno, exc.strerror)
    else:
        print("0 loop created despite seccomp")
    loop = new_loop()
    server = TcpServer(loop, ("127.0.0.1", 0), EchoHandler()).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
        c.sendall(b"ok")
        c.setblocking(False)
        got = b""
        while not got:
            loop.run_once(0.1)
            try:
                got = c.recv(2)
            except BlockingIOError:
                pass
    print(loop.poller.name, got.decode())
    """
)


@pytest.mark.parametrize(
    ("err", "words"),
    [(errno.ENOSYS, "seccomp filter hides"), (errno.EPERM, "seccomp filter or an LSM")],
)
def test_real_seccomp_filter_in_a_child_process(err: int, words: str) -> None:
    disabled = ring_mod._read_sysctl(ring_mod.IO_URING_DISABLED_SYSCTL)
    if disabled not in (None, 0):
        pytest.skip("io_uring_disabled is set here; the EPERM wording would differ")
    proc = subprocess.run(
        [sys.executable, "-c", _SECCOMP_CHILD, str(err)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code, _, reason = proc.stdout.strip().partition(" ")
    assert int(code) == err
    assert words in reason


def test_completion_loop_refused_by_seccomp_names_the_reason_and_epoll_still_serves() -> None:
    disabled = ring_mod._read_sysctl(ring_mod.IO_URING_DISABLED_SYSCTL)
    if disabled not in (None, 0):
        pytest.skip("io_uring_disabled is set here; the EPERM wording would differ")
    proc = subprocess.run(
        [sys.executable, "-c", _SECCOMP_LOOP_CHILD, str(errno.EPERM)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    refusal, served = proc.stdout.strip().splitlines()
    code, _, reason = refusal.partition(" ")
    assert int(code) == errno.EPERM and "seccomp filter or an LSM" in reason
    assert served == "epoll ok"


def test_completion_loop_without_io_uring_raises_and_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, sysctl: Callable[[int], None]
) -> None:
    sysctl(0)
    before = settled_fds()
    monkeypatch.setattr(ring_mod, "_syscall", _failing_setup(errno.ENOSYS, []))
    with pytest.raises(UringUnavailable, match="no io_uring") as exc:
        create_loop()
    assert exc.value.errno == errno.ENOSYS
    assert open_fds() == before
    default = new_loop()  # the default never touches io_uring
    assert default.poller.name == "epoll"
    default.close()


def test_completion_loop_without_provided_buffer_rings_says_so_and_closes_the_ring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 5.11..5.18 kernel has io_uring but not PBUF_RING: register answers EINVAL."""
    real: RealSyscall = ring_mod._syscall

    def no_pbuf_ring(nr: int, *args: int) -> int:
        if nr == ring_mod.NR_IO_URING_REGISTER and args[1] == ring_mod.REGISTER_PBUF_RING:
            ctypes.set_errno(errno.EINVAL)
            return -1
        return real(nr, *args)

    before = settled_fds()
    monkeypatch.setattr(ring_mod, "_syscall", no_pbuf_ring)
    with pytest.raises(UringUnavailable, match=r"5\.19"):
        create_loop()
    assert open_fds() == before  # the ring (and its mmap dups) closed again
