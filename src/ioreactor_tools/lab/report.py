"""The shape every lab reports in: observation next to the course's explanation.

Labs return plain data (no rich here) so tests can check observations and the CLI can
render them; ``matches`` is None when the kernel or the privileges at hand did not let
the lab observe something, and the report says why in ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Finding:
    """One step of an experiment: what the kernel did, and what the course says."""

    step: str
    observed: str
    course: str
    matches: bool | None


@dataclass(frozen=True, slots=True)
class Table:
    """Measurements too many for one finding (latencies, costs per call)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(slots=True)
class LabReport:
    """A lab's findings, extra tables, and notes on what could not be observed."""

    title: str
    chapter: str
    findings: list[Finding] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def contradicted(self) -> list[Finding]:
        """Findings where this kernel did not behave as the course predicts."""
        return [f for f in self.findings if f.matches is False]
