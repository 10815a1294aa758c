"""copies: every byte arrives each way; sendfile costs the sender less CPU where the
copies dominate (a Unix stream socket)."""

from __future__ import annotations

import os

from ioreactor_tools.lab import copies


def test_copies_observations() -> None:
    affinity = os.sched_getaffinity(0)
    transfers = copies.run(total_mib=64, file_mib=8)
    assert os.sched_getaffinity(0) == affinity, "the lab restores the thread's CPU set"
    assert {(t.transport, t.method) for t in transfers} == {
        (transport, method) for transport in copies.TRANSPORTS for method in copies.METHODS
    }
    for t in transfers:
        assert t.received == t.total == 64 * copies.MIB
        assert len(t.rounds) == 8
    unix = {t.method: t for t in transfers if t.transport == "unix stream"}
    assert unix["sendfile"].cpu_us_per_mib < unix["read + send"].cpu_us_per_mib
    assert not copies.report(transfers).contradicted
