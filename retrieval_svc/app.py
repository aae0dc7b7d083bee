"""Builds the service's parts from Settings and owns their lifecycle."""

from __future__ import annotations

import errno
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# First: sets OMP_WAIT_POLICY before torch and faiss load their OpenMP runtimes.
import retrieval_svc.openmp  # noqa: F401
from retrieval_svc import __version__
from chunkers.measure import EncoderTokenCounter
from retrieval_svc.batching import DynamicBatcher
from retrieval_svc.domain import ModelIdentity
from retrieval_svc.ingest import Ingestor
from retrieval_svc.memory import Memory
from retrieval_svc.pipeline import EncodedQueries, SearchPipeline
from retrieval_svc.protocols import Encoder, Reranker
from retrieval_svc.settings import Settings, default_encoder_model
from retrieval_svc.store import DocumentStore, EncoderBinding, open_store
from retrieval_svc.store.engine import IndexFactories
from retrieval_svc.telemetry import Telemetry
from retrieval_svc.tracing import make_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

# Seconds between reads of stored evaluation results (shared stores).
RESULT_SYNC_SECONDS = 30.0


def index_factories(settings: Settings, dimension: int) -> IndexFactories:
    from retrieval_svc.dense import configure_threads, load_vector_index, make_vector_index
    from retrieval_svc.lexical import BM25Index, make_tokenizer
    from retrieval_svc.lexical.bm25 import warm_up

    configure_threads(settings.dense.search_threads)
    warm_up()
    d, b = settings.dense, settings.bm25
    tokenizer = make_tokenizer(b.tokenizer, stopwords=b.stopwords, stemmer=b.stemmer or None)
    def deferred(index):
        # The Store runs index maintenance beside the live index (Store.maintain), not
        # inside a commit.
        index.maintain_inline = False
        return index

    return IndexFactories(
        new_dense=lambda: deferred(make_vector_index(
            d.backend, d.kind, dimension, settings.encoder.device, **dict(d.params)
        )),
        new_lexical=lambda: deferred(BM25Index(tokenizer, k1=b.k1, b=b.b, epsilon=b.epsilon)),
        load_dense=lambda path: deferred(load_vector_index(
            path, backend=d.backend, device=settings.encoder.device, kind=d.kind, **dict(d.params)
        )),
        load_lexical=lambda path: deferred(
            BM25Index.load(path, tokenizer, k1=b.k1, b=b.b, epsilon=b.epsilon)),
    )


def load_encoder(settings: Settings) -> Encoder:
    """The encoder `encoder.backend` names; for onnx, exported on the first start (StartupError
    naming the setting when onnxruntime is missing or the model cannot be exported)."""
    e = settings.encoder
    if e.backend == "onnx":
        return _load_onnx_encoder(settings)
    from retrieval_svc.models import SentenceTransformerEncoder

    return SentenceTransformerEncoder(
        e.model or default_encoder_model(), device=e.device, max_seq_length=e.max_seq_length,
        batch_size=e.batch_size,
    )


def onnx_cache_dir(settings: Settings) -> Path:
    """encoder.onnx_cache_dir, or onnx-cache/ in store.path."""
    return Path(settings.encoder.onnx_cache_dir or Path(settings.store.path) / "onnx-cache")


def _load_onnx_encoder(settings: Settings) -> Encoder:
    import importlib.util

    from retrieval_svc.errors import StartupError

    missing = [dist for module, dist in (("onnxruntime", "onnxruntime"), ("onnxscript", "onnxscript"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise StartupError(f"encoder.backend: onnx needs {' and '.join(missing)}; pip install "
                           f"\"retrieval-svc[server]\", or set encoder.backend: torch")
    from retrieval_svc.onnx_encoder import OnnxEncoder, OnnxExportError

    e = settings.encoder
    cache = onnx_cache_dir(settings)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not os.access(cache, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as exc:
        raise StartupError(f"encoder.onnx_cache_dir: cannot keep ONNX exports in {cache}: "
                           f"{exc.strerror or exc}") from None
    try:
        return OnnxEncoder(e.model or default_encoder_model(), cache_dir=cache, precision=e.onnx_precision,
                           max_seq_length=e.max_seq_length, batch_size=e.batch_size,
                           threads=settings.server.torch_threads)
    except OnnxExportError as exc:
        raise StartupError(f"encoder.backend: onnx: {exc}") from None


def load_reranker(settings: Settings) -> Reranker | None:
    r = settings.reranker
    if not r.model:
        return None
    from retrieval_svc.learned_rerank import LearnedReranker, resolve_model_folder
    from retrieval_svc.models import CrossEncoderReranker

    # A models folder or version that `retrieval-svc train-reranker` installed, else a plain
    # cross-encoder.
    kind = LearnedReranker if resolve_model_folder(r.model) is not None else CrossEncoderReranker
    return kind(
        r.model, device=r.device, max_length=r.max_length, batch_size=r.batch_size,
        max_passage_chars=r.max_passage_chars,
    )


@dataclass
class Components:
    settings: Settings
    telemetry: Telemetry
    encoder: Encoder
    reranker: Reranker | None
    store: DocumentStore
    ingestor: Ingestor
    pipeline: SearchPipeline
    encoder_batcher: DynamicBatcher
    rerank_batcher: DynamicBatcher | None
    evaluations: object  # retrieval_svc.evaluation.service.EvaluationRunner

    @property
    def models(self) -> tuple[ModelIdentity, ...]:
        return self.pipeline.models


class App:
    """Everything `serve` runs, minus the gRPC transport."""

    def __init__(self, settings: Settings, *, encoder: Encoder | None = None,
                 reranker: Reranker | None = None, span_exporter: SpanExporter | None = None) -> None:
        """`span_exporter` (an opentelemetry SpanExporter) replaces the OTLP exporter when
        tracing.enabled (tests and benchmarks use an in-memory one)."""
        from chunkers import make_chunker
        from retrieval_svc.evaluation.service import EvaluationRunner
        from retrieval_svc.rerank import RerankStage

        if settings.server.torch_threads:
            import torch

            torch.set_num_threads(settings.server.torch_threads)
        self.settings = settings
        # First: a missing opentelemetry package stops start-up before the models load.
        self.tracing = make_tracing(settings.tracing, span_exporter, __version__)
        self.telemetry = Telemetry()
        self.encoder = encoder or load_encoder(settings)
        self.reranker = reranker if reranker is not None else load_reranker(settings)
        e = settings.encoder
        self.encoder_batcher: DynamicBatcher[str, np.ndarray] = DynamicBatcher(
            lambda texts: list(self.encoder.encode(texts, is_query=True)),
            max_batch_size=e.batch_size, max_wait_ms=e.max_wait_ms, name="encoder",
            on_batch=self.telemetry.batch_size.labels("encoder").observe,
        )
        ident = self.encoder.identity
        self.store = open_store(settings, self.encoder.dimension,
                                EncoderBinding(ident.name, ident.revision, self.encoder.dimension))
        # Set when shutdown begins: ingest streams end at their next message.
        self.stopping = threading.Event()
        from retrieval_svc.dense import resolve_backend

        backend, device = resolve_backend(settings.dense.backend, settings.dense.kind, settings.encoder.device)
        self.dense_index_description = (
            f"milvus/{settings.milvus.index_type}" if settings.store.backend == "milvus"
            else f"{settings.dense.kind}/{backend}/{device}")
        self.telemetry.add_index_collector(self.store.stats)
        c = settings.chunker
        # The encoder's tokenizer: windows (chunker.unit: encoder) and queries' token counts.
        self.token_counter = EncoderTokenCounter(settings.encoder.model or default_encoder_model())
        counter, window = None, c.window_tokens
        if c.unit == "encoder":
            counter = self.token_counter
            window -= counter.special_tokens
        chunker = make_chunker(c.name, window_tokens=window, overlap_tokens=min(c.overlap_tokens, window - 1),
                               counter=counter)
        self.ingestor = Ingestor(self.store, chunker, self._embed_passages, settings.limits,
                                 prepend_title=c.prepend_title, memory=settings.memory, counter=counter,
                                 passage_prefix=settings.encoder.passage_prefix)
        self.memory = Memory(self.store, settings.memory, self.telemetry)
        self.rerank_batcher: DynamicBatcher[tuple[str, str], float] | None = None
        rerank_stage = None
        reranker = self.reranker
        if reranker is not None:
            r = settings.reranker
            self.rerank_batcher = DynamicBatcher(
                lambda pairs: list(reranker.score_pairs(pairs)),
                max_batch_size=r.batch_size, max_wait_ms=r.max_wait_ms, name="reranker",
                on_batch=self.telemetry.batch_size.labels("reranker").observe,
            )
            rerank_stage = RerankStage(
                reranker, max_candidates=r.max_candidates,
                max_passage_chars=r.max_passage_chars, timeout_seconds=r.timeout_seconds,
                batcher=self.rerank_batcher,
            )
        self.pipeline = SearchPipeline(
            settings, self.store, self._embed_queries, self.encoder.identity, rerank_stage,
            self.reranker.identity if self.reranker else None, self.telemetry, self.tracing,
        )
        self.evaluations = EvaluationRunner(self.pipeline, self.telemetry, settings, self.store)
        self._passage_encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="passage-encoder")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _embed_queries(self, texts) -> EncodedQueries:
        texts = list(texts)
        vectors, queued = self.encoder_batcher.run_timed(texts)
        counts = self.token_counter.counts(texts)
        return EncodedQueries(np.asarray(vectors, dtype=np.float32), queued,
                              tuple(c + self.token_counter.special_tokens for c in counts))

    def _embed_passages(self, texts) -> np.ndarray:
        # On a thread of its own: FAISS sets OpenMP to dense.search_threads in every thread
        # that touches an index (libgomp's setting is per thread), and torch's intra-op
        # parallelism in such a gRPC worker thread would then run on that one thread too.
        prefix = self.settings.encoder.passage_prefix
        job = self._passage_encoder.submit(
            self.encoder.encode, [prefix + t for t in texts], is_query=False)
        return np.asarray(job.result(), dtype=np.float32)

    def start_background(self) -> None:
        """Index snapshots and maintenance, and scheduled evaluations, off the request path."""
        self._spawn("snapshots", self._snapshot_loop)
        self._spawn("index-maintenance", self._maintenance_loop)
        if self.settings.evaluation.query_sets and self.settings.evaluation.schedule_seconds > 0:
            self._spawn("evaluations", self._evaluation_loop)
        if self.store.shared:
            self._spawn("evaluation-results", self._result_loop)
        if self.settings.memory.sweep_interval_seconds > 0:
            self._spawn("expiry-sweep", self._sweep_loop)

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _snapshot_loop(self) -> None:
        interval = self.settings.store.snapshot_interval_seconds
        while not self._stop.wait(min(interval, 5.0)):
            try:
                self.store.snapshot_if_due(interval)
            except Exception:
                log.exception("index snapshot failed; the ledger still has every chunk")

    def _maintenance_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                replaced = self.store.maintain()
            except Exception:
                log.exception("index maintenance failed; the live indexes are unchanged")
            else:
                if replaced:
                    self.telemetry.index_maintenance.inc(replaced)

    def _evaluation_loop(self) -> None:
        interval = self.settings.evaluation.schedule_seconds
        while not self._stop.is_set():
            self.evaluations.run_configured()
            if self._stop.wait(interval):
                break

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.settings.memory.sweep_interval_seconds):
            try:
                self.memory.sweep()
            except Exception:
                log.exception("expiry sweep failed; expired documents stay invisible and are "
                              "deleted by a later sweep")

    def _result_loop(self) -> None:
        """Over a shared store, export the results that `evaluate-scheduled` (or another
        replica) stored, so every replica's /metrics carries the same quality figures."""
        while True:
            try:
                self.evaluations.sync_exported()
            except Exception:
                log.exception("reading stored evaluation results failed; the gauges keep their values")
            if self._stop.wait(RESULT_SYNC_SECONDS):
                break

    def close(self) -> None:
        self.stopping.set()
        self._stop.set()
        for thread in self._threads:
            # An index build cannot be interrupted; it must end before the store closes.
            thread.join(timeout=None if thread.name == "index-maintenance" else 10)
        self.pipeline.close()
        self._passage_encoder.shutdown(wait=True)
        self.encoder_batcher.close()
        if self.rerank_batcher is not None:
            self.rerank_batcher.close()
        self.store.close()
        self.telemetry.close()
        self.tracing.close()
