"""Replicas over one Milvus: what one writes, the others serve; query sets and evaluation
results are kept in Milvus, and scheduled evaluation runs once (`evaluate-scheduled`).
Two servers in this process over one Milvus Lite file stand for two replicas."""

from __future__ import annotations

import json
import time

import pytest

from retrieval_svc import cli
from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.domain import Document
from retrieval_svc.evaluation import service as evaluation_service

from corpus import topic_documents

pytest.importorskip("milvus_lite")


@pytest.fixture
def replicas(start_server, tmp_path):
    sections = {"store": {"backend": "milvus"}, "milvus": {"uri": str(tmp_path / "shared.db")}}
    return start_server(**sections), start_server(**sections)


def test_two_replicas_over_one_milvus_server(start_server, milvus_server):
    """Through a real Milvus server (2.3: dense only): what one replica ingests the other finds,
    and a re-ingest through one is seen whole through the other."""
    sections = {"store": {"backend": "milvus"}, "search": {"default_mode": "dense"},
                "milvus": {"uri": milvus_server, "collection_prefix": f"r{time.monotonic_ns()}", "lexical": False}}
    (_, a), (_, b) = start_server(**sections), start_server(**sections)
    a.ingest(topic_documents())
    assert "cooking-0" in _doc_ids(b, "bread dough oven", mode=pb.SEARCH_MODE_DENSE)
    old = {c.chunk_id for c in b.get_document("", "cooking-0", include_chunks=True).chunks}
    text = " ".join(f"Sourdough note {i}: feed the starter with flour and water." for i in range(40))
    a.ingest([Document("", "cooking-0", text)])
    seen = b.get_document("", "cooking-0", include_chunks=True)
    new = {c.chunk_id for c in seen.chunks}
    assert seen.document.text == text and len(new) > 1 and not new & old
    hits = b.search("sourdough starter flour", k=50, mode=pb.SEARCH_MODE_DENSE).hits
    assert {h.chunk_id for h in hits if h.doc_id == "cooking-0"} == new


def _doc_ids(client, query, **fields):
    return {h.doc_id for h in client.search(query, k=20, **fields).hits}


def test_what_one_replica_writes_the_other_serves(replicas):
    (_, a), (_, b) = replicas
    a.ingest(topic_documents())
    assert "cooking-0" in _doc_ids(b, "bread dough oven", mode=pb.SEARCH_MODE_HYBRID)
    assert b.get_document("", "cooking-0").document.text.startswith("Knead the dough")
    b.ingest([Document("", "cooking-0", "Sourdough needs a starter fed with flour and water.")])
    assert a.get_document("", "cooking-0").document.text.startswith("Sourdough")
    b.delete("", ["cooking-1"])
    assert not _doc_ids(a, "bread dough oven", mode=pb.SEARCH_MODE_BM25) & {"cooking-1"}
    # Both replicas' generations move with the other's commits.
    assert a.info().index_generation > 0 and b.info().index_generation > 0


def test_query_sets_are_shared(replicas, monkeypatch):
    monkeypatch.setattr(evaluation_service, "REFRESH_SECONDS", 0.0)
    (_, a), (_, b) = replicas
    a.ingest(topic_documents())
    a.register_query_set(epb.RegisterQuerySetRequest(name="shared", queries=[
        epb.LabeledQuery(query_id="q1", text="bread dough oven",
                         judgements=[epb.Judgement(target_id="cooking-0", relevance=1)])]))
    assert "shared" in {s.name for s in b.list_query_sets().sets}
    result = b.evaluate(epb.EvaluateRequest(query_set="shared", ks=[10]))
    assert result.evaluated_query_count == 1


def _beir_set(folder):
    folder.mkdir()
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "bread dough oven"}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tcooking-0\t1\n")
    return folder


def test_evaluate_scheduled_runs_once_and_every_replica_exports(replicas, tmp_path, capsys):
    (server_a, a), (server_b, _) = replicas
    a.ingest(topic_documents())
    config = tmp_path / "settings.yaml"
    config.write_text(json.dumps({
        "store": {"backend": "milvus"}, "milvus": {"uri": str(tmp_path / "shared.db")},
        "chunker": {"window_tokens": 48, "overlap_tokens": 8},
        "evaluation": {"query_sets": [{"name": "nightly", "path": str(_beir_set(tmp_path / "beir"))}]},
    }))
    assert cli.main(["evaluate-scheduled", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"evaluated": ["nightly"], "failed": []}
    # A replica exports what the job stored (its background loop calls this every 30 s).
    assert server_b.app.evaluations.sync_exported() == 1
    stored = server_b.app.store.records("evaluation_results")["nightly"]["figures"]
    ndcg = next(f["value"] for f in stored if (f["stage"], f["metric"], f["k"]) == ("dense", "ndcg", 10))
    gauge = server_b.app.telemetry.eval_quality.labels("nightly", "dense", "ndcg", "10")
    assert 0 < ndcg <= 1 and gauge._value.get() == ndcg
    assert server_b.app.evaluations.sync_exported() == 0  # nothing new


def test_evaluate_scheduled_refuses_the_embedded_store(tmp_path, capsys):
    config = tmp_path / "settings.yaml"
    config.write_text(json.dumps({"store": {"path": str(tmp_path / "store")}}))
    assert cli.main(["evaluate-scheduled", "--config", str(config)]) == 2
    assert "needs store.backend: milvus" in capsys.readouterr().err


def test_an_unreachable_milvus_stops_start_up_naming_the_setting(tmp_path, encoder):
    from server_settings import make_settings
    from retrieval_svc.app import App
    from retrieval_svc.errors import StartupError

    settings = make_settings(tmp_path / "unused", store={"backend": "milvus"},
                             milvus={"uri": "http://127.0.0.1:9", "timeout_seconds": 2.0})
    with pytest.raises(StartupError, match=r"^milvus.uri http://127.0.0.1:9: cannot open the Milvus store"):
        App(settings, encoder=encoder)


@pytest.mark.parametrize("changed", [{"bm25": {"stemmer": ""}}, {"bm25": {"k1": 0.9}},
                                     {"milvus": {"lexical": False}, "search": {"default_mode": "dense"}}])
def test_a_store_refuses_settings_its_chunks_were_not_made_with(start_server, tmp_path, encoder, changed):
    from server_settings import make_settings
    from retrieval_svc.app import App
    from retrieval_svc.errors import StartupError

    sections = {"store": {"backend": "milvus"}, "milvus": {"uri": str(tmp_path / "m.db")}}
    server, client = start_server(**sections)
    client.ingest(topic_documents(per_topic=1))
    server.stop(0)
    merged = {**sections, **{k: {**sections.get(k, {}), **v} for k, v in changed.items()}}
    with pytest.raises(StartupError, match="bm25 settings|was made with BM25"):
        App(make_settings(tmp_path / "unused", **merged), encoder=encoder)


def test_a_store_refuses_another_encoder_and_takes_the_same_weights_elsewhere(start_server, tmp_path, encoder):
    import dataclasses

    from retrieval_svc.app import App
    from retrieval_svc.errors import StartupError
    from server_settings import make_settings

    class Renamed:
        """The session's encoder under another identity."""

        def __init__(self, **identity) -> None:
            self.identity = dataclasses.replace(encoder.identity, **identity)
            self.dimension = encoder.dimension

        def encode(self, texts, *, is_query: bool):
            return encoder.encode(texts, is_query=is_query)

    sections = {"store": {"backend": "milvus"}, "milvus": {"uri": str(tmp_path / "m.db")}}
    server, client = start_server(**sections)
    client.ingest(topic_documents(per_topic=1))
    server.stop(0)
    with pytest.raises(StartupError, match="chunks embedded by .*, not by the configured encoder"):
        App(make_settings(tmp_path / "unused", **sections), encoder=Renamed(revision="0" * 64))
    # The same weights installed under another path open the store.
    _, moved = start_server(encoder_override=Renamed(name="/elsewhere/all-MiniLM-L6-v2"), **sections)
    assert moved.ingest(topic_documents(per_topic=1)).embedded_chunk_count == 0
