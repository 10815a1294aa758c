"""The cluster test: three ``ioreactor serve`` hosts behind nginx, then HAProxy, under a
steady load of keep-alive GETs and POSTs from a client host, through real faults.

Every host is a network namespace on one bridge (:mod:`support.cluster`), the balancers
run on the very files under ``deploy/`` (docs/deploy.md), and the load counts every
request (:mod:`ioreactor_tools.bench.cluster_load`). A scenario acts on the hosts during
the load and then judges the record of every request:

steady    nothing happens: zero failed requests
sigterm   SIGTERM to one host: it finishes its requests and exits 0; the balancer moves
          to the other two; zero failed requests
sigkill   SIGKILL to one host (all its processes): only requests in flight at the kill
          may fail, and no GET (the balancers retry idempotent requests); the host is
          restarted and serves requests again before the load ends
reload    a rolling SIGHUP reload of every host, one after another: new workers take
          the listeners, the old ones finish and exit: zero failed requests

The servers run with ``--drain-delay``: on SIGTERM /healthz answers 503 at once and the
server keeps serving until HAProxy's health check has taken it out. The fronts: nginx
and HAProxy passing the client's address in X-Forwarded-For (the servers trust it from
the balancer, ``--proxy-headers``), and HAProxy with PROXY protocol v2 (the deploy
file's ``send-proxy-v2``; the servers run ``--proxy-protocol``). In each, the address
the application itself sees is the client's. Needs root for the namespaces (skipped
quoting the kernel's refusal otherwise), and Debian's nginx and haproxy packages
(skipped naming them when absent).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ioreactor_tools.bench.cluster_load import ClusterLoadResult
from support.cluster import (
    APP_PORT,
    APPS,
    TOPOLOGY,
    Cluster,
    LoadRun,
    deployed_servers,
    haproxy_config,
    nginx_site,
)
from support.haproxy import haproxy_program
from support.netns import network_or_skip
from support.nginx import nginx_program

#: The load: requests per second over keep-alive connections, for this many seconds.
RATE = 300.0
CONNS = 6
#: Seconds into the load when a scenario acts (the balancer has seen every host by then).
ACT_AT = 1.5
#: Seconds for a stopped server to exit, and for the load to finish after its duration.
EXIT_TIMEOUT = 10.0
LOAD_SLACK = 15.0
THE_HOST = "app2"


@dataclass(frozen=True)
class Front:
    """A balancer set-up: the program, whether it speaks PROXY protocol to the servers,
    and the servers' extra flags for it."""

    name: str
    balancer: str
    proxy_protocol: bool = False
    server_args: tuple[str, ...] = ()


#: The servers trust the balancer's forwarding headers, or its PROXY header.
FORWARDED = ("--proxy-headers", "--proxy-allow-ips", TOPOLOGY["lb"])
PROXIED = ("--proxy-protocol", "--proxy-allow-ips", TOPOLOGY["lb"])
FRONTS = [
    Front("nginx", "nginx", server_args=FORWARDED),
    Front("haproxy", "haproxy", server_args=FORWARDED),
    Front("haproxy-proxy-v2", "haproxy", proxy_protocol=True, server_args=PROXIED),
]


@pytest.fixture(params=FRONTS, ids=[f.name for f in FRONTS])
def front(request: pytest.FixtureRequest) -> Front:
    chosen: Front = request.param
    if chosen.balancer == "nginx":  # or skip, naming the package
        nginx_program()
    else:
        haproxy_program()
    return chosen


@pytest.fixture
def cluster(front: Front, tmp_path: Path) -> Iterator[Cluster]:
    with network_or_skip(TOPOLOGY) as network:
        cluster = Cluster(
            network,
            tmp_path,
            front.balancer,
            proxy_protocol=front.proxy_protocol,
            server_args=front.server_args,
        )
        try:
            cluster.start_servers()
            cluster.start_balancer()
            yield cluster
        finally:
            cluster.stop()


# -- the scenarios ------------------------------------------------------------------------


@dataclass
class Events:
    """What a scenario did, when (CLOCK_MONOTONIC), for its check."""

    moments: dict[str, float] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    duration: float
    act: Callable[[Cluster, LoadRun, Events], None]
    check: Callable[[Cluster, ClusterLoadResult, Events], None]


def no_failures(result: ClusterLoadResult) -> None:
    failed = result.failed()
    assert not failed, f"{len(failed)} failed: {result.outcomes(failed)}; first {failed[:5]}"


def nothing(cluster: Cluster, load: LoadRun, events: Events) -> None:
    pass


def check_steady(cluster: Cluster, result: ClusterLoadResult, events: Events) -> None:
    no_failures(result)
    for name, app in cluster.apps.items():
        assert app.served() > 0, f"{name} served nothing: the balancer never used it"


def sigterm_one(cluster: Cluster, load: LoadRun, events: Events) -> None:
    app = cluster.apps[THE_HOST]
    events.moments["sigterm"] = load.sleep_until(ACT_AT)
    app.process.send_signal(signal.SIGTERM)
    events.values["status"] = app.process.wait(EXIT_TIMEOUT)
    events.moments["exited"] = time.monotonic()
    events.values["others_before"] = {n: cluster.apps[n].served() for n in APPS if n != THE_HOST}


def check_sigterm(cluster: Cluster, result: ClusterLoadResult, events: Events) -> None:
    assert events.values["status"] == 0, cluster.apps[THE_HOST].process.output()[-2000:]
    no_failures(result)
    after = result.select(sent_after=events.moments["exited"])
    assert len(after) > RATE, "the load went on after the host left"
    for name, before in events.values["others_before"].items():
        assert cluster.apps[name].served() > before, f"{name} took no requests after it"


def sigkill_one(cluster: Cluster, load: LoadRun, events: Events) -> None:
    app = cluster.apps[THE_HOST]
    events.moments["kill"] = load.sleep_until(ACT_AT)
    app.process.kill_group(signal.SIGKILL)
    deadline = time.monotonic() + EXIT_TIMEOUT
    while app.host.pids():  # the moment its sockets are gone (an upper bound)
        assert time.monotonic() < deadline, "killed processes still there"
        time.sleep(0.002)
    events.moments["dead"] = time.monotonic()
    app.process.wait(EXIT_TIMEOUT)
    load.sleep_until(ACT_AT + 1.0)
    cluster.start_server(THE_HOST)
    events.moments["restarted"] = time.monotonic()


def check_sigkill(cluster: Cluster, result: ClusterLoadResult, events: Events) -> None:
    kill, dead = events.moments["kill"], events.moments["dead"]
    failed = result.failed()
    assert not result.failed("GET"), f"GETs failed: {result.failed('GET')}"
    # Failed: at most the requests in flight while the host died (sent before it was
    # gone, not finished when the kill came); nothing before or after.
    stray = [r for r in failed if not (r.sent <= dead and r.done >= kill)]
    assert not stray, f"failed outside the kill: {stray}"
    in_flight = [r for r in result.records if r.sent <= dead and r.done >= kill]
    assert len(failed) <= len(in_flight)
    # The restarted host rejoined: its second run served requests of this load.
    rejoined = cluster.apps[THE_HOST].served(run=1)
    assert rejoined > 0, "the restarted host got no request before the load ended"
    later = result.select(sent_after=events.moments["restarted"])
    assert later and all(r.ok for r in later)


def reload_each(cluster: Cluster, load: LoadRun, events: Events) -> None:
    """SIGHUP to each host in turn, the next once the previous one's reload is done."""
    for i, name in enumerate(APPS):
        app = cluster.apps[name]
        events.moments[name] = load.sleep_until(ACT_AT + i * RELOAD_EVERY)
        app.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + EXIT_TIMEOUT
        while "supervisor: reload done" not in app.process.output():
            assert time.monotonic() < deadline, f"{name} did not reload:\n{app.process.output()}"
            time.sleep(0.02)


def check_reload(cluster: Cluster, result: ClusterLoadResult, events: Events) -> None:
    no_failures(result)
    for app in cluster.apps.values():
        log = app.process.output()
        assert log.count("(retired: reload) exited with code 0") == 1, log[-2000:]
        assert app.served() > 0
    last = events.moments[APPS[-1]]
    assert result.select(sent_after=last + 1.0), "the load went on after the reloads"


#: Seconds between two hosts' reloads (each takes a fraction of one).
RELOAD_EVERY = 1.5

SCENARIOS = [
    Scenario("steady", 3.0, nothing, check_steady),
    Scenario("sigterm", 6.0, sigterm_one, check_sigterm),
    Scenario("sigkill", 6.0, sigkill_one, check_sigkill),
    Scenario("reload", ACT_AT + 3 * RELOAD_EVERY + 2.0, reload_each, check_reload),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
@pytest.mark.timeout(60)
def test_under_load(cluster: Cluster, front: Front, scenario: Scenario) -> None:
    load = cluster.start_load(scenario.duration, rate=RATE, conns=CONNS)
    events = Events()
    scenario.act(cluster, load, events)
    result = load.result(scenario.duration + LOAD_SLACK)
    print(f"{front.name} {scenario.name}: {result.summary()}")  # shown with -s / -rP
    assert len(result.records) >= RATE * scenario.duration * 0.9, result.summary()
    scenario.check(cluster, result, events)


# -- the client's address -----------------------------------------------------------------


def echoed_head(body: bytes) -> dict[str, str]:
    """``GET /echo``'s answer (the request head the server received) as a dict."""
    lines = body.decode().splitlines()[1:]
    return {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}


def test_the_application_sees_the_client_address(cluster: Cluster) -> None:
    # What the server itself takes for the peer: from the PROXY header (HAProxy with
    # send-proxy-v2), or from X-Forwarded-For, trusted from the balancer only.
    for _ in APPS:  # round-robin: each server once
        status, _, body = cluster.request("GET", "/whoami", {"X-Forwarded-For": "192.0.2.66"})
        assert status == 200 and body.decode().split()[0] == TOPOLOGY["client"], body
    status, fields, body = cluster.request(
        "GET", "/echo", {"X-Forwarded-For": "192.0.2.66", "X-Request-ID": "req-1"}
    )
    assert status == 200, body
    head = echoed_head(body)
    # The balancer replaced the client's own claim with the address it saw.
    assert head["x-forwarded-for"] == TOPOLOGY["client"]
    assert head["x-forwarded-proto"] == "http"
    assert head["x-request-id"] == "req-1"  # the client's id travels through
    assert fields["x-request-id"] == "req-1"
    status, fields, body = cluster.request("GET", "/echo")
    generated = echoed_head(body)["x-request-id"]
    assert status == 200 and generated and fields["x-request-id"] == generated


# -- the deploy files are the cluster's ---------------------------------------------------


def test_the_deploy_files_name_the_cluster_hosts() -> None:
    hosts = [f"{TOPOLOGY[name]}:{APP_PORT}" for name in APPS]
    assert deployed_servers(nginx_site()) == hosts
    assert deployed_servers(haproxy_config(proxy_protocol=True)) == hosts
