"""Counters: every counter starts at zero, is listed by as_dict, and shows in repr when
it is not zero; a subclass holds nothing but its counters."""

from __future__ import annotations

import pytest

from ioreactor.net.counters import Counters
from ioreactor.net.proxy_protocol import ProxyProtocolStats
from ioreactor.net.tls import TlsStats


class Seen(Counters):
    __slots__ = ("accepted", "refused")

    accepted: int
    refused: int


def test_every_counter_starts_at_zero() -> None:
    assert Seen().as_dict() == {"accepted": 0, "refused": 0}


def test_as_dict_reads_the_current_counts() -> None:
    seen = Seen()
    seen.accepted += 3
    seen.refused += 1
    assert seen.as_dict() == {"accepted": 3, "refused": 1}


def test_repr_names_the_counters_above_zero() -> None:
    seen = Seen()
    assert repr(seen) == "<Seen nothing yet>"
    seen.refused += 2
    assert repr(seen) == "<Seen refused=2>"


def test_a_misspelt_counter_is_refused() -> None:
    seen = Seen()
    with pytest.raises(AttributeError):
        seen.acepted = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("stats_class", [TlsStats, ProxyProtocolStats])
def test_the_layers_counters_are_all_zero_at_first(stats_class: type[Counters]) -> None:
    counts = stats_class().as_dict()
    assert set(counts) == set(stats_class.__slots__)
    assert set(counts.values()) == {0}
