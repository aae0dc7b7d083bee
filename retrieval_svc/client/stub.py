"""ProtoClient: the generated stubs with this service's channel and security, taking and
returning protobuf messages. For tools that speak the wire format itself: the server's tests,
the ingestion job (`retrieval-svc ingest`), benchmarks. Applications use RetrievalClient."""

from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping, Sequence

import grpc

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import evaluation_pb2_grpc as egrpc
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.client._channel import Security, channel_options
from retrieval_svc.client._convert import batched, document_to_pb
from retrieval_svc.domain import Document


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                            "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call, those made on `channel` with the
    generated stubs included. An interceptor rather than call credentials, so that a token
    also reaches a plaintext loopback server."""

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


class ProtoClient:
    """A client of one server whose methods take and return protobuf messages; `retrieval`
    and `evaluation` are the generated stubs. Security as RetrievalClient's. No retries:
    callers that retry use retrieval_svc.client.retry."""

    def __init__(self, target: str, timeout: float | None = 60.0, *, token: str | None = None,
                 tls: bool = False, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, server_name: str | None = None) -> None:
        security = Security(token, tls, ca_file, cert_file, key_file, server_name)
        options = channel_options(security)
        credentials = security.credentials()
        channel = (grpc.secure_channel(target, credentials, options=options) if credentials
                   else grpc.insecure_channel(target, options=options))
        self.channel = grpc.intercept_channel(channel, _BearerToken(token)) if token else channel
        self.retrieval = rgrpc.RetrievalServiceStub(self.channel)
        self.evaluation = egrpc.EvaluationServiceStub(self.channel)
        self.timeout = timeout

    @classmethod
    def from_environment(cls, target: str, timeout: float | None = 60.0,
                         environ: Mapping[str, str] | None = None, **overrides: Any) -> "ProtoClient":
        """A client whose security options come from the RETRIEVAL_SVC_* variables
        (Security.from_environment), each replaced by an `overrides` keyword that is not None."""
        security = Security.from_environment(environ, **overrides)
        return cls(target, timeout, token=security.token, tls=security.tls, ca_file=security.ca_file,
                   cert_file=security.cert_file, key_file=security.key_file, server_name=security.server_name)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "ProtoClient":
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
