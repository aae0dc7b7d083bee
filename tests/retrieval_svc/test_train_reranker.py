"""`retrieval-svc train-reranker`: the gate (a model that does not beat the fused ranking on
held-out queries is not installed), the install mechanics, and a server serving the installed
model and naming it. Tiny corpus and labels made here; seconds, not minutes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.cli import main
from retrieval_svc.domain import StageScore
from retrieval_svc.learned_rerank import (
    CURRENT, FUSION_FEATURES, MANIFEST, HeadCandidate, LearnedReranker, folder_revision, head_features,
    score_features,
)
from retrieval_svc.train_reranker import fit_scorer

from corpus import TOPICS, topic_documents

# Each query judges both documents of its topic relevant: the fused ranking already puts them
# first (nDCG@10 = 1 on every query), so no re-ranking can beat it.
QUERIES = {
    f"q-{topic}-{n}": (text, topic)
    for topic, sentence in TOPICS.items()
    for n, text in enumerate((sentence.split(",")[0], f"{topic} record notes"))
}


def _beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "queries.jsonl", "w") as f:
        for qid, (text, _) in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(folder / "qrels" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, (_, topic) in QUERIES.items():
            for i in range(2):
                f.write(f"{qid}\t{topic}-{i}\t1\n")
    return folder


@pytest.fixture
def served(start_server, tmp_path):
    server, client = start_server()
    client.ingest(topic_documents())
    return server, f"127.0.0.1:{server.port}", _beir(tmp_path / "labels")


def _train(target, labels, models_dir, *extra, capsys):
    code = main(["train-reranker", "--beir", str(labels), "--target", target, "--models-dir", str(models_dir),
                 "--top-n", "8", "--quiet", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_gate_refuses_a_model_that_does_not_beat_fused_and_installs_nothing(served, tmp_path, capsys):
    _, target, labels = served
    models = tmp_path / "models"
    code, summary = _train(target, labels, models, "--install", capsys=capsys)
    assert summary["heldout_fused"] == 1.0  # nothing can beat it
    assert summary["passed"] is False and code == 1
    assert "installed" not in summary
    assert not models.exists() or not any(models.iterdir())


def test_gate_refuses_an_untrained_cross_encoder(served, tmp_path, capsys, tiny_cross_encoder_path):
    _, target, labels = served
    models = tmp_path / "models"
    code, summary = _train(target, labels, models, "--install", "--stage", "cross-encoder", "--steps", "0",
                           "--base-model", str(tiny_cross_encoder_path), "--max-length", "32",
                           "--folds", "2", capsys=capsys)
    assert code == 1 and summary["passed"] is False
    assert list(summary["stages"]) == ["cross-encoder"]
    assert summary["stages"]["cross-encoder"]["heldout"] <= summary["heldout_fused"]
    assert summary["cross_encoder_training"]["steps"] == 0
    assert not models.exists() or not any(models.iterdir())


def test_forced_install_with_negative_margin_writes_versions_and_current(served, tmp_path, capsys):
    """--min-gain -1 lets any model through: the install mechanics, not a quality claim."""
    _, target, labels = served
    models = tmp_path / "models"
    code, summary = _train(target, labels, models, "--install", "--min-gain", "-1.0", capsys=capsys)
    assert code == 0 and summary["passed"] is True
    first = Path(summary["installed"])
    assert first.parent == models and first.name.startswith("reranker-v1-")
    assert (models / CURRENT).read_text().strip() == first.name
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["name"] == "reranker-v1-fusion" and manifest["features"] == list(FUSION_FEATURES)
    assert manifest["heldout"]["fused"] == summary["heldout_fused"]
    assert first.name.endswith(folder_revision(first)[:8])

    # Without --install nothing is written, even when the gate passes.
    code, summary = _train(target, labels, models, "--min-gain", "-1.0", capsys=capsys)
    assert code == 0 and "installed" not in summary
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == [CURRENT, first.name]

    code, summary = _train(target, labels, models, "--install", "--min-gain", "-1.0", "--seed", "1",
                           capsys=capsys)
    second = Path(summary["installed"])
    assert second.name.startswith("reranker-v2-")
    assert (models / CURRENT).read_text().strip() == second.name
    assert first.is_dir()  # older versions stay, for a rollback by editing CURRENT


def test_server_serves_the_installed_model_and_names_it(served, start_server, tmp_path, capsys):
    _, target, labels = served
    models = tmp_path / "models"
    _, summary = _train(target, labels, models, "--install", "--min-gain", "-1.0", capsys=capsys)
    installed = Path(summary["installed"])

    server, client = start_server(store_path=tmp_path / "store2", reranker={"model": str(models)})
    client.ingest(topic_documents())
    query = "interest rates and inflation"
    fused = client.search(query, k=8, mode=pb.SEARCH_MODE_HYBRID, rerank=False)
    reranked = client.search(query, k=8, mode=pb.SEARCH_MODE_HYBRID, rerank=True, rerank_top_n=8)
    assert reranked.reranked and not reranked.rerank_fallback
    rerankers = [m for m in reranked.models if m.role == "reranker"]
    assert [(m.name, m.revision) for m in rerankers] == [("reranker-v1-fusion", folder_revision(installed))]

    # The served order is the installed scorer's order over the fused head's features.
    def view(stage):
        return StageScore(stage.rank, stage.score) if stage.rank else None

    head = [HeadCandidate(h.fused.score, view(h.dense), view(h.bm25)) for h in fused.hits]
    scorer = json.loads((installed / MANIFEST).read_text())["scorer"]
    scores = score_features(scorer, head_features(head))
    expected = [fused.hits[i].chunk_id for i in sorted(range(len(head)), key=lambda i: (-scores[i], i))]
    assert [h.chunk_id for h in reranked.hits] == expected
    assert np.allclose([h.rerank.score for h in reranked.hits], sorted(scores, reverse=True))


def test_features_fill_an_absent_retriever_below_the_head():
    head = [HeadCandidate(1.5, StageScore(1, 0.9), StageScore(2, 8.0)),
            HeadCandidate(1.0, None, StageScore(1, 10.0)),
            HeadCandidate(0.5, StageScore(3, 0.4), None)]
    f = head_features(head)
    col = {name: f[:, i] for i, name in enumerate(FUSION_FEATURES)}
    assert f.shape == (3, len(FUSION_FEATURES))
    assert col["dense_present"].tolist() == [1, 0, 1]
    assert col["dense_score"].tolist() == [0.9, 0.4, 0.4]  # absent: the head's lowest
    assert col["bm25_relative"].tolist() == [0.8, 1.0, 0.8]  # absent: the lowest, 8.0
    assert col["bm25_inverse_rank"].tolist() == [0.5, 1.0, 0.0]
    assert col["fused_gap"].tolist() == [0.0, -0.5, -1.0]
    assert head_features(head, np.array([2.0, 0.0, 1.0])).shape == (3, len(FUSION_FEATURES) + 3)


def test_fitted_scorer_learns_a_signal_the_fused_order_misses():
    """Relevant candidates are the ones BM25 found; fused order puts them last. A scorer
    that learned nothing would keep that order."""
    rng = np.random.default_rng(0)
    features, gains = [], []
    for _ in range(30):
        head = [HeadCandidate(1.0 - i / 10, StageScore(i + 1, 0.8 - i / 20),
                              StageScore(i + 1, 5.0) if i >= 6 else None) for i in range(8)]
        features.append(head_features(head) + rng.normal(0, 1e-3, (8, len(FUSION_FEATURES))))
        gains.append(np.array([0.0] * 6 + [1.0, 1.0]))
    scorer = fit_scorer(features, gains)
    scores = score_features(scorer, features[0])
    assert set(np.argsort(-scores)[:2]) == {6, 7}


def test_a_models_folder_without_current_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no installed reranker"):
        LearnedReranker(tmp_path, device="cpu")
    (tmp_path / CURRENT).write_text("reranker-v9-missing\n")
    with pytest.raises(ValueError, match="not an installed reranker"):
        LearnedReranker(tmp_path, device="cpu")
