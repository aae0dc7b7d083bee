"""The gRPC API through a real server on 127.0.0.1 and a real client."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client import document_to_pb
from retrieval_svc.domain import Document

from corpus import long_text, topic_documents  # on sys.path via this folder's conftest


def _code(excinfo) -> grpc.StatusCode:
    return excinfo.value.code()


@pytest.fixture
def served(start_server):
    server, client = start_server()
    summary = client.ingest(topic_documents(), batch_size=5)
    return server, client, summary


def test_ingest_summary_and_dense_search(served):
    _, client, summary = served
    assert summary.added_document_count == 12
    assert summary.added_chunk_count == summary.embedded_chunk_count > 0
    resp = client.search("galaxies and planets seen through a telescope", k=3,
                         mode=pb.SEARCH_MODE_DENSE)
    assert len(resp.hits) == 3 and resp.hits[0].doc_id.startswith("astronomy")
    top = resp.hits[0]
    assert top.rank == 1 and top.HasField("dense") and not top.HasField("bm25")
    assert top.source_updated_at.seconds >= 1_700_000_000
    assert top.first_indexed_at.seconds >= top.source_updated_at.seconds
    doc = client.get_document("", top.doc_id)
    assert doc.document.text[top.start_char:top.end_char] == top.text
    assert resp.models[0].role == "encoder" and len(resp.models[0].revision) >= 8
    assert {t.stage for t in resp.timings} >= {"encode", "dense", "total"}


def test_hybrid_lineage_fields(served):
    _, client, _ = served
    resp = client.search("bake bread dough oven", k=5, mode=pb.SEARCH_MODE_HYBRID)
    assert resp.mode == pb.SEARCH_MODE_HYBRID and resp.fusion == pb.FUSION_METHOD_MINMAX  # the default
    assert resp.hits[0].doc_id.startswith("cooking")
    for rank, hit in enumerate(resp.hits, start=1):
        assert hit.rank == rank and hit.HasField("fused")
        assert hit.HasField("dense") or hit.HasField("bm25")
        assert hit.score == pytest.approx(hit.fused.score)
    assert {t.stage for t in resp.timings} >= {"encode", "dense", "bm25", "fuse", "hydrate", "total"}
    assert resp.request_id and resp.index_generation > 0
    chosen = client.search("bake bread dough oven", k=5, mode=pb.SEARCH_MODE_HYBRID, fusion=pb.FUSION_METHOD_RRF)
    assert chosen.fusion == pb.FUSION_METHOD_RRF


def test_fusion_is_unset_when_nothing_was_fused(served):
    _, client, _ = served
    for mode in (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_BM25):
        # Even when the request names a method: one retriever's list is not fused.
        resp = client.search("bake bread dough oven", k=3, mode=mode, fusion=pb.FUSION_METHOD_RRF)
        assert resp.mode == mode and resp.hits and not any(h.HasField("fused") for h in resp.hits)
        assert resp.fusion == pb.FUSION_METHOD_UNSPECIFIED, mode
    (dense,) = client.batch_search([pb.SearchRequest(query="bread", mode=pb.SEARCH_MODE_DENSE)]).results
    assert dense.fusion == pb.FUSION_METHOD_UNSPECIFIED


def test_reingest_unchanged_embeds_nothing_and_refreshes_verification(served):
    _, client, _ = served
    before = client.get_document("", "finance-0", include_chunks=True)
    again = client.ingest(topic_documents(), batch_size=12)
    assert again.unchanged_document_count == 12 and again.embedded_chunk_count == 0
    assert again.added_chunk_count == 0 and again.removed_chunk_count == 0
    after = client.get_document("", "finance-0", include_chunks=True)
    assert [c.chunk_id for c in after.chunks] == [c.chunk_id for c in before.chunks]
    assert after.first_indexed_at == before.first_indexed_at
    assert after.last_verified_at.ToNanoseconds() > before.last_verified_at.ToNanoseconds()
    assert after.chunks[0].last_verified_at.ToNanoseconds() > before.chunks[0].last_verified_at.ToNanoseconds()


def test_edit_reembeds_only_changed_chunks_and_removes_vanished(start_server):
    _, client = start_server()
    text = long_text(80, seed=3)
    client.ingest([Document("", "long", text)])
    before = client.get_document("", "long", include_chunks=True)
    assert before.chunk_count >= 10
    sentences = text.split(". ")
    sentences[40] = "Completely different words about zeppelins drifting over quiet lakes"
    edited = ". ".join(sentences)
    summary = client.ingest([Document("", "long", edited)])
    assert summary.updated_document_count == 1
    assert 1 <= summary.embedded_chunk_count <= 3
    assert summary.removed_chunk_count == summary.added_chunk_count == summary.embedded_chunk_count
    after = client.get_document("", "long", include_chunks=True)
    vanished = {c.chunk_id for c in before.chunks} - {c.chunk_id for c in after.chunks}
    for chunk_id in vanished:
        with pytest.raises(grpc.RpcError) as e:
            client.get_chunk(chunk_id)
        assert _code(e) == grpc.StatusCode.NOT_FOUND
    hits = client.search("zeppelins drifting over lakes", k=1, mode=pb.SEARCH_MODE_BM25).hits
    assert hits[0].chunk_id not in {c.chunk_id for c in before.chunks}


def test_filters_namespaces_and_max_age(start_server):
    _, client = start_server()
    client.ingest(topic_documents())
    client.ingest(topic_documents(namespace="other", per_topic=1))
    flt = [pb.FilterClause(key="topic", any_of=["music", "sailing"])]
    resp = client.search("bread oven", k=10, filters=flt)
    assert resp.hits and {h.metadata["topic"] for h in resp.hits} <= {"music", "sailing"}
    by_id = client.search("anything at all", k=50, filters=[pb.FilterClause(key="doc_id", any_of=["music-1"])])
    assert {h.doc_id for h in by_id.hits} == {"music-1"}
    other = client.search("orchestra violins", namespace="other", k=20)
    assert {h.namespace for h in other.hits} == {"other"} and len({h.doc_id for h in other.hits}) <= 6
    assert client.search("orchestra", k=5, max_age_seconds=60).hits == []


def test_delete_removes_from_every_index(served):
    _, client, _ = served
    resp = client.delete("", ["music-0", "music-1", "nope"])
    assert resp.deleted_document_count == 2 and list(resp.not_found) == ["nope"] and resp.removed_chunk_count > 0
    for mode in (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_BM25, pb.SEARCH_MODE_HYBRID):
        hits = client.search("orchestra symphony violins conductor", k=50, mode=mode).hits
        assert not any(h.doc_id.startswith("music") for h in hits)
    info = client.info()
    ns = {n.name: n for n in info.namespaces}["default"]
    assert ns.document_count == 10 and ns.chunk_count == ns.dense_vector_count == ns.bm25_chunk_count


def test_info_config_masks_secrets(start_server):
    _, client = start_server(tracing={"otlp_headers": {"x-api-key": "s3cret-value"}})
    info = client.info()
    assert json_format.MessageToDict(info.config)["tracing"]["otlp_headers"] == {"x-api-key": "***"}
    assert "s3cret-value" not in str(info) and "s3cret-value" not in info.config_json


def test_batch_search_keeps_request_order(served):
    _, client, _ = served
    queries = ["violins orchestra", "interest rates inflation", "antibiotics infection"]
    resp = client.batch_search([pb.SearchRequest(query=q, k=1, request_id=f"q{i}") for i, q in enumerate(queries)])
    assert [r.request_id for r in resp.results] == ["q0", "q1", "q2"]
    assert [r.hits[0].doc_id.split("-")[0] for r in resp.results] == ["music", "finance", "medicine"]


def test_info_health_and_reflection(served):
    server, client, _ = served
    info = client.info()
    assert info.models[0].dimension == 384 and info.index_generation > 0
    assert info.dense_index == "flat/faiss/cpu"
    config = json_format.MessageToDict(info.config)
    assert config["chunker"]["window_tokens"] == 48 and config["search"]["fusion"] == "minmax"
    # Deprecated in 0.2.0, still filled for 0.1.0 clients: the same configuration as JSON text.
    assert json.loads(info.config_json) == config
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "retrieval.v1.RetrievalService", "retrieval.v1.EvaluationService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"retrieval.v1.RetrievalService", "retrieval.v1.EvaluationService", "grpc.health.v1.Health"} <= names


# --- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, fragment",
    [
        (Document("", "", "text"), "doc_id is required"),
        (Document("", "x", "   "), "text and title are both blank"),
        (Document("bad namespace!", "x", "text"), "namespace"),
        (Document("", "x", "text", metadata={"bad key": "v"}), "metadata key"),
        (Document("", "x", "y" * 5001), "over the limit of 5000"),
    ],
)
def test_bad_documents_are_rejected_with_a_clear_message(start_server, doc, fragment):
    _, client = start_server(limits={"max_document_chars": 5000})
    with pytest.raises(grpc.RpcError) as e:
        client.ingest_batch([Document("", "good", "fine text"), doc])
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in e.value.details() and "document 1" in e.value.details()
    # IngestBatch is all or nothing: the good document of that batch is not stored.
    with pytest.raises(grpc.RpcError) as e:
        client.get_document("", "good")
    assert _code(e) == grpc.StatusCode.NOT_FOUND


def test_stream_failure_keeps_what_was_accepted(start_server):
    _, client = start_server()
    docs = topic_documents()[:4] + [Document("", "", "missing id")] + topic_documents()[4:6]
    with pytest.raises(grpc.RpcError) as e:
        client.ingest(docs, batch_size=2)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    details = e.value.details()
    assert "document 4" in details and "4 documents of this stream were committed" in details
    info = {n.name: n for n in client.info().namespaces}["default"]
    assert info.document_count == 4
    assert client.search("telescope galaxies", k=1).hits[0].doc_id.startswith("astronomy")


def test_default_namespace_always_exists(start_server):
    _, client = start_server()
    assert client.search("anything", k=3).hits == []
    assert list(client.delete("", ["nothing-here"]).not_found) == ["nothing-here"]


def test_invalid_utf8_gets_invalid_argument(start_server):
    _, client = start_server()
    good = pb.IngestRequest(documents=[document_to_pb(Document("", "utf", "PLACEHOLDER"))]).SerializeToString()
    broken = good.replace(b"PLACEHOLDER", b"bad \xff\xfe bytes")
    ingest = client.channel.unary_unary(
        "/retrieval.v1.RetrievalService/IngestBatch",
        request_serializer=lambda raw: raw, response_deserializer=pb.IngestSummary.FromString)
    with pytest.raises(grpc.RpcError) as e:
        ingest(broken, timeout=30)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in e.value.details()
    search = client.channel.unary_unary(
        "/retrieval.v1.RetrievalService/Search",
        request_serializer=lambda raw: raw, response_deserializer=pb.SearchResponse.FromString)
    raw = pb.SearchRequest(query="PLACEHOLDER").SerializeToString().replace(b"PLACEHOLDER", b"\xc3\x28xx\xa0\xa1")
    with pytest.raises(grpc.RpcError) as e:
        search(raw, timeout=30)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "fields, code, fragment",
    [
        ({"k": -1}, grpc.StatusCode.INVALID_ARGUMENT, "k must be >= 0"),
        ({"k": 1001}, grpc.StatusCode.INVALID_ARGUMENT, "k must be in 1..1000"),
        ({"query": ""}, grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
        ({"namespace": "missing"}, grpc.StatusCode.NOT_FOUND, "namespace 'missing' does not exist"),
        ({"filters": [pb.FilterClause(key="", any_of=["x"])]}, grpc.StatusCode.INVALID_ARGUMENT, "filters[0].key"),
        ({"filters": [pb.FilterClause(key="topic")]}, grpc.StatusCode.INVALID_ARGUMENT, "no values"),
        ({"dense_candidates": 5000}, grpc.StatusCode.INVALID_ARGUMENT, "dense_candidates must be in"),
        ({"dense_weight": -1.0}, grpc.StatusCode.INVALID_ARGUMENT, "dense_weight must be >= 0"),
        ({"max_age_seconds": -5}, grpc.StatusCode.INVALID_ARGUMENT, "max_age_seconds"),
        ({"recency": pb.RecencyDecay(weight=0.5)}, grpc.StatusCode.INVALID_ARGUMENT, "half_life"),
        ({"rerank": True}, grpc.StatusCode.FAILED_PRECONDITION, "no reranker is configured"),
        ({"mode": 9}, grpc.StatusCode.INVALID_ARGUMENT, "SearchMode"),
    ],
)
def test_bad_search_requests(served, fields, code, fragment):
    _, client, _ = served
    fields = {"query": "bread", **fields}
    query = fields.pop("query")
    with pytest.raises(grpc.RpcError) as e:
        client.search(query, **fields)
    assert _code(e) == code
    assert fragment in e.value.details()


def test_other_bad_requests(served):
    _, client, _ = served
    cases = [
        (lambda: client.delete("missing", ["a"]), grpc.StatusCode.NOT_FOUND),
        (lambda: client.delete("", []), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: client.get_chunk(""), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: client.get_chunk("0" * 32), grpc.StatusCode.NOT_FOUND),
        (lambda: client.get_document("", "nope"), grpc.StatusCode.NOT_FOUND),
        (lambda: client.batch_search([]), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: client.batch_search([pb.SearchRequest(query="ok"), pb.SearchRequest(query="x", k=-2)]),
         grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert _code(e) == code, e.value.details()
    # The server is still healthy and nothing accepted was lost.
    assert {n.name: n for n in client.info().namespaces}["default"].document_count == 12


def test_oversized_batches_get_resource_exhausted(start_server):
    _, client = start_server(limits={"max_batch_queries": 2, "max_batch_documents": 3})
    with pytest.raises(grpc.RpcError) as e:
        client.batch_search([pb.SearchRequest(query=f"q{i}") for i in range(3)])
    assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_batch_queries=2" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        client.ingest(topic_documents()[:4], batch_size=4)
    assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_batch_documents=3" in e.value.details()
    assert client.ingest(topic_documents()[:4], batch_size=3).added_document_count == 4
