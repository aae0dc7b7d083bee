"""LlamaIndexRetriever against the real llama-index-core and a real server: hits as
NodeWithScore(TextNode) with the document as SOURCE, retrieve on the sync client and aretrieve
on grpc.aio, options, and a query engine built over it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, QueryBundle, TextNode

from retrieval_svc.client import RetrievalClient
from retrieval_svc.integrations import hit_metadata
from retrieval_svc.integrations.llama_index import LlamaIndexRetriever

QUERY = "bake bread dough oven"


def test_nodes_carry_the_hit_and_its_document(target):
    retriever = LlamaIndexRetriever(target, k=4, mode="hybrid")
    nodes = retriever.retrieve(QUERY)
    with RetrievalClient(target) as client:
        hits = client.search(QUERY, k=4, mode="hybrid").hits
    assert len(nodes) == 4 and all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert [n.node.node_id for n in nodes] == [hit.chunk_id for hit in hits]
    assert [n.score for n in nodes] == pytest.approx([hit.score for hit in hits])
    assert [n.node.get_content() for n in nodes] == [hit.text for hit in hits]
    assert [{**n.node.metadata, "staleness_seconds": 0} for n in nodes] == [
        {**hit_metadata(hit), "staleness_seconds": 0} for hit in hits]

    top, hit = nodes[0].node, hits[0]
    assert top.source_node is not None and top.source_node.node_id == hit.doc_id and hit.doc_id.startswith("cooking")
    assert top.relationships[NodeRelationship.SOURCE].metadata["title"] == hit.title
    assert (top.start_char_idx, top.end_char_idx) == (hit.start_char, hit.end_char)
    assert top.metadata["lineage"]["fused"]["rank"] == 1 and top.metadata["document_metadata"] == {
        "topic": "cooking", "parity": hit.metadata["parity"]}
    assert datetime.fromisoformat(top.metadata["source_updated_at"]).tzinfo == timezone.utc
    # What an LLM reads: the text with the citable id and title, without the bookkeeping.
    for_llm = top.get_content(metadata_mode=MetadataMode.LLM)
    assert f"doc_id: {hit.doc_id}" in for_llm and hit.text.strip() in for_llm
    assert "lineage" not in for_llm and "chunk_id" not in for_llm
    retriever.close()


def test_aretrieve_searches_on_grpc_aio_with_filters(target):
    retriever = LlamaIndexRetriever(target, k=20, mode="bm25", filters={"topic": ["sailing", "music"]})

    async def search(query):
        try:
            return await retriever.aretrieve(query)
        finally:
            await retriever.aclose()

    nodes = asyncio.run(search("notes about a record"))
    assert nodes and {n.node.metadata["document_metadata"]["topic"] for n in nodes} == {"sailing", "music"}
    again = asyncio.run(search(QueryBundle("notes about a record")))
    assert retriever._clients._client is None  # the sync client was never opened: no thread hop
    assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]
    assert [n.node.node_id for n in retriever.retrieve("notes about a record")] == [n.node.node_id for n in nodes]
    retriever.close()


def test_options_namespace_and_validation(target):
    retriever = LlamaIndexRetriever(target, namespace="sample", k=2, search_options={"fusion": "rrf"})
    nodes = retriever.retrieve("how does BM25 weigh rare terms?")
    assert len(nodes) == 2 and nodes[0].node.source_node.node_id == "bm25"
    assert nodes[0].node.metadata["namespace"] == "sample" and nodes[0].node.metadata["lineage"]["fused"]
    retriever.close()
    with pytest.raises(ValueError, match="k must be positive"):
        LlamaIndexRetriever(target, k=0)
    with pytest.raises(TypeError, match="unknown search option 'top_k'"):
        LlamaIndexRetriever(target, search_options={"top_k": 3}).retrieve("bread")


async def test_a_query_engine_answers_from_the_retrieved_nodes(target):
    retriever = LlamaIndexRetriever(target, namespace="sample", k=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = await engine.aquery("how does BM25 weigh rare terms?")
    assert [n.node.source_node.node_id for n in response.source_nodes][0] == "bm25"
    assert len(response.source_nodes) == 3
    await retriever.aclose()
