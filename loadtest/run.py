"""One measured run: scrape metrics, drive the schedule, scrape again, summarize."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from loadtest import metrics
from loadtest.driver import drive_search
from loadtest.quality import QualitySampler
from loadtest.queries import Judgements, ModeMix, RequestPlan
from loadtest.report import RunReport, summarize
from loadtest.schedule import make_schedule


@dataclass(frozen=True)
class LoadSpec:
    """What to offer. `rate` in requests/s, times in seconds."""

    target: str
    texts: tuple[str, ...]
    rate: float
    duration: float
    mix: ModeMix = field(default_factory=lambda: ModeMix.parse("hybrid"))
    arrival: str = "constant"
    seed: int | None = 0
    deadline_s: float = 1.0
    namespace: str = ""
    k: int = 10
    channels: int = 1
    interval: float = 1.0
    max_lateness_s: float = 0.010
    # First request index: lets consecutive runs continue through the query list.
    first_index: int = 0
    request_prefix: str = "loadtest"
    batch_size: int = 8  # queries per BatchSearch (the "batch" kind)
    # Judgements parallel to `texts` (BEIR with a qrels split): nDCG@10 of every
    # `quality_every`-th OK answer is measured; None: no quality measured.
    judgements: tuple[Judgements, ...] | None = None
    quality_every: int = 10


async def measure(spec: LoadSpec, metrics_url: str | None = None) -> RunReport:
    offsets = make_schedule(spec.arrival, spec.rate, spec.duration, spec.seed)
    plan = RequestPlan.build(list(spec.texts), spec.mix, spec.first_index)
    sampler = None if spec.judgements is None else QualitySampler(spec.judgements, spec.quality_every)
    before = await _scrape(metrics_url)
    outcomes = await drive_search(spec.target, offsets, plan, deadline_s=spec.deadline_s,
                                  namespace=spec.namespace, k=spec.k, channels=spec.channels,
                                  request_prefix=spec.request_prefix, batch_size=spec.batch_size,
                                  on_ok=sampler)
    server = None
    if metrics_url:
        after = await _scrape(metrics_url)
        if isinstance(before, metrics.Scrape) and isinstance(after, metrics.Scrape):
            server = metrics.server_deltas(before, after)
        else:
            server = {"error": before if isinstance(before, str) else after}
    return summarize(outcomes, target=spec.target, arrival=spec.arrival, rate=spec.rate,
                     duration=spec.duration, deadline_s=spec.deadline_s, mix=spec.mix.describe(),
                     interval=spec.interval, max_lateness_s=spec.max_lateness_s, server=server,
                     ndcg=None if sampler is None else sampler.scores)


async def _scrape(url: str | None):
    """The samples, or a string saying why there are none (a failed scrape must not end a run)."""
    if not url:
        return None
    try:
        return await asyncio.to_thread(metrics.scrape, url)
    except OSError as exc:
        return f"{url}: {exc}"
