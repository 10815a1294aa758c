"""LatencyHistogram: bucket precision, percentiles, merge and transport."""

from __future__ import annotations

import random

import pytest

from ioreactor_tools.bench.latency import (
    SIGNIFICANT_BITS,
    LatencyHistogram,
    bucket_bounds,
    bucket_index,
)

RELATIVE_ERROR = 1 / 2 ** (SIGNIFICANT_BITS - 1)


def test_buckets_are_contiguous_and_contain_their_values():
    rng = random.Random(7)
    values = list(range(0, 5000)) + [rng.randrange(1, 2**45) for _ in range(5000)]
    for v in values:
        low, high = bucket_bounds(bucket_index(v))
        assert low <= v < high
        assert high - low <= max(1, v * RELATIVE_ERROR)
    for i in range(1, 3000):
        assert bucket_bounds(i)[0] == bucket_bounds(i - 1)[1]


def test_percentiles_match_sorted_values_within_precision():
    rng = random.Random(1)
    values = [int(rng.lognormvariate(11, 1)) for _ in range(20000)]  # ~60 µs in ns
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    values.sort()
    assert hist.count == len(values)
    assert hist.max == values[-1]
    for q in (0.5, 0.99, 0.999):
        exact = values[round(q * len(values)) - 1]
        assert abs(hist.percentile(q) - exact) <= exact * RELATIVE_ERROR
    assert hist.percentile(1.0) == hist.max
    assert abs(hist.mean() - sum(values) / len(values)) < 0.01 * hist.mean()


def test_merge_and_round_trip():
    a, b = LatencyHistogram(), LatencyHistogram()
    for v in (100, 2000, 30000):
        a.record(v)
    for v in (5, 10**9):
        b.record(v)
    merged = LatencyHistogram.merged([a, LatencyHistogram.from_dict(b.to_dict())])
    assert merged.count == 5
    assert merged.max == 10**9
    assert merged.percentile(0.2) == 5
    assert LatencyHistogram().percentile(0.5) == 0
    with pytest.raises(ValueError):
        merged.percentile(1.5)
