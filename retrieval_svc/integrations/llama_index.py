"""retrieval-svc as a LlamaIndex retriever (`pip install "retrieval-svc[llama-index]"`).

    from retrieval_svc.integrations.llama_index import LlamaIndexRetriever

    retriever = LlamaIndexRetriever("127.0.0.1:50051", namespace="notes", k=4, mode="hybrid",
                                    filters={"lang": ["en", "de"]})
    nodes = retriever.retrieve("what makes a kite fly?")       # or: await retriever.aretrieve(...)
    nodes[0].score, nodes[0].node.node_id, nodes[0].node.source_node.node_id, nodes[0].node.metadata["lineage"]

    # In a query engine:
    from llama_index.core.query_engine import RetrieverQueryEngine
    engine = RetrieverQueryEngine.from_args(retriever, llm=...)

Each NodeWithScore is one hit: a TextNode with the chunk's text, id_ its chunk_id, its span in
the document, the document as its SOURCE relationship and the metadata that
retrieval_svc.integrations.hit_metadata makes of the hit; the score is the hit's final score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.schema import (
        NodeRelationship, NodeWithScore, ObjectType, QueryBundle, RelatedNodeInfo, TextNode,
    )
except ImportError as exc:
    raise ImportError('LlamaIndexRetriever needs llama-index-core: pip install "retrieval-svc[llama-index]" '
                      f"({exc})") from exc

from retrieval_svc.client.aio import AsyncRetrievalClient
from retrieval_svc.client.sync import RetrievalClient
from retrieval_svc.client.types import Hit, Mode
from retrieval_svc.integrations._search import Clients, hit_metadata, search_options

# Metadata keys kept out of the text a node gives an LLM or an embedding model: bookkeeping,
# not content. The LLM still sees doc_id (to cite), title, source_uri, source_updated_at and
# the document's own metadata.
BOOKKEEPING_KEYS = ["chunk_id", "namespace", "rank", "score", "lineage", "first_indexed_at", "last_verified_at",
                    "staleness_seconds", "ordinal", "start_char", "end_char"]


def hit_node(hit: Hit) -> NodeWithScore:
    source = RelatedNodeInfo(node_id=hit.doc_id, node_type=ObjectType.DOCUMENT,
                             metadata={"namespace": hit.namespace, "title": hit.title, "source_uri": hit.source_uri})
    node = TextNode(id_=hit.chunk_id, text=hit.text, metadata=hit_metadata(hit),
                    relationships={NodeRelationship.SOURCE: source},
                    start_char_idx=hit.start_char, end_char_idx=hit.end_char,
                    excluded_llm_metadata_keys=list(BOOKKEEPING_KEYS),
                    excluded_embed_metadata_keys=list(BOOKKEEPING_KEYS))
    return NodeWithScore(node=node, score=hit.score)


class LlamaIndexRetriever(BaseRetriever):
    """Searches a retrieval server. Options left None take the server's configured defaults
    (search.default_k, search.default_mode, ...); `search_options` holds any other
    SearchOptions (fusion, dense_candidates, max_age_seconds, recency_weight, ...).

    `retrieve` searches through a RetrievalClient and `aretrieve` through an
    AsyncRetrievalClient (grpc.aio), not through a thread. Pass `client` and `async_client`
    to share clients; otherwise they are opened on first use from `target` (None:
    RETRIEVAL_SVC_TARGET, else 127.0.0.1:50051), `token` and `client_options` (tls, ca_file,
    cert_file, key_file, server_name, max_attempts), the RETRIEVAL_SVC_* variables filling in
    what is not given. `timeout`: each search's deadline in seconds (None: the client's 30 s).
    Failed searches raise the client's errors (retrieval_svc.client.errors).
    """

    def __init__(self, target: str | None = None, *, namespace: str | None = None, k: int | None = None,
                 mode: Mode | None = None, filters: Mapping[str, str | Sequence[str]] | None = None,
                 rerank: bool | None = None, search_options: Mapping[str, Any] | None = None,
                 timeout: float | None = None, token: str | None = None,
                 client_options: Mapping[str, Any] | None = None, client: RetrievalClient | None = None,
                 async_client: AsyncRetrievalClient | None = None,
                 callback_manager: CallbackManager | None = None, verbose: bool = False) -> None:
        if k is not None and k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.options = {"namespace": namespace, "k": k, "mode": mode, "filters": filters, "rerank": rerank,
                        **(search_options or {})}
        self.timeout = timeout
        options = dict(client_options or {})
        if token is not None:
            options["token"] = token
        self._clients = Clients(target, client, async_client, options)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        options = search_options(self.options, {})
        result = self._clients.sync().search(query_bundle.query_str, timeout=self.timeout, **options)
        return [hit_node(hit) for hit in result.hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        options = search_options(self.options, {})
        result = await self._clients.aio().search(query_bundle.query_str, timeout=self.timeout, **options)
        return [hit_node(hit) for hit in result.hits]

    def close(self) -> None:
        """Close the sync client opened here (a given `client` stays open)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async client opened here for the running event loop."""
        await self._clients.aclose()
