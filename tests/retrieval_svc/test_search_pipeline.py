"""Re-ranking, fallbacks, fusion choices, recency and batching through a real server."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.domain import Document
from retrieval_svc.models import CrossEncoderReranker

from corpus import topic_documents


@pytest.fixture(scope="module")
def tiny_reranker(tiny_cross_encoder_path):
    return CrossEncoderReranker(str(tiny_cross_encoder_path), device="cpu")


class SlowReranker:
    """A reranker that takes longer than any sane budget."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay, self.identity = inner, delay, inner.identity

    def rerank(self, query, passages):
        time.sleep(self.delay)
        return self.inner.rerank(query, passages)

    def score_pairs(self, pairs):
        time.sleep(self.delay)
        return self.inner.score_pairs(pairs)


def _metric(port, name, **labels):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_rerank_fills_lineage_and_reorders_the_head(start_server, tiny_reranker):
    _, client = start_server(reranker_model=tiny_reranker)
    client.ingest(topic_documents())
    plain = client.search("bread oven", k=8, rerank=False)
    resp = client.search("bread oven", k=8, rerank=True, rerank_top_n=5)
    assert resp.reranked and not resp.rerank_fallback
    assert [m.role for m in resp.models] == ["encoder", "reranker"]
    assert resp.models[1].revision and resp.models[1].name.endswith(tiny_reranker.identity.name[-10:])
    head, tail = resp.hits[:5], resp.hits[5:]
    assert all(h.HasField("rerank") for h in head) and not any(h.HasField("rerank") for h in tail)
    assert [h.rerank.score for h in head] == sorted((h.rerank.score for h in head), reverse=True)
    assert {h.chunk_id for h in head} == {h.chunk_id for h in plain.hits[:5]}
    assert [h.chunk_id for h in tail] == [h.chunk_id for h in plain.hits[5:8]]
    for h in resp.hits:
        assert h.HasField("fused") and h.rank >= 1
    assert "rerank" in {t.stage for t in resp.timings}


def test_rerank_timeout_returns_fused_order_flagged_and_counted(start_server, tiny_reranker):
    server, client = start_server(reranker_model=SlowReranker(tiny_reranker, 1.0),
                                  reranker={"timeout_seconds": 0.05}, server={"metrics_port": 0})
    client.ingest(topic_documents())
    plain = client.search("interest rates", k=5, rerank=False)
    started = time.perf_counter()
    resp = client.search("interest rates", k=5, rerank=True)
    assert time.perf_counter() - started < 0.9
    assert resp.rerank_fallback and resp.rerank_fallback_reason == "timeout" and not resp.reranked
    assert [h.chunk_id for h in resp.hits] == [h.chunk_id for h in plain.hits]
    assert not any(h.HasField("rerank") for h in resp.hits)
    assert _metric(server.metrics_port, "retrieval_rerank_fallbacks_total", reason="timeout") == 1


def test_config_default_rerank_applies_when_request_leaves_it_unset(start_server, tiny_reranker):
    _, client = start_server(reranker_model=tiny_reranker, search={"rerank": True})
    client.ingest(topic_documents())
    assert client.search("sails", k=3).reranked
    assert not client.search("sails", k=3, rerank=False).reranked


@pytest.mark.parametrize("fusion", [pb.FUSION_METHOD_RRF, pb.FUSION_METHOD_MINMAX, pb.FUSION_METHOD_ZSCORE])
def test_each_fusion_method_is_selectable_per_request(start_server, fusion):
    _, client = start_server()
    client.ingest(topic_documents())
    resp = client.search("antibiotics for an infection", k=5, fusion=fusion, dense_weight=1.0, bm25_weight=0.5)
    assert resp.fusion == fusion and resp.hits[0].doc_id.startswith("medicine")
    scores = [h.fused.score for h in resp.hits]
    assert scores == sorted(scores, reverse=True)


def test_weights_steer_fusion(start_server):
    _, client = start_server()
    client.ingest(topic_documents())
    only_bm25 = client.search("crew sails harbour", k=60, dense_weight=0.0, bm25_weight=1.0,
                              fusion=pb.FUSION_METHOD_RRF)
    bm25 = client.search("crew sails harbour", k=60, mode=pb.SEARCH_MODE_BM25)
    n = len(bm25.hits)
    assert 0 < n < len(only_bm25.hits)
    assert [h.chunk_id for h in only_bm25.hits[:n]] == [h.chunk_id for h in bm25.hits]
    # Dense-only candidates still come back, after the BM25 matches, contributing nothing.
    assert all(h.fused.score == 0.0 and not h.HasField("bm25") for h in only_bm25.hits[n:])


def test_recency_decay_prefers_fresher_sources(start_server):
    _, client = start_server()
    now = time.time()
    text = "The lighthouse keeper logged the storm and the passing ships."
    client.ingest([Document("", "old", text, source_updated_at=now - 400 * 86400),
                   Document("", "new", text + " ", source_updated_at=now - 3600)])
    plain = client.search("lighthouse storm ships", k=2, mode=pb.SEARCH_MODE_BM25)
    decayed = client.search("lighthouse storm ships", k=2, mode=pb.SEARCH_MODE_BM25,
                            recency=pb.RecencyDecay(half_life_seconds=30 * 86400, weight=1.0))
    assert decayed.hits[0].doc_id == "new"
    assert decayed.hits[0].score > decayed.hits[1].score
    assert {h.doc_id for h in plain.hits} == {"old", "new"}
    fresh = client.search("lighthouse", k=5, max_age_seconds=86400)
    assert [h.doc_id for h in fresh.hits] == ["new"]
    assert 3000 < fresh.hits[0].staleness_seconds < 4000


def test_concurrent_searches_share_encoder_batches(start_server):
    # All 12 run at once (admission would otherwise queue, or on a busy machine refuse, some).
    server, client = start_server(encoder={"max_wait_ms": 20.0}, server={"metrics_port": 0},
                                  admission={"search_in_flight": 12, "queue_timeout_seconds": 10.0})
    client.ingest(topic_documents())
    barrier = threading.Barrier(12)
    errors = []

    def one(i):
        barrier.wait()
        try:
            client.search(f"query number {i} about planets", k=3, mode=pb.SEARCH_MODE_DENSE)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    batches = _metric(server.metrics_port, "retrieval_batch_size_count", model="encoder")
    total = _metric(server.metrics_port, "retrieval_batch_size_sum", model="encoder")
    assert total == 12 and batches < 12, (batches, total)


def test_batch_search_shares_one_encoder_call(start_server):
    server, client = start_server(server={"metrics_port": 0})
    client.ingest(topic_documents())
    before = _metric(server.metrics_port, "retrieval_batch_size_count", model="encoder") or 0
    resp = client.batch_search([pb.SearchRequest(query=f"topic {i}", k=2) for i in range(20)])
    assert len(resp.results) == 20
    after = _metric(server.metrics_port, "retrieval_batch_size_count", model="encoder")
    assert after - before == 1
