"""Lab ``c10k``: the course's server models side by side at rising concurrency.

Course: 性能篇_下 "C10K 问题" and "C10K 解决方案". Each model of :mod:`ioreactor_tools.models`
runs as ``ioreactor model NAME`` pinned to one core, and the echo load generator
(:mod:`ioreactor_tools.bench.echo_load`, every byte checked) drives 100, 1,000, 5,000, ...
ping-pong connections from the other core. Per step: messages/s, p50/p99 latency, the
server's CPU µs per message (its process tree's CPU over exactly the measured window) and
its private memory. CPU comes from each task's ``schedstat`` (nanoseconds), not from
``/proc/PID/stat`` (clock ticks): a thousand forked children each using less than a tick
would otherwise add up to nothing.

A model fails a step when a connection is refused, reset, starved or corrupted, when the
server dies, or when the step outlives its time limit (the server is then killed); the
reason is kept (errors seen by the load, the server's last error line) and the model's
higher steps are skipped. Before a step, a model whose memory per connection so far
predicts more than ``memory_fraction`` of the available memory is stopped instead of
run: the machine is shared, and "out of memory" is this model's answer anyway.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ioreactor.testing import free_port
from ioreactor_tools.bench.echo_load import EchoLoadConfig, EchoLoadResult, run_echo_load
from ioreactor_tools.bench.pinning import (
    IOREACTOR_COMMAND,
    core_plan,
    pinned_command,
    wait_for_port,
)
from ioreactor_tools.bench.procstat import tree_pids
from ioreactor_tools.bench.tcp_load import load_processes
from ioreactor_tools.children import child_preexec

HOST = "127.0.0.1"
MODELS = (
    "process-per-connection",
    "thread-per-connection",
    "thread-pool",
    "reactor-select",
    "reactor-poll",
    "reactor-epoll",
    "main-sub",
    "async-uring",
)
QUICK_LEVELS = (100, 1000, 5000)
FULL_LEVELS = (100, 1000, 5000, 10000, 20000)
STOP_GRACE_S = 10.0  # SIGTERM to SIGKILL; thousands of forked children take a moment


@dataclass(frozen=True, slots=True)
class C10kConfig:
    """What to run: models x levels, and how long each step may take."""

    models: tuple[str, ...] = MODELS
    levels: tuple[int, ...] = QUICK_LEVELS
    duration: float = 2.0
    warmup: float = 0.5
    size: int = 1024
    step_limit: float = 60.0
    pool_workers: int = 128  # the thread pool's size (its concurrency)
    sub_reactors: int = 2  # main-sub's sub-reactor threads
    memory_fraction: float = 0.25
    connect_timeout: float = 3.0
    # Also how long the warm-up may wait for every connection's first echo: the fork model
    # accepts a few hundred connections a second.
    drain_timeout: float = 10.0


@dataclass(slots=True)
class Step:
    """One model at one connection count."""

    model: str
    conns: int
    status: str  # "ok", "failed", "stopped" (not run: predicted to exhaust memory)
    reason: str = ""
    connected: int = 0
    messages: int = 0
    msg_per_s: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    cpu_us_per_msg: float | None = None
    memory_bytes: int = 0
    processes: int = 0
    threads: int = 0
    wall_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def private_memory(pids: Sequence[int]) -> int:
    """Bytes of memory private to these processes (shared copy-on-write pages of a fork
    are not double-counted, unlike summed RSS)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Private_Clean:", "Private_Dirty:")):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue  # exited meanwhile
    return total


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # exited meanwhile


def thread_count(pids: Sequence[int]) -> int:
    return sum(len(_tasks(pid)) for pid in pids)


def tree_cpu_seconds(root: int) -> float:
    """CPU time of every thread of every live process in ``root``'s tree (ns precision)."""
    total = 0
    for pid in tree_pids(root):
        for tid in _tasks(pid):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def memory_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def predicted_memory(previous: Sequence[Step], conns: int) -> int | None:
    """Memory a model would need at ``conns``, extrapolated from its steps so far."""
    done = [s for s in previous if s.ok and s.memory_bytes]
    if not done:
        return None
    last = done[-1]
    if len(done) >= 2 and last.conns > done[-2].conns:
        per_conn = (last.memory_bytes - done[-2].memory_bytes) / (last.conns - done[-2].conns)
    else:
        per_conn = last.memory_bytes / last.conns
    return int(last.memory_bytes + max(per_conn, 0.0) * (conns - last.conns))


# What a server says when it meets a limit, most telling first: a resource ceiling, then
# an exception, then any warning.
_COMPLAINTS = (
    re.compile(
        r"Too many open files|FD_SETSIZE|can't start new thread|Cannot allocate|"
        r"Resource temporarily unavailable|[Ff]ork"
    ),
    re.compile(r"Error|error"),
    re.compile(r"WARNING"),
)


def last_error_line(path: str) -> str:
    """The server's most telling complaint on stderr, shortened (why it failed)."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f]
    except OSError:
        return ""
    for pattern in _COMPLAINTS:
        matching = [line for line in lines if pattern.search(line)]
        if matching:
            return matching[-1][:160]
    return ""


def _errors_text(errors: dict[str, int], drain_timeout: float) -> str:
    """The load's errors in words, commonest first; "closed:eof" only when alone (it is
    then the server hanging up; otherwise the load giving up on unanswered connections)."""
    causes = {k: v for k, v in errors.items() if k != "closed:eof"} or errors
    words = []
    for kind, count in sorted(causes.items(), key=lambda kv: -kv[1])[:3]:
        if kind == "unanswered":
            words.append(f"{count:,} connections unanswered after {drain_timeout:g} s")
        elif kind == "integrity":
            words.append(f"{count:,} corrupted echoes")
        elif kind.startswith("connect:"):
            words.append(f"{count:,} connects failed ({kind[8:]})")
        elif kind.startswith("closed:"):
            words.append(f"{count:,} closed by the server ({kind[7:]})")
        else:
            words.append(f"{kind} x{count:,}")
    return ", ".join(words)


class _Server:
    """``ioreactor model NAME`` as a pinned subprocess in its own process group."""

    def __init__(self, model: str, port: int, workers: int, core: int | None) -> None:
        command = [
            *IOREACTOR_COMMAND,
            "model",
            model,
            "--listen",
            f"{HOST}:{port}",
            "--protocol",
            "echo",
            "--workers",
            str(workers),
        ]
        # Lives until stop(): the failure reason is read from it after the step.
        self.stderr = tempfile.NamedTemporaryFile(prefix="ioreactor-c10k-", suffix=".err")  # noqa: SIM115
        self.proc = subprocess.Popen(
            pinned_command(command, core),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            start_new_session=True,
            preexec_fn=child_preexec(),
        )
        self.killed_by_limit = False

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def kill(self) -> None:
        """End the whole group now (the step's time limit)."""
        self.killed_by_limit = True
        self._killpg()

    def _killpg(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        self._killpg()
        self.proc.wait()
        self.stderr.close()


def _failures(
    conns: int, load: EchoLoadResult | None, server: _Server, died: bool, drain_timeout: float
) -> list[str]:
    """Why the step failed, from what the load saw and how the server ended; [] if not."""
    reasons = []
    if server.killed_by_limit:
        reasons.append("step time limit reached, server killed")
    elif died:
        reasons.append(f"server exited with status {server.proc.returncode}")
    if load is not None:
        if load.connected < conns:
            reasons.append(f"connected {load.connected:,} of {conns:,}")
        if load.errors:
            reasons.append(_errors_text(load.errors, drain_timeout))
        if load.messages == 0 and not reasons:
            reasons.append("no message echoed")
    return reasons


def run_step(model: str, conns: int, config: C10kConfig, server_core: int | None) -> Step:
    """Serve ``conns`` echo connections with ``model`` for one measured window."""
    step = Step(model, conns, "ok")
    workers = config.pool_workers if model == "thread-pool" else config.sub_reactors
    port = free_port(HOST)
    started = time.monotonic()
    server = _Server(model, port, workers, server_core)
    watchdog = threading.Timer(config.step_limit, server.kill)
    watchdog.start()
    cpu: dict[str, float] = {}
    load: EchoLoadResult | None = None

    def end_of_window() -> None:
        cpu["after"] = server.cpu_seconds()
        pids = tree_pids(server.proc.pid)
        step.memory_bytes = private_memory(pids)
        step.processes, step.threads = len(pids), thread_count(pids)

    reasons: list[str] = []
    try:
        wait_for_port(HOST, port, proc=server.proc)
        load = run_echo_load(
            EchoLoadConfig(
                host=HOST,
                port=port,
                conns=conns,
                size=config.size,
                duration=config.duration,
                procs=load_processes(conns),
                warmup=config.warmup,
                connect_timeout=config.connect_timeout,
                drain_timeout=config.drain_timeout,
            ),
            on_start=lambda: cpu.__setitem__("before", server.cpu_seconds()),
            on_end=end_of_window,
        )
    except (RuntimeError, TimeoutError, OSError) as exc:
        reasons.append(f"{type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
        died = server.proc.poll() is not None
        reasons[:0] = _failures(conns, load, server, died, config.drain_timeout)
        said = last_error_line(server.stderr.name) if reasons else ""
        server.stop()
    if reasons:
        step.status = "failed"
        step.reason = "; ".join(reasons) + (f" | server: {said}" if said else "")
    step.wall_s = time.monotonic() - started
    if load is not None:
        step.connected, step.messages = load.connected, load.messages
        step.msg_per_s = load.messages_per_s
        step.p50_us, step.p99_us = load.latency_us(0.5), load.latency_us(0.99)
        step.errors = dict(load.errors)
        if load.messages and "before" in cpu and "after" in cpu:
            step.cpu_us_per_msg = (cpu["after"] - cpu["before"]) * 1e6 / load.messages
    return step


def run(config: C10kConfig, on_step: Callable[[Step], object] | None = None) -> list[Step]:
    """Every model at every level, in order; a failed model skips its higher levels.

    This process (the load) is pinned to the second core and the servers to the first;
    the previous CPU affinity is restored at the end.
    """
    plan = core_plan()
    saved = os.sched_getaffinity(0)
    steps: list[Step] = []
    try:
        if plan.load is not None:
            os.sched_setaffinity(0, {plan.load})
        for model in config.models:
            history: list[Step] = []
            for conns in config.levels:
                if history and not history[-1].ok:
                    break
                need = predicted_memory(history, conns)
                budget = config.memory_fraction * memory_available()
                if need is not None and need > budget:
                    step = Step(
                        model,
                        conns,
                        "stopped",
                        reason=(
                            f"would need ~{need / 2**30:.1f} GiB private memory, more than "
                            f"{config.memory_fraction:.0%} of the {memory_available() / 2**30:.1f} "
                            "GiB available"
                        ),
                    )
                else:
                    step = run_step(model, conns, config, plan.server)
                history.append(step)
                steps.append(step)
                if on_step is not None:
                    on_step(step)
    finally:
        os.sched_setaffinity(0, saved)
    return steps
