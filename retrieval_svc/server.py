"""The gRPC transport: translates protobuf <-> domain objects and errors <-> status codes.

Nothing here decides retrieval behaviour; it calls App's ingestor, pipeline and
evaluation runner. Requests are deserialised leniently so that a malformed
message (for example a string field holding invalid UTF-8) gets
INVALID_ARGUMENT with an explanation instead of grpc's generic INTERNAL.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_status import rpc_status

from retrieval_svc import __version__
from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.admission import Pool
from retrieval_svc.app import App
from retrieval_svc.deadline import Deadline
from retrieval_svc.domain import Document, SearchMode
from retrieval_svc.errors import (
    InvalidArgument, InvalidDocument, NotFound, ResourceExhausted, RetrievalError, StartupError,
    Unavailable,
)
from retrieval_svc.ingest import MAX_TIMESTAMP_SECONDS, IngestSummary, normalize_namespace
from retrieval_svc.pipeline import SearchOptions, SearchResult

log = logging.getLogger(__name__)

RETRIEVAL_SERVICE = "retrieval.v1.RetrievalService"
EVALUATION_SERVICE = "retrieval.v1.EvaluationService"

_MODES = {
    pb.SEARCH_MODE_UNSPECIFIED: None,
    pb.SEARCH_MODE_DENSE: SearchMode.DENSE,
    pb.SEARCH_MODE_BM25: SearchMode.BM25,
    pb.SEARCH_MODE_HYBRID: SearchMode.HYBRID,
}
_MODE_PB = {v: k for k, v in _MODES.items() if v is not None}
_FUSIONS = {
    pb.FUSION_METHOD_UNSPECIFIED: None,
    pb.FUSION_METHOD_RRF: "rrf",
    pb.FUSION_METHOD_MINMAX: "minmax",
    pb.FUSION_METHOD_ZSCORE: "zscore",
}
_FUSION_PB = {v: k for k, v in _FUSIONS.items() if v is not None}


class _Undecodable:
    """Stands in for a request message that failed to parse."""

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return _Undecodable(str(exc) or type(exc).__name__)

    return deserialize


def _check_decoded(request: Any, what: str = "request") -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            f"{what} could not be parsed ({request.error}); string fields must be valid UTF-8"
        )


# --- conversions ---------------------------------------------------------------


def _seconds(ts) -> float | None:
    return ts.ToNanoseconds() / 1e9 if ts.seconds or ts.nanos else None


def _source_time(ts) -> float:
    """A Timestamp as POSIX seconds; NaN for one outside the API's range (year 1970..9999,
    nanos 0..999,999,999), which document validation rejects naming the field."""
    if not 0 <= ts.nanos <= 999_999_999 or not 0 <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        return math.nan
    return ts.seconds + ts.nanos / 1e9


def _stamp(target, seconds: float | None) -> None:
    if seconds is not None:
        target.FromNanoseconds(int(round(seconds * 1e9)))


def document_from_pb(d: pb.Document) -> Document:
    return Document(
        namespace=d.namespace, doc_id=d.doc_id, text=d.text, title=d.title,
        metadata=dict(d.metadata),
        source_updated_at=_source_time(d.source_updated_at) if d.HasField("source_updated_at") else None,
        source_uri=d.source_uri,
    )


def options_from_pb(r: pb.SearchRequest) -> SearchOptions:
    if r.k < 0:
        raise InvalidArgument(f"k must be >= 0 (0 = default_k), got {r.k}")
    for field, value in (("dense_candidates", r.dense_candidates),
                         ("bm25_candidates", r.bm25_candidates), ("rerank_top_n", r.rerank_top_n)):
        if value < 0:
            raise InvalidArgument(f"{field} must be >= 0 (0 = configured), got {value}")
    if r.mode not in _MODES:
        raise InvalidArgument(f"mode {r.mode} is not a known SearchMode")
    if r.fusion not in _FUSIONS:
        raise InvalidArgument(f"fusion {r.fusion} is not a known FusionMethod")
    recency = r.recency if r.HasField("recency") else None
    return SearchOptions(
        query=r.query, namespace=r.namespace, k=r.k or None, mode=_MODES[r.mode],
        rerank=r.rerank if r.HasField("rerank") else None,
        dense_candidates=r.dense_candidates or None, bm25_candidates=r.bm25_candidates or None,
        rerank_top_n=r.rerank_top_n or None, fusion=_FUSIONS[r.fusion],
        rrf_k=r.rrf_k if r.HasField("rrf_k") else None,
        dense_weight=r.dense_weight if r.HasField("dense_weight") else None,
        bm25_weight=r.bm25_weight if r.HasField("bm25_weight") else None,
        filters=tuple((f.key, tuple(f.any_of)) for f in r.filters),
        max_age_seconds=r.max_age_seconds if r.max_age_seconds else None,
        recency_half_life_seconds=recency.half_life_seconds if recency else None,
        recency_weight=recency.weight if recency else 0.0,
        request_id=r.request_id,
    )


def _chunk_pb(c, out: pb.Chunk | None = None) -> pb.Chunk:
    out = out or pb.Chunk()
    out.chunk_id, out.namespace, out.doc_id, out.ordinal = c.chunk_id, c.namespace, c.doc_id, c.ordinal
    out.text, out.start_char, out.end_char, out.token_count = c.text, c.start_char, c.end_char, c.token_count
    _stamp(out.source_updated_at, c.source_updated_at)
    _stamp(out.first_indexed_at, c.first_indexed_at)
    _stamp(out.last_verified_at, c.last_verified_at)
    return out


def _model_pb(m) -> pb.ModelIdentity:
    return pb.ModelIdentity(role=m.role, name=m.name, revision=m.revision, dimension=m.dimension,
                            device=m.device)


def result_to_pb(r: SearchResult) -> pb.SearchResponse:
    resp = pb.SearchResponse(
        request_id=r.request_id, mode=_MODE_PB[r.mode], fusion=_FUSION_PB.get(r.fusion, pb.FUSION_METHOD_UNSPECIFIED),
        reranked=r.reranked, rerank_fallback=r.rerank_fallback,
        rerank_fallback_reason=r.rerank_fallback_reason, index_generation=r.index_generation,
        models=[_model_pb(m) for m in r.models],
        timings=[pb.StageTiming(stage=s, seconds=v) for s, v in r.timings.items()],
    )
    for h in r.hits:
        c = h.chunk
        hit = resp.hits.add(
            chunk_id=c.chunk_id, doc_id=c.doc_id, namespace=c.namespace, title=h.title,
            text=c.text, start_char=c.start_char, end_char=c.end_char, ordinal=c.ordinal,
            score=h.score, rank=h.rank, metadata=h.metadata, source_uri=h.source_uri,
            staleness_seconds=h.staleness_seconds,
        )
        _stamp(hit.source_updated_at, c.source_updated_at)
        _stamp(hit.first_indexed_at, c.first_indexed_at)
        _stamp(hit.last_verified_at, c.last_verified_at)
        for name in ("dense", "bm25", "fused", "rerank"):
            stage = getattr(h, name)
            if stage is not None:
                getattr(hit, name).CopyFrom(pb.StageScore(rank=stage.rank, score=stage.score))
    return resp


_REJECTION_PB = {
    "missing_field": pb.REJECTION_REASON_MISSING_FIELD,
    "too_large": pb.REJECTION_REASON_TOO_LARGE,
    "malformed": pb.REJECTION_REASON_MALFORMED,
}


def summary_to_pb(s: IngestSummary) -> pb.IngestSummary:
    return pb.IngestSummary(
        documents_added=s.documents_added, documents_updated=s.documents_updated,
        documents_unchanged=s.documents_unchanged, chunks_added=s.chunks_added,
        chunks_unchanged=s.chunks_unchanged, chunks_removed=s.chunks_removed,
        chunks_embedded=s.chunks_embedded, index_generation=s.index_generation,
        documents_rejected=len(s.rejected),
        rejected=[pb.RejectedDocument(
            index=r.index, doc_id=r.doc_id, field=r.field, message=r.message,
            reason=_REJECTION_PB.get(r.reason, pb.REJECTION_REASON_UNSPECIFIED)) for r in s.rejected],
    )


# --- servicers -----------------------------------------------------------------


def _status(exc: RetrievalError) -> grpc.Status:
    """The google.rpc.Status for a domain error: code, message, and details a client
    can act on (RetryInfo when retrying later can succeed, BadRequest naming the
    field of an invalid document)."""
    code = getattr(grpc.StatusCode, exc.code)
    status = status_pb2.Status(code=code.value[0], message=str(exc))
    retry_after = getattr(exc, "retry_after_seconds", None)
    if retry_after is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.add().Pack(info)
    if isinstance(exc, InvalidDocument):
        bad = error_details_pb2.BadRequest(field_violations=[error_details_pb2.BadRequest.FieldViolation(
            field=f"documents[{exc.index}].{exc.field}", description=str(exc))])
        status.details.add().Pack(bad)
    return rpc_status.to_status(status)


def _deadline(context) -> Deadline:
    return Deadline.after(context.time_remaining(), cancelled=lambda: not context.is_active())


class _Calls:
    """Counts handlers in flight, so shutdown can wait for them before closing the store."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0

    def __enter__(self) -> None:
        with self._cond:
            self._active += 1

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout)


def _rpc(name: str, pool: str | None = None, timed: bool = True):
    """Count, time and map errors of one RPC method; admit it through `pool` (`timed`:
    see Pool.slot); give it the caller's deadline. The method is called as
    method(self, request, context, deadline). A call that finishes after its deadline
    is counted as DEADLINE_EXCEEDED (what its caller saw) and as an overrun."""

    def wrap(method):
        @functools.wraps(method)
        def handler(self, request, context):
            started = time.perf_counter()
            code = "OK"
            deadline = _deadline(context)
            telemetry = self.app.telemetry
            try:
                with self.calls:
                    if pool is None:
                        result = method(self, request, context, deadline)
                    else:
                        with self.pools[pool].slot(deadline, timed=timed):
                            result = method(self, request, context, deadline)
                if deadline.expired():
                    code = "DEADLINE_EXCEEDED"
                    telemetry.deadline_overruns.labels(name).inc()
                return result
            except RetrievalError as exc:
                code = exc.code if context.is_active() else "CANCELLED"
                context.abort_with_status(_status(exc))
            except grpc.RpcError:
                code = context.code().name if context.code() else "CANCELLED"
                raise
            except Exception as exc:  # never crash the server; say what failed
                if not context.is_active():
                    code = "CANCELLED"
                    raise
                code = "INTERNAL"
                log.exception("%s failed", name)
                context.abort(grpc.StatusCode.INTERNAL, f"{name} failed: {type(exc).__name__}: {exc}")
            finally:
                telemetry.requests.labels(name, code).inc()
                telemetry.request_duration.labels(name).observe(time.perf_counter() - started)

        return handler

    return wrap


class _Servicer:
    def __init__(self, app: App, pools: dict[str, Pool], calls: _Calls) -> None:
        self.app = app
        self.pools = pools
        self.calls = calls


class RetrievalServicer(_Servicer):
    def _ingest_batch(self, request: pb.IngestRequest, first_index: int,
                      deadline: Deadline) -> IngestSummary:
        if request.on_invalid not in (pb.INVALID_DOCUMENT_POLICY_UNSPECIFIED,
                                      pb.INVALID_DOCUMENT_POLICY_REJECT, pb.INVALID_DOCUMENT_POLICY_SKIP):
            raise InvalidArgument(f"on_invalid {request.on_invalid} is not a known InvalidDocumentPolicy")
        summary = self.app.ingestor.ingest(
            [document_from_pb(d) for d in request.documents], first_index,
            skip_invalid=request.on_invalid == pb.INVALID_DOCUMENT_POLICY_SKIP, deadline=deadline)
        for ns in summary.new_chunk_lags.keys() | summary.embedded_by_namespace.keys():
            self.app.telemetry.observe_ingest(
                ns, summary.embedded_by_namespace.get(ns, 0), summary.new_chunk_lags.get(ns, ()))
        return summary

    @_rpc("Ingest", pool="write")
    def Ingest(self, requests: Iterator, context, deadline: Deadline) -> pb.IngestSummary:
        total = IngestSummary(index_generation=self.app.store.generation)
        seen = 0

        def committed() -> str:
            return (f"{total.documents_committed} documents of this stream were committed "
                    f"({total.documents_added} added, {total.documents_updated} updated, "
                    f"{total.documents_unchanged} unchanged, {len(total.rejected)} rejected)")

        for i, request in enumerate(requests):
            try:
                if self.app.stopping.is_set():
                    raise Unavailable(f"the server is shutting down; {committed()}; send the rest "
                                      "again (re-sending committed documents embeds nothing)",
                                      retry_after_seconds=1.0)
                _check_decoded(request, f"stream message {i}")
                total.merge(self._ingest_batch(request, seen, deadline))
            except RetrievalError as exc:
                if not isinstance(exc, Unavailable):
                    exc.args = (f"{exc}; {committed()} before it",)
                raise
            seen += len(request.documents)
        return summary_to_pb(total)

    @_rpc("IngestBatch", pool="write")
    def IngestBatch(self, request, context, deadline: Deadline) -> pb.IngestSummary:
        _check_decoded(request)
        return summary_to_pb(self._ingest_batch(request, 0, deadline))

    @_rpc("DeleteDocuments", pool="write")
    def DeleteDocuments(self, request, context, deadline: Deadline) -> pb.DeleteDocumentsResponse:
        _check_decoded(request)
        limit = self.app.settings.limits.max_batch_documents
        if len(request.doc_ids) > limit:
            raise ResourceExhausted(f"{len(request.doc_ids)} doc_ids, over limits.max_batch_documents={limit}")
        s = self.app.ingestor.delete(request.namespace, list(request.doc_ids))
        return pb.DeleteDocumentsResponse(
            documents_deleted=s.documents_deleted, chunks_removed=s.chunks_removed,
            not_found=s.not_found, index_generation=s.index_generation,
        )

    @_rpc("Search", pool="search")
    def Search(self, request, context, deadline: Deadline) -> pb.SearchResponse:
        _check_decoded(request)
        return result_to_pb(self.app.pipeline.search(options_from_pb(request), deadline=deadline))

    @_rpc("BatchSearch", pool="search")
    def BatchSearch(self, request, context, deadline: Deadline) -> pb.BatchSearchResponse:
        _check_decoded(request)
        limit = self.app.settings.limits.max_batch_queries
        if len(request.queries) > limit:
            raise ResourceExhausted(
                f"batch has {len(request.queries)} queries, over limits.max_batch_queries={limit}"
            )
        if not request.queries:
            raise InvalidArgument("queries is empty")
        options = []
        for i, q in enumerate(request.queries):
            try:
                options.append(options_from_pb(q))
            except InvalidArgument as exc:
                raise InvalidArgument(f"queries[{i}]: {exc}") from None
        results = self.app.pipeline.search_many(options, deadline=deadline)
        return pb.BatchSearchResponse(results=[result_to_pb(r) for r in results])

    @_rpc("GetChunk")
    def GetChunk(self, request, context, deadline: Deadline) -> pb.Chunk:
        _check_decoded(request)
        if not request.chunk_id:
            raise InvalidArgument("chunk_id is required")
        chunk = self.app.store.ledger.chunk(request.chunk_id)
        if chunk is None:
            raise NotFound(f"chunk {request.chunk_id!r} does not exist")
        return _chunk_pb(chunk)

    @_rpc("GetDocument")
    def GetDocument(self, request, context, deadline: Deadline) -> pb.GetDocumentResponse:
        _check_decoded(request)
        if not request.doc_id:
            raise InvalidArgument("doc_id is required")
        namespace = normalize_namespace(request.namespace)
        ledger = self.app.store.ledger
        if not self.app.store.has_namespace(namespace):
            raise NotFound(f"namespace {namespace!r} does not exist")
        stored = ledger.document(namespace, request.doc_id)
        if stored is None:
            raise NotFound(f"document {request.doc_id!r} does not exist in namespace {namespace!r}")
        d = stored.document
        doc = pb.Document(namespace=d.namespace, doc_id=d.doc_id, title=d.title, text=d.text,
                          metadata=d.metadata, source_uri=d.source_uri)
        _stamp(doc.source_updated_at, d.source_updated_at)
        chunks = ledger.doc_chunks(namespace, request.doc_id)
        resp = pb.GetDocumentResponse(document=doc, chunk_count=len(chunks),
                                      content_hash=stored.content_hash)
        _stamp(resp.first_indexed_at, stored.first_indexed_at)
        _stamp(resp.last_verified_at, stored.last_verified_at)
        if request.include_chunks:
            for c in chunks:
                _chunk_pb(c, resp.chunks.add())
        return resp

    @_rpc("Info")
    def Info(self, request, context, deadline: Deadline) -> pb.InfoResponse:
        now = time.time()
        settings = self.app.settings
        limits = {f"limits.{k}": float(v) for k, v in settings.limits.model_dump().items()}
        limits.update({f"admission.{k}": float(v) for k, v in settings.admission.model_dump().items()})
        limits["server.max_message_bytes"] = float(settings.server.max_message_bytes)
        resp = pb.InfoResponse(
            version=__version__, index_generation=self.app.store.generation,
            models=[_model_pb(m) for m in self.app.pipeline.models],
            dense_index=self.app.dense_index_description,
            config_json=settings.to_json(), limits=limits,
        )
        for s in self.app.store.stats():
            resp.namespaces.add(
                name=s.namespace, documents=s.documents, chunks=s.chunks,
                dense_vectors=s.dense_entries, bm25_chunks=s.lexical_entries,
                oldest_chunk_age_seconds=(now - s.oldest_source_updated_at)
                if s.oldest_source_updated_at else 0.0,
            )
        return resp


class EvaluationServicer(_Servicer):
    @_rpc("RegisterQuerySet")
    def RegisterQuerySet(self, request, context, deadline: Deadline):
        _check_decoded(request)
        return self.app.evaluations.register_pb(request)

    @_rpc("ListQuerySets")
    def ListQuerySets(self, request, context, deadline: Deadline):
        _check_decoded(request)
        return self.app.evaluations.list_pb()

    @_rpc("Evaluate", pool="search", timed=False)
    def Evaluate(self, request, context, deadline: Deadline):
        _check_decoded(request)
        return self.app.evaluations.evaluate_pb(request, deadline)


def _generic_handler(service_name: str, file_descriptor, servicer) -> grpc.GenericRpcHandler:
    service = file_descriptor.services_by_name[service_name.rsplit(".", 1)[1]]
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        parse = _lenient(request_cls.FromString)
        serialize = lambda m: m.SerializeToString()  # noqa: E731
        behaviour = getattr(servicer, method.name)
        if method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                behaviour, request_deserializer=parse, response_serializer=serialize)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                behaviour, request_deserializer=parse, response_serializer=serialize)
    return grpc.method_handlers_generic_handler(service_name, handlers)


def _health_handler(servicer: health.HealthServicer) -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health with lenient request parsing: malformed bytes get
    INVALID_ARGUMENT, not the INTERNAL of grpc's own deserialisation failure."""

    def check(request, context):
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"HealthCheckRequest could not be parsed ({request.error})")
        return servicer.Check(request, context)

    def watch(request, context):
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"HealthCheckRequest could not be parsed ({request.error})")
        yield from servicer.Watch(request, context)

    parse = _lenient(health_pb2.HealthCheckRequest.FromString)
    serialize = health_pb2.HealthCheckResponse.SerializeToString
    return grpc.method_handlers_generic_handler(health.SERVICE_NAME, {
        "Check": grpc.unary_unary_rpc_method_handler(check, parse, serialize),
        "Watch": grpc.unary_stream_rpc_method_handler(watch, parse, serialize),
    })


def _reflection_handler(service_names: tuple[str, ...]) -> grpc.GenericRpcHandler:
    """Server reflection with lenient request parsing (see _health_handler)."""
    servicer = reflection.ReflectionServicer(service_names)

    def info(requests, context):
        def decoded():
            for request in requests:
                if isinstance(request, _Undecodable):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"ServerReflectionRequest could not be parsed ({request.error})")
                yield request

        yield from servicer.ServerReflectionInfo(decoded(), context)

    return grpc.method_handlers_generic_handler(reflection.SERVICE_NAME, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            info, _lenient(reflection_pb2.ServerReflectionRequest.FromString),
            reflection_pb2.ServerReflectionResponse.SerializeToString),
    })


class Server:
    """A running gRPC server (plus the metrics endpoint) around an App.

    Start-up fails with StartupError (one line naming the cause) when the port is
    taken: SO_REUSEPORT, on by default in gRPC Python, is turned off, so a second
    server cannot silently share a port and split its traffic.

    Shutdown (`stop`): health turns NOT_SERVING, ingest streams end at their next
    message with UNAVAILABLE saying how much they committed, calls in flight get
    `server.grace_seconds` to finish; then the server waits for every handler to
    return before it closes the store, so no handler touches a closed index.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        s = app.settings.server
        options = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        a = app.settings.admission
        telemetry = app.telemetry
        refused = lambda pool, reason: telemetry.admission_refused.labels(pool, reason).inc()  # noqa: E731
        waited = lambda pool, seconds: telemetry.admission_wait.labels(pool).observe(seconds)  # noqa: E731
        self.pools = {
            "search": Pool("search", a.search_in_flight, a.search_queue, a.queue_timeout_seconds,
                           a.retry_after_seconds, refused, waited),
            "write": Pool("write", a.write_in_flight, a.write_queue, a.queue_timeout_seconds,
                          a.retry_after_seconds, refused, waited),
        }
        self.calls = _Calls()
        # The thread pool holds every admitted and queued call plus headroom for health,
        # Info and Get* (settings validate max_workers against admission); past that gRPC
        # itself refuses with RESOURCE_EXHAUSTED instead of queueing without bound.
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=s.max_workers, thread_name_prefix="rpc"),
                                options=options, maximum_concurrent_rpcs=s.max_workers)
        self.grpc.add_generic_rpc_handlers((
            _generic_handler(RETRIEVAL_SERVICE, pb.DESCRIPTOR, RetrievalServicer(app, self.pools, self.calls)),
            _generic_handler(EVALUATION_SERVICE, epb.DESCRIPTOR, EvaluationServicer(app, self.pools, self.calls)),
        ))
        self.health = health.HealthServicer()
        self.grpc.add_generic_rpc_handlers((
            _health_handler(self.health),
            _reflection_handler(
                (RETRIEVAL_SERVICE, EVALUATION_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)),
        ))
        address = f"{s.host}:{s.port}"
        try:
            self.port = self.grpc.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise StartupError(
                f"cannot listen on {address} (server.host, server.port): the port is in use by another "
                "process, or the address is not one of this machine's; pick another port or stop that process"
            )
        self.metrics_port = 0

    def start(self) -> "Server":
        s = self.app.settings.server
        if s.metrics_port >= 0:
            try:
                self.metrics_port = self.app.telemetry.serve_http(s.metrics_host, s.metrics_port)
            except OSError as exc:
                raise StartupError(
                    f"cannot serve metrics on {s.metrics_host}:{s.metrics_port} (server.metrics_host, "
                    f"server.metrics_port): {exc.strerror or exc}") from None
        self.grpc.start()
        self.app.start_background()
        for name in ("", RETRIEVAL_SERVICE, EVALUATION_SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self

    def stop(self, grace: float | None = None) -> None:
        self.app.stopping.set()
        self.health.enter_graceful_shutdown()
        grace = self.app.settings.server.grace_seconds if grace is None else grace
        self.grpc.stop(grace).wait()
        # gRPC has cancelled what was still running; handlers see it at their next
        # deadline check. Wait for them before closing what they use.
        if not self.calls.wait_idle(timeout=max(30.0, grace)):
            log.error("handlers still running 30 s after shutdown; closing the store under them")
        self.app.close()

    def wait(self) -> None:
        self.grpc.wait_for_termination()
