"""A small Python client for the retrieval.v1 API (used by the CLI and the tests)."""

from __future__ import annotations

import collections
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import evaluation_pb2_grpc as egrpc
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.domain import Document

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# gRPC's channel waits up to 120 s between reconnection attempts by default and fails calls
# fast meanwhile, so a job retrying through a server restart could miss the server for
# minutes after it is back. 5 s keeps the client's own backoff in charge.
MAX_RECONNECT_BACKOFF_MS = 5000

T = TypeVar("T")


def document_to_pb(doc: Document) -> pb.Document:
    out = pb.Document(
        namespace=doc.namespace, doc_id=doc.doc_id, title=doc.title, text=doc.text,
        metadata=dict(doc.metadata), source_uri=doc.source_uri,
    )
    if doc.source_updated_at is not None:
        out.source_updated_at.FromNanoseconds(int(round(doc.source_updated_at * 1e9)))
    return out


def batched(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class ErrorDetails:
    """The google.rpc details of a failed call: the server's RetryInfo delay (None when it
    sent none: retrying the same request will not help) and BadRequest field violations
    as (field, description), e.g. ("documents[3].text", "document 3 ...: text and title are
    both blank")."""

    retry_after_seconds: float | None = None
    field_violations: tuple[tuple[str, str], ...] = ()

    def document_index(self) -> int | None:
        """Position in the request of the first document a field violation names."""
        for field_path, _ in self.field_violations:
            match = re.match(r"documents\[(\d+)\]", field_path)
            if match:
                return int(match.group(1))
        return None


def error_details(exc: grpc.RpcError) -> ErrorDetails:
    """Unpack RetryInfo and BadRequest from a failed call's status details."""
    if not isinstance(exc, grpc.Call):
        return ErrorDetails()
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # details that disagree with the status: trust the status alone
        return ErrorDetails()
    if status is None:
        return ErrorDetails()
    retry_after, violations = None, []
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_after = info.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    return ErrorDetails(retry_after, tuple(violations))


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed calls to retry, and after how long.

    Retried: UNAVAILABLE (the server is restarting or unreachable), DEADLINE_EXCEEDED, and
    RESOURCE_EXHAUSTED when the server sent a RetryInfo (its admission queue was full; a
    request over a limit gets none and is not retried). Retry n (0-based) waits a capped
    exponential backoff with "equal jitter", b = min(max_backoff, initial * 2**n), uniform in
    [b/2, b] (Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015), and
    never less than the server's RetryInfo delay. A call is given up after `retries` retries
    or once `max_seconds` have passed since its first failure, whichever comes first.
    """

    retries: int = 10
    max_seconds: float = 300.0
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0

    def delay(self, exc: grpc.RpcError, attempt: int, elapsed_seconds: float) -> float | None:
        """Seconds to wait before retry `attempt` (0-based) after `exc`, `elapsed_seconds`
        after the call first failed; None to give up."""
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = error_details(exc)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            if details.retry_after_seconds is None:
                return None
        elif code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return None
        remaining = self.max_seconds - elapsed_seconds
        if attempt >= self.retries or remaining <= 0:
            return None
        backoff = min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** attempt)
        delay = max(random.uniform(backoff / 2, backoff), details.retry_after_seconds or 0.0)
        return min(delay, remaining)


def call_with_retries(call: Callable[[], T], policy: RetryPolicy,
                      on_retry: Callable[[grpc.RpcError, float], None] | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """call(), retried as `policy` says; `on_retry(error, delay_seconds)` before each wait.
    Raises the last error when the policy gives up."""
    attempt = 0
    first_failure: float | None = None
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            delay = policy.delay(exc, attempt, now - first_failure)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
            attempt += 1


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                            "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call. An interceptor rather than call
    credentials, so that a token also reaches a plaintext loopback server."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details.method, details.timeout, [*(details.metadata or ()), self._header],
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


# Environment variables the CLI (and `RetrievalClient.from_environment`) read.
ENV_TOKEN = "RETRIEVAL_SVC_TOKEN"
ENV_TLS = "RETRIEVAL_SVC_TLS"
ENV_CA_FILE = "RETRIEVAL_SVC_CA_FILE"
ENV_CERT_FILE = "RETRIEVAL_SVC_CERT_FILE"
ENV_KEY_FILE = "RETRIEVAL_SVC_KEY_FILE"


class RetrievalClient:
    """A client of one server. Security (docs/security.md): `token` is sent as
    `authorization: Bearer <token>`; `tls` (implied by `ca_file` and `cert_file`) speaks TLS,
    trusting `ca_file` (PEM) or the system's roots; `cert_file` and `key_file` are the client
    certificate for mTLS; `server_name` overrides the name checked against the server's
    certificate (for a target given as an IP address the certificate does not list)."""

    def __init__(self, target: str, timeout: float | None = 60.0, *, token: str | None = None,
                 tls: bool = False, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, server_name: str | None = None) -> None:
        options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ]
        if bool(cert_file) != bool(key_file):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if tls or ca_file or cert_file:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca_file, "CA file") if ca_file else None,
                private_key=_read(key_file, "client key file") if key_file else None,
                certificate_chain=_read(cert_file, "client certificate file") if cert_file else None,
            )
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            channel = grpc.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        self.channel = grpc.intercept_channel(channel, _BearerToken(token)) if token else channel
        self.retrieval = rgrpc.RetrievalServiceStub(self.channel)
        self.evaluation = egrpc.EvaluationServiceStub(self.channel)
        self.timeout = timeout

    @classmethod
    def from_environment(cls, target: str, timeout: float | None = 60.0,
                         environ: Mapping[str, str] | None = None, **overrides) -> "RetrievalClient":
        """A client whose security options come from RETRIEVAL_SVC_TOKEN, RETRIEVAL_SVC_TLS
        (1/true/yes), RETRIEVAL_SVC_CA_FILE, RETRIEVAL_SVC_CERT_FILE and RETRIEVAL_SVC_KEY_FILE,
        each replaced by an `overrides` keyword (token, tls, ca_file, ...) that is not None."""
        env = os.environ if environ is None else environ
        options: dict[str, Any] = {
            "token": env.get(ENV_TOKEN) or None,
            "tls": env.get(ENV_TLS, "").strip().lower() in ("1", "true", "yes", "on"),
            "ca_file": env.get(ENV_CA_FILE) or None,
            "cert_file": env.get(ENV_CERT_FILE) or None,
            "key_file": env.get(ENV_KEY_FILE) or None,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        return cls(target, timeout, **options)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "RetrievalClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def ingest(self, docs: Iterable[Document], batch_size: int = 64, on_batch=None,
               timeout: float | None = None,
               on_invalid: pb.InvalidDocumentPolicy = pb.INVALID_DOCUMENT_POLICY_UNSPECIFIED) -> pb.IngestSummary:
        """Stream documents in batches of `batch_size` per message (client-streaming Ingest).
        `timeout` None: no deadline. `on_invalid`: an InvalidDocumentPolicy (REJECT by default)."""

        def messages():
            for batch in batched(docs, batch_size):
                yield pb.IngestRequest(documents=[document_to_pb(d) for d in batch], on_invalid=on_invalid)
                if on_batch:
                    on_batch(len(batch))

        return self.retrieval.Ingest(messages(), timeout=timeout)

    def ingest_batch(self, docs: Sequence[Document],
                     on_invalid: pb.InvalidDocumentPolicy = pb.INVALID_DOCUMENT_POLICY_UNSPECIFIED,
                     timeout: float | None = None) -> pb.IngestSummary:
        """One batch, committed atomically and acknowledged by its summary (unary IngestBatch).
        Under on_invalid=INVALID_DOCUMENT_POLICY_SKIP the summary lists the documents left out,
        by position in `docs`. `timeout` None: the client's default."""
        return self.retrieval.IngestBatch(
            pb.IngestRequest(documents=[document_to_pb(d) for d in docs], on_invalid=on_invalid),
            timeout=self.timeout if timeout is None else timeout)

    def search(self, query: str, **fields) -> pb.SearchResponse:
        return self.retrieval.Search(pb.SearchRequest(query=query, **fields), timeout=self.timeout)

    def batch_search(self, requests: Sequence[pb.SearchRequest]) -> pb.BatchSearchResponse:
        return self.retrieval.BatchSearch(pb.BatchSearchRequest(queries=requests), timeout=self.timeout)

    def delete(self, namespace: str, doc_ids: Sequence[str]) -> pb.DeleteDocumentsResponse:
        return self.retrieval.DeleteDocuments(
            pb.DeleteDocumentsRequest(namespace=namespace, doc_ids=doc_ids), timeout=self.timeout)

    def get_chunk(self, chunk_id: str) -> pb.Chunk:
        return self.retrieval.GetChunk(pb.GetChunkRequest(chunk_id=chunk_id), timeout=self.timeout)

    def get_document(self, namespace: str, doc_id: str, include_chunks: bool = False):
        return self.retrieval.GetDocument(
            pb.GetDocumentRequest(namespace=namespace, doc_id=doc_id, include_chunks=include_chunks),
            timeout=self.timeout)

    def info(self) -> pb.InfoResponse:
        return self.retrieval.Info(pb.InfoRequest(), timeout=self.timeout)

    def register_query_set(self, request: epb.RegisterQuerySetRequest) -> epb.RegisterQuerySetResponse:
        return self.evaluation.RegisterQuerySet(request, timeout=self.timeout)

    def list_query_sets(self) -> epb.ListQuerySetsResponse:
        return self.evaluation.ListQuerySets(epb.ListQuerySetsRequest(), timeout=self.timeout)

    def evaluate(self, request: epb.EvaluateRequest, timeout: float | None = None) -> epb.EvaluateResponse:
        return self.evaluation.Evaluate(request, timeout=timeout)
