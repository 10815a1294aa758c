"""nagle: write-write-read stalls on the delayed ACK; TCP_NODELAY and writev do not."""

from __future__ import annotations

from ioreactor_tools.lab import nagle


def test_nagle_observations() -> None:
    results = {r.pattern: r for r in nagle.run(rounds=8)}
    stalled = results["write-write-read, Nagle on"]
    assert stalled.median_ms > nagle.DELAYED_ACK_MS / 2
    assert results["write-write-read, TCP_NODELAY"].median_ms * 10 < stalled.median_ms
    assert results["one sendmsg (writev), Nagle on"].median_ms * 10 < stalled.median_ms
    assert not nagle.report(list(results.values())).contradicted
