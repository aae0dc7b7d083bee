"""RetrievalClient: the retrieval.v1 API with typed results, for synchronous code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, Unpack

import grpc

from retrieval_svc.client._calls import Call, IngestMessages
from retrieval_svc.client._channel import (
    ClientCore, no_server,
)
from retrieval_svc.client._convert import DocumentLike
from retrieval_svc.client.errors import from_rpc_error
from retrieval_svc.client.types import (
    Chunk, DeleteSummary, EvalStage, EvaluationResult, IngestSummary, JudgementLevel, NamespaceInfo, OnInvalid,
    QuerySetInfo,
    SearchOptions, SearchResult, ServerInfo, StoredDocument,
)

T = TypeVar("T")


class RetrievalClient(ClientCore):
    """A client of one retrieval server.

        with RetrievalClient("127.0.0.1:50051") as client:
            client.ingest([{"doc_id": "kites", "text": "Kites fly when wind lifts them."}], namespace="notes")
            result = client.search("what makes a kite fly?", namespace="notes", k=3, mode="hybrid",
                                   filters={"lang": ["en", "de"]})
            for hit in result.hits:
                print(hit.rank, hit.score, hit.doc_id, hit.lineage.dense, hit.text)

    Every call has a deadline: `timeout` seconds by default, `ingest_timeout` for ingests and
    `evaluate_timeout` for evaluations; each method's `timeout=` overrides it for one call.
    The channel retries UNAVAILABLE (a server restarting or not yet listening) up to
    `max_attempts` attempts for the calls the API marks safe to repeat (`idempotency_level`):
    every read, IngestBatch, DeleteDocuments, the query-set calls and Evaluate, not the
    client-streaming `ingest` (retrieval_svc.client._channel.RETRIED_METHODS says why). A failed
    call raises a retrieval_svc.client.errors.RetrievalError subclass (NotFound, InvalidArgument, ...).
    A call made while an OpenTelemetry span is current sends its W3C trace context
    (`traceparent`), so the server's spans join the caller's trace.

    Security (docs/security.md): `token` is sent as `authorization: Bearer <token>`; `tls`
    (implied by `ca_file` and `cert_file`) speaks TLS, trusting `ca_file` or the system's
    roots; `cert_file` and `key_file` make mTLS; `server_name` is the name to check the
    server's certificate against when the target's host is not in it. `from_environment`
    takes them from the RETRIEVAL_SVC_* variables the CLI reads.
    """

    _channels: ClassVar[Any] = grpc

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "RetrievalClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the channel connects; Unavailable when it has not within `timeout` seconds."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise no_server(self.target, timeout) from None

    def _run(self, call: Call[T]) -> T:
        request = iter(call.request) if isinstance(call.request, IngestMessages) else call.request
        try:
            reply = self._methods[call.method](request, timeout=call.timeout, metadata=self._call_metadata())
        except grpc.RpcError as exc:
            if isinstance(call.request, IngestMessages):
                call.request.raise_error()
            raise from_rpc_error(exc) from exc
        if isinstance(call.request, IngestMessages):
            call.request.raise_error()
        return call.result(reply)

    def ingest(self, documents: Iterable[DocumentLike], *, namespace: str = "", batch_size: int = 64,
               on_invalid: OnInvalid = "reject", timeout: float | None = None) -> IngestSummary:
        """Stream documents (Documents or mappings of their fields: doc_id, text, title,
        metadata, source_uri, source_updated_at as a datetime or POSIX seconds, namespace) in
        messages of `batch_size`, each committed atomically before the next is read; the
        summary counts the whole stream. `namespace`: for documents that name none.
        `on_invalid="skip"` commits the valid documents and lists the others in
        `summary.rejected`; "reject" fails the message with InvalidArgument."""
        return self._run(self._plans.ingest(documents, namespace, batch_size, on_invalid, timeout))

    def ingest_batch(self, documents: Iterable[DocumentLike], *, namespace: str = "",
                     on_invalid: OnInvalid = "reject", timeout: float | None = None) -> IngestSummary:
        """One batch (at most limits.max_batch_documents), committed atomically and
        acknowledged; safe to repeat, so the channel retries it on UNAVAILABLE."""
        return self._run(self._plans.ingest_batch(documents, namespace, on_invalid, timeout))

    def delete(self, doc_ids: str | Iterable[str], *, namespace: str = "",
               timeout: float | None = None) -> DeleteSummary:
        """Remove documents and their chunks from every index; ids that do not exist are
        listed in `not_found`, not an error. NotFound: no such namespace."""
        return self._run(self._plans.delete(doc_ids, namespace, timeout))

    def search(self, query: str, *, timeout: float | None = None,
               **options: Unpack[SearchOptions]) -> SearchResult:
        """Search one query; `options` (SearchOptions) left out take the server's defaults."""
        return self._run(self._plans.search(query, options, timeout))

    def batch_search(self, queries: Sequence[str | Mapping[str, Any]], *, timeout: float | None = None,
                     **options: Unpack[SearchOptions]) -> list[SearchResult]:
        """Search several queries in one call (they share encoder batches); results in order.
        A query is a string, or a mapping with "query" and its own options over `options`."""
        return self._run(self._plans.batch_search(queries, options, timeout))

    def get_document(self, doc_id: str, *, namespace: str = "", include_chunks: bool = False,
                     refresh_ttl: bool | None = None, timeout: float | None = None) -> StoredDocument:
        """The document; `refresh_ttl` extends its TTL (None: the namespace's policy)."""
        return self._run(self._plans.get_document(doc_id, namespace, include_chunks, timeout, refresh_ttl))

    def get_chunk(self, chunk_id: str, *, timeout: float | None = None) -> Chunk:
        return self._run(self._plans.get_chunk(chunk_id, timeout))

    def list_namespaces(self, prefix: str = "", *, timeout: float | None = None) -> list[NamespaceInfo]:
        """Namespaces (the key's own, with API keys) whose name starts with `prefix`, with counts."""
        return self._run(self._plans.list_namespaces(prefix, timeout))

    def delete_namespace(self, namespace: str, *, timeout: float | None = None) -> DeleteSummary:
        """Delete a namespace with every document in it (NotFound if there is none). The
        channel retries it on UNAVAILABLE, so NotFound can also mean that an earlier attempt,
        whose reply was lost, deleted it: either way the namespace is gone."""
        return self._run(self._plans.delete_namespace(namespace, timeout))

    def info(self, *, timeout: float | None = None) -> ServerInfo:
        """Models, namespaces (the key's own, with API keys) with their counts, the index
        generation, the dense index, every limit, and the configuration (admins of `*` only)."""
        return self._run(self._plans.info(timeout))

    def register_query_set(self, name: str, queries: Iterable[Any], *, namespace: str = "",
                           level: JudgementLevel = "document", timeout: float | None = None) -> QuerySetInfo:
        """Register (or replace) a labeled query set. `queries`: LabeledQuery objects (any
        object with query_id, text and judgements {target_id: relevance}) or mappings."""
        return self._run(self._plans.register_query_set(name, queries, namespace, level, timeout))

    def list_query_sets(self, *, timeout: float | None = None) -> list[QuerySetInfo]:
        return self._run(self._plans.list_query_sets(timeout))

    def evaluate(self, query_set: str, *, ks: Iterable[int] = (), stages: Iterable[EvalStage] = (),
                 depth: int = 0, include_per_query: bool = False, export_metrics: bool = False,
                 timeout: float | None = None, **search: Unpack[SearchOptions]) -> EvaluationResult:
        """Run a query set through the search pipeline, once per stage (default: every
        stage the server has), with cut-offs `ks` (default 1, 5, 10) and `search` options
        applied to every query (namespace, mode, k and rerank are the evaluator's)."""
        return self._run(self._plans.evaluate(query_set, ks, stages, depth, include_per_query, export_metrics,
                                              search, timeout))
