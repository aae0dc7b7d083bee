"""Summaries of latency and staleness samples (seconds): percentiles, mean, max."""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of an ascending sequence, linearly interpolated.

    Position h = (n - 1) * q / 100 between the closest ranks, the default of
    numpy.percentile (Hyndman & Fan 1996, definition 7). 0.0 for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    if not sorted_values:
        return 0.0
    position = (len(sorted_values) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


def summarize(values: Iterable[float]) -> dict[str, float]:
    """{"count", "p50", "p90", "p99", "mean", "max"} of the samples, in their unit.

    Empty-safe: count is 0 and every other field 0.0 when there are no samples
    (protobuf doubles have no "absent"; count tells the difference). ValueError for a
    NaN or infinite sample, which would silently corrupt every percentile.
    """
    ordered = sorted(float(v) for v in values)
    for value in ordered:
        if not math.isfinite(value):
            raise ValueError(f"cannot summarize a non-finite sample ({value})")
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "mean": math.fsum(ordered) / len(ordered) if ordered else 0.0,
        "max": ordered[-1] if ordered else 0.0,
    }
