"""Percentiles and latency summaries (pure functions, no numpy needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (q in [0, 100]) by linear interpolation between closest ranks.

    With the n values sorted as x_0 <= ... <= x_{n-1}, h = (n - 1) * q / 100 and
    result = x_floor(h) + (h - floor(h)) * (x_floor(h)+1 - x_floor(h)): Hyndman & Fan's
    definition 7, numpy.percentile's default. NaN for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    h = (len(ordered) - 1) * q / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


@dataclass(frozen=True)
class LatencySummary:
    """Count and p50/p95/p99/max of a set of durations, in seconds (NaN when count is 0)."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "LatencySummary":
        return cls(count=len(seconds), p50=percentile(seconds, 50), p95=percentile(seconds, 95),
                   p99=percentile(seconds, 99), max=max(seconds) if seconds else math.nan)

    def to_ms(self) -> dict:
        """JSON-friendly: milliseconds, None for NaN."""
        def ms(v: float):
            return None if math.isnan(v) else round(v * 1000, 3)

        return {"count": self.count, "p50_ms": ms(self.p50), "p95_ms": ms(self.p95),
                "p99_ms": ms(self.p99), "max_ms": ms(self.max)}
