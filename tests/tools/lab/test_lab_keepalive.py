"""keepalive: probes keep an idle peer known alive, a silent peer is declared dead (in
namespaces, when permitted), and only the heartbeat notices a stopped process."""

from __future__ import annotations

import os
import subprocess

from ioreactor_tools.lab import keepalive


def test_keepalive_observations() -> None:
    result = keepalive.run(idle=1, interval=1, count=2)
    i, s = result.idle, result.silent
    assert i.with_keepalive.state == "ESTABLISHED"
    assert i.with_keepalive.last_ack_recv_ms < 1500, "probes were answered"
    assert i.without_keepalive.last_ack_recv_ms > 3000, "nothing crossed the idle link"
    assert i.stopped_peer.state == "ESTABLISHED" and i.stopped_peer.last_ack_recv_ms < 1500
    assert i.running_pong_ms is not None and i.stopped_pong_ms is None
    assert i.pong_after_resume
    if os.geteuid() == 0:
        assert s.unavailable is None
        assert s.error == "ETIMEDOUT" and s.detected_after_s is not None
        assert 2.0 < s.detected_after_s < 4.5
        assert s.without_keepalive == "ESTABLISHED"
        assert not keepalive.report(result).contradicted
    else:
        assert s.unavailable is not None
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"ka{os.getpid()}" not in leftover, "the lab deletes its namespaces"
