"""LangChainRetriever against the real langchain-core and a real server: hits as Documents with
their metadata, the sync path on the sync client and the async path on grpc.aio, options per
retriever and per call, and LangChain's own standard retriever suite."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pydantic
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from retrieval_svc.client import AsyncRetrievalClient, InvalidArgument, RetrievalClient, Unavailable
from retrieval_svc.integrations import hit_metadata
from retrieval_svc.integrations.langchain import LangChainRetriever

QUERY = "bake bread dough oven"


def test_documents_carry_the_hit_and_its_lineage(target):
    retriever = LangChainRetriever(target=target, k=4, mode="hybrid")
    docs = retriever.invoke(QUERY)
    with RetrievalClient(target) as client:
        hits = client.search(QUERY, k=4, mode="hybrid").hits
    assert len(docs) == 4 and all(isinstance(doc, Document) for doc in docs)
    assert [doc.id for doc in docs] == [hit.chunk_id for hit in hits]
    assert [doc.page_content for doc in docs] == [hit.text for hit in hits]
    # All but the staleness, which grows between the two searches.
    assert [{**doc.metadata, "staleness_seconds": 0} for doc in docs] == [
        {**hit_metadata(hit), "staleness_seconds": 0} for hit in hits]

    top = docs[0].metadata
    assert top["doc_id"].startswith("cooking") and top["chunk_id"] == docs[0].id and top["namespace"] == "default"
    assert top["rank"] == 1 and top["title"].startswith("cooking") and top["document_metadata"]["topic"] == "cooking"
    assert top["lineage"]["fused"]["rank"] == 1 and top["score"] == pytest.approx(top["lineage"]["fused"]["score"])
    assert top["lineage"]["rerank"] is None and set(top["lineage"]) == {"dense", "bm25", "fused", "rerank"}
    assert top["lineage"]["dense"] is not None or top["lineage"]["bm25"] is not None
    updated = datetime.fromisoformat(top["source_updated_at"])
    assert updated.tzinfo == timezone.utc and updated >= datetime(2023, 11, 14, tzinfo=timezone.utc)
    assert datetime.fromisoformat(top["last_verified_at"]) >= datetime.fromisoformat(top["first_indexed_at"])
    assert top["staleness_seconds"] > 0 and top["end_char"] > top["start_char"] >= 0
    assert top["expires_at"] is None  # the corpus does not expire
    assert [doc.metadata["rank"] for doc in docs] == [1, 2, 3, 4]
    retriever.close()


def test_async_path_searches_on_grpc_aio_not_on_the_sync_client(target):
    retriever = LangChainRetriever(target=target, k=3, mode="hybrid")

    async def search():
        try:
            return await retriever.ainvoke(QUERY)
        finally:
            await retriever.aclose()

    first = asyncio.run(search())
    # A second event loop gets a client of its own (a grpc.aio channel is bound to its loop).
    second = asyncio.run(search())
    assert retriever._clients._client is None  # the sync client was never opened: no thread hop
    assert [d.id for d in first] == [d.id for d in second] == [d.id for d in retriever.invoke(QUERY)]
    assert first[0].metadata["lineage"]["fused"] is not None


async def test_given_clients_are_used_and_left_open(target):
    async with AsyncRetrievalClient(target) as async_client:
        with RetrievalClient(target) as client:
            retriever = LangChainRetriever(client=client, async_client=async_client, k=2, mode="bm25")
            docs, adocs = retriever.invoke("violins symphony"), await retriever.ainvoke("violins symphony")
            assert [d.id for d in docs] == [d.id for d in adocs] and docs[0].metadata["doc_id"].startswith("music")
            retriever.close()
            await retriever.aclose()
            assert len(client.search("violins", k=1).hits) == 1  # still open
            assert len((await async_client.search("violins", k=1)).hits) == 1
            # Given the sync client only, the async path opens a client to the same target.
            only_sync = LangChainRetriever(client=client, k=2, mode="bm25")
            assert [d.id for d in await only_sync.ainvoke("violins symphony")] == [d.id for d in docs]
            await only_sync.aclose()


async def test_filters_namespace_and_per_call_options(target):
    retriever = LangChainRetriever(target=target, mode="bm25", k=20, filters={"topic": ["sailing", "music"]})
    docs = await retriever.ainvoke("notes about a record")
    assert docs and {d.metadata["document_metadata"]["topic"] for d in docs} == {"sailing", "music"}
    # Keyword arguments replace the configured options for one call.
    one = await retriever.ainvoke("notes about a record", k=1, filters={"topic": "finance", "parity": "1"})
    assert [d.metadata["doc_id"] for d in one] == ["finance-1"]
    assert len(retriever.invoke("notes about a record", k=2)) == 2
    sample = retriever.invoke("how does BM25 weigh rare terms?", namespace="sample", filters=None, k=3)
    assert sample[0].metadata["doc_id"] == "bm25" and sample[0].metadata["namespace"] == "sample"
    assert sample[0].metadata["source_uri"] == "https://example.org/bm25"
    assert sample[0].metadata["source_updated_at"] == "2026-02-15T12:00:00+00:00"
    assert sample[0].metadata["lineage"]["dense"] is None and sample[0].metadata["lineage"]["bm25"]["rank"] == 1
    with pytest.raises(TypeError, match="unknown search option 'top_k'"):
        retriever.invoke("notes", top_k=3)
    with pytest.raises(InvalidArgument):
        retriever.invoke("notes", namespace="no such/namespace!")
    retriever.close()


def test_bad_configuration_fails_at_construction_and_the_token_stays_hidden(target):
    with pytest.raises(pydantic.ValidationError, match="mode"):
        LangChainRetriever(target=target, mode="vector")
    with pytest.raises(pydantic.ValidationError, match="k"):
        LangChainRetriever(target=target, k=0)
    retriever = LangChainRetriever(target="127.0.0.1:1", token="rsvc_secret", timeout=5,
                                   client_options={"max_attempts": 1})
    assert "rsvc_secret" not in repr(retriever) and "rsvc_secret" not in str(retriever.model_dump())
    with pytest.raises(Unavailable):
        retriever.invoke("anything")
    retriever.close()


class TestLangChainStandardSuite(RetrieversIntegrationTests):
    """LangChain's own standard tests (langchain-tests) against the real server."""

    @pytest.fixture(autouse=True)
    def _served(self, target):
        self.target = target

    @property
    def retriever_constructor(self) -> type[LangChainRetriever]:
        return LangChainRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"target": self.target, "mode": "hybrid"}

    @property
    def retriever_query_example(self) -> str:
        return QUERY
