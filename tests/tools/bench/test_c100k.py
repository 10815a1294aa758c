"""The C100K engine at a reduced scale (2,000 connections), on real processes and sockets:
every connection served twice from the planned source addresses; a server that runs out
of fds shows in the errors and in what the report says limited the run; and the plan
against the kernel's limits, as numbers.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from ioreactor_tools.bench.c100k import (
    KernelLimits,
    make_plan,
    run_c100k,
)

#: This machine's limits as the bench reads them; the plan tests use fixed numbers.
LIMITS = KernelLimits(
    nofile=20_000,
    file_max=2_000_000,
    nr_open=1_048_576,
    somaxconn=4096,
    syn_backlog=2048,
    port_range=(32768, 60999),
    conntrack_max=262_144,
    mem_available=16 * 2**30,
)


def test_the_plan_for_100k_keeps_every_process_under_its_fd_limit() -> None:
    plan = make_plan(100_000, LIMITS)
    assert plan.workers >= 6 and plan.load_procs >= 6  # 20,000 fds per process
    assert plan.per_worker() < LIMITS.nofile and plan.per_load_process() < LIMITS.nofile
    assert len(plan.sources) >= plan.load_procs
    # Each source under the half of the ports connect() searches first.
    assert plan.conns / len(plan.sources) < LIMITS.ports_per_source / 2
    assert len(set(plan.sources)) == len(plan.sources)
    assert all(s.startswith("127.0.0.") and s != "127.0.0.1" for s in plan.sources)
    assert plan.problems(LIMITS) == []


def test_the_plan_names_the_limit_it_would_break() -> None:
    few_workers = make_plan(100_000, LIMITS, workers=2)
    assert any("more --workers" in p for p in few_workers.problems(LIMITS))
    one_source = make_plan(100_000, LIMITS, load_procs=6, sources=1)
    assert any("ephemeral ports" in p for p in one_source.problems(LIMITS))
    small_conntrack = replace(LIMITS, conntrack_max=65_536)
    assert any(
        "nf_conntrack_max" in p for p in make_plan(100_000, LIMITS).problems(small_conntrack)
    )
    small_backlog = replace(LIMITS, somaxconn=128)
    assert any("somaxconn" in p for p in make_plan(1000, LIMITS).problems(small_backlog))
    with pytest.raises(ValueError):
        make_plan(10, LIMITS, load_procs=0)


def test_the_limits_are_read_from_this_kernel() -> None:
    limits = KernelLimits.read()
    assert limits.nofile >= 1024 and limits.somaxconn >= 1
    assert limits.ports_per_source > 0 and limits.file_max > 0
    names = [name for name, _ in limits.rows()]
    assert "net.core.somaxconn" in names and "net.ipv4.ip_local_port_range" in names


@pytest.mark.timeout(90)
def test_2000_connections_each_served_twice_from_their_source_addresses() -> None:
    plan = make_plan(2000, KernelLimits.read(), workers=2, load_procs=2, sources=2)
    report = run_c100k(plan, idle=0.5, progress=False)
    load = report.load
    assert load.errors == {}
    assert (load.connected, load.served_first, load.served_again) == (2000, 2000, 2000)
    assert report.ok
    # bind() before connect: the kernel used exactly the planned sources, half each.
    assert load.by_source == {"127.0.0.2": 1000, "127.0.0.3": 1000}
    # Both workers hold connections (SO_REUSEPORT spread), the supervisor none.
    assert len(report.worker_fds) == 3
    assert sorted(report.worker_fds)[1] > 500
    assert report.held.fds >= 2000
    assert report.rss_per_connection > 0
    kernel = report.kernel_memory_per_connection
    assert kernel is None or kernel > 1024  # a socket's kernel objects take KiBs
    assert report.shortfall() == []


@pytest.mark.timeout(90)
def test_a_server_out_of_fds_shows_in_the_errors_and_the_limit_named() -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux) to lower the server's fd limit")
    plan = make_plan(1500, KernelLimits.read(), workers=1, load_procs=1, sources=1)
    report = run_c100k(
        plan, idle=0.2, progress=False, server_prefix=["prlimit", "--nofile=1000:1000"]
    )
    assert not report.ok
    assert report.load.connected == 1500  # the kernel accepts; the worker cannot hold them
    assert report.load.served_again < 1000
    assert report.load.error_count >= 500
    limited = "\n".join(report.shortfall())
    assert "out of fds" in limited or "reset connections" in limited, limited
