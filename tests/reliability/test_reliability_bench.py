"""The soak and slowloris benchmarks in a tiny mode: they run, check, and report.

Real runs are benchmarks (minutes, thousands of connections; docs/reliability.md has
the figures); these only show, in seconds, that every part works end to end: servers
start and stop with status 0, each kind of traffic is checked, slow connections end at
the header timeout, the JSON and the PNG are written, and no error is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ioreactor_tools.bench.soak import SoakConfig, parse_mix
from support.cli_process import run_cli

TINY_TIMEOUT = 120


def bench(tmp_path: Path, *args: str) -> tuple[dict[str, object], str]:
    done = run_cli("bench", *args, "--out", str(tmp_path), timeout=TINY_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (result,) = [p for p in tmp_path.glob("*.json") if not p.name.startswith("soak-lag")]
    data: dict[str, object] = json.loads(result.read_text())
    return data, output


def test_soak_tiny(tmp_path: Path) -> None:
    data, output = bench(
        tmp_path,
        "soak",
        "--conns", "50",
        "--duration", "3",
        "--workers", "1",
        "--think", "0.05",
        "--header-timeout", "1",
        "--slow-interval", "0.2",
        "--sample", "0.5",
    )  # fmt: skip
    served = data["served"]
    assert isinstance(served, dict)
    assert all(served.get(kind, 0) > 0 for kind in ("keepalive", "pipelined", "echo")), served
    assert data["errors"] == {}
    slow = data["slow"]
    assert isinstance(slow, dict)
    assert slow["closed_408"] > 0 and slow["early"] == 0 and slow["overdue"] == 0
    assert data["server_status"] == {"http": 0, "echo": 0}
    assert isinstance(data["png"], str) and Path(data["png"]).stat().st_size > 0
    assert "unexplained errors: none" in output


def test_slowloris_tiny(tmp_path: Path) -> None:
    data, output = bench(
        tmp_path,
        "slowloris",
        "--slow", "50",
        "--conns", "10",
        "--duration", "2",
        "--header-timeout", "1",
        "--interval", "0.2",
        "--load", "ioreactor",
    )  # fmt: skip
    assert data["every_slow_connection_closed"] is True
    tally = data["tally"]
    assert isinstance(tally, dict)
    # A slow connection still sending its method when the header timeout expires is
    # closed silently by the idle deadline (nothing to answer yet); the rest get a 408.
    assert tally["opened"] >= 50
    assert tally["closed_408"] + tally["closed_silent"] == tally["opened"]
    assert tally["closed_408"] >= tally["opened"] // 2
    for phase in ("baseline", "attacked"):
        run = data[phase]
        assert isinstance(run, dict)
        assert run["requests"] > 0 and run["errors"] == {}
    assert "every slow connection closed by the header timeout: yes" in output


def test_soak_mix_and_counts() -> None:
    assert parse_mix("keepalive=1,echo=3") == {"keepalive": 1.0, "echo": 3.0}
    with pytest.raises(ValueError):
        parse_mix("keepalive=1,websocket=1")
    config = SoakConfig(
        conns=20_000, mix=parse_mix("keepalive=0.45,pipelined=0.15,slow=0.1,echo=0.3")
    )
    counts = config.counts()
    assert sum(counts.values()) == 20_000
    assert counts == {"keepalive": 9000, "pipelined": 3000, "slow": 2000, "echo": 6000}
    assert config.processes == 4  # no load process holds more than 5,000 connections
    odd = SoakConfig(conns=7, mix={"keepalive": 1, "echo": 1})
    assert sum(odd.counts().values()) == 7
    with pytest.raises(ValueError):
        SoakConfig(mix={"echo": 0})
