"""The search pipeline: encode -> dense and BM25 candidates -> fuse -> rerank -> hits.

Every stage is timed under the names Prometheus uses (encode, dense, bm25, fuse,
rerank, hydrate, total), and with tracing on is a span of the same name (retrieval_svc.tracing;
docs/metrics.md, "Tracing"). Per-call `None` options mean "use the configured default".
"""

from __future__ import annotations

import functools
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from retrieval_svc.deadline import NO_DEADLINE, Deadline
from retrieval_svc.domain import (
    Candidate, Chunk, FusedCandidate, ModelIdentity, SearchMode, StageScore,
)
from retrieval_svc.errors import FailedPrecondition, InvalidArgument, NotFound
from retrieval_svc.fusion import make_fuser
from retrieval_svc.ingest import NAME_PATTERN, normalize_namespace
from retrieval_svc.rerank import RerankStage
from retrieval_svc.settings import Settings
from retrieval_svc.store.base import DocumentMeta, DocumentStore, SearchFilter
from retrieval_svc.telemetry import Telemetry
from retrieval_svc.tracing import NO_SPAN, OFF, Span, Tracing

FUSION_METHODS = ("rrf", "minmax", "zscore")


@dataclass(frozen=True)
class EncodedQueries:
    """What the encoder returned for a batch of queries: unit vectors, the seconds they
    waited in the batcher's queue before their batch ran, and each query's tokens."""

    vectors: np.ndarray
    queue_seconds: float = 0.0
    token_counts: tuple[int, ...] = ()


@dataclass(frozen=True)
class SearchOptions:
    """A search as a caller asks for it; None means the configured default."""

    query: str
    namespace: str = ""
    k: int | None = None
    mode: SearchMode | None = None
    rerank: bool | None = None
    dense_candidates: int | None = None
    bm25_candidates: int | None = None
    rerank_top_n: int | None = None
    fusion: str | None = None
    rrf_k: float | None = None
    dense_weight: float | None = None
    bm25_weight: float | None = None
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    max_age_seconds: float | None = None
    recency_half_life_seconds: float | None = None
    recency_weight: float = 0.0
    request_id: str = ""
    # Only chunks first indexed at or before this instant (POSIX seconds).
    as_of: float | None = None


@dataclass(frozen=True)
class ResolvedSearch:
    query: str
    namespace: str
    k: int
    mode: SearchMode
    rerank: bool
    dense_candidates: int
    bm25_candidates: int
    rerank_top_n: int
    fusion: str
    rrf_k: float
    weights: Mapping[str, float]
    filters: tuple[tuple[str, tuple[str, ...]], ...]
    max_age_seconds: float | None
    recency_half_life_seconds: float | None
    recency_weight: float
    request_id: str
    as_of: float | None = None


@dataclass(frozen=True)
class SearchHit:
    chunk: Chunk
    title: str
    metadata: Mapping[str, str]
    source_uri: str
    score: float
    rank: int
    dense: StageScore | None
    bm25: StageScore | None
    fused: StageScore | None
    rerank: StageScore | None
    staleness_seconds: float
    # The document's expiry and TTL (None: it does not expire).
    expires_at: float | None = None
    ttl_seconds: float | None = None


@dataclass(frozen=True)
class SearchResult:
    request_id: str
    hits: list[SearchHit]
    mode: SearchMode
    # The method that fused the dense and BM25 candidates; None when nothing was fused (a
    # dense-only or BM25-only search).
    fusion: str | None
    reranked: bool
    rerank_fallback: bool
    rerank_fallback_reason: str
    timings: dict[str, float]
    models: tuple[ModelIdentity, ...]
    index_generation: int
    # The query's length in encoder tokens (prefix and special tokens included); 0 for BM25 only.
    query_token_count: int = 0


@dataclass
class _Work:
    """One query's state as it moves through the stages."""

    q: ResolvedSearch
    timings: dict[str, float] = field(default_factory=dict)
    vector: np.ndarray | None = None
    dense: list[Candidate] = field(default_factory=list)
    bm25: list[Candidate] = field(default_factory=list)
    fused: list[FusedCandidate] = field(default_factory=list)
    chunks: dict[int, Chunk] = field(default_factory=dict)
    docs: dict[str, DocumentMeta] = field(default_factory=dict)
    generation: int = 0
    order: list[tuple[int, float]] = field(default_factory=list)
    rerank_scores: dict[int, StageScore] = field(default_factory=dict)
    fallback_reason: str = ""
    query_token_count: int = 0
    # The query's span: the Search RPC's, or one of a batch's `search` spans (`own_span`: ended here).
    span: Span = NO_SPAN
    own_span: bool = False


class SearchPipeline:
    def __init__(
        self,
        settings: Settings,
        store: DocumentStore,
        embed_queries: Callable[[Sequence[str]], EncodedQueries],
        encoder_identity: ModelIdentity,
        rerank_stage: RerankStage | None = None,
        reranker_identity: ModelIdentity | None = None,
        telemetry: Telemetry | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embed_queries = embed_queries
        self.rerank_stage = rerank_stage
        self.models = tuple(m for m in (encoder_identity, reranker_identity) if m is not None)
        self.telemetry = telemetry
        self.tracing = tracing
        # Model identities as span attributes: name@revision.
        self._encoder_label = f"{encoder_identity.name}@{encoder_identity.revision}"
        self._reranker_label = (f"{reranker_identity.name}@{reranker_identity.revision}"
                                if reranker_identity is not None else "")
        self._rerank_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rerank")

    def close(self) -> None:
        self._rerank_pool.shutdown(wait=False, cancel_futures=True)

    # --- option resolution ----------------------------------------------------

    def resolve(self, o: SearchOptions, where: str = "") -> ResolvedSearch:
        """Apply defaults and validate; raises InvalidArgument / FailedPrecondition."""
        s, lim = self.settings.search, self.settings.limits
        at = f"{where}: " if where else ""
        query = o.query
        if not query or not query.strip():
            raise InvalidArgument(f"{at}query is empty")
        if len(query) > lim.max_query_chars:
            raise InvalidArgument(
                f"{at}query has {len(query)} characters, over limits.max_query_chars={lim.max_query_chars}"
            )
        try:
            namespace = normalize_namespace(o.namespace)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{at}{exc}") from None
        k = lim.default_k if o.k is None else o.k
        if not 1 <= k <= lim.max_k:
            raise InvalidArgument(f"{at}k must be in 1..{lim.max_k} (limits.max_k), got {k}")
        mode = o.mode or SearchMode(s.default_mode)

        def depth(name: str, value: int | None, default: int) -> int:
            value = default if value is None else value
            if not 1 <= value <= lim.max_candidates:
                raise InvalidArgument(
                    f"{at}{name} must be in 1..{lim.max_candidates} (limits.max_candidates), got {value}"
                )
            return value

        dense_candidates = depth("dense_candidates", o.dense_candidates, max(s.dense_candidates, k))
        bm25_candidates = depth("bm25_candidates", o.bm25_candidates, max(s.bm25_candidates, k))
        rerank_top_n = depth("rerank_top_n", o.rerank_top_n, s.rerank_top_n)
        fusion = o.fusion or s.fusion
        if fusion not in FUSION_METHODS:
            raise InvalidArgument(f"{at}fusion {fusion!r} is not one of {', '.join(FUSION_METHODS)}")
        rrf_k = s.rrf_k if o.rrf_k is None else o.rrf_k
        if not rrf_k > 0 or not math.isfinite(rrf_k):
            raise InvalidArgument(f"{at}rrf_k must be > 0, got {rrf_k}")
        weights = {
            "dense": s.dense_weight if o.dense_weight is None else o.dense_weight,
            "bm25": s.bm25_weight if o.bm25_weight is None else o.bm25_weight,
        }
        for name, w in weights.items():
            if not w >= 0 or not math.isfinite(w):
                raise InvalidArgument(f"{at}{name}_weight must be >= 0, got {w}")
        if len(o.filters) > lim.max_filter_clauses:
            raise InvalidArgument(
                f"{at}filters has {len(o.filters)} clauses, over the limit of {lim.max_filter_clauses} "
                "(limits.max_filter_clauses)")
        value_count = sum(len(values) for _, values in o.filters)
        if value_count > lim.max_filter_values:
            raise InvalidArgument(
                f"{at}filters have {value_count} any_of values in all, over the limit of "
                f"{lim.max_filter_values} (limits.max_filter_values)")
        if len(o.request_id) > lim.max_request_id_chars:
            raise InvalidArgument(
                f"{at}request_id has {len(o.request_id)} characters, over limits.max_request_id_chars="
                f"{lim.max_request_id_chars}")
        filters = []
        for i, (key, values) in enumerate(o.filters):
            if not NAME_PATTERN.match(key or ""):
                raise InvalidArgument(
                    f"{at}filters[{i}].key {key[:140]!r} is invalid: use 1..128 characters of [A-Za-z0-9_.-]"
                )
            if not values:
                raise InvalidArgument(f"{at}filters[{i}] (key {key!r}) has no values in any_of")
            filters.append((key, tuple(values)))
        if o.max_age_seconds is not None and not (o.max_age_seconds >= 0 and math.isfinite(o.max_age_seconds)):
            raise InvalidArgument(f"{at}max_age_seconds must be >= 0, got {o.max_age_seconds}")
        max_age = o.max_age_seconds or None
        weight = o.recency_weight
        half_life = o.recency_half_life_seconds
        if weight:
            if not 0 <= weight <= 1:
                raise InvalidArgument(f"{at}recency.weight must be in [0, 1], got {weight}")
            if half_life is None or not half_life > 0:
                raise InvalidArgument(f"{at}recency.half_life_seconds must be > 0, got {half_life}")
        as_of = o.as_of
        if as_of is not None and not math.isfinite(as_of):
            raise InvalidArgument(f"{at}as_of must be a valid instant, got {as_of}")
        rerank = s.rerank if o.rerank is None else o.rerank
        if rerank and self.rerank_stage is None:
            if o.rerank:
                raise FailedPrecondition(
                    f"{at}re-ranking was requested but no reranker is configured (reranker.model)"
                )
            rerank = False
        return ResolvedSearch(
            query, namespace, k, mode, rerank, dense_candidates, bm25_candidates, rerank_top_n,
            fusion, rrf_k, weights, tuple(filters), max_age, half_life, weight,
            o.request_id or uuid.uuid4().hex, as_of,
        )

    # --- search ---------------------------------------------------------------

    def search(self, options: SearchOptions, *, observe: bool = True,
               deadline: Deadline = NO_DEADLINE) -> SearchResult:
        return self.search_many([options], observe=observe, deadline=deadline, batch=False)[0]

    def search_many(self, options: Sequence[SearchOptions], *, observe: bool = True,
                    deadline: Deadline = NO_DEADLINE, batch: bool = True) -> list[SearchResult]:
        """Search a batch: one encoder call for all queries, re-rankings in parallel
        (so the re-ranker's dynamic batcher sees them together).

        `observe=False` keeps the searches out of the serving metrics (stage
        latencies, served ages, rerank fallbacks): evaluations use it so that
        SLO alerts see client traffic only. A batch's `total` is the batch's
        time; it is not observed as `stage="total"` (one sample per query would
        count one slow batch as many slow searches in the latency SLO): the
        BatchSearch RPC's own duration is in retrieval_request_duration_seconds.

        The deadline is checked before encoding and before re-ranking: work whose
        caller has gone or whose deadline passed is dropped (DeadlineExceeded or
        Cancelled).

        Spans (tracing on, `observe` only: an evaluation's thousands of searches make none, its
        RPC span carries the counts): a single search's attributes go on the current span (the
        Search RPC's), a batch gets one `search` span per query under it; encode is one span for
        the batch, the other stages one per query, under the query's span."""
        started = time.perf_counter()
        many = len(options) > 1
        work = [_Work(self.resolve(o, f"queries[{i}]" if many else "")) for i, o in enumerate(options)]
        for w in work:
            if not self.store.has_namespace(w.q.namespace):
                raise NotFound(f"namespace {w.q.namespace!r} does not exist")
        tracing = self.tracing if observe else OFF
        if tracing.enabled:
            self._open_spans(work, tracing, batch)
        try:
            deadline.check("encoding the query")
            self._encode([w for w in work if w.q.mode != SearchMode.BM25], tracing,
                         None if batch else work[0].span)
            for w in work:
                self._retrieve(w, tracing)
            reranking = [w for w in work if w.q.rerank and w.fused]
            if reranking:
                deadline.check("re-ranking")
            rerank = functools.partial(self._rerank, observe=observe, tracing=tracing)
            if len(reranking) > 1:
                list(self._rerank_pool.map(rerank, reranking))
            else:
                for w in reranking:
                    rerank(w)
            total = time.perf_counter() - started
            results = []
            for w in work:
                w.timings["total"] = total if many else time.perf_counter() - started
                results.append(self._result(w, observe, observe_total=not batch))
            return results
        finally:
            for w in work:
                if w.own_span:
                    w.span.end()

    def _open_spans(self, work: list[_Work], tracing: Tracing, batch: bool) -> None:
        """Give each query its span and the attributes known before it runs."""
        current = tracing.current()
        for w in work:
            # A search outside any RPC (a direct caller of the pipeline) gets a span of its own too.
            if batch or not current.is_recording():
                w.span, w.own_span = tracing.start("search", current), True
            else:
                w.span = current
            if not w.span.is_recording():
                continue
            q = w.q
            w.span.set_attributes({
                "retrieval.request_id": q.request_id, "retrieval.namespace": q.namespace,
                "retrieval.mode": q.mode.value, "retrieval.k": q.k, "retrieval.rerank": q.rerank,
            })
            if q.mode == SearchMode.HYBRID:
                w.span.set_attribute("retrieval.fusion", q.fusion)
            if q.mode != SearchMode.BM25:
                w.span.set_attribute("retrieval.encoder", self._encoder_label)
            if q.rerank:
                w.span.set_attribute("retrieval.reranker", self._reranker_label)

    def _encode(self, work: list[_Work], tracing: Tracing = OFF, parent: Span | None = None) -> None:
        """One encoder call for all of `work`; its span is under `parent` (default: the current span)."""
        if not work:
            return
        t = time.perf_counter()
        prefix = self.settings.encoder.query_prefix
        with tracing.stage("encode", parent) as span:
            encoded = self.embed_queries([prefix + w.q.query for w in work])
            if span.is_recording():
                span.set_attributes({"retrieval.encoder": self._encoder_label, "retrieval.query_count": len(work),
                                     "retrieval.encode_queue_seconds": encoded.queue_seconds})
        elapsed = time.perf_counter() - t
        vectors = encoded.vectors
        if len(vectors) != len(work):
            raise RuntimeError(f"the encoder returned {len(vectors)} vectors for {len(work)} queries")
        for i, (w, v) in enumerate(zip(work, vectors)):
            w.vector = v
            w.timings["encode"] = elapsed
            w.timings["encode_queue"] = encoded.queue_seconds
            if encoded.token_counts:
                w.query_token_count = encoded.token_counts[i]

    def _retrieve(self, w: _Work, tracing: Tracing = OFF) -> None:
        q = w.q
        now = time.time()
        where = SearchFilter.of(q.filters, now - q.max_age_seconds if q.max_age_seconds else None,
                                visible_at=now, indexed_by=q.as_of)
        with self.store.reader() as reader:
            w.generation = reader.generation
            if q.mode != SearchMode.BM25:
                t = time.perf_counter()
                if w.vector is None:
                    raise RuntimeError("dense retrieval before the query was encoded")
                with tracing.stage("dense", w.span) as span:
                    w.dense = reader.dense(q.namespace, w.vector, q.dense_candidates, where)
                    span.set_attribute("retrieval.candidate_count", len(w.dense))
                w.span.set_attribute("retrieval.dense.candidate_count", len(w.dense))
                w.timings["dense"] = time.perf_counter() - t
            if q.mode != SearchMode.DENSE:
                t = time.perf_counter()
                with tracing.stage("bm25", w.span) as span:
                    w.bm25 = reader.lexical(q.namespace, q.query, q.bm25_candidates, where)
                    span.set_attribute("retrieval.candidate_count", len(w.bm25))
                w.span.set_attribute("retrieval.bm25.candidate_count", len(w.bm25))
                w.timings["bm25"] = time.perf_counter() - t
            t = time.perf_counter()
            with tracing.stage("fuse", w.span) as span:
                w.fused = self._fuse(w)
                span.set_attribute("retrieval.candidate_count", len(w.fused))
            w.span.set_attribute("retrieval.fused.candidate_count", len(w.fused))
            w.timings["fuse"] = time.perf_counter() - t
            t = time.perf_counter()
            # Only what can be served or re-ranked is read from the ledger; recency decay
            # can promote any candidate, so it needs them all.
            needed = len(w.fused) if q.recency_weight else max(q.k, q.rerank_top_n if q.rerank else 0)
            w.fused = w.fused[:needed]
            with tracing.stage("hydrate", w.span) as span:
                w.chunks, w.docs = reader.hydrate(q.namespace, [c.key for c in w.fused])
                span.set_attribute("retrieval.chunk_count", len(w.chunks))
            w.timings["hydrate"] = time.perf_counter() - t
        w.fused = [c for c in w.fused if c.key in w.chunks]
        if q.recency_weight and q.recency_half_life_seconds:  # resolve() checked both
            w.fused = _decay(w.fused, w.chunks, now, q.recency_half_life_seconds, q.recency_weight)
        w.order = [(c.key, c.score) for c in w.fused]

    def _fuse(self, w: _Work) -> list[FusedCandidate]:
        q = w.q
        if q.mode == SearchMode.DENSE:
            return _single("dense", w.dense)
        if q.mode == SearchMode.BM25:
            return _single("bm25", w.bm25)
        fuser = make_fuser(q.fusion, rrf_k=q.rrf_k)
        return fuser.fuse({"dense": w.dense, "bm25": w.bm25}, q.weights)

    def _rerank(self, w: _Work, observe: bool = True, tracing: Tracing = OFF) -> None:
        t = time.perf_counter()
        texts = {key: chunk.text for key, chunk in w.chunks.items()}
        if self.rerank_stage is None:
            raise FailedPrecondition("re-ranking was requested but no reranker is configured (reranker.model)")
        # On a re-rank pool thread for a batch: the query's span is the parent, not this thread's context.
        with tracing.stage("rerank", w.span) as span:
            outcome = self.rerank_stage.rerank(w.q.query, w.fused, texts, w.q.rerank_top_n)
            if span.is_recording():
                span.set_attributes({"retrieval.reranker": self._reranker_label,
                                     "retrieval.candidate_count": 0 if outcome.fallback else outcome.reranked_count})
                if outcome.fallback:
                    span.set_attribute("retrieval.rerank_fallback_reason", outcome.reason)
        w.timings["rerank"] = time.perf_counter() - t
        if outcome.fallback:
            w.fallback_reason = outcome.reason
            if self.telemetry and observe:
                self.telemetry.rerank_fallbacks.labels(outcome.reason).inc()
            return
        w.order = list(outcome.order)
        reranked = outcome.order[: outcome.reranked_count]
        w.rerank_scores = {key: StageScore(i + 1, score) for i, (key, score) in enumerate(reranked)}

    def _result(self, w: _Work, observe: bool, observe_total: bool = True) -> SearchResult:
        q = w.q
        now = time.time()
        fused_by_key = {c.key: (i + 1, c) for i, c in enumerate(w.fused)}
        hits = []
        for rank, (key, score) in enumerate(w.order[: q.k], start=1):
            chunk = w.chunks[key]
            fused_rank, fused = fused_by_key[key]
            doc = w.docs.get(chunk.doc_id, _NO_DOCUMENT)
            hits.append(
                SearchHit(
                    chunk=chunk, title=doc.title, metadata=doc.metadata, source_uri=doc.source_uri,
                    score=float(score), rank=rank,
                    dense=fused.sources.get("dense"), bm25=fused.sources.get("bm25"),
                    fused=StageScore(fused_rank, fused.score) if q.mode == SearchMode.HYBRID else None,
                    rerank=w.rerank_scores.get(key),
                    staleness_seconds=max(0.0, now - chunk.source_updated_at),
                    expires_at=doc.expires_at, ttl_seconds=doc.ttl_seconds,
                )
            )
        if w.span.is_recording():
            w.span.set_attributes({"retrieval.hit_count": len(hits), "retrieval.index_generation": w.generation})
            if q.rerank:
                w.span.set_attribute("retrieval.reranked.candidate_count", len(w.rerank_scores))
            if w.fallback_reason:
                w.span.set_attribute("retrieval.rerank_fallback_reason", w.fallback_reason)
        if self.telemetry and observe:
            timings = w.timings if observe_total else {s: v for s, v in w.timings.items() if s != "total"}
            self.telemetry.observe_stages(q.mode.value, timings)
            self.telemetry.observe_served(q.namespace, [h.staleness_seconds for h in hits])
        return SearchResult(
            request_id=q.request_id, hits=hits, mode=q.mode,
            fusion=q.fusion if q.mode == SearchMode.HYBRID else None,
            reranked=bool(w.rerank_scores), rerank_fallback=bool(w.fallback_reason),
            rerank_fallback_reason=w.fallback_reason, timings=w.timings, models=self.models,
            index_generation=w.generation, query_token_count=w.query_token_count,
        )


_NO_DOCUMENT = DocumentMeta("", {}, "")


def _single(name: str, candidates: Sequence[Candidate]) -> list[FusedCandidate]:
    return [
        FusedCandidate(c.key, c.score, {name: StageScore(i + 1, c.score)})
        for i, c in enumerate(candidates)
    ]


def _decay(
    fused: list[FusedCandidate], chunks: Mapping[int, Chunk], now: float,
    half_life: float, weight: float,
) -> list[FusedCandidate]:
    """score' * ((1 - weight) + weight * 0.5 ** (age / half_life)), then re-sorted.

    Raw scores can be zero or negative (z-scores, BM25 with rank_bm25's negative
    idf floor), where a factor would do nothing or the opposite, so they are first
    shifted into [span, 2 * span] (score' = score - min + span, span = max - min,
    or 1 when all are equal): order-preserving and strictly positive."""
    if not fused:
        return fused
    low = min(c.score for c in fused)
    span = (max(c.score for c in fused) - low) or 1.0
    decayed = []
    for c in fused:
        age = max(0.0, now - chunks[c.key].source_updated_at)
        factor = (1.0 - weight) + weight * 0.5 ** (age / half_life)
        decayed.append(FusedCandidate(c.key, (c.score - low + span) * factor, c.sources))
    decayed.sort(key=lambda c: (-c.score, c.key))
    return decayed
