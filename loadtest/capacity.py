"""Capacity search: the highest offered rate whose open-loop step meets an SLO.

Steps of `step_seconds` at `start_rate`, doubling while a step passes (up to
`max_rate`), then bisecting between the last pass and the first failure for
`bisect_steps` more steps (rates rounded to whole requests/s). A step passes
when `slo.judge` says PASS for it. After a failed step a drain probe waits
until the server answers again within the SLO, so the next step does not
start on a queue left by the last; after a passing step, a one-second pause.

Used by ``python -m loadtest --find-capacity`` and by the overload benchmark. Where the
specs carry an ingest, each step runs it beside the searches at its fixed rate (only the
search rate is stepped); the drain probes run without it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from loadtest.driver import Outcome, SearchCaller, open_channels, run_open_loop
from loadtest.queries import RequestPlan
from loadtest.report import RunReport, codes_text, markdown_table, ms
from loadtest.run import LoadSpec, measure
from loadtest.schedule import constant
from loadtest.slo import SLO, Verdict, judge

# (rate req/s, duration s, request-id prefix) -> the spec of one run.
SpecMaker = Callable[[float, float, str], LoadSpec]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Step:
    rate: float
    report: RunReport
    verdict: Verdict

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def reason(self) -> str:
        return self.verdict.reason

    def to_dict(self) -> dict:
        o = self.report.overall
        ingest = self.report.ingest
        return {"rate": self.rate, "passed": self.passed, "reason": self.reason, "sent": o.offered,
                "ok": o.ok, "achieved_rate": round(o.achieved_rate, 3), "error_ratio": round(o.error_ratio, 6),
                "codes": dict(o.codes), "ok_latency": o.ok_latency.to_ms(), "send_lateness": o.lateness.to_ms(),
                "verdict": self.verdict.to_dict(),
                "ingest": None if ingest is None else {"outcome": ingest.outcome(), **ingest.overall.to_dict()}}


async def search_rates(passes: Callable[[float], Awaitable[bool]], *, start_rate: float, max_rate: float,
                       bisect_steps: int, log: Callable[[str], None] = log) -> float:
    """The highest rate for which `passes(rate)` held: doubling from start_rate, then
    bisection; 0 when start_rate already failed."""
    if not start_rate > 0:
        raise ValueError(f"start rate must be > 0 requests/s, got {start_rate}")
    passed, failed = 0.0, None
    rate = start_rate
    while rate <= max_rate:
        if await passes(rate):
            passed, rate = rate, rate * 2
        else:
            failed = rate
            break
    if failed is None:
        log(f"every rate up to the maximum {max_rate:g} req/s passed")
        return passed
    for _ in range(bisect_steps):
        mid = round((passed + failed) / 2)
        if mid <= passed or mid >= failed:
            break
        if await passes(mid):
            passed = mid
        else:
            failed = mid
    return passed


@dataclass(frozen=True)
class DrainProbe:
    """One Search every 1/rate s until `streak` consecutive ones answer OK within the SLO."""

    rate: float = 5.0
    streak: int = 3
    timeout_s: float = 120.0


async def probe_drain(spec: LoadSpec, probe: DrainProbe, good_latency_s: float | None,
                      start_delay_s: float = 0.0) -> dict:
    """Probe Search at probe.rate (constant arrivals; `spec` gives the queries, mix and
    deadline) from `start_delay_s` on; drain_s = the intended send time (from the probe's
    start) of the first of probe.streak consecutive probes answered OK (within
    `good_latency_s`, when given), None if none within probe.timeout_s."""
    if start_delay_s > 0:
        await asyncio.sleep(start_delay_s)
    offsets = constant(probe.rate, probe.timeout_s)
    plan = RequestPlan.build(list(spec.texts), spec.mix, spec.first_index)
    finished: dict[int, Outcome] = {}
    found: list[int] = []

    def good(o: Outcome) -> bool:
        return o.code == "OK" and (good_latency_s is None or o.latency <= good_latency_s)

    def on_outcome(o: Outcome) -> None:
        finished[o.index] = o
        if found:
            return
        # Look for `streak` consecutive finished, good probes ending near o.
        for first in range(max(0, o.index - probe.streak + 1), o.index + 1):
            run = [finished.get(first + j) for j in range(probe.streak)]
            if all(r is not None and good(r) for r in run):
                found.append(first)
                return

    async with open_channels(spec.target) as channels:
        caller = SearchCaller(channels, plan, deadline_s=spec.deadline_s, namespace=spec.namespace, k=spec.k,
                              request_prefix="probe", batch_size=spec.batch_size)
        outcomes = await run_open_loop(offsets, caller, label=caller.mode_of, wait_after_s=spec.deadline_s,
                                       on_outcome=on_outcome, stop=lambda: bool(found))
    drain_s = offsets[min(found)] if found else None
    codes: dict[str, int] = {}
    for o in outcomes:
        codes[o.code] = codes.get(o.code, 0) + 1
    return {"drain_s": None if drain_s is None else round(drain_s, 3), "probes": len(outcomes),
            "probe_codes": dict(sorted(codes.items())), "probe_rate": probe.rate, "streak": probe.streak}


@dataclass
class CapacitySearch:
    """Measured steps judged against `slo`; `run()` returns the capacity in req/s."""

    make_spec: SpecMaker
    slo: SLO
    step_seconds: float
    start_rate: float
    max_rate: float
    bisect_steps: int = 3
    drain: DrainProbe = field(default_factory=DrainProbe)
    metrics_url: str | None = None
    log: Callable[[str], None] = log
    steps: list[Step] = field(default_factory=list)

    async def step(self, rate: float) -> Step:
        report = await measure(self.make_spec(rate, self.step_seconds, f"capacity-{rate:g}"), self.metrics_url)
        step = Step(rate, report, judge(report, self.slo))
        self.steps.append(step)
        o = report.overall
        self.log(f"step {rate:g} req/s: {step.verdict.word} ({step.reason}); OK/s {o.achieved_rate:.1f}, "
                 f"p50 {ms(o.ok_latency.p50)} ms, {codes_text(o.codes)}")
        if not step.passed:
            good_s = None if self.slo.p99_ms is None else self.slo.p99_ms / 1000
            drained = await probe_drain(self.make_spec(self.drain.rate, self.drain.timeout_s, "probe"),
                                        self.drain, good_s)
            self.log(f"  server drained after {drained['drain_s']} s" if drained["drain_s"] is not None
                     else f"  server still slow after {self.drain.timeout_s:g} s of probing")
        else:
            await asyncio.sleep(1.0)
        return step

    async def run(self) -> float:
        async def passes(rate: float) -> bool:
            return (await self.step(rate)).passed

        return await search_rates(passes, start_rate=self.start_rate, max_rate=self.max_rate,
                                  bisect_steps=self.bisect_steps, log=self.log)

    def at(self, rate: float) -> Step | None:
        """The last step measured at `rate`."""
        return next((s for s in reversed(self.steps) if s.rate == rate), None)


def format_steps(steps: list[Step]) -> str:
    """The steps as a markdown table (an nDCG@10 column where quality was sampled, ingest
    columns where an ingest ran beside the searches)."""
    quality = any(s.report.quality for s in steps)
    ingest = any(s.report.ingest is not None for s in steps)
    headers = ["rate req/s", "verdict", "OK/s", "OK p50 ms", "OK p99 ms", "error %", "send late p99 ms"]
    rows = []
    for s in steps:
        o = s.report.overall
        row = [f"{s.rate:g}", "pass" if s.passed else f"fail: {s.reason}", f"{o.achieved_rate:.1f}",
               ms(o.ok_latency.p50), ms(o.ok_latency.p99), f"{o.error_ratio:.1%}", ms(o.lateness.p99)]
        if quality:
            row.append("-" if not o.ndcg_count else f"{o.ndcg_mean:.3f} ({o.ndcg_count})")
        if ingest:
            i = s.report.ingest
            row += ["-", "-", "-"] if i is None else [
                f"{i.overall.offered_rate:.1f} / {i.overall.committed_rate:.1f}", ms(i.overall.ok_latency.p99),
                codes_text(i.overall.codes)]
        rows.append(row)
    return markdown_table(headers + (["nDCG@10 (n)"] if quality else [])
                          + (["ingest offered / committed docs/s", "ingest OK p99 ms", "ingest batch codes"]
                             if ingest else []), rows)
