"""udp-connect: only the connected socket hears ECONNREFUSED from a closed port."""

from __future__ import annotations

from ioreactor_tools.lab import udp_connect


def test_udp_connect_observations() -> None:
    r = udp_connect.run()
    assert r.unconnected_send == "ok" and r.unconnected_read == "timeout"
    assert r.connected_read == "ECONNREFUSED"
    assert r.foreign_to_connected == "timeout" and r.peer_to_connected == "data"
    assert not udp_connect.report(r).contradicted
