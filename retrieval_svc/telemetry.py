"""Prometheus metrics (names and labels are documented in docs/metrics.md).

Each Telemetry owns its own CollectorRegistry, so several servers (tests) can
run in one process without clashing; `serve` exports it over HTTP.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
AGE_BUCKETS = (60, 300, 900, 3600, 21600, 86400, 259200, 604800, 2592000, 7776000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGES = ("encode", "encode_queue", "dense", "bm25", "fuse", "rerank", "hydrate", "total")


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "retrieval_requests", "RPCs finished, by method and status code.", ["rpc", "code"], registry=r
        )
        self.request_duration = Histogram(
            "retrieval_request_duration_seconds", "Wall time of each RPC.", ["rpc"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.stage_duration = Histogram(
            "retrieval_stage_duration_seconds", "Per-stage search time.", ["stage", "mode"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.rerank_fallbacks = Counter(
            "retrieval_rerank_fallbacks", "Re-rankings that returned the fused order.", ["reason"],
            registry=r,
        )
        self.served_age = Histogram(
            "retrieval_served_chunk_age_seconds", "Age (now - source_updated_at) of each served hit.",
            ["namespace"], buckets=AGE_BUCKETS, registry=r,
        )
        self.source_to_searchable = Histogram(
            "retrieval_source_to_searchable_seconds",
            "first_indexed_at - source_updated_at of each newly indexed chunk.",
            ["namespace"], buckets=AGE_BUCKETS, registry=r,
        )
        self.chunks_embedded = Counter(
            "retrieval_chunks_embedded", "Chunks sent to the encoder on ingest.", ["namespace"],
            registry=r,
        )
        self.eval_quality = Gauge(
            "retrieval_eval_quality", "Last evaluation's metric value.",
            ["query_set", "stage", "metric", "k"], registry=r,
        )
        self.eval_last_run = Gauge(
            "retrieval_eval_last_run_timestamp_seconds", "POSIX time of the last finished evaluation.",
            ["query_set"], registry=r,
        )
        self.eval_runs = Counter(
            "retrieval_eval_runs", "Evaluations run.", ["query_set", "status"], registry=r
        )
        self.batch_size = Histogram(
            "retrieval_batch_size", "Batch sizes formed by the dynamic batcher.", ["model"],
            buckets=BATCH_BUCKETS, registry=r,
        )
        self.admission_refused = Counter(
            "retrieval_admission_refused", "Calls refused or dropped by admission control, by pool "
            "(search, write) and reason (queue_full, queue_timeout, deadline).", ["pool", "reason"],
            registry=r,
        )
        self.admission_wait = Histogram(
            "retrieval_admission_wait_seconds", "Time admitted calls waited for a slot.", ["pool"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.deadline_overruns = Counter(
            "retrieval_deadline_overruns", "Calls that finished their work after the caller's "
            "deadline had passed (work done for nobody; the target is 0).", ["rpc"], registry=r,
        )
        self.index_maintenance = Counter(
            "retrieval_index_maintenance", "Indexes rebuilt, trained or compacted beside the live "
            "one and swapped in.", registry=r,
        )
        self.expired_deleted = Counter(
            "retrieval_expired_deleted", "What the expiry sweep deleted: expired documents, their "
            "chunks, and namespaces the sweep emptied.", ["kind"], registry=r,
        )
        self.ttl_refreshes = Counter(
            "retrieval_ttl_refreshes", "Document expiries extended by refreshing reads.", registry=r,
        )
        self._http: WSGIServer | None = None

    def observe_stages(self, mode: str, timings: Mapping[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stage_duration.labels(stage, mode).observe(seconds)

    def observe_served(self, namespace: str, ages: Iterable[float]) -> None:
        hist = self.served_age.labels(namespace)
        for age in ages:
            hist.observe(age)

    def observe_ingest(self, namespace: str, embedded: int, lags: Iterable[float]) -> None:
        if embedded:
            self.chunks_embedded.labels(namespace).inc(embedded)
        hist = self.source_to_searchable.labels(namespace)
        for lag in lags:
            hist.observe(lag)

    def set_quality(self, query_set: str, stage: str, metric: str, k: int, value: float) -> None:
        self.eval_quality.labels(query_set, stage, metric, str(k)).set(value)

    def add_index_collector(self, stats: Callable[[], Iterable]) -> None:
        """Register gauges computed at scrape time from Store.stats()."""
        self.registry.register(_IndexCollector(stats))

    def serve_http(self, host: str, port: int) -> int:
        """Start the /metrics HTTP server; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_address[1]

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _IndexCollector:
    """Document/chunk counts, index sizes, completeness and oldest age per namespace."""

    def __init__(self, stats: Callable[[], Iterable]) -> None:
        self._stats = stats

    def collect(self):
        docs = GaugeMetricFamily("retrieval_documents", "Documents in the ledger.", labels=["namespace"])
        chunks = GaugeMetricFamily("retrieval_chunks", "Chunks in the ledger.", labels=["namespace"])
        entries = GaugeMetricFamily(
            "retrieval_index_entries", "Entries per index.", labels=["namespace", "index"]
        )
        missing = GaugeMetricFamily(
            "retrieval_index_missing_chunks", "Ledger chunks the index lacks.",
            labels=["namespace", "index"],
        )
        oldest = GaugeMetricFamily(
            "retrieval_oldest_chunk_age_seconds", "Age of the oldest chunk's source_updated_at.",
            labels=["namespace"],
        )
        now = time.time()
        for s in self._stats():
            docs.add_metric([s.namespace], s.documents)
            chunks.add_metric([s.namespace], s.chunks)
            entries.add_metric([s.namespace, "dense"], s.dense_entries)
            entries.add_metric([s.namespace, "bm25"], s.lexical_entries)
            missing.add_metric([s.namespace, "dense"], s.dense_missing)
            missing.add_metric([s.namespace, "bm25"], s.lexical_missing)
            if s.oldest_source_updated_at is not None:
                oldest.add_metric([s.namespace], max(0.0, now - s.oldest_source_updated_at))
        yield from (docs, chunks, entries, missing, oldest)

    def describe(self):
        return []
