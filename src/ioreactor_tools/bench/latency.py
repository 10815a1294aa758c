"""An HDR-like latency histogram: constant memory, O(1) record, mergeable across processes.

Values are integers (nanoseconds from ``time.perf_counter_ns``). A value below
``2**SIGNIFICANT_BITS`` has its own bucket; above, a bucket spans ``2**e`` values where
``e = v.bit_length() - SIGNIFICANT_BITS``, so every bucket is at most
``1 / 2**(SIGNIFICANT_BITS - 1)`` (about 1.6 %) wide relative to its values::

    index = v                                  if v < 2**SB
    index = e * 2**(SB-1) + (v >> e)           otherwise   (v >> e lies in [2**(SB-1), 2**SB))

Recording is a ``bit_length``, a shift and a list increment, cheap enough to call once per
message from a Python load generator; percentiles report a bucket's midpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Precision: buckets are at most 2**-(SIGNIFICANT_BITS-1) wide relative to their values.
SIGNIFICANT_BITS = 7
_HALF = 1 << (SIGNIFICANT_BITS - 1)
_FULL = 1 << SIGNIFICANT_BITS
#: Buckets for values up to 2**64 ns (far beyond any latency).
_BUCKETS = (64 - SIGNIFICANT_BITS + 2) * _HALF


def bucket_index(value: int) -> int:
    if value < _FULL:
        return value if value > 0 else 0
    e = value.bit_length() - SIGNIFICANT_BITS
    return e * _HALF + (value >> e)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The values ``[low, high)`` that land in bucket ``index``."""
    if index < _FULL:
        return index, index + 1
    e = index // _HALF - 1
    m = index - e * _HALF
    return m << e, (m + 1) << e


class LatencyHistogram:
    """Counts of latencies (ns) in log-spaced buckets; see the module docstring."""

    __slots__ = ("counts", "max")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        #: The largest value recorded, exact.
        self.max = 0

    def record(self, value: int) -> None:
        if value < _FULL:
            self.counts[value if value > 0 else 0] += 1
        else:
            e = value.bit_length() - SIGNIFICANT_BITS
            self.counts[e * _HALF + (value >> e)] += 1
        if value > self.max:
            self.max = value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.max = max(self.max, other.max)

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    def percentile(self, q: float) -> int:
        """The value below which a fraction ``q`` (0..1) of the records lie; 0 if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"percentile fraction must be in [0, 1], got {q}")
        total = self.count
        if total == 0:
            return 0
        if q == 1.0:
            return self.max
        rank = max(1, round(q * total))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                low, high = bucket_bounds(index)
                return min((low + high - 1) // 2, self.max)
        return self.max

    def percentile_us(self, q: float) -> float:
        """:meth:`percentile` in microseconds (the records are nanoseconds)."""
        return self.percentile(q) / 1000

    def mean(self) -> float:
        total = self.count
        if total == 0:
            return 0.0
        weighted = 0
        for index, n in enumerate(self.counts):
            if n:
                low, high = bucket_bounds(index)
                weighted += n * (low + high - 1) // 2
        return weighted / total

    # -- transport between processes (JSON/pickle friendly) --------------------------------

    def to_dict(self) -> dict[str, object]:
        return {
            "significant_bits": SIGNIFICANT_BITS,
            "max": self.max,
            "buckets": {str(i): n for i, n in enumerate(self.counts) if n},
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LatencyHistogram:
        if data.get("significant_bits") != SIGNIFICANT_BITS:
            raise ValueError("histogram recorded with a different precision")
        hist = cls()
        buckets = data["buckets"]
        assert isinstance(buckets, dict)
        for index, n in buckets.items():
            hist.counts[int(index)] = int(n)
        max_value = data["max"]
        assert isinstance(max_value, int)
        hist.max = max_value
        return hist
