"""An SLO and the verdict of a run against it.

Criteria, each optional, all judged on the whole run (`RunReport.overall`):
- ``p99_ms``: p99 of the OK answers' latency (from the intended send time) <= it;
  no OK answer at all fails;
- ``max_error_ratio``: share of the offered requests that did not end OK
  <= it; refusals (RESOURCE_EXHAUSTED, UNAVAILABLE), DEADLINE_EXCEEDED,
  FAILED_PRECONDITION and cancelled requests all count as errors;
- ``min_ndcg``: mean nDCG@10 of the sampled OK answers >= it; no sample fails.

A generator that fell behind does not fail the verdict (its lateness is already
inside the latencies, which count from the intended send times) but is noted.

The verdict is about the searches only. When an ingest ran beside them, the verdict
says so, with the ingest's outcome (documents offered and committed, batch codes),
but refused or slow batches do not fail it: judge the ingest from its own report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.quality import METRIC
from loadtest.report import RunReport, ms


@dataclass(frozen=True)
class SLO:
    p99_ms: float | None = None
    max_error_ratio: float | None = None
    min_ndcg: float | None = None

    def __post_init__(self) -> None:
        for name in ("p99_ms", "max_error_ratio", "min_ndcg"):
            value = getattr(self, name)
            if value is not None and (math.isnan(value) or value < 0):
                raise ValueError(f"SLO {name} must be >= 0, got {value}")

    @property
    def empty(self) -> bool:
        return self.p99_ms is None and self.max_error_ratio is None and self.min_ndcg is None

    def describe(self) -> str:
        parts = []
        if self.p99_ms is not None:
            parts.append(f"OK p99 <= {self.p99_ms:g} ms")
        if self.max_error_ratio is not None:
            parts.append(f"errors <= {self.max_error_ratio:.2%}")
        if self.min_ndcg is not None:
            parts.append(f"{METRIC} >= {self.min_ndcg:g}")
        return ", ".join(parts) or "no criteria"


@dataclass(frozen=True)
class Criterion:
    name: str
    measured: float | None  # None: nothing to measure (no OK answer, no sample)
    threshold: float
    comparison: str  # "<=" or ">="
    unit: str
    passed: bool

    def text(self) -> str:
        def show(value: float | None) -> str:
            if value is None:
                return "n/a"
            if self.unit == "%":
                return f"{value:.2%}"
            return f"{value:.3f}" if self.unit == "" else f"{value:.3f} {self.unit}"

        return f"{'pass' if self.passed else 'FAIL'}  {self.name}: {show(self.measured)} " \
               f"(threshold {self.comparison} {show(self.threshold)})"

    def to_dict(self) -> dict:
        return {"name": self.name, "measured": self.measured, "threshold": self.threshold,
                "comparison": self.comparison, "passed": self.passed}


@dataclass(frozen=True)
class Verdict:
    criteria: tuple[Criterion, ...]
    note: str = ""
    ingest: str = ""  # the outcome of the ingest beside the searches; "": none ran

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def word(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def reason(self) -> str:
        """One line: the failed criteria, or all of them when none failed."""
        shown = [c for c in self.criteria if not c.passed] or list(self.criteria)
        return "; ".join(c.text() for c in shown) + (f"; {self.note}" if self.note else "")

    def format(self) -> str:
        lines = [f"SLO verdict: {self.word}"] + [f"  {c.text()}" for c in self.criteria]
        if self.note:
            lines.append(f"  note: {self.note}")
        lines.append(f"  judged on the searches; beside them: {self.ingest or 'no ingest'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"verdict": self.word, "criteria": [c.to_dict() for c in self.criteria], "note": self.note,
                "judged_on": "searches", "ingest": self.ingest or None}


def judge(report: RunReport, slo: SLO) -> Verdict:
    o = report.overall
    criteria = []
    if slo.p99_ms is not None:
        p99 = None if math.isnan(o.ok_latency.p99) else o.ok_latency.p99 * 1000
        criteria.append(Criterion("OK p99 latency", p99, slo.p99_ms, "<=", "ms",
                                  p99 is not None and p99 <= slo.p99_ms))
    if slo.max_error_ratio is not None:
        criteria.append(Criterion("error ratio", o.error_ratio, slo.max_error_ratio, "<=", "%",
                                  o.offered > 0 and o.error_ratio <= slo.max_error_ratio))
    if slo.min_ndcg is not None:
        mean = None if o.ndcg_count == 0 else o.ndcg_mean
        criteria.append(Criterion(f"mean {METRIC} (n={o.ndcg_count} sampled)", mean, slo.min_ndcg, ">=", "",
                                  mean is not None and mean >= slo.min_ndcg))
    note = f"generator fell behind (send lateness p99 {ms(o.lateness.p99)} ms)" if report.generator_behind else ""
    return Verdict(tuple(criteria), note, ingest="" if report.ingest is None else report.ingest.outcome())
