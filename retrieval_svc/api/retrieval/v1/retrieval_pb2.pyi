import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvalidDocumentPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVALID_DOCUMENT_POLICY_UNSPECIFIED: _ClassVar[InvalidDocumentPolicy]
    INVALID_DOCUMENT_POLICY_REJECT: _ClassVar[InvalidDocumentPolicy]
    INVALID_DOCUMENT_POLICY_SKIP: _ClassVar[InvalidDocumentPolicy]

class RejectionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECTION_REASON_UNSPECIFIED: _ClassVar[RejectionReason]
    REJECTION_REASON_MISSING_FIELD: _ClassVar[RejectionReason]
    REJECTION_REASON_TOO_LARGE: _ClassVar[RejectionReason]
    REJECTION_REASON_MALFORMED: _ClassVar[RejectionReason]

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_DENSE: _ClassVar[SearchMode]
    SEARCH_MODE_BM25: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]

class FusionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_METHOD_UNSPECIFIED: _ClassVar[FusionMethod]
    FUSION_METHOD_RRF: _ClassVar[FusionMethod]
    FUSION_METHOD_MINMAX: _ClassVar[FusionMethod]
    FUSION_METHOD_ZSCORE: _ClassVar[FusionMethod]
INVALID_DOCUMENT_POLICY_UNSPECIFIED: InvalidDocumentPolicy
INVALID_DOCUMENT_POLICY_REJECT: InvalidDocumentPolicy
INVALID_DOCUMENT_POLICY_SKIP: InvalidDocumentPolicy
REJECTION_REASON_UNSPECIFIED: RejectionReason
REJECTION_REASON_MISSING_FIELD: RejectionReason
REJECTION_REASON_TOO_LARGE: RejectionReason
REJECTION_REASON_MALFORMED: RejectionReason
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_DENSE: SearchMode
SEARCH_MODE_BM25: SearchMode
SEARCH_MODE_HYBRID: SearchMode
FUSION_METHOD_UNSPECIFIED: FusionMethod
FUSION_METHOD_RRF: FusionMethod
FUSION_METHOD_MINMAX: FusionMethod
FUSION_METHOD_ZSCORE: FusionMethod

class Document(_message.Message):
    __slots__ = ("namespace", "doc_id", "title", "text", "metadata", "source_updated_at", "source_uri")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    doc_id: str
    title: str
    text: str
    metadata: _containers.ScalarMap[str, str]
    source_updated_at: _timestamp_pb2.Timestamp
    source_uri: str
    def __init__(self, namespace: _Optional[str] = ..., doc_id: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_uri: _Optional[str] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("documents", "on_invalid")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    ON_INVALID_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    on_invalid: InvalidDocumentPolicy
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., on_invalid: _Optional[_Union[InvalidDocumentPolicy, str]] = ...) -> None: ...

class RejectedDocument(_message.Message):
    __slots__ = ("index", "doc_id", "field", "reason", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    doc_id: str
    field: str
    reason: RejectionReason
    message: str
    def __init__(self, index: _Optional[int] = ..., doc_id: _Optional[str] = ..., field: _Optional[str] = ..., reason: _Optional[_Union[RejectionReason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class IngestSummary(_message.Message):
    __slots__ = ("documents_added", "documents_updated", "documents_unchanged", "chunks_added", "chunks_unchanged", "chunks_removed", "chunks_embedded", "index_generation", "documents_rejected", "rejected")
    DOCUMENTS_ADDED_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_UPDATED_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_ADDED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    documents_added: int
    documents_updated: int
    documents_unchanged: int
    chunks_added: int
    chunks_unchanged: int
    chunks_removed: int
    chunks_embedded: int
    index_generation: int
    documents_rejected: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedDocument]
    def __init__(self, documents_added: _Optional[int] = ..., documents_updated: _Optional[int] = ..., documents_unchanged: _Optional[int] = ..., chunks_added: _Optional[int] = ..., chunks_unchanged: _Optional[int] = ..., chunks_removed: _Optional[int] = ..., chunks_embedded: _Optional[int] = ..., index_generation: _Optional[int] = ..., documents_rejected: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedDocument, _Mapping]]] = ...) -> None: ...

class DeleteDocumentsRequest(_message.Message):
    __slots__ = ("namespace", "doc_ids")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DOC_IDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    doc_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., doc_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDocumentsResponse(_message.Message):
    __slots__ = ("documents_deleted", "chunks_removed", "not_found", "index_generation")
    DOCUMENTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    documents_deleted: int
    chunks_removed: int
    not_found: _containers.RepeatedScalarFieldContainer[str]
    index_generation: int
    def __init__(self, documents_deleted: _Optional[int] = ..., chunks_removed: _Optional[int] = ..., not_found: _Optional[_Iterable[str]] = ..., index_generation: _Optional[int] = ...) -> None: ...

class FilterClause(_message.Message):
    __slots__ = ("key", "any_of")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    key: str
    any_of: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., any_of: _Optional[_Iterable[str]] = ...) -> None: ...

class RecencyDecay(_message.Message):
    __slots__ = ("half_life_seconds", "weight")
    HALF_LIFE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    half_life_seconds: float
    weight: float
    def __init__(self, half_life_seconds: _Optional[float] = ..., weight: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "namespace", "k", "mode", "rerank", "dense_candidates", "bm25_candidates", "rerank_top_n", "fusion", "rrf_k", "dense_weight", "bm25_weight", "filters", "max_age_seconds", "recency", "request_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    DENSE_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    BM25_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    RERANK_TOP_N_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    DENSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BM25_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    namespace: str
    k: int
    mode: SearchMode
    rerank: bool
    dense_candidates: int
    bm25_candidates: int
    rerank_top_n: int
    fusion: FusionMethod
    rrf_k: float
    dense_weight: float
    bm25_weight: float
    filters: _containers.RepeatedCompositeFieldContainer[FilterClause]
    max_age_seconds: float
    recency: RecencyDecay
    request_id: str
    def __init__(self, query: _Optional[str] = ..., namespace: _Optional[str] = ..., k: _Optional[int] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., rerank: _Optional[bool] = ..., dense_candidates: _Optional[int] = ..., bm25_candidates: _Optional[int] = ..., rerank_top_n: _Optional[int] = ..., fusion: _Optional[_Union[FusionMethod, str]] = ..., rrf_k: _Optional[float] = ..., dense_weight: _Optional[float] = ..., bm25_weight: _Optional[float] = ..., filters: _Optional[_Iterable[_Union[FilterClause, _Mapping]]] = ..., max_age_seconds: _Optional[float] = ..., recency: _Optional[_Union[RecencyDecay, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StageScore(_message.Message):
    __slots__ = ("rank", "score")
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    score: float
    def __init__(self, rank: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("chunk_id", "doc_id", "namespace", "title", "text", "start_char", "end_char", "ordinal", "score", "rank", "metadata", "source_uri", "source_updated_at", "first_indexed_at", "last_verified_at", "dense", "bm25", "fused", "rerank", "staleness_seconds")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_CHAR_FIELD_NUMBER: _ClassVar[int]
    END_CHAR_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    SOURCE_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEXED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    BM25_FIELD_NUMBER: _ClassVar[int]
    FUSED_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    STALENESS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    doc_id: str
    namespace: str
    title: str
    text: str
    start_char: int
    end_char: int
    ordinal: int
    score: float
    rank: int
    metadata: _containers.ScalarMap[str, str]
    source_uri: str
    source_updated_at: _timestamp_pb2.Timestamp
    first_indexed_at: _timestamp_pb2.Timestamp
    last_verified_at: _timestamp_pb2.Timestamp
    dense: StageScore
    bm25: StageScore
    fused: StageScore
    rerank: StageScore
    staleness_seconds: float
    def __init__(self, chunk_id: _Optional[str] = ..., doc_id: _Optional[str] = ..., namespace: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., start_char: _Optional[int] = ..., end_char: _Optional[int] = ..., ordinal: _Optional[int] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source_uri: _Optional[str] = ..., source_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_indexed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dense: _Optional[_Union[StageScore, _Mapping]] = ..., bm25: _Optional[_Union[StageScore, _Mapping]] = ..., fused: _Optional[_Union[StageScore, _Mapping]] = ..., rerank: _Optional[_Union[StageScore, _Mapping]] = ..., staleness_seconds: _Optional[float] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    seconds: float
    def __init__(self, stage: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class ModelIdentity(_message.Message):
    __slots__ = ("role", "name", "revision", "dimension", "device")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    role: str
    name: str
    revision: str
    dimension: int
    device: str
    def __init__(self, role: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[str] = ..., dimension: _Optional[int] = ..., device: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "request_id", "mode", "fusion", "reranked", "rerank_fallback", "rerank_fallback_reason", "timings", "models", "index_generation")
    HITS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    RERANKED_FIELD_NUMBER: _ClassVar[int]
    RERANK_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    RERANK_FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    request_id: str
    mode: SearchMode
    fusion: FusionMethod
    reranked: bool
    rerank_fallback: bool
    rerank_fallback_reason: str
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    models: _containers.RepeatedCompositeFieldContainer[ModelIdentity]
    index_generation: int
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., request_id: _Optional[str] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., fusion: _Optional[_Union[FusionMethod, str]] = ..., reranked: _Optional[bool] = ..., rerank_fallback: _Optional[bool] = ..., rerank_fallback_reason: _Optional[str] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[ModelIdentity, _Mapping]]] = ..., index_generation: _Optional[int] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("queries",)
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, queries: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class GetChunkRequest(_message.Message):
    __slots__ = ("chunk_id",)
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    def __init__(self, chunk_id: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("chunk_id", "namespace", "doc_id", "ordinal", "text", "start_char", "end_char", "token_count", "source_updated_at", "first_indexed_at", "last_verified_at")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_CHAR_FIELD_NUMBER: _ClassVar[int]
    END_CHAR_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEXED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    namespace: str
    doc_id: str
    ordinal: int
    text: str
    start_char: int
    end_char: int
    token_count: int
    source_updated_at: _timestamp_pb2.Timestamp
    first_indexed_at: _timestamp_pb2.Timestamp
    last_verified_at: _timestamp_pb2.Timestamp
    def __init__(self, chunk_id: _Optional[str] = ..., namespace: _Optional[str] = ..., doc_id: _Optional[str] = ..., ordinal: _Optional[int] = ..., text: _Optional[str] = ..., start_char: _Optional[int] = ..., end_char: _Optional[int] = ..., token_count: _Optional[int] = ..., source_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_indexed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("namespace", "doc_id", "include_chunks")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    doc_id: str
    include_chunks: bool
    def __init__(self, namespace: _Optional[str] = ..., doc_id: _Optional[str] = ..., include_chunks: _Optional[bool] = ...) -> None: ...

class GetDocumentResponse(_message.Message):
    __slots__ = ("document", "chunks", "chunk_count", "first_indexed_at", "last_verified_at", "content_hash")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEXED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    document: Document
    chunks: _containers.RepeatedCompositeFieldContainer[Chunk]
    chunk_count: int
    first_indexed_at: _timestamp_pb2.Timestamp
    last_verified_at: _timestamp_pb2.Timestamp
    content_hash: str
    def __init__(self, document: _Optional[_Union[Document, _Mapping]] = ..., chunks: _Optional[_Iterable[_Union[Chunk, _Mapping]]] = ..., chunk_count: _Optional[int] = ..., first_indexed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., content_hash: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NamespaceInfo(_message.Message):
    __slots__ = ("name", "documents", "chunks", "dense_vectors", "bm25_chunks", "oldest_chunk_age_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    DENSE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    BM25_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_CHUNK_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    documents: int
    chunks: int
    dense_vectors: int
    bm25_chunks: int
    oldest_chunk_age_seconds: float
    def __init__(self, name: _Optional[str] = ..., documents: _Optional[int] = ..., chunks: _Optional[int] = ..., dense_vectors: _Optional[int] = ..., bm25_chunks: _Optional[int] = ..., oldest_chunk_age_seconds: _Optional[float] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "models", "namespaces", "index_generation", "dense_index", "config_json", "limits")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    DENSE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    version: str
    models: _containers.RepeatedCompositeFieldContainer[ModelIdentity]
    namespaces: _containers.RepeatedCompositeFieldContainer[NamespaceInfo]
    index_generation: int
    dense_index: str
    config_json: str
    limits: _containers.ScalarMap[str, float]
    def __init__(self, version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelIdentity, _Mapping]]] = ..., namespaces: _Optional[_Iterable[_Union[NamespaceInfo, _Mapping]]] = ..., index_generation: _Optional[int] = ..., dense_index: _Optional[str] = ..., config_json: _Optional[str] = ..., limits: _Optional[_Mapping[str, float]] = ...) -> None: ...
