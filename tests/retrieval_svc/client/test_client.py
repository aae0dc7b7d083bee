"""RetrievalClient through a real server on 127.0.0.1: typed results, filters as mappings,
documents as dicts or Documents, deadlines, and errors as typed exceptions."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone

import grpc
import pytest

from retrieval_svc.client import (
    DeadlineExceeded, Document, Hit, InvalidArgument, LabeledQuery, NotFound, RetrievalClient, RetrievalError,
    SearchResult, StageScore,
)

from corpus import topic_documents  # on sys.path via tests/retrieval_svc/conftest.py


@pytest.fixture
def served(start_server):
    server, _ = start_server()
    with RetrievalClient(f"127.0.0.1:{server.port}") as client:
        summary = client.ingest(topic_documents(), batch_size=5)
        yield client, summary


def test_ingest_summary_and_search_results_are_typed(served):
    client, summary = served
    assert summary.added_document_count == 12 and summary.committed_document_count == 12
    assert summary.embedded_chunk_count == summary.added_chunk_count > 0 and summary.rejected == ()
    assert isinstance(summary.index_generation, int) and summary.index_generation > 0

    result = client.search("bake bread dough oven", k=4, mode="hybrid")
    assert isinstance(result, SearchResult) and result.mode == "hybrid" and result.fusion == "minmax"
    assert len(result.hits) == 4 and all(isinstance(h, Hit) for h in result.hits)
    top = result.hits[0]
    assert top.rank == 1 and top.doc_id.startswith("cooking") and top.namespace == "default"
    assert top.metadata["topic"] == "cooking" and top.title.startswith("cooking")
    assert top.text and top.chunk_id and top.end_char > top.start_char
    assert isinstance(top.lineage.fused, StageScore) and top.score == pytest.approx(top.lineage.fused.score)
    assert top.lineage.dense is not None or top.lineage.bm25 is not None
    assert top.lineage.rerank is None and not result.reranked
    assert top.source_updated_at is not None and top.source_updated_at.tzinfo == timezone.utc
    assert top.source_updated_at >= datetime(2023, 11, 14, tzinfo=timezone.utc)
    assert top.first_indexed_at >= top.source_updated_at and top.last_verified_at >= top.first_indexed_at
    assert top.staleness_seconds > 0
    assert {"encode", "dense", "bm25", "fuse", "hydrate", "total"} <= set(result.timings)
    assert all(isinstance(seconds, float) for seconds in result.timings.values())
    assert result.models[0].role == "encoder" and result.models[0].dimension == 384
    assert result.index_generation == summary.index_generation and result.request_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        top.score = 1.0  # type: ignore[misc]

    dense = client.search("galaxies and planets seen through a telescope", k=2, mode="dense")
    assert dense.mode == "dense" and dense.fusion is None  # nothing was fused
    assert dense.hits[0].lineage.dense is not None and dense.hits[0].lineage.bm25 is None


def test_filters_are_plain_mappings(served):
    client, _ = served
    one = client.search("notes about a record", k=20, mode="bm25", filters={"topic": "sailing"})
    assert one.hits and {h.metadata["topic"] for h in one.hits} == {"sailing"}
    several = client.search("notes about a record", k=20, mode="bm25",
                            filters={"topic": ["sailing", "music"], "parity": "1"})
    assert {h.metadata["topic"] for h in several.hits} == {"sailing", "music"}
    assert {h.doc_id for h in several.hits} == {"sailing-1", "music-1"}
    by_id = client.search("notes", k=5, mode="bm25", filters={"doc_id": ("finance-0",)})
    assert {h.doc_id for h in by_id.hits} == {"finance-0"}
    with pytest.raises(TypeError, match="filter 'year': values must be strings"):
        client.search("notes", filters={"year": 2024})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="mode must be one of dense, bm25, hybrid; got 'unspecified'"):
        client.search("notes", mode="unspecified")  # type: ignore[typeddict-item]
    with pytest.raises(TypeError, match="unknown search option 'top_k'"):
        client.search("notes", top_k=3)  # type: ignore[call-arg]


def test_batch_search_keeps_order_and_per_query_options(served):
    client, _ = served
    results = client.batch_search(["bake bread", {"query": "violins symphony", "mode": "dense"}], k=2, mode="bm25")
    assert [r.mode for r in results] == ["bm25", "dense"]
    assert results[0].hits[0].doc_id.startswith("cooking") and results[1].hits[0].doc_id.startswith("music")


def test_documents_as_dicts_get_and_delete(served):
    client, _ = served
    summary = client.ingest_batch([
        {"doc_id": "kites", "text": "Kites fly when wind lifts them over the hill.", "title": "Kites",
         "metadata": {"lang": "en"}, "source_updated_at": datetime(2026, 1, 15, 12, tzinfo=timezone.utc),
         "source_uri": "https://example.org/kites"},
        Document("", "lighthouse", "Lighthouses warn ships about rocks.", source_updated_at=1_767_225_600.0),
    ], namespace="notes")
    assert summary.added_document_count == 2

    doc = client.get_document("kites", namespace="notes", include_chunks=True)
    assert (doc.namespace, doc.title, doc.metadata, doc.source_uri) == ("notes", "Kites", {"lang": "en"},
                                                                       "https://example.org/kites")
    assert doc.source_updated_at == datetime(2026, 1, 15, 12, tzinfo=timezone.utc)
    assert doc.chunk_count == len(doc.chunks) >= 1 and len(doc.content_hash) == 64
    chunk = client.get_chunk(doc.chunks[0].chunk_id)
    assert chunk == doc.chunks[0] and chunk.token_count > 0
    lighthouse = client.get_document("lighthouse", namespace="notes")
    assert lighthouse.source_updated_at == datetime(2026, 1, 1, tzinfo=timezone.utc) and lighthouse.chunks == ()

    deleted = client.delete(["kites", "never-there"], namespace="notes")
    assert (deleted.deleted_document_count, deleted.not_found) == (1, ("never-there",))
    assert deleted.removed_chunk_count == doc.chunk_count
    with pytest.raises(NotFound) as missing:
        client.get_document("kites", namespace="notes")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "kites" in missing.value.details()
    with pytest.raises(ValueError, match="unknown document field 'body'"):
        client.ingest_batch([{"doc_id": "x", "body": "text"}])


def test_info_namespaces_and_limits(served):
    client, _ = served
    info = client.info()
    default = {n.name: n for n in info.namespaces}["default"]
    assert (default.document_count, default.dense_vector_count) == (12, default.chunk_count)
    assert info.limits["limits.max_k"] >= 10 and info.models[0].role == "encoder"
    assert info.config is not None and "search" in info.config  # open server: every caller is admin
    # A Struct holds numbers as doubles; the whole ones come back as the settings have them.
    server = info.config["server"]
    assert isinstance(server["max_message_bytes"], int) and server["max_message_bytes"] == 64 * 1024 * 1024
    assert info.dense_index.startswith("flat/")


def test_counts_keep_their_names_before_0_2_0_for_one_release(served):
    client, summary = served
    with pytest.warns(DeprecationWarning, match=r"IngestSummary.documents_added is deprecated .* added_document_count"):
        assert summary.documents_added == summary.added_document_count == 12
    with pytest.warns(DeprecationWarning):
        assert summary.documents_committed == summary.committed_document_count
    assert "documents_added" not in dataclasses.asdict(summary)  # nor in the CLI's --json
    deleted = client.delete("never-there")
    with pytest.warns(DeprecationWarning, match="DeleteSummary.documents_deleted"):
        assert deleted.documents_deleted == deleted.deleted_document_count == 0


def test_query_sets_register_list_and_evaluate(served):
    client, _ = served
    queries = [LabeledQuery("q1", "bake the bread in the oven", {"cooking-0": 1, "cooking-1": 1}),
               {"query_id": "q2", "text": "violins before the symphony", "judgements": {"music-0": 2}}]
    registered = client.register_query_set("topics", queries)
    assert (registered.name, registered.query_count, registered.judgement_count) == ("topics", 2, 3)
    listed = {s.name: s for s in client.list_query_sets()}
    assert listed["topics"].level == "document" and listed["topics"].last_evaluated_at is None

    result = client.evaluate("topics", ks=[1, 5], stages=["bm25", "dense"], include_per_query=True)
    assert result.evaluated_query_count == 2 and result.skipped_query_count == 0
    assert [s.stage for s in result.stages] == ["bm25", "dense"]
    bm25 = result.stage("bm25")
    assert bm25.metrics["ndcg@5"] > 0.5 and set(bm25.metrics) >= {"recall@1", "precision@5", "map"}
    assert bm25.latency.p50_seconds > 0 and {row.stage for row in result.per_query} == {"bm25", "dense"}
    assert {s.name: s for s in client.list_query_sets()}["topics"].last_evaluated_at is not None


def test_invalid_document_raises_invalid_argument_with_field_violations(served):
    client, _ = served
    with pytest.raises(InvalidArgument) as bad:
        client.ingest_batch([{"doc_id": "fine", "text": "A fine document."}, {"doc_id": "", "text": "no id"}])
    error = bad.value
    assert isinstance(error, grpc.RpcError) and isinstance(error, RetrievalError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["documents[1].doc_id"]
    assert error.retry_after_seconds is None and "doc_id" in error.message
    skipped = client.ingest_batch([{"doc_id": "", "text": "no id"}], on_invalid="skip")
    assert skipped.rejected_document_count == 1 and skipped.rejected[0].reason == "missing_field"


def test_every_call_has_a_deadline(served):
    client, _ = served
    target = client.target
    # Calls that encode text take milliseconds, far past a 0.1 ms deadline (a sub-millisecond
    # call such as Info can beat gRPC's deadline timer).
    with RetrievalClient(target, timeout=1e-4, ingest_timeout=1e-4) as hurried:
        for call in (lambda: hurried.search("bread", mode="dense"),
                     lambda: hurried.ingest_batch([{"doc_id": "late", "text": "Too late."}])):
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded) as late:
                call()
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started < 5
        assert hurried.search("bread", timeout=30).hits  # a call's own timeout wins
    with RetrievalClient(target) as defaults:
        assert (defaults.timeouts.default, defaults.timeouts.ingest, defaults.timeouts.evaluate) == (30, 300, 600)
