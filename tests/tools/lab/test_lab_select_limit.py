"""select-limit: select refuses a descriptor >= FD_SETSIZE; poll and epoll take it."""

from __future__ import annotations

import resource

from ioreactor_tools.lab import select_limit


def test_select_limit_observations() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = select_limit.run(sizes=(100, 2000), calls=30)
    h = result.high
    assert h.fd is not None and h.fd >= select_limit.FD_SETSIZE
    assert h.select_low_fd == "ready"
    assert h.select_high_fd.startswith("ValueError")
    assert (h.poll_high_fd, h.epoll_high_fd) == ("ready", "ready")
    small, large = result.costs
    assert small.select_us is not None and large.select_us is None
    assert large.poll_us > 5 * small.poll_us, "poll pays per watched descriptor"
    assert large.epoll_us < 3 * small.epoll_us, "epoll pays per ready descriptor"
    assert not select_limit.report(result).contradicted
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[1] == before[1]
