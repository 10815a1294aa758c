"""half-close: the half-closed side still receives; the closed side provokes RST/EPIPE."""

from __future__ import annotations

from ioreactor_tools.lab import half_close


def test_half_close_observations() -> None:
    result = half_close.run(answer_bytes=1 << 20)
    s, c, r = result.shutdown, result.close, result.refcount
    assert s.server_saw_eof_after == len(half_close.REQUEST)
    assert (s.client_state, s.server_state) == ("FIN_WAIT2", "CLOSE_WAIT")
    assert s.answer_received == s.answer_sent == 1 << 20
    assert s.client_write_error == "EPIPE"
    assert c.server_saw_eof_after == len(half_close.REQUEST)
    assert c.writes_accepted == 1 and c.write_error in ("EPIPE", "ECONNRESET")
    assert not r.eof_after_close_of_one_copy and r.eof_after_shutdown
    assert not half_close.report(result).contradicted
