"""What the retrieval client returns: frozen dataclasses, no protobuf.

Instants are timezone-aware UTC datetimes (None where the server sent none); durations and
ages are float seconds; counts are ints named as the API names them, `<qualifier>_<thing>_count`
(`document_count`, `added_document_count`; protos/retrieval/v1/retrieval.proto). Modes,
fusion methods, stages and rejection reasons are the lowercase strings the CLI and the
settings use ("hybrid", "minmax", "reranked", "too_large").

The counts' names before 0.2.0 (`documents_added`, `queries_evaluated`, ...) still read, with
a DeprecationWarning, until the release after 0.2.0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping, Sequence, TypedDict

# The inputs, as strings. Each stands for the protobuf enum value of the same name.
Mode = Literal["dense", "bm25", "hybrid"]
Fusion = Literal["rrf", "minmax", "zscore"]
OnInvalid = Literal["reject", "skip"]
JudgementLevel = Literal["document", "chunk"]
EvalStage = Literal["dense", "bm25", "fused", "reranked"]
# A metadata filter: key -> one value or any of several. Keys are AND-ed.
Filters = Mapping[str, "str | Sequence[str]"]


class _Renamed:
    """A count's name before 0.2.0, kept as a read-only alias of its new name that warns
    (DeprecationWarning) until the release after 0.2.0. Not a dataclass field: asdict() and the
    CLI's --json show the new names only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.old = ""

    def __set_name__(self, owner: type, old: str) -> None:
        self.old = old

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        warnings.warn(f"{type(instance).__name__}.{self.old} is deprecated since 0.2.0: read {self.name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(instance, self.name)


@dataclass(frozen=True)
class StageScore:
    """Where one stage placed a hit: 1-based rank and that stage's raw score (cosine
    similarity, BM25 score, fused score or cross-encoder logit)."""

    rank: int
    score: float


@dataclass(frozen=True)
class Lineage:
    """What each stage said of a hit; None where that stage did not see it."""

    dense: StageScore | None = None
    bm25: StageScore | None = None
    fused: StageScore | None = None
    rerank: StageScore | None = None


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk of a document, its final rank and score, and its lineage."""

    rank: int
    score: float
    text: str
    chunk_id: str
    doc_id: str
    namespace: str
    title: str
    metadata: Mapping[str, str]
    source_uri: str
    # The chunk's span in the document's text, in code points, end exclusive.
    start_char: int
    end_char: int
    # 0-based position of the chunk in its document.
    ordinal: int
    source_updated_at: datetime | None
    first_indexed_at: datetime | None
    last_verified_at: datetime | None
    # Seconds between source_updated_at and the time of the search.
    staleness_seconds: float
    lineage: Lineage
    # When the hit's document expires (session memory); None: never.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Model:
    """A model that served a request: role ("encoder" or "reranker"), configured name or
    path, weights hash, output dimension (0 for a reranker) and device."""

    role: str
    name: str
    revision: str
    dimension: int
    device: str


@dataclass(frozen=True)
class SearchResult:
    """One query's hits and how they were found. `timings` are seconds by stage, in the
    stage names of the Prometheus `stage` label (encode, dense, bm25, fuse, rerank,
    hydrate, total); `index_generation` is the generation of the index the search read."""

    hits: tuple[Hit, ...]
    request_id: str
    mode: Mode
    # None when the server reported none (no fusion took place).
    fusion: Fusion | None
    reranked: bool
    rerank_fallback: bool
    rerank_fallback_reason: str
    timings: Mapping[str, float]
    models: tuple[Model, ...]
    index_generation: int
    # The query's length in encoder tokens (prefix and special tokens included); 0 for BM25 only.
    query_token_count: int = 0


@dataclass(frozen=True)
class RejectedDocument:
    """A document an ingest with on_invalid="skip" left out: its 0-based position in the
    call (in the whole stream for `ingest`), the offending field, the reason
    ("missing_field", "too_large", "malformed") and what is wrong."""

    index: int
    doc_id: str
    field: str
    reason: str
    message: str


@dataclass(frozen=True)
class IngestSummary:
    """What an ingest committed (retrieval.proto, IngestSummary)."""

    added_document_count: int
    updated_document_count: int
    unchanged_document_count: int
    rejected_document_count: int
    added_chunk_count: int
    unchanged_chunk_count: int
    removed_chunk_count: int
    embedded_chunk_count: int
    index_generation: int
    rejected: tuple[RejectedDocument, ...] = ()

    @property
    def committed_document_count(self) -> int:
        """Documents committed: added, updated or unchanged (verified)."""
        return self.added_document_count + self.updated_document_count + self.unchanged_document_count

    documents_added = _Renamed("added_document_count")
    documents_updated = _Renamed("updated_document_count")
    documents_unchanged = _Renamed("unchanged_document_count")
    documents_rejected = _Renamed("rejected_document_count")
    chunks_added = _Renamed("added_chunk_count")
    chunks_unchanged = _Renamed("unchanged_chunk_count")
    chunks_removed = _Renamed("removed_chunk_count")
    chunks_embedded = _Renamed("embedded_chunk_count")
    documents_committed = _Renamed("committed_document_count")


@dataclass(frozen=True)
class DeleteSummary:
    """What a delete removed; `not_found` lists doc_ids that did not exist (not an error)."""

    deleted_document_count: int
    removed_chunk_count: int
    not_found: tuple[str, ...]
    index_generation: int

    documents_deleted = _Renamed("deleted_document_count")
    chunks_removed = _Renamed("removed_chunk_count")


@dataclass(frozen=True)
class Chunk:
    """A stored chunk with its freshness timestamps."""

    chunk_id: str
    namespace: str
    doc_id: str
    ordinal: int
    text: str
    start_char: int
    end_char: int
    token_count: int
    source_updated_at: datetime | None
    first_indexed_at: datetime | None
    last_verified_at: datetime | None


@dataclass(frozen=True)
class StoredDocument:
    """A document as stored: what was sent, when it was first indexed and last verified,
    the sha256 of its normalized text, and its chunks in order (when asked for)."""

    namespace: str
    doc_id: str
    title: str
    text: str
    metadata: Mapping[str, str]
    source_uri: str
    source_updated_at: datetime | None
    first_indexed_at: datetime | None
    last_verified_at: datetime | None
    content_hash: str
    chunk_count: int
    chunks: tuple[Chunk, ...] = ()
    # Session memory: when it expires and its TTL (None: it does not expire / has no TTL).
    expires_at: datetime | None = None
    ttl_seconds: float | None = None


@dataclass(frozen=True)
class NamespaceInfo:
    """A namespace's counts; `dense_vector_count` and `bm25_chunk_count` (what each index
    holds) equal `chunk_count` when the indexes are complete."""

    name: str
    document_count: int
    chunk_count: int
    dense_vector_count: int
    bm25_chunk_count: int
    oldest_chunk_age_seconds: float


@dataclass(frozen=True)
class ServerInfo:
    """What Info says of the server. `config` is the effective configuration, shown only
    to an admin of every namespace (else None); `limits` every input limit by setting name."""

    version: str
    models: tuple[Model, ...]
    namespaces: tuple[NamespaceInfo, ...]
    index_generation: int
    dense_index: str
    config: Mapping[str, object] | None
    limits: Mapping[str, float]


@dataclass(frozen=True)
class LabeledQuery:
    """A query with its relevance judgements: target id (doc_id, or chunk_id for a
    chunk-level set) -> graded relevance (>= 0; 0 = judged not relevant)."""

    query_id: str
    text: str
    judgements: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QuerySetInfo:
    """A registered query set. `source` is "upload" or the configured path;
    `last_evaluated_at` None if it was never evaluated."""

    name: str
    namespace: str
    level: JudgementLevel
    query_count: int
    judgement_count: int
    source: str = "upload"
    last_evaluated_at: datetime | None = None


@dataclass(frozen=True)
class LatencySummary:
    p50_seconds: float
    p90_seconds: float
    p99_seconds: float
    mean_seconds: float
    max_seconds: float


@dataclass(frozen=True)
class StalenessSummary:
    """Age (now - source_updated_at) of the served hits."""

    p50_seconds: float
    p90_seconds: float
    max_seconds: float


@dataclass(frozen=True)
class StageEvaluation:
    """One stage's metrics over a query set, addressed as "ndcg@10", "recall@5", "map"
    (definitions: protos/retrieval/v1/evaluation.proto)."""

    stage: EvalStage
    metrics: Mapping[str, float]
    latency: LatencySummary
    staleness: StalenessSummary
    mean_timings: Mapping[str, float]
    # Queries whose re-ranking fell back to the fused order.
    rerank_fallback_count: int

    rerank_fallbacks = _Renamed("rerank_fallback_count")


@dataclass(frozen=True)
class QueryEvaluation:
    """One query at one stage: its metrics, latency and retrieved target ids in rank order."""

    query_id: str
    stage: EvalStage
    metrics: Mapping[str, float]
    latency_seconds: float
    retrieved: tuple[str, ...]


@dataclass(frozen=True)
class EvaluationResult:
    query_set: str
    # Queries with at least one relevant judgement: those in every average.
    evaluated_query_count: int
    # Queries without any relevant judgement.
    skipped_query_count: int
    stages: tuple[StageEvaluation, ...]
    per_query: tuple[QueryEvaluation, ...]
    started_at: datetime | None
    duration_seconds: float

    queries_evaluated = _Renamed("evaluated_query_count")
    queries_skipped = _Renamed("skipped_query_count")

    def stage(self, name: EvalStage) -> StageEvaluation:
        """The result of one stage; KeyError if it was not evaluated."""
        for result in self.stages:
            if result.stage == name:
                return result
        raise KeyError(f"stage {name!r} was not evaluated; evaluated: {[s.stage for s in self.stages]}")


class SearchOptions(TypedDict, total=False):
    """Search options; each one left out means the server's configured default."""

    # Namespace to search ("" = "default").
    namespace: str
    # Number of hits, 1..limits.max_k.
    k: int
    mode: Mode
    # Re-rank the fused candidates with the cross-encoder.
    rerank: bool
    # Metadata filters: {"team": "red", "lang": ["en", "de"]} keeps chunks whose document has
    # team == "red" and lang "en" or "de". The keys "doc_id" and "source_uri" filter on those.
    filters: Filters
    fusion: Fusion
    # Candidates taken from each retriever before fusion, and passed to the re-ranker.
    dense_candidates: int
    bm25_candidates: int
    rerank_top_n: int
    # RRF constant (> 0) and per-retriever fusion weights (>= 0).
    rrf_k: float
    dense_weight: float
    bm25_weight: float
    # Only chunks whose source changed at most this many seconds ago.
    max_age_seconds: float
    # Exponential recency decay after fusion (protos/retrieval/v1/retrieval.proto, RecencyDecay):
    # half-life in seconds and weight in [0, 1].
    recency_half_life_seconds: float
    recency_weight: float
    # Echoed back in the result; generated when left out.
    request_id: str
    # Time-aware recall: only chunks first indexed at or before this instant (datetime or POSIX seconds).
    as_of: datetime | float
    # Extend the TTL of the hits' documents (None/left out: the namespace's policy).
    refresh_ttl: bool
