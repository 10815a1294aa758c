"""What a test may not leave changed in the runner's process.

Children inherit an ignored signal, a blocked signal mask, a CPU pinning and the
environment through ``exec``: a test that changes one of them and does not put it back
changes every later test's children (a lab started after such a test ignored SIGINT).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

#: Set by pytest itself around each phase of a test.
_RUNNER_VARIABLES = frozenset({"PYTEST_CURRENT_TEST"})

#: Signals whose disposition is compared: not SIGKILL and SIGSTOP (they cannot be
#: changed), nor SIGALRM, pytest-timeout's own (set for every test, back to SIG_DFL
#: when a test fails).
_SIGNALS = tuple(
    s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGALRM)
)


@dataclass(frozen=True)
class ProcessState:
    """The inheritable state of the calling (main) thread's process."""

    dispositions: dict[int, Any]
    blocked: frozenset[int]
    cpus: frozenset[int]
    environment: dict[str, str]

    @classmethod
    def now(cls) -> ProcessState:
        return cls(
            dispositions={int(s): signal.getsignal(s) for s in _SIGNALS},
            blocked=frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
            cpus=frozenset(os.sched_getaffinity(0)),
            environment={k: v for k, v in os.environ.items() if k not in _RUNNER_VARIABLES},
        )

    def changes_since(self, before: ProcessState) -> list[str]:
        """One line per thing that differs from ``before``."""
        lines = [
            f"{signal.Signals(s).name} disposition {before.dispositions[s]!r} -> {h!r}"
            for s, h in self.dispositions.items()
            if _kind(h) != _kind(before.dispositions[s])
        ]
        if self.blocked != before.blocked:
            lines.append(f"blocked signals {_names(before.blocked)} -> {_names(self.blocked)}")
        if self.cpus != before.cpus:
            lines.append(f"CPU affinity {sorted(before.cpus)} -> {sorted(self.cpus)}")
        for key in sorted(before.environment.keys() | self.environment.keys()):
            old, new = before.environment.get(key), self.environment.get(key)
            if old != new:
                lines.append(f"environment {key}: {old!r} -> {new!r}")
        return lines

    def restore(self) -> None:
        """Put this state back (after a test changed it)."""
        for s, handler in self.dispositions.items():
            if handler is not None:  # None: set from C, cannot be put back from Python
                signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, self.blocked)
        os.sched_setaffinity(0, self.cpus)
        for key in os.environ.keys() - self.environment.keys() - _RUNNER_VARIABLES:
            del os.environ[key]
        os.environ.update(self.environment)


def _kind(disposition: Any) -> str:
    """Ignored, default, or handled: which function handles a signal is not compared
    (a handler does not outlive an exec; an ignored signal does)."""
    if disposition is signal.SIG_IGN or disposition is signal.SIG_DFL:
        return str(disposition)
    return "set outside Python" if disposition is None else "handled"


def _names(signals: frozenset[int]) -> str:
    return "{" + ", ".join(sorted(signal.Signals(s).name for s in signals)) + "}"
