"""Latency/staleness summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval_svc.evaluation.stats import percentile, summarize


def test_summarize_known_values():
    summary = summarize([0.4, 0.1, 0.3, 0.2, 1.0])
    assert summary == pytest.approx({"count": 5, "p50": 0.3, "p90": 0.76, "p99": 0.976, "mean": 0.4, "max": 1.0})


def test_summarize_is_empty_safe():
    assert summarize([]) == {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    assert summarize(iter([])) == summarize([])


def test_summarize_single_sample():
    assert summarize([2.5]) == {"count": 1, "p50": 2.5, "p90": 2.5, "p99": 2.5, "mean": 2.5, "max": 2.5}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_summarize_rejects_non_finite_samples(bad):
    with pytest.raises(ValueError, match="non-finite"):
        summarize([1.0, bad])


def test_percentile_rejects_out_of_range_q():
    with pytest.raises(ValueError, match="not in 0..100"):
        percentile([1.0], 101)


@pytest.mark.parity
@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50),
       st.sampled_from([0, 1, 50, 90, 99, 100]))
def test_percentile_matches_numpy_linear(values, q):
    ordered = sorted(values)
    assert percentile(ordered, q) == pytest.approx(float(np.percentile(ordered, q)), rel=1e-12, abs=1e-9)
    summary = summarize(values)
    assert summary["max"] == max(values)
    assert summary["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12, abs=1e-9)
