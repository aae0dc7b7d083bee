"""Each client method as a plan: which RPC, the request, its deadline and how to read the
reply. RetrievalClient runs plans on a grpc channel and AsyncRetrievalClient on a grpc.aio
one, so the two share everything but the waiting."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client import _convert as convert
from retrieval_svc.client._convert import DocumentLike
from retrieval_svc.client.types import (
    Chunk, DeleteSummary, EvaluationResult, IngestSummary, NamespaceInfo, QuerySetInfo, SearchOptions, SearchResult,
    ServerInfo, StoredDocument,
)
from retrieval_svc.domain import DEFAULT_NAMESPACE

T = TypeVar("T")


@dataclass(frozen=True)
class Timeouts:
    """Default deadlines in seconds, by kind of call; None: no deadline."""

    # Search, BatchSearch, GetChunk, GetDocument, Info, DeleteDocuments and the query sets.
    default: float | None = 30.0
    # Ingest (the whole stream) and IngestBatch: embedding takes a while on a CPU.
    ingest: float | None = 300.0
    # Evaluate: every query of a set, once per stage.
    evaluate: float | None = 600.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One RPC to make: `method` ("Search", "Evaluate", ...), the request (for a streaming
    RPC, its messages), the deadline, and the function that turns the reply into T."""

    method: str
    request: Any
    timeout: float | None
    result: Callable[[Any], T]


class IngestMessages:
    """The IngestRequest messages of a client stream, one per `batch_size` documents. A
    document that cannot be converted ends the stream cleanly (the server commits what came
    before) and is kept in `error`, for the client to raise once the call has returned."""

    def __init__(self, documents: Iterable[DocumentLike] | AsyncIterable[DocumentLike], namespace: str,
                 batch_size: int, on_invalid: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._documents = documents
        self._namespace, self._batch_size, self._on_invalid = namespace, batch_size, on_invalid
        self.sent = 0
        self.error: Exception | None = None

    def _message(self, batch: list[DocumentLike]) -> pb.IngestRequest | None:
        try:
            documents = [convert.document_to_pb(d, self._namespace) for d in batch]
        except (TypeError, ValueError) as exc:
            self.error = exc
            return None
        self.sent += len(documents)
        return pb.IngestRequest(documents=documents, on_invalid=self._on_invalid)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[pb.IngestRequest]:
        if not isinstance(self._documents, Iterable):
            raise TypeError("RetrievalClient.ingest takes an iterable of documents; "
                            "for an async iterable, use AsyncRetrievalClient")
        for batch in convert.batched(self._documents, self._batch_size):
            message = self._message(batch)
            if message is None:
                return
            yield message

    async def __aiter__(self) -> AsyncIterator[pb.IngestRequest]:
        if not isinstance(self._documents, AsyncIterable):
            for message in self:
                yield message
            return
        batch: list[DocumentLike] = []
        async for document in self._documents:
            batch.append(document)
            if len(batch) >= self._batch_size:
                converted = self._message(batch)
                if converted is None:
                    return
                yield converted
                batch = []
        last = self._message(batch) if batch else None
        if last is not None:
            yield last

    def raise_error(self) -> None:
        if self.error is not None:
            raise type(self.error)(f"{self.error} (the stream was ended there; the {self.sent:,} documents "
                                   f"sent before it were committed)") from self.error


def _deadline(timeout: float | None, default: float | None) -> float | None:
    return default if timeout is None else timeout


class Plans:
    """The plans of every client method, with the client's default deadlines."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts

    def ingest(self, documents: Iterable[DocumentLike] | AsyncIterable[DocumentLike], namespace: str,
               batch_size: int, on_invalid: str, timeout: float | None) -> Call[IngestSummary]:
        policy = convert.choice(on_invalid, convert.ON_INVALID, "on_invalid")
        messages = IngestMessages(documents, namespace, batch_size, policy)
        return Call("Ingest", messages, _deadline(timeout, self.timeouts.ingest), convert.ingest_summary_from_pb)

    def ingest_batch(self, documents: Iterable[DocumentLike], namespace: str, on_invalid: str,
                     timeout: float | None) -> Call[IngestSummary]:
        request = pb.IngestRequest(documents=[convert.document_to_pb(d, namespace) for d in documents],
                                   on_invalid=convert.choice(on_invalid, convert.ON_INVALID, "on_invalid"))  # type: ignore[arg-type]
        return Call("IngestBatch", request, _deadline(timeout, self.timeouts.ingest), convert.ingest_summary_from_pb)

    def delete(self, doc_ids: str | Iterable[str], namespace: str, timeout: float | None) -> Call[DeleteSummary]:
        ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        return Call("DeleteDocuments", pb.DeleteDocumentsRequest(namespace=namespace, doc_ids=ids),
                    _deadline(timeout, self.timeouts.default), convert.delete_summary_from_pb)

    def search(self, query: str, options: SearchOptions, timeout: float | None) -> Call[SearchResult]:
        return Call("Search", convert.search_request(query, options), _deadline(timeout, self.timeouts.default),
                    convert.search_result_from_pb)

    def batch_search(self, queries: Sequence[str | Mapping[str, Any]], options: SearchOptions,
                     timeout: float | None) -> Call[list[SearchResult]]:
        requests = []
        for query in queries:
            if isinstance(query, str):
                requests.append(convert.search_request(query, options))
            else:
                own = dict(query)
                text = own.pop("query", "")
                requests.append(convert.search_request(text, {**options, **own}))  # type: ignore[typeddict-item]
        return Call("BatchSearch", pb.BatchSearchRequest(queries=requests), _deadline(timeout, self.timeouts.default),
                    lambda reply: [convert.search_result_from_pb(r) for r in reply.results])

    def get_document(self, doc_id: str, namespace: str, include_chunks: bool, timeout: float | None,
                     refresh_ttl: bool | None = None) -> Call[StoredDocument]:
        request = pb.GetDocumentRequest(namespace=namespace, doc_id=doc_id, include_chunks=include_chunks)
        if refresh_ttl is not None:
            request.refresh_ttl = refresh_ttl
        return Call("GetDocument", request, _deadline(timeout, self.timeouts.default),
                    convert.stored_document_from_pb)

    def get_chunk(self, chunk_id: str, timeout: float | None) -> Call[Chunk]:
        return Call("GetChunk", pb.GetChunkRequest(chunk_id=chunk_id), _deadline(timeout, self.timeouts.default),
                    convert.chunk_from_pb)

    def list_namespaces(self, prefix: str, timeout: float | None) -> Call[list[NamespaceInfo]]:
        return Call("ListNamespaces", pb.ListNamespacesRequest(prefix=prefix),
                    _deadline(timeout, self.timeouts.default),
                    lambda reply: [convert.namespace_info_from_pb(n) for n in reply.namespaces])

    def delete_namespace(self, namespace: str, timeout: float | None) -> Call[DeleteSummary]:
        return Call("DeleteNamespace", pb.DeleteNamespaceRequest(namespace=namespace),
                    _deadline(timeout, self.timeouts.default),
                    lambda r: DeleteSummary(deleted_document_count=r.deleted_document_count,
                                            removed_chunk_count=r.removed_chunk_count, not_found=(),
                                            index_generation=r.index_generation))

    def info(self, timeout: float | None) -> Call[ServerInfo]:
        return Call("Info", pb.InfoRequest(), _deadline(timeout, self.timeouts.default), convert.server_info_from_pb)

    def register_query_set(self, name: str, queries: Iterable[Any], namespace: str, level: str,
                           timeout: float | None) -> Call[QuerySetInfo]:
        request = epb.RegisterQuerySetRequest(
            name=name, namespace=namespace, level=convert.choice(level, convert.LEVELS, "level"),  # type: ignore[arg-type]
            queries=[convert.labeled_query_to_pb(q) for q in queries])
        return Call("RegisterQuerySet", request, _deadline(timeout, self.timeouts.default),
                    lambda reply: QuerySetInfo(name=reply.name, namespace=namespace or DEFAULT_NAMESPACE,
                                               level=level,  # type: ignore[arg-type]
                                               query_count=reply.query_count,
                                               judgement_count=reply.judgement_count))

    def list_query_sets(self, timeout: float | None) -> Call[list[QuerySetInfo]]:
        return Call("ListQuerySets", epb.ListQuerySetsRequest(), _deadline(timeout, self.timeouts.default),
                    lambda reply: [convert.query_set_info_from_pb(s) for s in reply.sets])

    def evaluate(self, query_set: str, ks: Iterable[int], stages: Iterable[str], depth: int,
                 include_per_query: bool, export_metrics: bool, search: SearchOptions,
                 timeout: float | None) -> Call[EvaluationResult]:
        request = epb.EvaluateRequest(
            query_set=query_set, ks=list(ks),
            stages=[convert.choice(s, convert.EVAL_STAGES, "stage") for s in stages],  # type: ignore[misc]
            search_template=convert.search_request("", search), depth=depth,
            include_per_query=include_per_query, export_metrics=export_metrics)
        return Call("Evaluate", request, _deadline(timeout, self.timeouts.evaluate), convert.evaluation_from_pb)
