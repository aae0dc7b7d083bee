"""Summaries of a run, per interval and overall, as a table and as JSON.

Per interval [t, t + interval) (the last ones, after the schedule, only hold answers):
- offered/s: requests whose *intended* send time falls in it, per second;
- OK/s (achieved): OK answers that *arrived* in it, per second (so the tail
  after the last send shows the server draining);
- latency p50/p95/p99/max of the OK answers to the requests offered in it,
  counted from the intended send time;
- status codes of the requests offered in it; refusals (RESOURCE_EXHAUSTED,
  UNAVAILABLE) with how fast they came back (a refusal should be at once);
- how late the generator sent them (p99);
- with qrels, the mean nDCG@10 of the sampled OK answers to the requests
  offered in it (`loadtest.quality`).

Overall: offered/s = requests / nominal duration; OK/s = OK answers / (time
from the start to the last answer, at least the nominal duration).

A run with an ingest beside the searches carries its report (`loadtest.ingest_report`),
printed after the searches' table and written under "ingest" in the JSON.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from loadtest.driver import Outcome
from loadtest.stats import LatencySummary

if TYPE_CHECKING:  # ingest_report builds on this module's helpers
    from loadtest.ingest_report import IngestReport

REFUSAL_CODES = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")


@dataclass(frozen=True)
class WindowStats:
    start: float
    end: float
    offered: int
    offered_rate: float
    ok_completed: int
    achieved_rate: float
    codes: Mapping[str, int]
    ok_latency: LatencySummary
    refusal_latency: LatencySummary
    lateness: LatencySummary
    ndcg_count: int = 0
    ndcg_mean: float = math.nan  # mean nDCG@10 of the sampled answers; NaN without samples

    @property
    def ok(self) -> int:
        return self.codes.get("OK", 0)

    @property
    def refused(self) -> int:
        return sum(self.codes.get(c, 0) for c in REFUSAL_CODES)

    @property
    def error_ratio(self) -> float:
        """Share of the offered requests that did not end OK (refusals count as errors)."""
        return (self.offered - self.ok) / self.offered if self.offered else 0.0

    def to_dict(self) -> dict:
        return {
            "start_s": round(self.start, 3), "end_s": round(self.end, 3),
            "offered": self.offered, "offered_rate": round(self.offered_rate, 3),
            "ok_completed": self.ok_completed, "achieved_rate": round(self.achieved_rate, 3),
            "codes": dict(sorted(self.codes.items())), "error_ratio": round(self.error_ratio, 6),
            "refused": self.refused,
            "ok_latency": self.ok_latency.to_ms(), "refusal_latency": self.refusal_latency.to_ms(),
            "send_lateness": self.lateness.to_ms(),
            "ndcg@10": {"count": self.ndcg_count,
                        "mean": None if math.isnan(self.ndcg_mean) else round(self.ndcg_mean, 6)},
        }


def window(outcomes: Sequence[Outcome], start: float, end: float, *, offered_span: float | None = None,
           completed: Sequence[Outcome] | None = None,
           ndcg: Mapping[int, Sequence[float]] | None = None) -> WindowStats:
    """Stats of `outcomes` (those offered in the window) and of `completed` (those answered in it);
    `ndcg`: request index -> nDCG@10 of its sampled queries."""
    span = end - start
    samples = [v for o in outcomes for v in (ndcg or {}).get(o.index, ())]
    completed = outcomes if completed is None else completed
    ok = [o for o in outcomes if o.code == "OK"]
    refused = [o for o in outcomes if o.code in REFUSAL_CODES]
    ok_completed = sum(1 for o in completed if o.code == "OK")
    return WindowStats(
        start=start, end=end, offered=len(outcomes),
        offered_rate=len(outcomes) / (offered_span or span) if span > 0 else 0.0,
        ok_completed=ok_completed, achieved_rate=ok_completed / span if span > 0 else 0.0,
        codes=dict(Counter(o.code for o in outcomes)),
        ok_latency=LatencySummary.of([o.latency for o in ok]),
        refusal_latency=LatencySummary.of([o.latency for o in refused]),
        lateness=LatencySummary.of([o.lateness for o in outcomes]),
        ndcg_count=len(samples), ndcg_mean=math.fsum(samples) / len(samples) if samples else math.nan,
    )


@dataclass(frozen=True)
class RunReport:
    """What one open-loop run did. `server` holds Prometheus deltas when scraped."""

    target: str
    arrival: str
    rate: float
    duration: float
    deadline_s: float
    mix: str
    overall: WindowStats
    intervals: tuple[WindowStats, ...]
    ok_latency_by_mode: Mapping[str, LatencySummary]
    max_lateness_s: float
    server: Mapping[str, Any] | None = field(default=None)
    quality: bool = False  # nDCG@10 was sampled (the queries came with qrels)
    ingest: IngestReport | None = None  # the ingest beside the searches; None: searches only

    @property
    def generator_behind(self) -> bool:
        """True when the generator's own p99 send lateness exceeded `max_lateness_s`:
        the server was then offered less than the schedule says, in bursts."""
        p99 = self.overall.lateness.p99
        return not math.isnan(p99) and p99 > self.max_lateness_s

    def to_dict(self) -> dict:
        return {
            "target": self.target, "arrival": self.arrival, "rate": self.rate,
            "duration_s": self.duration, "deadline_ms": round(self.deadline_s * 1000, 3),
            "mix": self.mix, "generator_behind": self.generator_behind, "quality_sampled": self.quality,
            "max_lateness_ms": round(self.max_lateness_s * 1000, 3),
            "overall": self.overall.to_dict(),
            "ok_latency_by_mode": {m: s.to_ms() for m, s in sorted(self.ok_latency_by_mode.items())},
            "intervals": [w.to_dict() for w in self.intervals],
            "server": self.server,
            "ingest": None if self.ingest is None else self.ingest.to_dict(),
        }


def buckets(outcomes: Sequence[Outcome], end: float,
            interval: float) -> tuple[list[list[Outcome]], list[list[Outcome]]]:
    """The outcomes per interval of [0, end): by intended send time, and by answer time
    (anything past the last interval in the last)."""
    if not interval > 0:
        raise ValueError(f"interval must be > 0 s, got {interval}")
    count = max(1, math.ceil(end / interval - 1e-9))
    offered_in: list[list[Outcome]] = [[] for _ in range(count)]
    done_in: list[list[Outcome]] = [[] for _ in range(count)]
    for o in outcomes:
        offered_in[min(int(o.intended / interval), count - 1)].append(o)
        done_in[min(int(o.done / interval), count - 1)].append(o)
    return offered_in, done_in


def summarize(outcomes: Sequence[Outcome], *, target: str, arrival: str, rate: float, duration: float,
              deadline_s: float, mix: str, interval: float = 1.0, max_lateness_s: float = 0.010,
              server: Mapping[str, Any] | None = None,
              ndcg: Mapping[int, Sequence[float]] | None = None,
              ingest: IngestReport | None = None) -> RunReport:
    """Per-interval and overall stats; `ndcg` (request index -> sampled nDCG@10 values),
    when given, marks the report as measuring quality; `ingest`: the ingest that ran beside."""
    end = max(duration, max((o.done for o in outcomes), default=0.0))
    offered_in, done_in = buckets(outcomes, end, interval)
    intervals = tuple(window(offered_in[i], i * interval, (i + 1) * interval, completed=done_in[i], ndcg=ndcg)
                      for i in range(len(offered_in)))
    overall = window(outcomes, 0.0, end, offered_span=duration, ndcg=ndcg)
    modes = sorted({o.mode for o in outcomes})
    by_mode = {m: LatencySummary.of([o.latency for o in outcomes if o.mode == m and o.code == "OK"])
               for m in modes}
    return RunReport(target=target, arrival=arrival, rate=rate, duration=duration, deadline_s=deadline_s,
                     mix=mix, overall=overall, intervals=intervals, ok_latency_by_mode=by_mode,
                     max_lateness_s=max_lateness_s, server=server, quality=ndcg is not None, ingest=ingest)


# --- text --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def codes_text(codes: Mapping[str, int]) -> str:
    ordered = sorted(codes.items(), key=lambda kv: (kv[0] != "OK", kv[0]))
    return " ".join(f"{code}={n}" for code, n in ordered) or "-"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _row(label: str, w: WindowStats, quality: bool) -> list[str]:
    row = [label, f"{w.offered_rate:.1f}", f"{w.achieved_rate:.1f}", ms(w.ok_latency.p50),
           ms(w.ok_latency.p95), ms(w.ok_latency.p99), ms(w.ok_latency.max),
           f"{w.refused} ({ms(w.refusal_latency.p50)}/{ms(w.refusal_latency.p99)})",
           ms(w.lateness.p99)]
    if quality:
        row.append("-" if not w.ndcg_count else f"{w.ndcg_mean:.3f} ({w.ndcg_count})")
    return row + [codes_text(w.codes)]


def format_report(report: RunReport) -> str:
    headers = ["t s", "offered/s", "OK/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
               "refused (p50/p99 ms)", "send late p99 ms"] + (["nDCG@10 (n)"] if report.quality else []) + ["codes"]
    rows = [_row(f"{round(w.start, 2):g}-{round(w.end, 2):g}", w, report.quality) for w in report.intervals]
    rows.append(_row("all", report.overall, report.quality))
    o = report.overall
    lines = [
        f"target {report.target}: {report.arrival} {report.rate:g} req/s for {report.duration:g} s, "
        f"mix {report.mix}, deadline {report.deadline_s * 1000:g} ms",
        "latency: OK answers, from the intended send time; refusals = "
        + "/".join(REFUSAL_CODES) + " (latency from the intended send time)",
        markdown_table(headers, rows),
        f"sent {o.offered}, OK {o.ok}, error ratio {o.error_ratio:.2%}; "
        f"generator send lateness p50 {ms(o.lateness.p50)} / p99 {ms(o.lateness.p99)} / "
        f"max {ms(o.lateness.max)} ms",
    ]
    if len(report.ok_latency_by_mode) > 1:
        lines.append("OK latency by mode: " + "; ".join(
            f"{m} n={s.count} p50 {ms(s.p50)} p99 {ms(s.p99)} ms"
            for m, s in sorted(report.ok_latency_by_mode.items())))
    if report.generator_behind:
        lines.append(
            f"WARNING: the generator fell behind (send lateness p99 {ms(o.lateness.p99)} ms > "
            f"{report.max_lateness_s * 1000:g} ms): the server was offered less, and burstier, load "
            "than the schedule; latencies still count from the intended times. Use fewer req/s per "
            "process, more --channels, or a less busy machine.")
    if report.server is not None:
        lines.append(format_server(report.server))
    lines.append("ingest beside the searches: none" if report.ingest is None else report.ingest.format())
    return "\n".join(lines)


def format_server(server: Mapping[str, Any]) -> str:
    if "error" in server:
        return f"server metrics: not scraped ({server['error']})"
    requests = server.get("requests_by_code")
    overruns = server.get("deadline_overruns")
    text = (f"server (Prometheus deltas): retrieval_requests_total{{rpc=Search}} by code: "
            f"{codes_text(requests) if requests else 'n/a'}; retrieval_deadline_overruns_total: "
            f"{'n/a' if overruns is None else overruns}")
    if "ingest_batch_by_code" in server:
        by_code = server["ingest_batch_by_code"]
        text += f"; {{rpc=IngestBatch}} by code: {codes_text(by_code) if by_code else 'n/a'}"
    return text
