"""The EvaluationService and the Prometheus exporter, through a real server."""

from __future__ import annotations

import json
import time
import urllib.request

import grpc
import pytest
import pytrec_eval

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.evaluation.metrics import dedupe_by_document

from corpus import topic_documents

LABELS = {
    "q-astro": ("telescope galaxies and planets", {"astronomy-0": 2, "astronomy-1": 1}),
    "q-bread": ("baking bread in an oven", {"cooking-0": 1, "cooking-1": 1}),
    "q-rates": ("central bank interest rates", {"finance-0": 1, "finance-1": 1, "music-0": 0}),
    "q-sails": ("crew trimmed the sails in the harbour", {"sailing-1": 3}),
    "q-none": ("no relevant document at all", {"music-1": 0}),
}


def _register(client, name="topics", level=epb.JUDGEMENT_LEVEL_DOCUMENT, labels=LABELS):
    return client.register_query_set(epb.RegisterQuerySetRequest(
        name=name, level=level,
        queries=[epb.LabeledQuery(query_id=qid, text=text, judgements=[
            epb.Judgement(target_id=t, relevance=r) for t, r in judged.items()])
            for qid, (text, judged) in labels.items()],
    ))


def _metric(stage_result, metric, k):
    return next(m.value for m in stage_result.metrics if m.metric == metric and m.k == k)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def served(start_server):
    server, client = start_server(server={"metrics_port": 0})
    client.ingest(topic_documents())
    return server, client


def test_evaluate_matches_trec_eval_on_the_served_rankings(served):
    _, client = served
    reply = _register(client)
    assert reply.query_count == 5 and reply.judgement_count == 9
    resp = client.evaluate(epb.EvaluateRequest(
        query_set="topics", ks=[1, 5, 10], depth=20, include_per_query=True,
        stages=[epb.EVAL_STAGE_DENSE, epb.EVAL_STAGE_BM25, epb.EVAL_STAGE_FUSED]))
    assert resp.evaluated_query_count == 4 and resp.skipped_query_count == 1
    assert [s.stage for s in resp.stages] == [epb.EVAL_STAGE_DENSE, epb.EVAL_STAGE_BM25, epb.EVAL_STAGE_FUSED]
    qrels = {qid: judged for qid, (_, judged) in LABELS.items() if any(judged.values())}
    modes = {epb.EVAL_STAGE_DENSE: pb.SEARCH_MODE_DENSE, epb.EVAL_STAGE_BM25: pb.SEARCH_MODE_BM25,
             epb.EVAL_STAGE_FUSED: pb.SEARCH_MODE_HYBRID}
    for stage in resp.stages:
        # Independently: search through the API, dedupe to documents, score with trec_eval.
        run = {}
        for qid in qrels:
            hits = client.search(LABELS[qid][0], k=20, mode=modes[stage.stage], rerank=False).hits
            ranked = dedupe_by_document([h.doc_id for h in hits])
            run[qid] = {doc: float(len(ranked) - i) for i, doc in enumerate(ranked)}
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "P.5", "recall.10", "map"})
        scores = evaluator.evaluate(run)
        for ours, theirs in (("ndcg", "ndcg_cut_10"), ("precision", "P_5"), ("recall", "recall_10")):
            k = int(theirs.rsplit("_", 1)[1])
            expected = sum(s[theirs] for s in scores.values()) / len(scores)
            assert _metric(stage, ours, k) == pytest.approx(expected, abs=1e-9), (stage.stage, ours)
        assert _metric(stage, "map", 0) == pytest.approx(sum(s["map"] for s in scores.values()) / 4, abs=1e-9)
        assert stage.latency.p50_seconds > 0 and stage.latency.max_seconds >= stage.latency.p90_seconds
        assert stage.staleness.p50_seconds > 0
    bm25 = next(s for s in resp.stages if s.stage == epb.EVAL_STAGE_BM25)
    assert _metric(bm25, "ndcg", 10) > 0.7
    rows = [r for r in resp.per_query if r.stage == epb.EVAL_STAGE_BM25]
    assert {r.query_id for r in rows} == set(qrels)


def test_chunk_level_judgements(served):
    _, client = served
    chunks = client.get_document("", "sailing-1", include_chunks=True).chunks
    _register(client, "chunks", epb.JUDGEMENT_LEVEL_CHUNK,
              {"q": ("crew trimmed the sails", {chunks[0].chunk_id: 1})})
    resp = client.evaluate(epb.EvaluateRequest(query_set="chunks", ks=[5], stages=[epb.EVAL_STAGE_BM25]))
    assert 0 < _metric(resp.stages[0], "recall", 5) <= 1.0


def test_export_updates_quality_gauges_and_request_metrics(served):
    server, client = served
    _register(client)
    resp = client.evaluate(epb.EvaluateRequest(query_set="topics", ks=[10], export_metrics=True,
                                               stages=[epb.EVAL_STAGE_BM25]))
    with pytest.raises(grpc.RpcError):
        client.search("x", k=-1)
    for query in ("orchestra", "sails"):
        client.search(query, k=3, mode=pb.SEARCH_MODE_BM25)
    text = _scrape(server.metrics_port)
    assert _sample(text, "retrieval_eval_quality", query_set="topics", stage="bm25", metric="ndcg",
                   k="10") == pytest.approx(_metric(resp.stages[0], "ndcg", 10))
    assert _sample(text, "retrieval_eval_last_run_timestamp_seconds", query_set="topics") > time.time() - 60
    assert _sample(text, "retrieval_eval_runs_total", query_set="topics", status="ok") == 1
    assert _sample(text, "retrieval_eval_runs_total", query_set="topics", status="error") == 0
    assert _sample(text, "retrieval_requests_total", rpc="Search", code="INVALID_ARGUMENT") == 1
    assert _sample(text, "retrieval_requests_total", rpc="Evaluate", code="OK") == 1
    # The evaluation's own 4 searches stay out of the serving metrics; the 2 client searches count.
    assert _sample(text, "retrieval_stage_duration_seconds_count", stage="bm25", mode="bm25") == 2
    assert _sample(text, "retrieval_documents", namespace="default") == 12
    assert _sample(text, "retrieval_index_missing_chunks", namespace="default", index="dense") == 0
    assert _sample(text, "retrieval_served_chunk_age_seconds_count", namespace="default") > 0
    assert _sample(text, "retrieval_source_to_searchable_seconds_count", namespace="default") > 0
    assert _sample(text, "retrieval_oldest_chunk_age_seconds", namespace="default") > 86400
    assert _sample(text, "retrieval_chunks_embedded_total", namespace="default") > 0


def test_list_and_bad_evaluation_requests(served):
    _, client = served
    _register(client)
    listed = {s.name: s for s in client.list_query_sets().sets}
    assert listed["topics"].query_count == 5 and listed["topics"].source == "upload"
    cases = [
        (epb.EvaluateRequest(query_set="missing"), grpc.StatusCode.NOT_FOUND),
        (epb.EvaluateRequest(query_set="topics", ks=[0]), grpc.StatusCode.INVALID_ARGUMENT),
        (epb.EvaluateRequest(query_set="topics", ks=[5000]), grpc.StatusCode.INVALID_ARGUMENT),
        (epb.EvaluateRequest(query_set="topics", stages=[epb.EVAL_STAGE_RERANKED]),
         grpc.StatusCode.FAILED_PRECONDITION),
        (epb.EvaluateRequest(query_set="topics", stages=[7]), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for request, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            client.evaluate(request)
        assert e.value.code() == code, e.value.details()
    for bad in (epb.RegisterQuerySetRequest(name="", queries=[epb.LabeledQuery(query_id="a", text="t")]),
                epb.RegisterQuerySetRequest(name="empty"),
                epb.RegisterQuerySetRequest(name="neg", queries=[epb.LabeledQuery(
                    query_id="a", text="t", judgements=[epb.Judgement(target_id="d", relevance=-1)])])):
        with pytest.raises(grpc.RpcError) as e:
            client.register_query_set(bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_uploaded_sets_survive_restart(start_server, tmp_path):
    server, client = start_server(store_path=tmp_path / "s")
    client.ingest(topic_documents())
    _register(client)
    server.stop(0)
    _, client2 = start_server(store_path=tmp_path / "s")
    assert "topics" in {s.name for s in client2.list_query_sets().sets}


def test_scheduled_evaluation_updates_gauges_without_blocking_search(start_server, tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "queries.jsonl").write_text("".join(
        json.dumps({"_id": qid, "text": text}) + "\n" for qid, (text, _) in LABELS.items()))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{qid}\t{doc}\t{rel}\n" for qid, (_, judged) in LABELS.items() for doc, rel in judged.items()))
    server, client = start_server(
        server={"metrics_port": 0},
        evaluation={"schedule_seconds": 0.5, "ks": [10],
                    "query_sets": [{"name": "scheduled", "path": str(beir)}]})
    client.ingest(topic_documents())
    deadline = time.monotonic() + 60
    value = None
    while time.monotonic() < deadline:
        assert client.search("orchestra violins", k=3).hits  # searches keep being served
        value = _sample(_scrape(server.metrics_port), "retrieval_eval_quality", query_set="scheduled",
                        stage="bm25", metric="ndcg", k="10")
        if value:
            break
        time.sleep(0.3)
    assert value is not None and value > 0.5
    listed = {s.name: s for s in client.list_query_sets().sets}["scheduled"]
    assert listed.query_count == 5 and listed.last_evaluated_at.seconds > 0
