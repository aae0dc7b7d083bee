"""retrieval-svc as a LangChain retriever (`pip install "retrieval-svc[langchain]"`).

    from retrieval_svc.integrations.langchain import LangChainRetriever

    retriever = LangChainRetriever(target="127.0.0.1:50051", namespace="notes", k=4, mode="hybrid",
                                   filters={"lang": ["en", "de"]})
    docs = retriever.invoke("what makes a kite fly?")                  # or: await retriever.ainvoke(...)
    docs = retriever.invoke("what makes a kite fly?", k=2, rerank=True)  # options for one call
    docs[0].id, docs[0].metadata["doc_id"], docs[0].metadata["lineage"]["bm25"]

Each Document is one hit: `page_content` the chunk's text, `id` its chunk_id, `metadata` what
retrieval_svc.integrations.hit_metadata makes of it (ids, score, rank, lineage per stage,
source, ISO-8601 timestamps, the document's own metadata under "document_metadata").
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import Field, PrivateAttr, SecretStr
except ImportError as exc:
    raise ImportError('LangChainRetriever needs langchain-core: pip install "retrieval-svc[langchain]" '
                      f"({exc})") from exc

from retrieval_svc.client.aio import AsyncRetrievalClient
from retrieval_svc.client.sync import RetrievalClient
from retrieval_svc.client.types import Hit, Mode
from retrieval_svc.integrations._search import Clients, hit_metadata, search_options


def hit_document(hit: Hit) -> Document:
    return Document(page_content=hit.text, metadata=hit_metadata(hit), id=hit.chunk_id)


class LangChainRetriever(BaseRetriever):
    """Searches a retrieval server. Options left None take the server's configured defaults
    (search.default_k, search.default_mode, ...); keyword arguments of `invoke`/`ainvoke`
    (any SearchOptions name: k, mode, filters, namespace, rerank, fusion, max_age_seconds, ...)
    replace the configured ones for that call.

    The sync path (`invoke`) searches through a RetrievalClient and the async path (`ainvoke`)
    through an AsyncRetrievalClient, so an async chain waits on grpc.aio, not on a thread.
    Pass `client` and `async_client` to share clients; otherwise they are opened on first use
    from `target`, `token` and `client_options` (retrieval_svc.integrations.Clients: the
    RETRIEVAL_SVC_* variables fill in what is not given). Failed searches raise the client's
    errors (retrieval_svc.client.errors: Unavailable, InvalidArgument, ...).
    """

    target: str | None = None
    """host:port of the server; None: RETRIEVAL_SVC_TARGET, else 127.0.0.1:50051."""
    namespace: str | None = None
    k: int | None = Field(default=None, gt=0)
    """Documents per query; None: the server's search.default_k."""
    mode: Mode | None = None
    """"dense", "bm25" or "hybrid"; None: the server's search.default_mode."""
    filters: dict[str, str | list[str]] | None = None
    """Metadata filters, key -> value or any of several values; keys are AND-ed."""
    rerank: bool | None = None
    search_options: dict[str, Any] = Field(default_factory=dict)
    """Other SearchOptions (fusion, dense_candidates, max_age_seconds, recency_weight, ...)."""
    timeout: float | None = Field(default=None, gt=0)
    """Deadline of each search in seconds; None: the client's (30 s)."""
    token: SecretStr | None = None
    """API key, sent as a bearer token; None: RETRIEVAL_SVC_TOKEN."""
    client_options: dict[str, Any] = Field(default_factory=dict)
    """Other keywords of RetrievalClient.from_environment: tls, ca_file, cert_file, key_file,
    server_name, max_attempts."""
    client: RetrievalClient | None = Field(default=None, exclude=True, repr=False)
    async_client: AsyncRetrievalClient | None = Field(default=None, exclude=True, repr=False)

    _clients: Clients = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        options = dict(self.client_options)
        if self.token is not None:
            options["token"] = self.token.get_secret_value()
        self._clients = Clients(self.target, self.client, self.async_client, options)

    def _options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        defaults = {"namespace": self.namespace, "k": self.k, "mode": self.mode, "filters": self.filters,
                    "rerank": self.rerank, **self.search_options}
        return dict(search_options(defaults, overrides))

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **search: Any) -> list[Document]:
        result = self._clients.sync().search(query, timeout=self.timeout, **self._options(search))
        return [hit_document(hit) for hit in result.hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **search: Any) -> list[Document]:
        result = await self._clients.aio().search(query, timeout=self.timeout, **self._options(search))
        return [hit_document(hit) for hit in result.hits]

    def close(self) -> None:
        """Close the sync client opened here (a given `client` stays open)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async client opened here for the running event loop."""
        await self._clients.aclose()
