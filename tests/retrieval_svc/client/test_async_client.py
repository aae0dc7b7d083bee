"""AsyncRetrievalClient through a real server: the same typed results, filters, deadlines and
errors as RetrievalClient, on grpc.aio."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from retrieval_svc.client import (
    AsyncRetrievalClient, DeadlineExceeded, Hit, InvalidArgument, NotFound, RetrievalClient, SearchResult,
)

from corpus import topic_documents  # on sys.path via tests/retrieval_svc/conftest.py


async def _documents():
    for doc in topic_documents():
        await asyncio.sleep(0)
        yield doc


def test_async_client_twins_the_sync_one(start_server):
    server, _ = start_server()
    target = f"127.0.0.1:{server.port}"

    async def scenario():
        async with AsyncRetrievalClient(target) as client:
            await client.wait_ready(30)
            summary = await client.ingest(_documents(), batch_size=5)  # an async iterable
            assert summary.added_document_count == 12 and summary.embedded_chunk_count > 0

            result, filtered = await asyncio.gather(
                client.search("bake bread dough oven", k=3, mode="hybrid"),
                client.search("notes about a record", k=20, mode="bm25", filters={"topic": ["sailing", "music"]}))
            assert isinstance(result, SearchResult) and isinstance(result.hits[0], Hit)
            assert result.hits[0].doc_id.startswith("cooking") and result.hits[0].lineage.fused is not None
            assert result.hits[0].source_updated_at is not None and "total" in result.timings
            assert filtered.hits and {h.metadata["topic"] for h in filtered.hits} == {"sailing", "music"}

            await client.ingest_batch([{"doc_id": "kites", "text": "Kites fly when wind lifts them."}],
                                      namespace="notes")
            doc = await client.get_document("kites", namespace="notes", include_chunks=True)
            assert (await client.get_chunk(doc.chunks[0].chunk_id)).doc_id == "kites"
            assert {n.name for n in (await client.info()).namespaces} == {"default", "notes"}
            assert (await client.delete("kites", namespace="notes")).deleted_document_count == 1
            batch = await client.batch_search(["violins", "telescope"], k=1, mode="bm25")
            assert [r.hits[0].doc_id.split("-")[0] for r in batch] == ["music", "astronomy"]

            with pytest.raises(NotFound) as missing:
                await client.get_document("kites", namespace="notes")
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(InvalidArgument) as bad:
                await client.ingest_batch([{"doc_id": "", "text": "no id"}])
            assert [v.field for v in bad.value.field_violations] == ["documents[0].doc_id"]
            with pytest.raises(DeadlineExceeded):
                await client.search("bread", timeout=1e-4)
            with pytest.raises(ValueError, match="unknown document field"):
                await client.ingest([{"doc_id": "a", "txt": "typo"}])
        return summary, result

    summary, result = asyncio.run(scenario())
    # The sync client sees the same thing.
    with RetrievalClient(target) as client:
        again = client.search("bake bread dough oven", k=3, mode="hybrid")
    assert [h.chunk_id for h in again.hits] == [h.chunk_id for h in result.hits]
