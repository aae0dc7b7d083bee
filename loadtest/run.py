"""One measured run: scrape metrics, drive the schedule (and the ingest beside it), scrape
again, summarize."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from loadtest import metrics
from loadtest.driver import drive_search
from loadtest.ingest import IngestLoad, IngestThread
from loadtest.ingest_report import summarize_ingest
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
    # IngestBatch calls at a fixed document rate beside the searches, for the same
    # window on the same time line (`loadtest.ingest`); None: searches only.
    ingest: IngestLoad | None = None


async def measure(spec: LoadSpec, metrics_url: str | None = None) -> RunReport:
    offsets = make_schedule(spec.arrival, spec.rate, spec.duration, spec.seed)
    plan = RequestPlan.build(list(spec.texts), spec.mix, spec.first_index)
    sampler = None if spec.judgements is None else QualitySampler(spec.judgements, spec.quality_every)
    # Batches are built (and the source read) before the window opens.
    ingest = None if spec.ingest is None else IngestThread(spec.target, spec.ingest, spec.duration)
    before = await _scrape(metrics_url)
    ingest_run = None
    if ingest is not None:
        await asyncio.to_thread(ingest.start)
    try:
        outcomes = await drive_search(spec.target, offsets, plan, deadline_s=spec.deadline_s,
                                      namespace=spec.namespace, k=spec.k, channels=spec.channels,
                                      request_prefix=spec.request_prefix, batch_size=spec.batch_size,
                                      on_ok=sampler, on_start=None if ingest is None else ingest.begin)
    finally:
        if ingest is not None:
            ingest.abort()  # releases the thread if the searches never started
            ingest_run = await asyncio.to_thread(ingest.join)
    server = None
    if metrics_url:
        after = await _scrape(metrics_url)
        if isinstance(before, metrics.Scrape) and isinstance(after, metrics.Scrape):
            server = metrics.server_deltas(before, after)
            if ingest is not None:
                server["ingest_batch_by_code"] = metrics.server_deltas(before, after,
                                                                       rpc="IngestBatch")["requests_by_code"]
        else:
            server = {"error": before if isinstance(before, str) else after}
    return summarize(outcomes, target=spec.target, arrival=spec.arrival, rate=spec.rate,
                     duration=spec.duration, deadline_s=spec.deadline_s, mix=spec.mix.describe(),
                     interval=spec.interval, max_lateness_s=spec.max_lateness_s, server=server,
                     ndcg=None if sampler is None else sampler.scores,
                     ingest=None if ingest_run is None else summarize_ingest(ingest_run, spec.interval))


async def _scrape(url: str | None):
    """The samples, or a string saying why there are none (a failed scrape must not end a run)."""
    if not url:
        return None
    try:
        return await asyncio.to_thread(metrics.scrape, url)
    except OSError as exc:
        return f"{url}: {exc}"
