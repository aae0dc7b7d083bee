"""Runs labeled query sets through the real search pipeline, one pass per stage.

Stages: dense (dense only), bm25 (BM25 only), fused (hybrid, no re-rank),
reranked (hybrid + cross-encoder). Queries run one at a time so the latency
percentiles are those of single searches. Uploaded sets are kept under the
store folder (query_sets/NAME.json) and survive restarts; configured sets are
loaded from their files when first used.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.deadline import NO_DEADLINE, Deadline
from retrieval_svc.domain import SearchMode
from retrieval_svc.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from retrieval_svc.evaluation.metrics import dedupe_by_document, evaluate_query
from retrieval_svc.evaluation.querysets import (
    Level, LabeledQuery, QuerySet, load_beir, load_trec, validate_query_set,
)
from retrieval_svc.evaluation.stats import summarize
from retrieval_svc.pipeline import SearchOptions, SearchPipeline
from retrieval_svc.settings import QuerySetSettings, Settings
from retrieval_svc.store.base import DocumentStore
from retrieval_svc.telemetry import Telemetry

log = logging.getLogger(__name__)

STAGES = ("dense", "bm25", "fused", "reranked")
_STAGE_SEARCH = {
    "dense": (SearchMode.DENSE, False),
    "bm25": (SearchMode.BM25, False),
    "fused": (SearchMode.HYBRID, False),
    "reranked": (SearchMode.HYBRID, True),
}
_STAGE_PB = {"dense": epb.EVAL_STAGE_DENSE, "bm25": epb.EVAL_STAGE_BM25,
             "fused": epb.EVAL_STAGE_FUSED, "reranked": epb.EVAL_STAGE_RERANKED}
_PB_STAGE = {v: k for k, v in _STAGE_PB.items()}
_LEVEL_PB = {"document": epb.JUDGEMENT_LEVEL_DOCUMENT, "chunk": epb.JUDGEMENT_LEVEL_CHUNK}
QUERY_SET_RECORDS = "query_sets"  # the embedded store's <store>/query_sets/<name>.json
RESULT_RECORDS = "evaluation_results"
REFRESH_SECONDS = 5.0
_SET_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
CUT_METRICS = ("precision", "recall", "ndcg", "mrr", "hit_rate")


def metric_names(ks: Sequence[int]) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in CUT_METRICS] + ["map"]


class EvaluationRunner:
    def __init__(self, pipeline: SearchPipeline, telemetry: Telemetry, settings: Settings,
                 store: DocumentStore) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.settings = settings
        # Uploaded query sets and exported results are store records, so every replica
        # over a shared store (Milvus) sees the same sets and exports the same figures.
        self.store = store
        self._lock = threading.Lock()
        self._sets: dict[str, QuerySet] = {}
        self._configured: dict[str, QuerySetSettings] = {s.name: s for s in settings.evaluation.query_sets}
        self._last_run: dict[str, float] = {}
        self._exported: dict[str, float] = {}  # set -> finished_at of the result in the gauges
        self._loaded_at = 0.0
        self._load_uploaded()

    # --- registry -------------------------------------------------------------

    def _load_uploaded(self) -> None:
        self._loaded_at = time.monotonic()
        for name, data in self.store.records(QUERY_SET_RECORDS).items():
            try:
                queries = tuple(LabeledQuery(q["query_id"], q["text"], q["judgements"]) for q in data["queries"])
                query_set = QuerySet(data["name"], data["namespace"], data["level"], queries, "upload")
            except (ValueError, KeyError, TypeError) as exc:
                log.error("query set record %r unreadable: %s", name, exc)
                continue
            with self._lock:
                self._sets[query_set.name] = query_set

    def _refresh(self) -> None:
        """On a shared store, read sets other replicas registered (at most every REFRESH_SECONDS)."""
        if self.store.shared and time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            self._load_uploaded()

    def register(self, query_set: QuerySet) -> QuerySet:
        if not _SET_NAME.match(query_set.name or ""):
            raise InvalidArgument(
                f"query set name {query_set.name[:140]!r} is invalid: use 1..128 characters of [A-Za-z0-9_.-]")
        lim = self.settings.limits
        if len(query_set.queries) > lim.max_query_set_queries:
            raise ResourceExhausted(
                f"query set {query_set.name!r} has {len(query_set.queries)} queries, over the limit of "
                f"{lim.max_query_set_queries} (limits.max_query_set_queries)")
        for i, q in enumerate(query_set.queries):
            if len(q.text) > lim.max_query_chars:
                raise InvalidArgument(
                    f"queries[{i}] (query_id {q.query_id[:140]!r}) has {len(q.text)} characters, over "
                    f"limits.max_query_chars={lim.max_query_chars}")
            if len(q.judgements) > lim.max_judgements_per_query:
                raise ResourceExhausted(
                    f"queries[{i}] (query_id {q.query_id[:140]!r}) has {len(q.judgements)} judgements, over "
                    f"the limit of {lim.max_judgements_per_query} (limits.max_judgements_per_query)")
        with self._lock:
            known = set(self._sets) | set(self._configured)
        if query_set.name not in known and len(known) >= lim.max_query_sets:
            raise ResourceExhausted(
                f"{len(known)} query sets are registered, the limit (limits.max_query_sets); "
                "replace or remove one")
        try:
            validate_query_set(query_set)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        payload = {"name": query_set.name, "namespace": query_set.namespace, "level": query_set.level,
                   "queries": [{"query_id": q.query_id, "text": q.text, "judgements": dict(q.judgements)}
                               for q in query_set.queries]}
        self.store.put_record(QUERY_SET_RECORDS, query_set.name, payload)
        with self._lock:
            self._sets[query_set.name] = query_set
        return query_set

    def get(self, name: str) -> QuerySet:
        self._refresh()
        with self._lock:
            if name in self._sets:
                return self._sets[name]
        config = self._configured.get(name)
        if config is None:
            raise NotFound(f"query set {name!r} is not registered or configured")
        try:
            if config.format == "beir":
                qs = load_beir(Path(config.path), split=config.split, name=name, namespace=config.namespace)
            else:
                qs = load_trec(Path(config.queries), Path(config.qrels), name=name, namespace=config.namespace)
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(f"configured query set {name!r} cannot be loaded: {exc}") from None
        if config.level != qs.level:
            qs = QuerySet(qs.name, qs.namespace, config.level, qs.queries, qs.source)
        with self._lock:
            self._sets[name] = qs
        return qs

    def namespace_of(self, name: str) -> str | None:
        """The namespace a registered or configured set judges; None for an unknown name."""
        self._refresh()
        with self._lock:
            if name in self._sets:
                return self._sets[name].namespace
        config = self._configured.get(name)
        return config.namespace if config is not None else None

    def names(self) -> list[str]:
        self._refresh()
        with self._lock:
            return sorted(set(self._sets) | set(self._configured))

    # --- evaluation -----------------------------------------------------------

    def evaluate(self, name: str, ks: Sequence[int] = (), stages: Sequence[str] = (),
                 template: SearchOptions | None = None, depth: int = 0,
                 include_per_query: bool = False, export: bool = False,
                 deadline: Deadline = NO_DEADLINE) -> dict:
        """Evaluate a set; returns the result dict documented in evaluation/report.py.
        The deadline is checked before every query: a caller that left stops the run."""
        query_set = self.get(name)
        ks = sorted(set(ks or self.settings.evaluation.ks))
        max_k = self.settings.limits.max_k
        for k in ks:
            if not 1 <= k <= max_k:
                raise InvalidArgument(f"ks: {k} is out of 1..{max_k}")
        if not stages:
            stages = [s for s in STAGES if s != "reranked" or self.pipeline.rerank_stage is not None]
        if len(set(stages)) != len(stages):
            raise InvalidArgument("stages: each stage may be named once")
        for stage in stages:
            if stage not in STAGES:
                raise InvalidArgument(f"unknown stage {stage!r}; use {', '.join(STAGES)}")
            if stage == "reranked" and self.pipeline.rerank_stage is None:
                raise FailedPrecondition("stage 'reranked' needs a reranker (reranker.model)")
        depth = depth or max(max(ks), self.settings.evaluation.depth)
        if not max(ks) <= depth <= max_k:
            raise InvalidArgument(f"depth must be in {max(ks)}..{max_k}, got {depth}")
        template = template or SearchOptions(query="-")
        namespace = template.namespace or query_set.namespace
        metrics = metric_names(ks)
        started_at, t0 = time.time(), time.perf_counter()
        judged = [q for q in query_set.queries if any(r > 0 for r in q.judgements.values())]
        # Both outcome series exist from the first run on, so rate() sees a first error.
        self.telemetry.eval_runs.labels(name, "error")
        self.telemetry.eval_runs.labels(name, "ok")
        result: dict[str, Any] = {
            "query_set": name, "queries_evaluated": len(judged),
            "queries_skipped": len(query_set.queries) - len(judged), "started_at": started_at,
            "stages": [], "per_query": [],
        }
        try:
            for stage in stages:
                result["stages"].append(
                    self._run_stage(stage, judged, query_set.level, template, namespace, depth,
                                    metrics, result["per_query"] if include_per_query else None,
                                    deadline))
        except Exception:
            self.telemetry.eval_runs.labels(name, "error").inc()
            raise
        result["duration_seconds"] = time.perf_counter() - t0
        self._last_run[name] = time.time()
        self.telemetry.eval_runs.labels(name, "ok").inc()
        if export:
            self._export(result)
        return result

    def _run_stage(self, stage: str, queries: Sequence[LabeledQuery], level: str,
                   template: SearchOptions, namespace: str, depth: int, metrics: list[str],
                   per_query: list | None, deadline: Deadline = NO_DEADLINE) -> dict:
        mode, rerank = _STAGE_SEARCH[stage]
        sums = {m: 0.0 for m in metrics}
        latencies: list[float] = []
        ages: list[float] = []
        fallbacks = 0
        stage_time: dict[str, float] = {}
        for q in queries:
            deadline.check(f"query {q.query_id!r} of stage {stage}")
            options = _with(template, query=q.text, namespace=namespace, k=depth, mode=mode,
                            rerank=rerank, request_id=f"eval-{q.query_id}")
            result = self.pipeline.search(options, observe=False, deadline=deadline)
            latencies.append(result.timings.get("total", 0.0))
            for s, v in result.timings.items():
                stage_time[s] = stage_time.get(s, 0.0) + v
            fallbacks += result.rerank_fallback
            ages.extend(h.staleness_seconds for h in result.hits)
            if level == "chunk":
                ranked = [h.chunk.chunk_id for h in result.hits]
            else:
                ranked = dedupe_by_document([h.chunk.doc_id for h in result.hits])
            values = evaluate_query(ranked, q.judgements, metrics)
            for m in metrics:
                sums[m] += values[m]
            if per_query is not None:
                per_query.append({"query_id": q.query_id, "stage": stage, "metrics": values,
                                  "latency_seconds": latencies[-1], "retrieved": ranked[:max(10, depth // 10)]})
        n = max(1, len(queries))
        return {
            "stage": stage,
            "metrics": [_metric_entry(m, sums[m] / n if queries else 0.0) for m in metrics],
            "latency": {**summarize(latencies), "samples": latencies},
            "staleness": summarize(ages),
            "mean_timings": {s: v / n for s, v in stage_time.items()},
            "rerank_fallbacks": fallbacks,
        }

    def _export(self, result: dict) -> None:
        """Set the quality gauges. Label values come from bounded sets only: registered set
        names (at most limits.max_query_sets), the stages, the metrics, and the configured
        cut-offs (evaluation.ks; a caller's other ks are returned but not exported)."""
        name = result["query_set"]
        exported_ks = {0, *self.settings.evaluation.ks}
        finished_at = time.time()
        figures = [{"stage": stage["stage"], "metric": m["metric"], "k": m["k"], "value": m["value"]}
                   for stage in result["stages"] for m in stage["metrics"] if m["k"] in exported_ks]
        self._set_gauges(name, figures, finished_at)
        if self.store.shared:
            self.store.put_record(RESULT_RECORDS, name, {"finished_at": finished_at, "figures": figures})

    def _set_gauges(self, name: str, figures: list[dict], finished_at: float) -> None:
        for f in figures:
            self.telemetry.set_quality(name, f["stage"], f["metric"], f["k"], f["value"])
        self.telemetry.eval_last_run.labels(name).set(finished_at)
        self._exported[name] = finished_at
        self._last_run[name] = max(self._last_run.get(name, 0.0), finished_at)

    def sync_exported(self) -> int:
        """Export results that another process (`retrieval-svc evaluate-scheduled`, a
        replica) stored since this one last exported; how many sets changed."""
        changed = 0
        for name, record in self.store.records(RESULT_RECORDS).items():
            try:
                finished_at, figures = float(record["finished_at"]), list(record["figures"])
            except (KeyError, TypeError, ValueError) as exc:
                log.error("evaluation result record %r unreadable: %s", name, exc)
                continue
            if finished_at > self._exported.get(name, 0.0):
                self._set_gauges(name, figures, finished_at)
                changed += 1
        return changed

    def run_configured(self) -> list[str]:
        """Evaluate every configured set and export the gauges (the scheduler's job);
        returns the names of the sets whose evaluation failed."""
        failed = []
        for name in list(self._configured):
            try:
                self.evaluate(name, export=True)
                log.info("scheduled evaluation of %r finished", name)
            except Exception:
                log.exception("scheduled evaluation of %r failed", name)
                failed.append(name)
        return failed

    # --- protobuf -------------------------------------------------------------

    def register_pb(self, request: epb.RegisterQuerySetRequest) -> epb.RegisterQuerySetResponse:
        level: Level = "chunk" if request.level == epb.JUDGEMENT_LEVEL_CHUNK else "document"
        queries = []
        for i, q in enumerate(request.queries):
            judgements = {}
            for j in q.judgements:
                if j.target_id in judgements:
                    raise InvalidArgument(f"queries[{i}] (query_id {q.query_id!r}) judges {j.target_id!r} twice")
                judgements[j.target_id] = j.relevance
            queries.append(LabeledQuery(q.query_id or str(i), q.text, judgements))
        qs = self.register(QuerySet(request.name, request.namespace or "default", level, tuple(queries), "upload"))
        return epb.RegisterQuerySetResponse(
            name=qs.name, query_count=len(qs.queries), judgement_count=sum(len(q.judgements) for q in qs.queries))

    def list_pb(self) -> epb.ListQuerySetsResponse:
        resp = epb.ListQuerySetsResponse()
        for name in self.names():
            with self._lock:
                qs = self._sets.get(name)
            config = self._configured.get(name)
            info = resp.sets.add(name=name, source="upload" if qs and qs.source == "upload"
                                 else (config.path or config.qrels) if config else "")
            if qs is not None:
                info.namespace, info.level = qs.namespace, _LEVEL_PB[qs.level]
                info.query_count = len(qs.queries)
                info.judgement_count = sum(len(q.judgements) for q in qs.queries)
            elif config is not None:
                info.namespace, info.level = config.namespace, _LEVEL_PB[config.level]
            if name in self._last_run:
                info.last_evaluated_at.FromNanoseconds(int(self._last_run[name] * 1e9))
        return resp

    def evaluate_pb(self, request: epb.EvaluateRequest,
                    deadline: Deadline = NO_DEADLINE) -> epb.EvaluateResponse:
        from retrieval_svc.server import options_from_pb

        stages = []
        for s in request.stages:
            if s not in _PB_STAGE:
                raise InvalidArgument(f"stages: {s} is not a known EvalStage")
            stages.append(_PB_STAGE[s])
        template = None
        if request.HasField("search_template"):
            template = options_from_pb(_with_query(request.search_template))
        result = self.evaluate(request.query_set, list(request.ks), stages, template, request.depth,
                               request.include_per_query, request.export_metrics, deadline)
        return result_to_pb(result)


def _with(template: SearchOptions, **changes) -> SearchOptions:
    return dataclasses.replace(template, **changes)


def _with_query(request):
    copy = type(request)()
    copy.CopyFrom(request)
    if not copy.query:
        copy.query = "-"
    return copy


def _metric_entry(name: str, value: float) -> dict:
    metric, _, k = name.partition("@")
    return {"metric": metric, "k": int(k or 0), "value": value}


def result_to_pb(result: dict) -> epb.EvaluateResponse:
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

    resp = epb.EvaluateResponse(
        query_set=result["query_set"], evaluated_query_count=result["queries_evaluated"],
        skipped_query_count=result["queries_skipped"], duration_seconds=result["duration_seconds"],
    )
    resp.started_at.FromNanoseconds(int(result["started_at"] * 1e9))
    for s in result["stages"]:
        lat, st = s["latency"], s["staleness"]
        resp.stages.add(
            stage=_STAGE_PB[s["stage"]],
            metrics=[epb.MetricValue(**m) for m in s["metrics"]],
            latency=epb.LatencySummary(p50_seconds=lat["p50"], p90_seconds=lat["p90"], p99_seconds=lat["p99"],
                                       mean_seconds=lat["mean"], max_seconds=lat["max"]),
            staleness=epb.StalenessSummary(p50_seconds=st["p50"], p90_seconds=st["p90"], max_seconds=st["max"]),
            mean_timings=[pb.StageTiming(stage=k, seconds=v) for k, v in s["mean_timings"].items()],
            rerank_fallback_count=s["rerank_fallbacks"],
        )
    for row in result["per_query"]:
        resp.per_query.add(
            query_id=row["query_id"], stage=_STAGE_PB[row["stage"]],
            metrics=[epb.MetricValue(**_metric_entry(m, v)) for m, v in row["metrics"].items()],
            latency_seconds=row["latency_seconds"], retrieved=row["retrieved"],
        )
    return resp

