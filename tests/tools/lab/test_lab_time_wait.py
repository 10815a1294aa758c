"""time-wait: TIME_WAIT on the active closer; EADDRINUSE unless SO_REUSEADDR."""

from __future__ import annotations

from ioreactor_tools.lab import time_wait


def test_time_wait_observations() -> None:
    result = time_wait.run(connections=5)
    c = result.closers
    assert (c.client_closes_client_tw, c.client_closes_server_tw) == (1, 0)
    assert (c.server_closes_client_tw, c.server_closes_server_tw) == (0, 1)
    assert c.linger_zero_closer_tw == 0
    assert result.many_client_tw == 5
    outcomes = {(r.old_reuseaddr, r.new_reuseaddr): r for r in result.rebinds}
    assert all(r.time_wait_on_port == 1 for r in result.rebinds), "TIME_WAIT seen on the port"
    assert outcomes[False, False].error == "EADDRINUSE"
    assert outcomes[True, False].error == "EADDRINUSE"
    assert outcomes[True, True].error is None
    report = time_wait.report(result)
    assert not report.contradicted
    assert any("--lifetime" in note for note in report.notes)
