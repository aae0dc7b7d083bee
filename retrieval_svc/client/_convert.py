"""Protobuf <-> the client's types: requests from plain Python values, results from responses.
The one place where the clients see protobuf messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client.types import (
    Chunk, DeleteSummary, EvaluationResult, Hit, IngestSummary, LatencySummary, Lineage, Model,
    NamespaceInfo, QueryEvaluation, QuerySetInfo, RejectedDocument, SearchOptions, SearchResult, ServerInfo,
    StageEvaluation, StageScore, StalenessSummary, StoredDocument,
)
from retrieval_svc.domain import Document

# A document to ingest: a Document, or a mapping with its fields (doc_id, text, title,
# metadata, source_uri, source_updated_at as a datetime or POSIX seconds, namespace, and for
# session memory expires_at (a datetime or POSIX seconds) or ttl_seconds).
DocumentLike = Document | Mapping[str, Any]

MODES = {"dense": pb.SEARCH_MODE_DENSE, "bm25": pb.SEARCH_MODE_BM25, "hybrid": pb.SEARCH_MODE_HYBRID}
FUSIONS = {"rrf": pb.FUSION_METHOD_RRF, "minmax": pb.FUSION_METHOD_MINMAX, "zscore": pb.FUSION_METHOD_ZSCORE}
ON_INVALID = {"reject": pb.INVALID_DOCUMENT_POLICY_REJECT, "skip": pb.INVALID_DOCUMENT_POLICY_SKIP}
LEVELS = {"document": epb.JUDGEMENT_LEVEL_DOCUMENT, "chunk": epb.JUDGEMENT_LEVEL_CHUNK}
EVAL_STAGES = {"dense": epb.EVAL_STAGE_DENSE, "bm25": epb.EVAL_STAGE_BM25, "fused": epb.EVAL_STAGE_FUSED,
               "reranked": epb.EVAL_STAGE_RERANKED}
REJECTION_REASONS = {pb.REJECTION_REASON_MISSING_FIELD: "missing_field", pb.REJECTION_REASON_TOO_LARGE: "too_large",
                     pb.REJECTION_REASON_MALFORMED: "malformed"}

_DOCUMENT_FIELDS = ("namespace", "doc_id", "text", "title", "metadata", "source_updated_at", "source_uri",
                    "expires_at", "ttl_seconds")

T = TypeVar("T")


def choice(value: str, table: Mapping[str, int], what: str) -> int:
    """The enum value a string stands for; ValueError naming the choices."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{what} must be one of {', '.join(table)}; got {value!r}") from None


def _name(value: int, table: Mapping[str, int]) -> str | None:
    for name, number in table.items():
        if number == value:
            return name
    return None


def _timestamp(value: datetime | float | int, what: str) -> Timestamp:
    out = Timestamp()
    if isinstance(value, datetime):
        out.FromDatetime(value)  # a naive datetime is read as UTC
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.FromNanoseconds(int(round(value * 1e9)))
    else:
        raise TypeError(f"{what} must be a datetime or POSIX seconds, got {type(value).__name__}")
    return out


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping of strings, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{what}[{key!r}] must be a string, got {type(item).__name__} {item!r}")
    return dict(value)


def document_to_pb(doc: DocumentLike, namespace: str = "") -> pb.Document:
    """A Document, or a mapping of its fields, as a pb.Document; `namespace` for a
    document that names none."""
    if isinstance(doc, Mapping):
        unknown = sorted(set(doc) - set(_DOCUMENT_FIELDS))
        if unknown:
            raise ValueError(f"unknown document field {unknown[0]!r}; the fields are {', '.join(_DOCUMENT_FIELDS)}")
        fields = dict(doc)
    else:
        fields = {name: getattr(doc, name) for name in _DOCUMENT_FIELDS}
    what = f"document {fields.get('doc_id', '')!r}"
    out = pb.Document(
        namespace=fields.get("namespace") or namespace, doc_id=fields.get("doc_id") or "",
        title=fields.get("title") or "", text=fields.get("text") or "",
        metadata=_strings(fields.get("metadata") or {}, f"{what}: metadata"),
        source_uri=fields.get("source_uri") or "",
    )
    if fields.get("source_updated_at") is not None:
        out.source_updated_at.CopyFrom(_timestamp(fields["source_updated_at"], f"{what}: source_updated_at"))
    if fields.get("expires_at") is not None:
        out.expires_at.CopyFrom(_timestamp(fields["expires_at"], f"{what}: expires_at"))
    if fields.get("ttl_seconds") is not None:
        out.ttl_seconds = float(fields["ttl_seconds"])
    return out


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def filters_to_pb(filters: Mapping[str, str | Sequence[str]]) -> list[pb.FilterClause]:
    """{"team": "red", "lang": ["en", "de"]} -> clauses team in {red} AND lang in {en, de}."""
    if not isinstance(filters, Mapping):
        raise TypeError(f"filters must be a mapping of key -> value or values, got {type(filters).__name__}")
    clauses = []
    for key, value in filters.items():
        values: list[object] = [value] if isinstance(value, str) else (
            list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value])
        if not values:
            raise ValueError(f"filter {key!r}: give at least one value")
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"filter {key!r}: values must be strings (one, or a list of any of several), "
                            f"got {value!r}")
        clauses.append(pb.FilterClause(key=key, any_of=[str(v) for v in values]))
    return clauses


def search_request(query: str, options: SearchOptions) -> pb.SearchRequest:
    """A SearchRequest from a query and SearchOptions; TypeError for an unknown option."""
    unknown = sorted(set(options) - set(SearchOptions.__annotations__))
    if unknown:
        raise TypeError(f"unknown search option {unknown[0]!r}; the options are "
                        f"{', '.join(SearchOptions.__annotations__)}")
    request = pb.SearchRequest(
        query=query, namespace=options.get("namespace", ""), k=options.get("k", 0),
        dense_candidates=options.get("dense_candidates", 0), bm25_candidates=options.get("bm25_candidates", 0),
        rerank_top_n=options.get("rerank_top_n", 0), max_age_seconds=options.get("max_age_seconds", 0.0),
        request_id=options.get("request_id", ""),
    )
    if options.get("mode") is not None:
        request.mode = choice(options["mode"], MODES, "mode")  # type: ignore[assignment]
    if options.get("fusion") is not None:
        request.fusion = choice(options["fusion"], FUSIONS, "fusion")  # type: ignore[assignment]
    if options.get("as_of") is not None:
        request.as_of.CopyFrom(_timestamp(options["as_of"], "as_of"))
    for name in ("rerank", "rrf_k", "dense_weight", "bm25_weight", "refresh_ttl"):
        if options.get(name) is not None:
            setattr(request, name, options[name])
    if options.get("filters"):
        request.filters.extend(filters_to_pb(options["filters"]))
    if "recency_half_life_seconds" in options or "recency_weight" in options:
        request.recency.half_life_seconds = options.get("recency_half_life_seconds", 0.0)
        request.recency.weight = options.get("recency_weight", 0.0)
    return request


def labeled_query_to_pb(query: Any) -> epb.LabeledQuery:
    """A LabeledQuery (or any object with query_id, text, judgements), or a mapping of them."""
    if isinstance(query, Mapping):
        query_id, text, judgements = query.get("query_id", ""), query.get("text", ""), query.get("judgements")
    else:
        query_id, text, judgements = query.query_id, query.text, query.judgements
    return epb.LabeledQuery(query_id=query_id, text=text, judgements=[
        epb.Judgement(target_id=t, relevance=r) for t, r in (judgements or {}).items()])


# --- results ------------------------------------------------------------------------


def _time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    return getattr(message, name).ToDatetime(tzinfo=timezone.utc)


def _stage(hit: pb.Hit, name: str) -> StageScore | None:
    if not hit.HasField(name):
        return None
    score = getattr(hit, name)
    return StageScore(score.rank, score.score)


def hit_from_pb(h: pb.Hit) -> Hit:
    return Hit(
        rank=h.rank, score=h.score, text=h.text, chunk_id=h.chunk_id, doc_id=h.doc_id, namespace=h.namespace,
        title=h.title, metadata=dict(h.metadata), source_uri=h.source_uri, start_char=h.start_char,
        end_char=h.end_char, ordinal=h.ordinal, source_updated_at=_time(h, "source_updated_at"),
        first_indexed_at=_time(h, "first_indexed_at"), last_verified_at=_time(h, "last_verified_at"),
        staleness_seconds=h.staleness_seconds, expires_at=_time(h, "expires_at"),
        lineage=Lineage(_stage(h, "dense"), _stage(h, "bm25"), _stage(h, "fused"), _stage(h, "rerank")),
    )


def model_from_pb(m: pb.ModelIdentity) -> Model:
    return Model(role=m.role, name=m.name, revision=m.revision, dimension=m.dimension, device=m.device)


def search_result_from_pb(r: pb.SearchResponse) -> SearchResult:
    mode = _name(r.mode, MODES) or pb.SearchMode.Name(r.mode).removeprefix("SEARCH_MODE_").lower()
    return SearchResult(
        hits=tuple(hit_from_pb(h) for h in r.hits), request_id=r.request_id, mode=mode,  # type: ignore[arg-type]
        # Unset when nothing was fused; servers before 0.2.0 named their configured method
        # for dense-only and BM25-only searches too.
        fusion=_name(r.fusion, FUSIONS) if mode == "hybrid" else None,  # type: ignore[arg-type]
        reranked=r.reranked, rerank_fallback=r.rerank_fallback, rerank_fallback_reason=r.rerank_fallback_reason,
        timings={t.stage: t.seconds for t in r.timings}, models=tuple(model_from_pb(m) for m in r.models),
        index_generation=r.index_generation, query_token_count=r.query_token_count,
    )


def ingest_summary_from_pb(s: pb.IngestSummary) -> IngestSummary:
    return IngestSummary(
        added_document_count=s.added_document_count, updated_document_count=s.updated_document_count,
        unchanged_document_count=s.unchanged_document_count, rejected_document_count=s.rejected_document_count,
        added_chunk_count=s.added_chunk_count, unchanged_chunk_count=s.unchanged_chunk_count,
        removed_chunk_count=s.removed_chunk_count, embedded_chunk_count=s.embedded_chunk_count,
        index_generation=s.index_generation,
        rejected=tuple(RejectedDocument(index=r.index, doc_id=r.doc_id, field=r.field,
                                        reason=REJECTION_REASONS.get(r.reason, "unspecified"), message=r.message)
                       for r in s.rejected),
    )


def delete_summary_from_pb(r: pb.DeleteDocumentsResponse) -> DeleteSummary:
    return DeleteSummary(deleted_document_count=r.deleted_document_count, removed_chunk_count=r.removed_chunk_count,
                         not_found=tuple(r.not_found), index_generation=r.index_generation)


def chunk_from_pb(c: pb.Chunk) -> Chunk:
    return Chunk(
        chunk_id=c.chunk_id, namespace=c.namespace, doc_id=c.doc_id, ordinal=c.ordinal, text=c.text,
        start_char=c.start_char, end_char=c.end_char, token_count=c.token_count,
        source_updated_at=_time(c, "source_updated_at"), first_indexed_at=_time(c, "first_indexed_at"),
        last_verified_at=_time(c, "last_verified_at"),
    )


def stored_document_from_pb(r: pb.GetDocumentResponse) -> StoredDocument:
    d = r.document
    return StoredDocument(
        namespace=d.namespace, doc_id=d.doc_id, title=d.title, text=d.text, metadata=dict(d.metadata),
        source_uri=d.source_uri, source_updated_at=_time(d, "source_updated_at"),
        expires_at=_time(d, "expires_at"), ttl_seconds=d.ttl_seconds or None,
        first_indexed_at=_time(r, "first_indexed_at"), last_verified_at=_time(r, "last_verified_at"),
        content_hash=r.content_hash, chunk_count=r.chunk_count, chunks=tuple(chunk_from_pb(c) for c in r.chunks),
    )


def _integral(value: Any) -> Any:
    """A Struct's value with its whole numbers as ints: a Struct holds every number as a
    double, where the settings had 50051, not 50051.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def config_from_pb(r: pb.InfoResponse) -> dict[str, Any] | None:
    """InfoResponse's configuration; None when the caller may not see it."""
    if r.HasField("config"):
        return _integral(json_format.MessageToDict(r.config))
    # A server before 0.2.0 sends only the JSON text (config_json, deprecated since).
    return json.loads(r.config_json) if r.config_json else None


def namespace_info_from_pb(n: pb.NamespaceInfo) -> NamespaceInfo:
    return NamespaceInfo(name=n.name, document_count=n.document_count, chunk_count=n.chunk_count,
                         dense_vector_count=n.dense_vector_count, bm25_chunk_count=n.bm25_chunk_count,
                         oldest_chunk_age_seconds=n.oldest_chunk_age_seconds)


def server_info_from_pb(r: pb.InfoResponse) -> ServerInfo:
    return ServerInfo(
        version=r.version, models=tuple(model_from_pb(m) for m in r.models),
        namespaces=tuple(namespace_info_from_pb(n) for n in r.namespaces),
        index_generation=r.index_generation, dense_index=r.dense_index, config=config_from_pb(r),
        limits=dict(r.limits),
    )


def query_set_info_from_pb(s: epb.QuerySetInfo) -> QuerySetInfo:
    return QuerySetInfo(
        name=s.name, namespace=s.namespace, level=_name(s.level, LEVELS) or "document",  # type: ignore[arg-type]
        query_count=s.query_count, judgement_count=s.judgement_count, source=s.source,
        last_evaluated_at=_time(s, "last_evaluated_at"))


def _metrics(values: Iterable[epb.MetricValue]) -> dict[str, float]:
    return {f"{m.metric}@{m.k}" if m.k else m.metric: m.value for m in values}


def _eval_stage(value: int) -> str:
    return _name(value, EVAL_STAGES) or epb.EvalStage.Name(value).removeprefix("EVAL_STAGE_").lower()


def evaluation_from_pb(r: epb.EvaluateResponse) -> EvaluationResult:
    stages = tuple(StageEvaluation(
        stage=_eval_stage(s.stage), metrics=_metrics(s.metrics),  # type: ignore[arg-type]
        latency=LatencySummary(s.latency.p50_seconds, s.latency.p90_seconds, s.latency.p99_seconds,
                               s.latency.mean_seconds, s.latency.max_seconds),
        staleness=StalenessSummary(s.staleness.p50_seconds, s.staleness.p90_seconds, s.staleness.max_seconds),
        mean_timings={t.stage: t.seconds for t in s.mean_timings}, rerank_fallback_count=s.rerank_fallback_count,
    ) for s in r.stages)
    per_query = tuple(QueryEvaluation(
        query_id=q.query_id, stage=_eval_stage(q.stage), metrics=_metrics(q.metrics),  # type: ignore[arg-type]
        latency_seconds=q.latency_seconds, retrieved=tuple(q.retrieved),
    ) for q in r.per_query)
    return EvaluationResult(
        query_set=r.query_set, evaluated_query_count=r.evaluated_query_count,
        skipped_query_count=r.skipped_query_count,
        stages=stages, per_query=per_query, started_at=_time(r, "started_at"), duration_seconds=r.duration_seconds)
