import datetime

from google.protobuf import struct_pb2 as _struct_pb2
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
    __slots__ = ("namespace", "doc_id", "title", "text", "metadata", "source_updated_at", "source_uri", "expires_at", "ttl_seconds")
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
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    doc_id: str
    title: str
    text: str
    metadata: _containers.ScalarMap[str, str]
    source_updated_at: _timestamp_pb2.Timestamp
    source_uri: str
    expires_at: _timestamp_pb2.Timestamp
    ttl_seconds: float
    def __init__(self, namespace: _Optional[str] = ..., doc_id: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_uri: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ttl_seconds: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("added_document_count", "updated_document_count", "unchanged_document_count", "added_chunk_count", "unchanged_chunk_count", "removed_chunk_count", "embedded_chunk_count", "index_generation", "rejected_document_count", "rejected")
    ADDED_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ADDED_CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDED_CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    REJECTED_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    added_document_count: int
    updated_document_count: int
    unchanged_document_count: int
    added_chunk_count: int
    unchanged_chunk_count: int
    removed_chunk_count: int
    embedded_chunk_count: int
    index_generation: int
    rejected_document_count: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedDocument]
    def __init__(self, added_document_count: _Optional[int] = ..., updated_document_count: _Optional[int] = ..., unchanged_document_count: _Optional[int] = ..., added_chunk_count: _Optional[int] = ..., unchanged_chunk_count: _Optional[int] = ..., removed_chunk_count: _Optional[int] = ..., embedded_chunk_count: _Optional[int] = ..., index_generation: _Optional[int] = ..., rejected_document_count: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedDocument, _Mapping]]] = ...) -> None: ...

class DeleteDocumentsRequest(_message.Message):
    __slots__ = ("namespace", "doc_ids")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DOC_IDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    doc_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., doc_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDocumentsResponse(_message.Message):
    __slots__ = ("deleted_document_count", "removed_chunk_count", "not_found", "index_generation")
    DELETED_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    deleted_document_count: int
    removed_chunk_count: int
    not_found: _containers.RepeatedScalarFieldContainer[str]
    index_generation: int
    def __init__(self, deleted_document_count: _Optional[int] = ..., removed_chunk_count: _Optional[int] = ..., not_found: _Optional[_Iterable[str]] = ..., index_generation: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("query", "namespace", "k", "mode", "rerank", "dense_candidates", "bm25_candidates", "rerank_top_n", "fusion", "rrf_k", "dense_weight", "bm25_weight", "filters", "max_age_seconds", "recency", "request_id", "as_of", "refresh_ttl")
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
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TTL_FIELD_NUMBER: _ClassVar[int]
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
    as_of: _timestamp_pb2.Timestamp
    refresh_ttl: bool
    def __init__(self, query: _Optional[str] = ..., namespace: _Optional[str] = ..., k: _Optional[int] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., rerank: _Optional[bool] = ..., dense_candidates: _Optional[int] = ..., bm25_candidates: _Optional[int] = ..., rerank_top_n: _Optional[int] = ..., fusion: _Optional[_Union[FusionMethod, str]] = ..., rrf_k: _Optional[float] = ..., dense_weight: _Optional[float] = ..., bm25_weight: _Optional[float] = ..., filters: _Optional[_Iterable[_Union[FilterClause, _Mapping]]] = ..., max_age_seconds: _Optional[float] = ..., recency: _Optional[_Union[RecencyDecay, _Mapping]] = ..., request_id: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_ttl: _Optional[bool] = ...) -> None: ...

class StageScore(_message.Message):
    __slots__ = ("rank", "score")
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    score: float
    def __init__(self, rank: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("chunk_id", "doc_id", "namespace", "title", "text", "start_char", "end_char", "ordinal", "score", "rank", "metadata", "source_uri", "source_updated_at", "first_indexed_at", "last_verified_at", "dense", "bm25", "fused", "rerank", "staleness_seconds", "expires_at")
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
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
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
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, chunk_id: _Optional[str] = ..., doc_id: _Optional[str] = ..., namespace: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., start_char: _Optional[int] = ..., end_char: _Optional[int] = ..., ordinal: _Optional[int] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source_uri: _Optional[str] = ..., source_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_indexed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dense: _Optional[_Union[StageScore, _Mapping]] = ..., bm25: _Optional[_Union[StageScore, _Mapping]] = ..., fused: _Optional[_Union[StageScore, _Mapping]] = ..., rerank: _Optional[_Union[StageScore, _Mapping]] = ..., staleness_seconds: _Optional[float] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("hits", "request_id", "mode", "fusion", "reranked", "rerank_fallback", "rerank_fallback_reason", "timings", "models", "index_generation", "query_token_count")
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
    QUERY_TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
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
    query_token_count: int
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., request_id: _Optional[str] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., fusion: _Optional[_Union[FusionMethod, str]] = ..., reranked: _Optional[bool] = ..., rerank_fallback: _Optional[bool] = ..., rerank_fallback_reason: _Optional[str] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[ModelIdentity, _Mapping]]] = ..., index_generation: _Optional[int] = ..., query_token_count: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("namespace", "doc_id", "include_chunks", "refresh_ttl")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TTL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    doc_id: str
    include_chunks: bool
    refresh_ttl: bool
    def __init__(self, namespace: _Optional[str] = ..., doc_id: _Optional[str] = ..., include_chunks: _Optional[bool] = ..., refresh_ttl: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("name", "document_count", "chunk_count", "dense_vector_count", "bm25_chunk_count", "oldest_chunk_age_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    DENSE_VECTOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    BM25_CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_CHUNK_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    document_count: int
    chunk_count: int
    dense_vector_count: int
    bm25_chunk_count: int
    oldest_chunk_age_seconds: float
    def __init__(self, name: _Optional[str] = ..., document_count: _Optional[int] = ..., chunk_count: _Optional[int] = ..., dense_vector_count: _Optional[int] = ..., bm25_chunk_count: _Optional[int] = ..., oldest_chunk_age_seconds: _Optional[float] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "models", "namespaces", "index_generation", "dense_index", "config_json", "limits", "config")
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
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    version: str
    models: _containers.RepeatedCompositeFieldContainer[ModelIdentity]
    namespaces: _containers.RepeatedCompositeFieldContainer[NamespaceInfo]
    index_generation: int
    dense_index: str
    config_json: str
    limits: _containers.ScalarMap[str, float]
    config: _struct_pb2.Struct
    def __init__(self, version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelIdentity, _Mapping]]] = ..., namespaces: _Optional[_Iterable[_Union[NamespaceInfo, _Mapping]]] = ..., index_generation: _Optional[int] = ..., dense_index: _Optional[str] = ..., config_json: _Optional[str] = ..., limits: _Optional[_Mapping[str, float]] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[NamespaceInfo]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[NamespaceInfo, _Mapping]]] = ...) -> None: ...

class DeleteNamespaceRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class DeleteNamespaceResponse(_message.Message):
    __slots__ = ("deleted_document_count", "removed_chunk_count", "index_generation")
    DELETED_DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    deleted_document_count: int
    removed_chunk_count: int
    index_generation: int
    def __init__(self, deleted_document_count: _Optional[int] = ..., removed_chunk_count: _Optional[int] = ..., index_generation: _Optional[int] = ...) -> None: ...
