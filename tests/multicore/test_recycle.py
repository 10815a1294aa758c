"""Worker recycling: ``--max-requests N [--max-requests-jitter J]`` and ``--max-rss MiB``
replace a worker gracefully -- its replacement accepts before it retires -- and the log
says why. Under a steady load no request fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.cli_process import start_serve
from support.loopback_load import Load


@pytest.mark.timeout(60)
def test_max_requests_replaces_the_worker_without_a_failed_request(tmp_path: Path) -> None:
    server, port = start_serve(
        tmp_path, "--workers", "1", "--max-requests", "100", "--max-requests-jitter", "20"
    )
    with server:
        load = Load(tmp_path, port, duration=3.0, rate=300, conns=6)
        result = load.result()
        failed = result.failed()
        assert not failed, f"{result.outcomes(failed)}; first {failed[:5]}"
        log = server.log()
        limits = [int(n) for n in re.findall(r"requests \(--max-requests (\d+)\)", log)]
        assert len(limits) >= 3, log  # ~900 requests, one replacement per 100-120
        assert all(100 <= n <= 120 for n in limits), limits
        replaced = re.findall(r"ready, replacing pid \d+ \(max-requests\)", log)
        retired = re.findall(r"\(retired: max-requests\) exited with code 0", log)
        assert len(replaced) >= 3 and len(retired) >= 2, log
        assert server.stop() == 0


@pytest.mark.timeout(60)
def test_max_rss_replaces_a_worker_past_the_limit_and_logs_why(tmp_path: Path) -> None:
    server, _ = start_serve(tmp_path, "--workers", "1", "--max-rss", "1")  # any worker is
    with server:
        server.wait_for(r"starting its replacement \(max-rss: [\d.]+ MiB resident > 1 MiB\)")
        server.wait_for(r"\(retired: max-rss\) exited with code 0")
        assert server.stop() == 0
