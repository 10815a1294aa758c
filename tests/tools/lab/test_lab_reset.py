"""reset: EPIPE after the peer closed, SIGPIPE kills, ECONNRESET, SO_LINGER 0 loses data."""

from __future__ import annotations

import signal

from ioreactor_tools.lab import reset


def test_reset_observations() -> None:
    r = reset.run()
    assert r.writes_after_close[0].endswith("bytes")
    assert r.writes_after_close[1:] == ["EPIPE", "EPIPE"]
    assert r.sigpipe_status == -signal.SIGPIPE
    assert r.write_then_read[1] == "EOF (0)"
    assert r.after_reset[0] == "ECONNRESET"
    sent, received, ending = r.graceful
    assert received == sent and ending == "EOF"
    sent, received, ending = r.abortive
    assert received < sent and ending == "ECONNRESET"
    assert not reset.report(r).contradicted
