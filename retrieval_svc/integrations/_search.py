"""What the framework retrievers share, with no framework imported: the clients they search
through, the search options they were configured with, and a hit as plain metadata."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from retrieval_svc.client.aio import AsyncRetrievalClient
from retrieval_svc.client.sync import RetrievalClient
from retrieval_svc.client.types import Hit, SearchOptions

STAGES = ("dense", "bm25", "fused", "rerank")


class Clients:
    """The clients a retriever searches through: `client` (sync) and `async_client` when
    given, else ones opened on first use by `from_environment(target, **client_options)`:
    `target` None means the given client's target, else RETRIEVAL_SVC_TARGET or 127.0.0.1:50051,
    and the RETRIEVAL_SVC_TOKEN, _TLS, _CA_FILE, _CERT_FILE and _KEY_FILE variables apply unless
    `client_options` (token, tls, ca_file, cert_file, key_file, server_name, timeout,
    max_attempts) says otherwise.

    A grpc.aio channel belongs to the event loop it was made in, so an opened async client is
    kept per event loop; those of loops that have closed are dropped when another loop asks.
    """

    def __init__(self, target: str | None = None, client: RetrievalClient | None = None,
                 async_client: AsyncRetrievalClient | None = None,
                 client_options: Mapping[str, Any] | None = None) -> None:
        given = client or async_client
        self.target = target or (given.target if given is not None else None)
        self.client_options = dict(client_options or {})
        self._client = client
        self._owns_client = client is None
        self._async_client = async_client
        self._by_loop: dict[asyncio.AbstractEventLoop, AsyncRetrievalClient] = {}
        self._lock = threading.Lock()

    def sync(self) -> RetrievalClient:
        with self._lock:
            if self._client is None:
                self._client = RetrievalClient.from_environment(self.target, **self.client_options)
            return self._client

    def aio(self) -> AsyncRetrievalClient:
        """The async client for the running event loop."""
        if self._async_client is not None:
            return self._async_client
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._by_loop.get(loop)
            if client is None:
                # A closed loop's channel cannot be awaited any more; dropped, it closes when collected.
                self._by_loop = {other: c for other, c in self._by_loop.items() if not other.is_closed()}
                client = AsyncRetrievalClient.from_environment(self.target, **self.client_options)
                self._by_loop[loop] = client
            return client

    def close(self) -> None:
        """Close the sync client if it was opened here (a given one is the caller's to close)."""
        with self._lock:
            client = self._client if self._owns_client else None
            if client is not None:
                self._client = None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async client opened for the running event loop, if any."""
        with self._lock:
            client = self._by_loop.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()


def search_options(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> SearchOptions:
    """The SearchOptions of one search: the retriever's `defaults` (namespace, k, mode, filters,
    rerank and its other search options) under the call's `overrides`; None means the server's
    default. An unknown option fails in the client with a TypeError that lists the known ones."""
    options = {name: value for name, value in {**defaults, **overrides}.items() if value is not None}
    return options  # type: ignore[return-value]


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant is not None else None


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """A hit as JSON-compatible metadata: its ids, final rank and score, what each stage said
    of it (`lineage`: dense, bm25, fused and rerank, each {"rank", "score"} or None where that
    stage did not see it), where it came from, its instants as ISO-8601 UTC strings (None where
    unknown), its span in the document and the document's own metadata (`document_metadata`,
    kept apart so that a document's keys cannot shadow these)."""
    return {
        "chunk_id": hit.chunk_id,
        "doc_id": hit.doc_id,
        "namespace": hit.namespace,
        "title": hit.title,
        "source_uri": hit.source_uri,
        "rank": hit.rank,
        "score": hit.score,
        "lineage": {stage: None if (score := getattr(hit.lineage, stage)) is None
                    else {"rank": score.rank, "score": score.score} for stage in STAGES},
        "source_updated_at": _iso(hit.source_updated_at),
        "first_indexed_at": _iso(hit.first_indexed_at),
        "last_verified_at": _iso(hit.last_verified_at),
        # Session memory (docs/memory.md): when the document expires; None: never.
        "expires_at": _iso(hit.expires_at),
        "staleness_seconds": hit.staleness_seconds,
        "ordinal": hit.ordinal,
        "start_char": hit.start_char,
        "end_char": hit.end_char,
        "document_metadata": dict(hit.metadata),
    }
