import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as _retrieval_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JudgementLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JUDGEMENT_LEVEL_UNSPECIFIED: _ClassVar[JudgementLevel]
    JUDGEMENT_LEVEL_DOCUMENT: _ClassVar[JudgementLevel]
    JUDGEMENT_LEVEL_CHUNK: _ClassVar[JudgementLevel]

class EvalStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVAL_STAGE_UNSPECIFIED: _ClassVar[EvalStage]
    EVAL_STAGE_DENSE: _ClassVar[EvalStage]
    EVAL_STAGE_BM25: _ClassVar[EvalStage]
    EVAL_STAGE_FUSED: _ClassVar[EvalStage]
    EVAL_STAGE_RERANKED: _ClassVar[EvalStage]
JUDGEMENT_LEVEL_UNSPECIFIED: JudgementLevel
JUDGEMENT_LEVEL_DOCUMENT: JudgementLevel
JUDGEMENT_LEVEL_CHUNK: JudgementLevel
EVAL_STAGE_UNSPECIFIED: EvalStage
EVAL_STAGE_DENSE: EvalStage
EVAL_STAGE_BM25: EvalStage
EVAL_STAGE_FUSED: EvalStage
EVAL_STAGE_RERANKED: EvalStage

class Judgement(_message.Message):
    __slots__ = ("target_id", "relevance")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    target_id: str
    relevance: int
    def __init__(self, target_id: _Optional[str] = ..., relevance: _Optional[int] = ...) -> None: ...

class LabeledQuery(_message.Message):
    __slots__ = ("query_id", "text", "judgements")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENTS_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    text: str
    judgements: _containers.RepeatedCompositeFieldContainer[Judgement]
    def __init__(self, query_id: _Optional[str] = ..., text: _Optional[str] = ..., judgements: _Optional[_Iterable[_Union[Judgement, _Mapping]]] = ...) -> None: ...

class RegisterQuerySetRequest(_message.Message):
    __slots__ = ("name", "namespace", "level", "queries")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    level: JudgementLevel
    queries: _containers.RepeatedCompositeFieldContainer[LabeledQuery]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., level: _Optional[_Union[JudgementLevel, str]] = ..., queries: _Optional[_Iterable[_Union[LabeledQuery, _Mapping]]] = ...) -> None: ...

class RegisterQuerySetResponse(_message.Message):
    __slots__ = ("name", "query_count", "judgement_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    query_count: int
    judgement_count: int
    def __init__(self, name: _Optional[str] = ..., query_count: _Optional[int] = ..., judgement_count: _Optional[int] = ...) -> None: ...

class ListQuerySetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QuerySetInfo(_message.Message):
    __slots__ = ("name", "namespace", "level", "query_count", "judgement_count", "source", "last_evaluated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LAST_EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    level: JudgementLevel
    query_count: int
    judgement_count: int
    source: str
    last_evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., level: _Optional[_Union[JudgementLevel, str]] = ..., query_count: _Optional[int] = ..., judgement_count: _Optional[int] = ..., source: _Optional[str] = ..., last_evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListQuerySetsResponse(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[QuerySetInfo]
    def __init__(self, sets: _Optional[_Iterable[_Union[QuerySetInfo, _Mapping]]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("query_set", "ks", "stages", "search_template", "depth", "include_per_query", "export_metrics")
    QUERY_SET_FIELD_NUMBER: _ClassVar[int]
    KS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    SEARCH_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    EXPORT_METRICS_FIELD_NUMBER: _ClassVar[int]
    query_set: str
    ks: _containers.RepeatedScalarFieldContainer[int]
    stages: _containers.RepeatedScalarFieldContainer[EvalStage]
    search_template: _retrieval_pb2.SearchRequest
    depth: int
    include_per_query: bool
    export_metrics: bool
    def __init__(self, query_set: _Optional[str] = ..., ks: _Optional[_Iterable[int]] = ..., stages: _Optional[_Iterable[_Union[EvalStage, str]]] = ..., search_template: _Optional[_Union[_retrieval_pb2.SearchRequest, _Mapping]] = ..., depth: _Optional[int] = ..., include_per_query: _Optional[bool] = ..., export_metrics: _Optional[bool] = ...) -> None: ...

class MetricValue(_message.Message):
    __slots__ = ("metric", "k", "value")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    k: int
    value: float
    def __init__(self, metric: _Optional[str] = ..., k: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class LatencySummary(_message.Message):
    __slots__ = ("p50_seconds", "p90_seconds", "p99_seconds", "mean_seconds", "max_seconds")
    P50_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P90_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P99_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    p50_seconds: float
    p90_seconds: float
    p99_seconds: float
    mean_seconds: float
    max_seconds: float
    def __init__(self, p50_seconds: _Optional[float] = ..., p90_seconds: _Optional[float] = ..., p99_seconds: _Optional[float] = ..., mean_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ...) -> None: ...

class StalenessSummary(_message.Message):
    __slots__ = ("p50_seconds", "p90_seconds", "max_seconds")
    P50_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P90_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    p50_seconds: float
    p90_seconds: float
    max_seconds: float
    def __init__(self, p50_seconds: _Optional[float] = ..., p90_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ...) -> None: ...

class StageResult(_message.Message):
    __slots__ = ("stage", "metrics", "latency", "staleness", "mean_timings", "rerank_fallback_count")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    STALENESS_FIELD_NUMBER: _ClassVar[int]
    MEAN_TIMINGS_FIELD_NUMBER: _ClassVar[int]
    RERANK_FALLBACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    stage: EvalStage
    metrics: _containers.RepeatedCompositeFieldContainer[MetricValue]
    latency: LatencySummary
    staleness: StalenessSummary
    mean_timings: _containers.RepeatedCompositeFieldContainer[_retrieval_pb2.StageTiming]
    rerank_fallback_count: int
    def __init__(self, stage: _Optional[_Union[EvalStage, str]] = ..., metrics: _Optional[_Iterable[_Union[MetricValue, _Mapping]]] = ..., latency: _Optional[_Union[LatencySummary, _Mapping]] = ..., staleness: _Optional[_Union[StalenessSummary, _Mapping]] = ..., mean_timings: _Optional[_Iterable[_Union[_retrieval_pb2.StageTiming, _Mapping]]] = ..., rerank_fallback_count: _Optional[int] = ...) -> None: ...

class QueryRow(_message.Message):
    __slots__ = ("query_id", "stage", "metrics", "latency_seconds", "retrieved")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    stage: EvalStage
    metrics: _containers.RepeatedCompositeFieldContainer[MetricValue]
    latency_seconds: float
    retrieved: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query_id: _Optional[str] = ..., stage: _Optional[_Union[EvalStage, str]] = ..., metrics: _Optional[_Iterable[_Union[MetricValue, _Mapping]]] = ..., latency_seconds: _Optional[float] = ..., retrieved: _Optional[_Iterable[str]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("query_set", "evaluated_query_count", "skipped_query_count", "stages", "per_query", "started_at", "duration_seconds")
    QUERY_SET_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_QUERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_QUERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    query_set: str
    evaluated_query_count: int
    skipped_query_count: int
    stages: _containers.RepeatedCompositeFieldContainer[StageResult]
    per_query: _containers.RepeatedCompositeFieldContainer[QueryRow]
    started_at: _timestamp_pb2.Timestamp
    duration_seconds: float
    def __init__(self, query_set: _Optional[str] = ..., evaluated_query_count: _Optional[int] = ..., skipped_query_count: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[StageResult, _Mapping]]] = ..., per_query: _Optional[_Iterable[_Union[QueryRow, _Mapping]]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_seconds: _Optional[float] = ...) -> None: ...
