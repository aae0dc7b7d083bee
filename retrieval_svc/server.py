"""The gRPC transport: translates protobuf <-> domain objects and errors <-> status codes.

Nothing here decides retrieval behaviour; it calls App's ingestor, pipeline and
evaluation runner. Requests are deserialised leniently so that a malformed
message (for example a string field holding invalid UTF-8) gets
INVALID_ARGUMENT with an explanation instead of grpc's generic INTERNAL.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import ipaddress
import json
import logging
import math
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, cast

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_status import rpc_status

from retrieval_svc import __version__
from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.admission import Pool
from retrieval_svc.app import App
from retrieval_svc.auth import OPEN, KeysFileError, Principal, ReloadingKeyRing, Role, file_signature
from retrieval_svc.deadline import Deadline
from retrieval_svc.domain import DEFAULT_NAMESPACE, MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS, Document, SearchMode
from retrieval_svc.errors import (
    AlreadyExists, InvalidArgument, InvalidDocument, NotFound, PermissionDenied, ResourceExhausted,
    RetrievalError, StartupError, Unauthenticated, Unavailable,
)
from retrieval_svc.ingest import NAME_PATTERN, IngestSummary, normalize_namespace
from retrieval_svc.pipeline import SearchOptions, SearchResult

log = logging.getLogger(__name__)
# One line per committed write or delete and per refused write call: key id, namespaces,
# outcome and counts; never document or query text.
audit = logging.getLogger("retrieval_svc.audit")

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


def _instant(ts, earliest: int = MIN_TIMESTAMP_SECONDS) -> float:
    """A Timestamp as POSIX seconds; NaN for one outside [earliest, year 9999] or with nanos
    outside 0..999,999,999, which validation rejects naming the field (source times start
    in 1970: earliest=0)."""
    if not 0 <= ts.nanos <= 999_999_999 or not earliest <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        return math.nan
    return ts.seconds + ts.nanos / 1e9


def _stamp(target, seconds: float | None) -> None:
    if seconds is not None:
        target.FromNanoseconds(int(round(seconds * 1e9)))


def document_from_pb(d: pb.Document) -> Document:
    return Document(
        namespace=d.namespace, doc_id=d.doc_id, text=d.text, title=d.title,
        metadata=dict(d.metadata),
        source_updated_at=_instant(d.source_updated_at, earliest=0) if d.HasField("source_updated_at") else None,
        source_uri=d.source_uri,
        expires_at=_instant(d.expires_at) if d.HasField("expires_at") else None,
        ttl_seconds=d.ttl_seconds if d.ttl_seconds else None,
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
        as_of=_instant(r.as_of) if r.HasField("as_of") else None,
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
        request_id=r.request_id, mode=_MODE_PB[r.mode],
        # Unset when nothing was fused (dense-only, BM25-only).
        fusion=_FUSION_PB[r.fusion] if r.fusion else pb.FUSION_METHOD_UNSPECIFIED,
        reranked=r.reranked, rerank_fallback=r.rerank_fallback,
        rerank_fallback_reason=r.rerank_fallback_reason, index_generation=r.index_generation,
        query_token_count=r.query_token_count,
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
        _stamp(hit.expires_at, h.expires_at)
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
        added_document_count=s.documents_added, updated_document_count=s.documents_updated,
        unchanged_document_count=s.documents_unchanged, added_chunk_count=s.chunks_added,
        unchanged_chunk_count=s.chunks_unchanged, removed_chunk_count=s.chunks_removed,
        embedded_chunk_count=s.chunks_embedded, index_generation=s.index_generation,
        rejected_document_count=len(s.rejected),
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


# --- access ----------------------------------------------------------------------


def _ns(name: str) -> str:
    return name or DEFAULT_NAMESPACE


@dataclass(frozen=True)
class AccessRule:
    """What one RPC needs: `role` (auth.Role; admin implies read and write) on every
    namespace `namespaces(request)` names, checked before admission; for a client-streaming
    RPC, on each message as the handler reads it. `role` None: any authenticated caller,
    because the request names no namespace; its handler takes a `principal` argument and
    shows only namespaces the caller holds a role on. `audit`: a call refused with
    PERMISSION_DENIED is logged on the audit logger (committed writes are logged where
    they commit)."""

    role: Role | None
    namespaces: Callable[[Any], Iterable[str]] = lambda request: ()
    audit: bool = False


def _document_namespaces(request) -> Iterable[str]:
    return {_ns(d.namespace) for d in request.documents}


# Every RPC of the API, by full method name. A method missing here is refused
# (PERMISSION_DENIED), and tests/retrieval_svc/test_security.py fails for it.
ACCESS_RULES: dict[str, AccessRule] = {
    f"/{RETRIEVAL_SERVICE}/Ingest": AccessRule("write", _document_namespaces, audit=True),
    f"/{RETRIEVAL_SERVICE}/IngestBatch": AccessRule("write", _document_namespaces, audit=True),
    f"/{RETRIEVAL_SERVICE}/DeleteDocuments": AccessRule("write", lambda r: (_ns(r.namespace),), audit=True),
    f"/{RETRIEVAL_SERVICE}/Search": AccessRule("read", lambda r: (_ns(r.namespace),)),
    f"/{RETRIEVAL_SERVICE}/BatchSearch": AccessRule("read", lambda r: {_ns(q.namespace) for q in r.queries}),
    f"/{RETRIEVAL_SERVICE}/GetDocument": AccessRule("read", lambda r: (_ns(r.namespace),)),
    # The chunk's namespace is known once it is found: read on it, else NOT_FOUND as if missing.
    f"/{RETRIEVAL_SERVICE}/GetChunk": AccessRule(None),
    # The caller's namespaces only; the configuration to an admin of every namespace.
    f"/{RETRIEVAL_SERVICE}/Info": AccessRule(None),
    # The caller's namespaces only.
    f"/{RETRIEVAL_SERVICE}/ListNamespaces": AccessRule(None),
    f"/{RETRIEVAL_SERVICE}/DeleteNamespace": AccessRule("write", lambda r: (_ns(r.namespace),), audit=True),
    f"/{EVALUATION_SERVICE}/RegisterQuerySet": AccessRule("admin", lambda r: (_ns(r.namespace),), audit=True),
    # Sets whose namespace the caller may read.
    f"/{EVALUATION_SERVICE}/ListQuerySets": AccessRule(None),
    # Admin on the template's namespace when it names one, and (in the handler) on the set's
    # namespace: a set of another tenant is NOT_FOUND, as if it did not exist.
    f"/{EVALUATION_SERVICE}/Evaluate": AccessRule(
        "admin", lambda r: (r.search_template.namespace,) if r.search_template.namespace else ()),
}


def _shown(namespace: str) -> str:
    """A namespace as an audit line or an error message may show it: valid names as they are,
    anything else (caller text) cut short and quoted."""
    return namespace if NAME_PATTERN.match(namespace) else repr(namespace[:64])


def _denied(principal: Principal, role: str, namespace: str) -> PermissionDenied:
    return PermissionDenied(f"key {principal.key_id!r} has no {role} role on namespace {_shown(namespace)}")


def _authorized(rule: AccessRule, principal: Principal, request: Any, namespaces: set[str]) -> Any:
    """Check `rule` for `request` and add the namespaces it names to `namespaces`; returns the
    request for the handler: for a stream, an iterator that checks each message before the
    handler sees it. Undecodable messages pass: their handler rejects them."""

    def check(message: Any, where: str = "") -> None:
        if rule.role is None or isinstance(message, _Undecodable):
            return
        for namespace in rule.namespaces(message):
            namespaces.add(namespace)
            if not principal.allows(rule.role, namespace):
                denied = _denied(principal, rule.role, namespace)
                raise PermissionDenied(f"{where}{denied}") if where else denied

    if isinstance(request, (Message, _Undecodable)):
        check(request)
        return request

    def checked(messages: Iterator[Any]) -> Iterator[Any]:
        for i, message in enumerate(messages):
            check(message, f"stream message {i} ({i} committed before it): ")
            yield message

    return checked(request)


def _bearer_token(context) -> str | None:
    """The token of `authorization: Bearer <token>` metadata; None when there is none."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return token.strip()
    return None


def _client_names(context) -> list[str]:
    """The TLS client certificate's subject CN and SANs (empty without mTLS)."""
    properties = context.auth_context() or {}
    return [value.decode("utf-8", "replace") for key in ("x509_common_name", "x509_subject_alternative_name")
            for value in properties.get(key, ())]


class Gatekeeper:
    """Who is calling: the key of the bearer token in `authorization` metadata, else of the
    TLS client certificate's names (mTLS); `OPEN` (every right) when no keys are configured."""

    def __init__(self, keys: ReloadingKeyRing | None = None) -> None:
        self.keys = keys

    def principal(self, context) -> Principal:
        if self.keys is None:
            return OPEN
        ring = self.keys.current()
        token = _bearer_token(context)
        if token is not None:
            principal = ring.for_token(token)
            if principal is None:
                raise Unauthenticated("the bearer token is not a valid API key (unknown or revoked)")
            return principal
        names = _client_names(context)
        if names:
            principal = ring.for_client(names)
            if principal is None:
                raise Unauthenticated("the client certificate's names match no key's client_names, "
                                      "and no bearer token was sent")
            return principal
        raise Unauthenticated("no credentials: send an API key as `authorization: Bearer <token>` metadata")


def _audit_counts(message: Message) -> str:
    """The counts of a write's response as key=value pairs (integers and list lengths only:
    nothing a caller wrote)."""
    parts = []
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            parts.append(f"{field.name}={len(value)}")
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{field.name}={value}")
    return " ".join(parts)


def _audit_commit(rpc: str, principal: Principal, namespaces: Iterable[str], response: Message) -> None:
    audit.info("%s committed key=%s namespaces=%s %s", rpc, principal.key_id,
               ",".join(sorted(_shown(n) for n in namespaces)), _audit_counts(response))


def _rpc(name: str, pool: str | None = None, timed: bool = True):
    """Count, time and map errors of one RPC method; authenticate the caller and check its
    ACCESS_RULES entry before admission; admit it through `pool` (`timed`: see Pool.slot);
    give it the caller's deadline; trace it (a span under the caller's trace context, when
    tracing is on: retrieval_svc.tracing). The method is called as
    method(self, request, context, deadline), plus principal=... when it has a `principal`
    parameter. A call that finishes after its deadline is counted as DEADLINE_EXCEEDED (what
    its caller saw) and as an overrun."""

    def wrap(method):
        wants_principal = "principal" in inspect.signature(method).parameters

        @functools.wraps(method)
        def handler(self, request, context):
            started = time.perf_counter()
            code = "OK"
            deadline = _deadline(context)
            telemetry, tracing = self.app.telemetry, self.app.tracing
            rule = ACCESS_RULES.get(f"/{self.service}/{name}")
            principal = None
            namespaces = set()  # those the request names, for the audit line of a refusal
            # The span is current while the method runs, so the pipeline's stage spans nest under it.
            with tracing.rpc(self.service, name, context.invocation_metadata()) as span:
                try:
                    with self.calls:
                        principal = self.gate.principal(context)
                        if rule is None:
                            raise PermissionDenied(f"{name} has no access rule; it is refused to everyone")
                        request = _authorized(rule, principal, request, namespaces)
                        extra = {"principal": principal} if wants_principal else {}
                        if pool is None:
                            result = method(self, request, context, deadline, **extra)
                        else:
                            with self.pools[pool].slot(deadline, timed=timed):
                                result = method(self, request, context, deadline, **extra)
                    if deadline.expired():
                        code = "DEADLINE_EXCEEDED"
                        telemetry.deadline_overruns.labels(name).inc()
                    return result
                except RetrievalError as exc:
                    code = exc.code if context.is_active() or exc.code == "DEADLINE_EXCEEDED" else "CANCELLED"
                    # Calls without a valid key are only counted (retrieval_requests_total): logging
                    # each would let anyone fill the disk.
                    if (rule is not None and rule.audit and principal is not None
                            and isinstance(exc, PermissionDenied)):
                        audit.warning("%s refused key=%s namespaces=%s code=%s", name, principal.key_id,
                                      ",".join(sorted(_shown(n) for n in namespaces)), exc.code)
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
                    tracing.finish_rpc(span, code)
                    telemetry.requests.labels(name, code).inc()
                    telemetry.request_duration.labels(name).observe(time.perf_counter() - started)

        return handler

    return wrap


class _Servicer:
    service = ""  # the full gRPC service name, for ACCESS_RULES

    def __init__(self, app: App, pools: dict[str, Pool], calls: _Calls, gate: Gatekeeper | None = None) -> None:
        self.app = app
        self.pools = pools
        self.calls = calls
        self.gate = gate or Gatekeeper()


class RetrievalServicer(_Servicer):
    service = RETRIEVAL_SERVICE

    def _ingest_batch(self, request: pb.IngestRequest, first_index: int, deadline: Deadline,
                      rpc: str = "IngestBatch",
                      principal: Principal = OPEN) -> tuple[IngestSummary, pb.IngestSummary]:
        """Commit one message's documents; the summary, and as the response message."""
        if request.on_invalid not in (pb.INVALID_DOCUMENT_POLICY_UNSPECIFIED,
                                      pb.INVALID_DOCUMENT_POLICY_REJECT, pb.INVALID_DOCUMENT_POLICY_SKIP):
            raise InvalidArgument(f"on_invalid {request.on_invalid} is not a known InvalidDocumentPolicy")
        summary = self.app.ingestor.ingest(
            [document_from_pb(d) for d in request.documents], first_index,
            skip_invalid=request.on_invalid == pb.INVALID_DOCUMENT_POLICY_SKIP, deadline=deadline)
        for ns in summary.new_chunk_lags.keys() | summary.embedded_by_namespace.keys():
            self.app.telemetry.observe_ingest(
                ns, summary.embedded_by_namespace.get(ns, 0), summary.new_chunk_lags.get(ns, ()))
        response = summary_to_pb(summary)
        _audit_commit(rpc, principal, _document_namespaces(request), response)
        return summary, response

    @_rpc("Ingest", pool="write")
    def Ingest(self, requests: Iterator, context, deadline: Deadline,
               principal: Principal = OPEN) -> pb.IngestSummary:
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
                total.merge(self._ingest_batch(request, seen, deadline, "Ingest", principal)[0])
            except RetrievalError as exc:
                if not isinstance(exc, Unavailable):
                    exc.args = (f"{exc}; {committed()} before it",)
                raise
            seen += len(request.documents)
        return summary_to_pb(total)

    @_rpc("IngestBatch", pool="write")
    def IngestBatch(self, request, context, deadline: Deadline, principal: Principal = OPEN) -> pb.IngestSummary:
        _check_decoded(request)
        return self._ingest_batch(request, 0, deadline, "IngestBatch", principal)[1]

    @_rpc("DeleteDocuments", pool="write")
    def DeleteDocuments(self, request, context, deadline: Deadline,
                        principal: Principal = OPEN) -> pb.DeleteDocumentsResponse:
        _check_decoded(request)
        limit = self.app.settings.limits.max_batch_documents
        if len(request.doc_ids) > limit:
            raise ResourceExhausted(f"{len(request.doc_ids)} doc_ids, over limits.max_batch_documents={limit}")
        s = self.app.ingestor.delete(request.namespace, list(request.doc_ids))
        resp = pb.DeleteDocumentsResponse(
            deleted_document_count=s.documents_deleted, removed_chunk_count=s.chunks_removed,
            not_found=s.not_found, index_generation=s.index_generation,
        )
        _audit_commit("DeleteDocuments", principal, (_ns(request.namespace),), resp)
        return resp

    def _refreshed(self, result: SearchResult, request: pb.SearchRequest) -> SearchResult:
        """The result, with its documents' TTLs extended when the read refreshes them."""
        namespace = _ns(request.namespace)
        requested = request.refresh_ttl if request.HasField("refresh_ttl") else None
        if not result.hits or not self.app.memory.refreshes(namespace, requested):
            return result
        moved = self.app.memory.refresh(namespace, {
            h.chunk.doc_id: (h.chunk.doc_id, h.expires_at, h.ttl_seconds) for h in result.hits}.values())
        if not moved:
            return result
        hits = [dataclasses.replace(h, expires_at=moved[h.chunk.doc_id]) if h.chunk.doc_id in moved else h
                for h in result.hits]
        return dataclasses.replace(result, hits=hits)

    @_rpc("Search", pool="search")
    def Search(self, request, context, deadline: Deadline) -> pb.SearchResponse:
        _check_decoded(request)
        result = self.app.pipeline.search(options_from_pb(request), deadline=deadline)
        return result_to_pb(self._refreshed(result, request))

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
        self.app.tracing.current().set_attribute("retrieval.query_count", len(options))
        results = self.app.pipeline.search_many(options, deadline=deadline)
        return pb.BatchSearchResponse(
            results=[result_to_pb(self._refreshed(r, q)) for r, q in zip(results, request.queries)])

    @_rpc("GetChunk")
    def GetChunk(self, request, context, deadline: Deadline, principal: Principal = OPEN) -> pb.Chunk:
        _check_decoded(request)
        if not request.chunk_id:
            raise InvalidArgument("chunk_id is required")
        chunk = self.app.store.chunk(request.chunk_id)
        # Another tenant's chunk is answered as a missing one, so its existence does not show.
        if chunk is None or not principal.allows("read", chunk.namespace):
            raise NotFound(f"chunk {request.chunk_id!r} does not exist")
        return _chunk_pb(chunk)

    @_rpc("GetDocument")
    def GetDocument(self, request, context, deadline: Deadline) -> pb.GetDocumentResponse:
        _check_decoded(request)
        if not request.doc_id:
            raise InvalidArgument("doc_id is required")
        namespace = normalize_namespace(request.namespace)
        store = self.app.store
        if not store.has_namespace(namespace):
            raise NotFound(f"namespace {namespace!r} does not exist")
        stored = store.document(namespace, request.doc_id)
        if stored is None:
            raise NotFound(f"document {request.doc_id!r} does not exist in namespace {namespace!r}")
        d = stored.document
        expires_at = d.expires_at
        if self.app.memory.refreshes(namespace, request.refresh_ttl if request.HasField("refresh_ttl") else None):
            moved = self.app.memory.refresh(namespace, [(d.doc_id, d.expires_at, d.ttl_seconds)])
            expires_at = moved.get(d.doc_id, expires_at)
        doc = pb.Document(namespace=d.namespace, doc_id=d.doc_id, title=d.title, text=d.text,
                          metadata=d.metadata, source_uri=d.source_uri, ttl_seconds=d.ttl_seconds or 0.0)
        _stamp(doc.source_updated_at, d.source_updated_at)
        _stamp(doc.expires_at, expires_at)
        chunks = store.doc_chunks(namespace, request.doc_id)
        resp = pb.GetDocumentResponse(document=doc, chunk_count=len(chunks),
                                      content_hash=stored.content_hash)
        _stamp(resp.first_indexed_at, stored.first_indexed_at)
        _stamp(resp.last_verified_at, stored.last_verified_at)
        if request.include_chunks:
            for c in chunks:
                _chunk_pb(c, resp.chunks.add())
        return resp

    @_rpc("ListNamespaces")
    def ListNamespaces(self, request, context, deadline: Deadline,
                       principal: Principal = OPEN) -> pb.ListNamespacesResponse:
        _check_decoded(request)
        if len(request.prefix) > 128:
            raise InvalidArgument(f"prefix has {len(request.prefix)} characters; namespaces have at most 128")
        return pb.ListNamespacesResponse(namespaces=self._namespace_infos(principal, request.prefix))

    def _namespace_infos(self, principal: Principal, prefix: str = "") -> list[pb.NamespaceInfo]:
        """The namespaces the caller sees (and whose name starts with `prefix`), with counts."""
        now = time.time()
        return [
            pb.NamespaceInfo(
                name=s.namespace, document_count=s.documents, chunk_count=s.chunks,
                dense_vector_count=s.dense_entries, bm25_chunk_count=s.lexical_entries,
                oldest_chunk_age_seconds=(now - s.oldest_source_updated_at) if s.oldest_source_updated_at else 0.0)
            for s in self.app.store.stats() if s.namespace.startswith(prefix) and principal.sees(s.namespace)
        ]

    @_rpc("DeleteNamespace", pool="write")
    def DeleteNamespace(self, request, context, deadline: Deadline,
                        principal: Principal = OPEN) -> pb.DeleteNamespaceResponse:
        _check_decoded(request)
        if not request.namespace:
            raise InvalidArgument('namespace is required (name "default" to empty the default namespace)')
        namespace = normalize_namespace(request.namespace)
        with self.app.store.writer() as writer:
            deleted = writer.delete_namespace(namespace)
        if deleted is None:
            raise NotFound(f"namespace {namespace!r} does not exist")
        resp = pb.DeleteNamespaceResponse(deleted_document_count=deleted[0], removed_chunk_count=deleted[1],
                                          index_generation=self.app.store.generation)
        _audit_commit("DeleteNamespace", principal, (namespace,), resp)
        return resp

    @_rpc("Info")
    def Info(self, request, context, deadline: Deadline, principal: Principal = OPEN) -> pb.InfoResponse:
        settings = self.app.settings
        limits = {f"limits.{k}": float(v) for k, v in settings.limits.model_dump().items()}
        limits.update({f"admission.{k}": float(v) for k, v in settings.admission.model_dump().items()})
        limits["server.max_message_bytes"] = float(settings.server.max_message_bytes)
        resp = pb.InfoResponse(
            version=__version__, index_generation=self.app.store.generation,
            models=[_model_pb(m) for m in self.app.pipeline.models],
            dense_index=self.app.dense_index_description, limits=limits,
        )
        # The configuration names every tenant's query sets and the store's paths.
        if principal.is_global_admin:
            config = settings.to_json()  # secrets masked
            resp.config.update(json.loads(config))
            resp.config_json = config  # deprecated in 0.2.0, filled for 0.1.0 clients until it goes
        resp.namespaces.extend(self._namespace_infos(principal))
        return resp


class EvaluationServicer(_Servicer):
    service = EVALUATION_SERVICE

    @_rpc("RegisterQuerySet")
    def RegisterQuerySet(self, request, context, deadline: Deadline, principal: Principal = OPEN):
        _check_decoded(request)
        # Set names are one space for all tenants: never replace a set of a namespace the
        # caller does not administer.
        owner = self.app.evaluations.namespace_of(request.name)
        if owner is not None and not principal.allows("admin", owner):
            if principal.allows("read", owner):
                raise _denied(principal, "admin", owner)
            raise AlreadyExists(f"query set name {request.name!r} is taken; choose another name")
        resp = self.app.evaluations.register_pb(request)
        _audit_commit("RegisterQuerySet", principal, (_ns(request.namespace),), resp)
        return resp

    @_rpc("ListQuerySets")
    def ListQuerySets(self, request, context, deadline: Deadline, principal: Principal = OPEN):
        _check_decoded(request)
        resp = self.app.evaluations.list_pb()
        shown = [s for s in resp.sets if principal.allows("read", _ns(s.namespace))]
        if len(shown) < len(resp.sets):
            del resp.sets[:]
            resp.sets.extend(shown)
        return resp

    @_rpc("Evaluate", pool="search", timed=False)
    def Evaluate(self, request, context, deadline: Deadline, principal: Principal = OPEN):
        _check_decoded(request)
        owner = self.app.evaluations.namespace_of(request.query_set)
        # A set the caller cannot even list (ListQuerySets) is answered as a missing one.
        if owner is None or not principal.allows("read", owner):
            raise NotFound(f"query set {request.query_set!r} is not registered or configured")
        if not principal.allows("admin", owner):
            raise _denied(principal, "admin", owner)
        response = self.app.evaluations.evaluate_pb(request, deadline)
        # The evaluation's searches make no spans of their own (thousands per run): its counts do.
        span = self.app.tracing.current()
        if span.is_recording():
            span.set_attributes({
                "retrieval.query_set": response.query_set, "retrieval.namespace": owner,
                "retrieval.query_count": response.evaluated_query_count,
                "retrieval.stage_count": len(response.stages),
                "retrieval.search_count": response.evaluated_query_count * len(response.stages)})
        return response


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

    def list_statuses(request, context):
        # health.proto's List; grpcio-health-checking's servicer does not implement it.
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"HealthListRequest could not be parsed ({request.error})")
        with servicer._lock:
            statuses = dict(servicer._server_status)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()})

    parse = _lenient(health_pb2.HealthCheckRequest.FromString)
    serialize = health_pb2.HealthCheckResponse.SerializeToString
    return grpc.method_handlers_generic_handler(health.SERVICE_NAME, {
        "Check": grpc.unary_unary_rpc_method_handler(check, parse, serialize),
        "Watch": grpc.unary_stream_rpc_method_handler(watch, parse, serialize),
        # types-grpcio-health-checking predates List: its stubs lack these two messages.
        "List": grpc.unary_unary_rpc_method_handler(
            list_statuses, _lenient(health_pb2.HealthListRequest.FromString),  # type: ignore[attr-defined]
            health_pb2.HealthListResponse.SerializeToString),  # type: ignore[attr-defined]
    })


def _reflection_handler(service_names: tuple[str, ...], gate: Gatekeeper | None = None) -> grpc.GenericRpcHandler:
    """Server reflection with lenient request parsing (see _health_handler); for callers with
    a valid key only, when `gate` is given."""
    servicer = reflection.ReflectionServicer(service_names)

    def info(requests, context):
        if gate is not None:
            try:
                gate.principal(context)
            except Unauthenticated as exc:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))

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


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _CertificateFiles:
    """tls.cert_file, tls.key_file and tls.client_ca_file, as gRPC's dynamic server credentials
    want them: `fetch` is called at every new connection and returns a new configuration when a
    file changed, or None to keep the one in force. Files that change into something that does
    not load (a half-written renewal, a key that does not match) keep the old configuration and
    are logged once per change."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
        self.files = {"tls.cert_file": cert_file, "tls.key_file": key_file}
        if client_ca_file:
            self.files["tls.client_ca_file"] = client_ca_file
        self._lock = threading.Lock()
        self._signature = self._stat()
        self.config = self._load()

    def _stat(self) -> tuple:
        return tuple(file_signature(path) for path in self.files.values())

    def _load(self) -> grpc.ServerCertificateConfiguration:
        """The configuration from the files; StartupError naming the setting on a problem."""
        data = {}
        for key, path in self.files.items():
            try:
                data[key] = Path(path).read_bytes()
            except OSError as exc:
                raise StartupError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
        cert, key = self.files["tls.cert_file"], self.files["tls.key_file"]
        # The ssl module checks the PEM and that the key belongs to the certificate, with a
        # message; gRPC would only fail each handshake.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise StartupError(f"tls.cert_file, tls.key_file: {cert} and {key} are not a PEM certificate "
                               f"chain and its private key: {exc}") from None
        ca = self.files.get("tls.client_ca_file")
        if ca:
            try:
                context.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as exc:
                raise StartupError(f"tls.client_ca_file: {ca} is not a PEM CA bundle: {exc}") from None
        return grpc.ssl_server_certificate_configuration(
            [(data["tls.key_file"], data["tls.cert_file"])], root_certificates=data.get("tls.client_ca_file"))

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            signature = self._stat()
            if signature == self._signature:
                return None
            self._signature = signature
            try:
                self.config = self._load()
            except StartupError as exc:
                log.error("TLS files changed but do not load; new connections keep the certificate "
                          "loaded before: %s", exc)
                return None
            except Exception:  # gRPC calls this from its core; never let it fail a handshake
                log.exception("TLS files changed but could not be loaded; keeping the certificate in force")
                return None
            log.info("TLS certificate reloaded from %s", self.files["tls.cert_file"])
            return self.config


def _gatekeeper(settings, announce: bool = True) -> Gatekeeper:
    """The Gatekeeper of `settings.auth`; StartupError when the keys file does not load, or
    when no keys are configured on a non-loopback host without auth.allow_unauthenticated."""
    auth, host = settings.auth, settings.server.host
    if not auth.keys_file:
        if not _is_loopback(host) and not auth.allow_unauthenticated:
            raise StartupError(
                f"server.host is {host!r}, not a loopback address, and no API keys are configured "
                "(auth.keys_file): anyone who can reach the port could read, overwrite and delete every "
                "namespace. Configure auth.keys_file (docs/security.md), bind 127.0.0.1, or set "
                "auth.allow_unauthenticated: true to serve open on purpose")
        return Gatekeeper()
    try:
        keys = ReloadingKeyRing(auth.keys_file, auth.reload_seconds)
    except KeysFileError as exc:
        raise StartupError(f"auth.keys_file: {exc}") from None
    if not announce:
        return Gatekeeper(keys)
    log.info("authentication on: %d API keys from %s (checked for changes every %g s)",
             keys.current().count, auth.keys_file, auth.reload_seconds)
    if not settings.tls.cert_file and not _is_loopback(host):
        log.warning("API keys are on but TLS is off on %s: tokens cross the network in clear text "
                    "unless a proxy or mesh encrypts the connection (tls.cert_file, tls.key_file)", host)
    return Gatekeeper(keys)


def preflight(settings) -> None:
    """The security checks Server makes at start-up (keys file, TLS files, the loopback rule),
    without building anything: `serve` runs them before loading models, to fail in a second."""
    _gatekeeper(settings, announce=False)
    tls = settings.tls
    if tls.cert_file:
        _CertificateFiles(tls.cert_file, tls.key_file, tls.client_ca_file)


class Server:
    """A running gRPC server (plus the metrics endpoint) around an App.

    Start-up fails with StartupError (one line naming the cause) when the port is
    taken: SO_REUSEPORT, on by default in gRPC Python, is turned off, so a second
    server cannot silently share a port and split its traffic.

    Security (docs/security.md): with auth.keys_file every RPC but health (and reflection,
    unless auth.open_reflection) needs an API key; with tls.cert_file the port speaks TLS
    only. Start-up fails with StartupError on a keys or certificate file that does not load,
    and on a non-loopback server.host with no keys unless auth.allow_unauthenticated.

    Shutdown (`stop`): health turns NOT_SERVING, ingest streams end at their next
    message with UNAVAILABLE saying how much they committed, calls in flight get
    `server.grace_seconds` to finish; then the server waits for every handler to
    return before it closes the store, so no handler touches a closed index.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        s = app.settings.server
        self.gate = _gatekeeper(app.settings)
        tls = app.settings.tls
        self.certificates = (_CertificateFiles(tls.cert_file, tls.key_file, tls.client_ca_file)
                             if tls.cert_file else None)
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
            _generic_handler(RETRIEVAL_SERVICE, pb.DESCRIPTOR,
                             RetrievalServicer(app, self.pools, self.calls, self.gate)),
            _generic_handler(EVALUATION_SERVICE, epb.DESCRIPTOR,
                             EvaluationServicer(app, self.pools, self.calls, self.gate)),
        ))
        self.health = health.HealthServicer()
        self.grpc.add_generic_rpc_handlers((
            _health_handler(self.health),
            _reflection_handler(
                (RETRIEVAL_SERVICE, EVALUATION_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
                None if app.settings.auth.open_reflection or self.gate.keys is None else self.gate),
        ))
        address = f"{s.host}:{s.port}"
        try:
            if self.certificates is None:
                self.port = self.grpc.add_insecure_port(address)
            else:
                # gRPC's fetcher may return None ("no change"); the type stub does not say so.
                fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self.certificates.fetch)
                credentials = grpc.dynamic_ssl_server_credentials(
                    self.certificates.config, fetch,
                    require_client_authentication=tls.require_client_auth)
                self.port = self.grpc.add_secure_port(address, credentials)
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
