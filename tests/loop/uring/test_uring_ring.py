"""The minimal ring: each operation against the real kernel, on loopback sockets."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import select
import socket
import threading
import time

import pytest

from ioreactor.loop.uring import ring as ring_mod
from ioreactor.loop.uring.ring import CQE_F_BUFFER, CQE_F_MORE, Ring
from support.uring import tcp_pair, wait_for


def test_nop_round_trip_echoes_user_data(ring: Ring) -> None:
    for ud in (1, 2, (1 << 64) - 2):
        ring.prep_nop(ud)
    assert ring.sq_pending == 3
    out = wait_for(ring, 3)
    assert sorted(out) == [(1, 0, 0), (2, 0, 0), ((1 << 64) - 2, 0, 0)]
    assert ring.sq_pending == 0
    assert ring.in_flight == 0


def test_more_operations_than_sq_slots_are_all_submitted(ring: Ring) -> None:
    n = ring.sq_entries + 10
    for ud in range(n):
        ring.prep_nop(ud)
    out = wait_for(ring, n)
    assert sorted(ud for ud, _, _ in out) == list(range(n))


def test_timeout_completes_with_etime_after_its_delay(ring: Ring) -> None:
    start = time.monotonic()
    ring.prep_timeout(0.05, 7)
    [(ud, res, _)] = wait_for(ring, 1)
    assert (ud, res) == (7, -errno.ETIME)
    assert 0.045 <= time.monotonic() - start < 1.5


def test_counted_timeout_completes_with_zero_when_enough_others_complete(ring: Ring) -> None:
    ring.prep_timeout(10.0, 1, count=1)
    ring.prep_nop(2)
    out = wait_for(ring, 2)
    assert dict((ud, res) for ud, res, _ in out) == {1: 0, 2: 0}


def test_wait_timeout_returns_without_completions(ring: Ring) -> None:
    start = time.monotonic()
    ring.submit_and_wait(0.05)
    assert ring.reap([]) == 0
    assert 0.045 <= time.monotonic() - start < 1.5


def test_oneshot_poll_on_socketpair(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        ring.prep_poll_add(a.fileno(), select.POLLIN, 5)
        ring.submit_and_wait(0)
        assert ring.reap([]) == 0  # nothing to read yet
        b.send(b"x")
        [(ud, res, flags)] = wait_for(ring, 1)
        assert (ud, res & select.POLLIN, flags & CQE_F_MORE) == (5, select.POLLIN, 0)
        assert ring.in_flight == 0


def test_multishot_poll_fires_per_wakeup_until_removed(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        ring.prep_poll_add(a.fileno(), select.POLLIN, 5, multishot=True)
        for _ in range(3):
            b.send(b"x")
            [(ud, res, flags)] = wait_for(ring, 1)
            assert ud == 5 and res & select.POLLIN and flags & CQE_F_MORE
        assert ring.in_flight == 1
        ring.prep_poll_remove(5, 6)
        out = dict((ud, (res, flags)) for ud, res, flags in wait_for(ring, 2))
        assert out[6] == (0, 0)
        assert out[5][0] == -errno.ECANCELED and not out[5][1] & CQE_F_MORE
        assert ring.in_flight == 0


def test_cancel_by_user_data(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        ring.prep_poll_add(a.fileno(), select.POLLIN, 1)
        ring.submit_and_wait(0)
        ring.prep_cancel(1, 2)
        out = dict((ud, res) for ud, res, _ in wait_for(ring, 2))
        assert out == {1: -errno.ECANCELED, 2: 0}
        ring.prep_cancel(1, 3)  # nothing left to cancel
        assert wait_for(ring, 1)[0][:2] == (3, -errno.ENOENT)


def test_multishot_accept_yields_one_fd_per_connection(ring: Ring) -> None:
    with socket.create_server(("127.0.0.1", 0)) as lst:
        ring.prep_accept(lst.fileno(), 9, multishot=True)
        ring.submit_and_wait(0)
        clients = [socket.create_connection(lst.getsockname()) for _ in range(3)]
        out = wait_for(ring, 3)
        try:
            assert all(ud == 9 and flags & CQE_F_MORE for ud, _, flags in out)
            accepted = [socket.socket(fileno=res) for _, res, _ in out]
            peers = sorted(s.getpeername() for s in accepted)
            assert peers == sorted(c.getsockname() for c in clients)
            assert all(fcntl.fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK for s in accepted)
        finally:
            for s in clients + accepted:
                s.close()


def test_single_accept(ring: Ring) -> None:
    with socket.create_server(("127.0.0.1", 0)) as lst:
        ring.prep_accept(lst.fileno(), 1)
        with socket.create_connection(lst.getsockname()) as cli:
            [(_, fd, flags)] = wait_for(ring, 1)
            assert fd >= 0 and not flags & CQE_F_MORE
            with socket.socket(fileno=fd) as srv:
                assert srv.getpeername() == cli.getsockname()


def test_send_pins_a_bytearray_until_its_completion(ring: Ring) -> None:
    cli, srv = tcp_pair()
    with cli, srv:
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        cli.setblocking(False)
        filler = 0
        try:
            while True:  # fill the send path so the ring's send has to wait
                filler += cli.send(b"f" * 65536)
        except BlockingIOError:
            pass
        data = bytearray(os.urandom(200_000))
        ring.prep_send(cli.fileno(), data, 1)
        ring.submit_and_wait(0)
        assert ring.reap([]) == 0  # still in flight
        with pytest.raises(BufferError):
            data.extend(b"moving the memory the kernel reads would be a use-after-free")
        received = bytearray()
        out: list[tuple[int, int, int]] = []
        deadline = time.monotonic() + 5
        while not out and time.monotonic() < deadline:
            received += srv.recv(1 << 20)
            ring.submit_and_wait(0)
            ring.reap(out)
        [(ud, sent, _)] = out
        assert ud == 1 and 0 < sent <= len(data)  # a non-blocking socket may send short
        data.extend(b"!")  # unpinned with its completion
        srv.settimeout(2)
        while len(received) < filler + sent:
            received += srv.recv(1 << 20)
        assert received == b"f" * filler + data[:sent]


def test_sendmsg_gathers_buffers_in_one_operation(ring: Ring) -> None:
    cli, srv = tcp_pair()
    with cli, srv:
        parts: list[bytes | bytearray | memoryview] = [
            b"head:",
            bytearray(b"middle"),
            memoryview(b"--tail")[2:],  # read-only view: copied, then pinned
        ]
        ring.prep_sendmsg(cli.fileno(), parts, 3)
        [(ud, res, _)] = wait_for(ring, 1)
        assert (ud, res) == (3, len(b"head:middletail"))
        srv.settimeout(2)
        assert srv.recv(100) == b"head:middletail"


def test_pinned_user_data_must_be_unique_in_flight(ring: Ring) -> None:
    ring.prep_timeout(5.0, 1)
    with pytest.raises(ValueError, match="already has memory pinned"):
        ring.prep_timeout(5.0, 1)


def test_shutdown_and_close_through_the_ring(ring: Ring) -> None:
    cli, srv = tcp_pair()
    with srv:
        ring.prep_shutdown(cli.fileno(), socket.SHUT_WR, 1)
        assert wait_for(ring, 1)[0][:2] == (1, 0)
        srv.settimeout(2)
        assert srv.recv(10) == b""  # FIN seen
        fd = cli.detach()
        ring.prep_close(fd, 2)
        assert wait_for(ring, 1)[0][:2] == (2, 0)
        with pytest.raises(OSError) as exc:
            os.fstat(fd)
        assert exc.value.errno == errno.EBADF


# -- provided buffers ---------------------------------------------------------------------


def test_recv_through_buffer_ring_random_sizes_every_byte(ring: Ring) -> None:
    """Random chunk sizes, buffers held for random spans and released out of order.

    Checks: the stream arrives intact; a held buffer's bytes never change while held
    (the kernel does not reuse it in flight); the kernel's head agrees with our count.
    """
    rng = random.Random(8)
    payload = rng.randbytes(600_000)
    br = ring.register_buffer_ring(bgid=1, nbufs=8, bufsize=4096)
    cli, srv = tcp_pair()
    sender = threading.Thread(target=_send_in_random_chunks, args=(cli, payload, rng.random()))
    sender.start()
    received = bytearray()
    held: dict[int, bytes] = {}  # bid -> snapshot taken at claim time
    eof = False
    dry = 0  # completions that found the ring empty
    deadline = time.monotonic() + 10
    try:
        while not eof:
            assert time.monotonic() < deadline, f"stalled at {len(received)} bytes"
            ring.prep_recv(srv.fileno(), br, 1)
            [(_, res, flags)] = wait_for(ring, 1)
            if flags & CQE_F_BUFFER:
                bid = br.claim(flags)  # raises if the kernel re-delivered a held buffer
                assert bid not in held
                chunk = bytes(br.view(bid, max(res, 0)))
                received += chunk
                held[bid] = chunk
            if res == -errno.ENOBUFS:
                assert len(held) == br.nbufs
                dry += 1
            else:
                assert res >= 0, os.strerror(-res)
                eof = res == 0
            # Release a random subset in random order; always some when the ring ran dry.
            if held and (rng.random() < 0.3 or res == -errno.ENOBUFS):
                for bid in rng.sample(sorted(held), rng.randint(1, len(held))):
                    assert bytes(br.view(bid, len(held[bid]))) == held[bid]
                    br.release(bid)
                    del held[bid]
            assert (br.tail - br.kernel_head()) & 0xFFFF == br.nbufs - br.held
    finally:
        sender.join(5)
        cli.close()
        srv.close()
    assert dry > 0, "the ring never ran dry: the hazard path went untested"
    assert bytes(received) == payload


def _send_in_random_chunks(sock: socket.socket, payload: bytes, seed: float) -> None:
    rng = random.Random(seed)
    i = 0
    while i < len(payload):
        n = rng.choice((1, 7, 100, 1500, 4095, 4096, 4097, 9000, 30000))
        sock.sendall(payload[i : i + n])
        i += n
        if rng.random() < 0.05:
            time.sleep(0.001)  # let the reader catch up and see short reads
    sock.shutdown(socket.SHUT_WR)


def test_enobufs_when_the_ring_runs_dry_then_recovers(ring: Ring) -> None:
    br = ring.register_buffer_ring(bgid=2, nbufs=2, bufsize=16)
    cli, srv = tcp_pair()
    with cli, srv:
        cli.sendall(b"A" * 16 + b"B" * 16 + b"C" * 5)
        time.sleep(0.05)
        bids = []
        for ud in (1, 2):
            ring.prep_recv(srv.fileno(), br, ud)
            [(_, res, flags)] = wait_for(ring, 1)
            assert res == 16
            bids.append(br.claim(flags))
        assert [bytes(br.view(b, 16)) for b in bids] == [b"A" * 16, b"B" * 16]
        ring.prep_recv(srv.fileno(), br, 3)
        [(ud, res, flags)] = wait_for(ring, 1)
        assert (ud, res, flags & CQE_F_BUFFER) == (3, -errno.ENOBUFS, 0)
        br.release(bids[0])
        ring.prep_recv(srv.fileno(), br, 4)
        [(ud, res, flags)] = wait_for(ring, 1)
        assert (ud, res) == (4, 5)
        bid = br.claim(flags)
        assert bid == bids[0]  # the only buffer the kernel had
        assert bytes(br.view(bid, res)) == b"C" * 5
        assert bytes(br.view(bids[1], 16)) == b"B" * 16  # still held, untouched


def test_buffer_ownership_misuse_is_refused(ring: Ring) -> None:
    br = ring.register_buffer_ring(bgid=3, nbufs=4, bufsize=64)
    with pytest.raises(RuntimeError, match="released twice or never claimed"):
        br.release(0)
    with pytest.raises(RuntimeError, match="not claimed"):
        br.view(0, 1)
    with pytest.raises(ValueError, match="no buffer"):
        br.claim(0)
    bid = br.claim(CQE_F_BUFFER | (2 << 16))
    assert bid == 2
    with pytest.raises(RuntimeError, match="delivered again"):
        br.claim(CQE_F_BUFFER | (2 << 16))
    with pytest.raises(ValueError, match="power of two"):
        ring.register_buffer_ring(bgid=4, nbufs=3, bufsize=64)


def test_recv_after_peer_reset_keeps_buffers_accounted(ring: Ring) -> None:
    br = ring.register_buffer_ring(bgid=5, nbufs=4, bufsize=1024)
    cli, srv = tcp_pair()
    with srv:
        payload = os.urandom(3000)
        cli.sendall(payload)
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        cli.close()  # linger 0: RST
        received = bytearray()
        for ud in range(1, 20):
            ring.prep_recv(srv.fileno(), br, ud)
            [(_, res, flags)] = wait_for(ring, 1)
            if flags & CQE_F_BUFFER:
                bid = br.claim(flags)
                received += br.view(bid, max(res, 0))
                br.release(bid)
            if res <= 0:
                assert res in (0, -errno.ECONNRESET)
                break
        assert payload.startswith(received)
        assert br.held == 0
        assert (br.tail - br.kernel_head()) & 0xFFFF == br.nbufs


# -- lifecycle, threads -------------------------------------------------------------------


def test_close_cancels_in_flight_operations_first(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        br = ring.register_buffer_ring(bgid=6, nbufs=2, bufsize=64)
        ring.prep_recv(a.fileno(), br, 1)
        ring.prep_poll_add(a.fileno(), select.POLLIN, 2, multishot=True)
        ring.prep_timeout(30.0, 3)
        ring.submit_and_wait(0)
        assert ring.in_flight == 3
        ring.close()
        assert ring.in_flight == 0
        assert ring.closed
        with pytest.raises(ValueError, match="closed"):
            ring.prep_nop(1)


def test_ring_binds_to_the_first_thread_that_enters_it(ring: Ring) -> None:
    if not ring.setup_flags & ring_mod.SETUP_SINGLE_ISSUER:
        pytest.skip("kernel without SINGLE_ISSUER: no thread binding to test")
    results: list[object] = []

    def use() -> None:
        ring.prep_nop(1)
        results.append(wait_for(ring, 1))

    t = threading.Thread(target=use)
    t.start()
    t.join(5)
    assert results == [[(1, 0, 0)]]  # built in this thread, used in that one
    ring.prep_nop(2)
    with pytest.raises(OSError, match="bound to the thread") as exc:
        ring.submit_and_wait(0)
    assert exc.value.errno == errno.EEXIST


# -- what the completion backend adds --------------------------------------------------------


def test_multishot_recv_keeps_delivering_until_cancelled(ring: Ring) -> None:
    br = ring.register_buffer_ring(3, 8, 1024)
    cli, srv = tcp_pair()
    with cli, srv:
        ring.prep_recv(srv.fileno(), br, 1, multishot=True)
        ring.submit_and_wait(0)
        got = bytearray()
        for i in range(5):
            cli.sendall(b"%d" % i * 100)
            for ud, res, flags in wait_for(ring, 1):
                assert ud == 1 and flags & CQE_F_MORE and flags & CQE_F_BUFFER
                start = (flags >> ring_mod.CQE_BUFFER_SHIFT) * br.bufsize
                got += br.data[start : start + res]
                br.recycle(flags)
                br.publish()
        assert bytes(got) == b"".join(b"%d" % i * 100 for i in range(5))
        ring.prep_cancel(1, 2)
        out = wait_for(ring, 2)
        assert dict((ud, res) for ud, res, _ in out) == {1: -errno.ECANCELED, 2: 0}
        assert br.held == 0


def test_recycle_refuses_a_buffer_the_consumer_holds(ring: Ring) -> None:
    br = ring.register_buffer_ring(4, 4, 64)
    bid = br.claim(CQE_F_BUFFER | (1 << 16))
    with pytest.raises(RuntimeError, match="recycled while the consumer holds it"):
        br.recycle(CQE_F_BUFFER | (bid << 16))


def test_send_at_reads_caller_pinned_memory(ring: Ring) -> None:
    cli, srv = tcp_pair()
    with cli, srv:
        data = random.Random(1).randbytes(5000)
        ring.prep_send_at(
            srv.fileno(), id(data) + ring_mod.BYTES_DATA_OFFSET, len(data), 9, socket.MSG_NOSIGNAL
        )
        [(ud, res, _)] = wait_for(ring, 1)
        assert (ud, res) == (9, len(data))
        got = bytearray()
        while len(got) < len(data):
            got += cli.recv(65536)
        assert bytes(got) == data


def test_close_performs_close_requests_that_were_never_submitted() -> None:
    r = Ring(8)
    a, b = socket.socketpair()
    fd = a.detach()
    r.prep_close(fd, 1)
    r.close()  # never entered: the CLOSE SQE was not submitted, the fd is closed anyway
    with pytest.raises(OSError):
        os.fstat(fd)
    assert b.recv(1) == b""  # the peer sees the close
    b.close()
