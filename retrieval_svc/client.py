"""A small Python client for the retrieval.v1 API (used by the CLI and the tests)."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import grpc

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import evaluation_pb2_grpc as egrpc
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.domain import Document

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


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


class RetrievalClient:
    def __init__(self, target: str, timeout: float | None = 60.0) -> None:
        self.channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
        )
        self.retrieval = rgrpc.RetrievalServiceStub(self.channel)
        self.evaluation = egrpc.EvaluationServiceStub(self.channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "RetrievalClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def ingest(self, docs: Iterable[Document], batch_size: int = 64,
               on_batch=None, timeout: float | None = None) -> pb.IngestSummary:
        """Stream documents in batches of `batch_size` per message (client-streaming Ingest)."""

        def messages():
            for batch in batched(docs, batch_size):
                yield pb.IngestRequest(documents=[document_to_pb(d) for d in batch])
                if on_batch:
                    on_batch(len(batch))

        return self.retrieval.Ingest(messages(), timeout=timeout)

    def ingest_batch(self, docs: Sequence[Document]) -> pb.IngestSummary:
        return self.retrieval.IngestBatch(
            pb.IngestRequest(documents=[document_to_pb(d) for d in docs]), timeout=self.timeout)

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
