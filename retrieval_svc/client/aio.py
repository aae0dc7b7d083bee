"""AsyncRetrievalClient: RetrievalClient's twin for asyncio, on grpc.aio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, Unpack

import grpc
import grpc.aio

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


class AsyncRetrievalClient(ClientCore):
    """RetrievalClient for asyncio: the same constructor, methods, results, deadlines,
    retries and errors, each method a coroutine. Make it inside the event loop that uses it:

        async with AsyncRetrievalClient("127.0.0.1:50051") as client:
            result = await client.search("what makes a kite fly?", namespace="notes", k=3)

    `ingest` also takes an async iterable of documents.
    """

    _channels: ClassVar[Any] = grpc.aio

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncRetrievalClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the channel connects; Unavailable when it has not within `timeout` seconds."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except TimeoutError:
            raise no_server(self.target, timeout) from None

    async def _run(self, call: Call[T]) -> T:
        request = call.request.__aiter__() if isinstance(call.request, IngestMessages) else call.request
        try:
            reply = await self._methods[call.method](request, timeout=call.timeout, metadata=self._call_metadata())
        except grpc.RpcError as exc:
            if isinstance(call.request, IngestMessages):
                call.request.raise_error()
            raise from_rpc_error(exc) from exc
        if isinstance(call.request, IngestMessages):
            call.request.raise_error()
        return call.result(reply)

    async def ingest(self, documents: Iterable[DocumentLike] | AsyncIterable[DocumentLike], *,
                     namespace: str = "", batch_size: int = 64, on_invalid: OnInvalid = "reject",
                     timeout: float | None = None) -> IngestSummary:
        """As RetrievalClient.ingest; `documents` may be an async iterable."""
        return await self._run(self._plans.ingest(documents, namespace, batch_size, on_invalid, timeout))

    async def ingest_batch(self, documents: Iterable[DocumentLike], *, namespace: str = "",
                           on_invalid: OnInvalid = "reject", timeout: float | None = None) -> IngestSummary:
        return await self._run(self._plans.ingest_batch(documents, namespace, on_invalid, timeout))

    async def delete(self, doc_ids: str | Iterable[str], *, namespace: str = "",
                     timeout: float | None = None) -> DeleteSummary:
        return await self._run(self._plans.delete(doc_ids, namespace, timeout))

    async def search(self, query: str, *, timeout: float | None = None,
                     **options: Unpack[SearchOptions]) -> SearchResult:
        return await self._run(self._plans.search(query, options, timeout))

    async def batch_search(self, queries: Sequence[str | Mapping[str, Any]], *, timeout: float | None = None,
                           **options: Unpack[SearchOptions]) -> list[SearchResult]:
        return await self._run(self._plans.batch_search(queries, options, timeout))

    async def get_document(self, doc_id: str, *, namespace: str = "", include_chunks: bool = False,
                           refresh_ttl: bool | None = None, timeout: float | None = None) -> StoredDocument:
        return await self._run(self._plans.get_document(doc_id, namespace, include_chunks, timeout, refresh_ttl))

    async def get_chunk(self, chunk_id: str, *, timeout: float | None = None) -> Chunk:
        return await self._run(self._plans.get_chunk(chunk_id, timeout))

    async def list_namespaces(self, prefix: str = "", *, timeout: float | None = None) -> list[NamespaceInfo]:
        return await self._run(self._plans.list_namespaces(prefix, timeout))

    async def delete_namespace(self, namespace: str, *, timeout: float | None = None) -> DeleteSummary:
        return await self._run(self._plans.delete_namespace(namespace, timeout))

    async def info(self, *, timeout: float | None = None) -> ServerInfo:
        return await self._run(self._plans.info(timeout))

    async def register_query_set(self, name: str, queries: Iterable[Any], *, namespace: str = "",
                                 level: JudgementLevel = "document", timeout: float | None = None) -> QuerySetInfo:
        return await self._run(self._plans.register_query_set(name, queries, namespace, level, timeout))

    async def list_query_sets(self, *, timeout: float | None = None) -> list[QuerySetInfo]:
        return await self._run(self._plans.list_query_sets(timeout))

    async def evaluate(self, query_set: str, *, ks: Iterable[int] = (), stages: Iterable[EvalStage] = (),
                       depth: int = 0, include_per_query: bool = False, export_metrics: bool = False,
                       timeout: float | None = None, **search: Unpack[SearchOptions]) -> EvaluationResult:
        return await self._run(self._plans.evaluate(query_set, ks, stages, depth, include_per_query,
                                                    export_metrics, search, timeout))
