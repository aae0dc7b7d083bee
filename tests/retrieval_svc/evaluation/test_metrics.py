"""Metrics: hand-computed cases, run-level semantics, and parity with trec_eval (pytrec_eval) and ranx."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval_svc.evaluation.metrics import (
    METRICS, dedupe_by_document, evaluate_query, evaluate_run, has_relevant, parse_metric,
)

KS = (1, 3, 5, 10)
TOLERANCE = 1e-9

# --- hand-computed -----------------------------------------------------------------

# Relevant: a (3), d (2), c (1); b is judged not relevant; x is unjudged.
JUDGEMENTS = {"a": 3, "b": 0, "c": 1, "d": 2}
RANKED = ["b", "a", "x", "c"]


@pytest.mark.parametrize(("metric", "expected"), [
    ("precision@1", 0.0),
    ("precision@3", 1 / 3),
    ("precision@10", 2 / 10),  # divides by k, not by the 4 returned
    ("recall@3", 1 / 3),
    ("recall@4", 2 / 3),
    ("mrr@1", 0.0),
    ("mrr@2", 1 / 2),
    ("hit_rate@1", 0.0),
    ("hit_rate@2", 1.0),
    ("map", (1 / 2 + 2 / 4) / 3),
    ("map@3", (1 / 2) / 3),
    ("ndcg@2", (3 / math.log2(3)) / (3 + 2 / math.log2(3))),
    ("ndcg@4", (3 / math.log2(3) + 1 / math.log2(5)) / (3 + 2 / math.log2(3) + 1 / 2)),
])
def test_hand_computed_values(metric, expected):
    assert evaluate_query(RANKED, JUDGEMENTS, [metric])[metric] == pytest.approx(expected, abs=TOLERANCE)


def test_precision_without_a_cut_off_is_over_the_returned_list():
    # Called directly (the string "precision" needs a cut-off): trec_eval set_P.
    precision = METRICS["precision"][0]
    assert precision(RANKED, JUDGEMENTS, None) == pytest.approx(2 / 4)
    assert precision([], JUDGEMENTS, None) == 0.0


def test_ideal_dcg_uses_judgements_that_were_not_retrieved():
    # Only the grade-1 document is found, at rank 1; the grade-3 one exists but is missing.
    value = evaluate_query(["low"], {"low": 1, "high": 3}, ["ndcg@2"])["ndcg@2"]
    assert value == pytest.approx(1 / (3 + 1 / math.log2(3)))


def test_negative_grades_are_not_relevant_and_have_no_gain():
    values = evaluate_query(["junk", "a"], {"junk": -2, "a": 1}, ["ndcg@2", "precision@1", "mrr@2"])
    assert values == pytest.approx({"ndcg@2": 1 / math.log2(3), "precision@1": 0.0, "mrr@2": 0.5})


def test_empty_ranking_and_query_without_relevant_judgement_score_zero():
    metrics = ["ndcg@5", "precision@5", "recall@5", "mrr@5", "hit_rate@5", "map"]
    assert evaluate_query([], JUDGEMENTS, metrics) == {m: 0.0 for m in metrics}
    assert evaluate_query(["a", "b"], {"a": 0, "b": 0}, metrics) == {m: 0.0 for m in metrics}


def test_results_are_keyed_by_the_metric_strings_given():
    assert list(evaluate_query(RANKED, JUDGEMENTS, ["map", "ndcg@10", "ndcg@1"])) == ["map", "ndcg@10", "ndcg@1"]


@pytest.mark.parametrize(("metric", "message"), [
    ("ndcg", "needs a cut-off"),
    ("ndcg@0", "not a positive integer"),
    ("ndcg@-1", "not a positive integer"),
    ("ndcg@ten", "not a positive integer"),
    ("NDCG@10", "unknown metric"),
    ("bpref", "unknown metric"),
])
def test_bad_metric_names_are_rejected(metric, message):
    with pytest.raises(ValueError, match=message):
        evaluate_query(RANKED, JUDGEMENTS, [metric])


def test_parse_metric():
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric("map") == ("map", None)
    assert parse_metric("map@5") == ("map", 5)
    assert set(METRICS) == {"precision", "recall", "ndcg", "mrr", "hit_rate", "map"}


def test_duplicate_ids_in_a_ranking_are_rejected():
    with pytest.raises(ValueError, match="repeats 'a'.*dedupe_by_document"):
        evaluate_query(["a", "b", "a"], JUDGEMENTS, ["precision@3"])


def test_dedupe_by_document_keeps_first_occurrence_in_rank_order():
    assert dedupe_by_document(["d1", "d2", "d1", "d3", "d2", "d1"]) == ["d1", "d2", "d3"]
    assert dedupe_by_document(iter([])) == []
    # A document counts once: the second chunk of relevant d1 is neither a hit nor a miss.
    ranked = dedupe_by_document(["d1", "d1", "d2"])
    assert evaluate_query(ranked, {"d1": 1, "d2": 1}, ["precision@2"])["precision@2"] == 1.0


def test_has_relevant():
    assert has_relevant({"a": 0, "b": 2})
    assert not has_relevant({"a": 0})
    assert not has_relevant({})


# --- run level ---------------------------------------------------------------------

QRELS = {
    "found": {"a": 1},
    "missed": {"a": 1, "b": 1},
    "no_relevant": {"a": 0},
    "absent_from_run": {"z": 1},
}
RUN = {"found": ["a"], "missed": ["x"], "no_relevant": ["a"], "not_in_qrels": ["a"]}


def test_evaluate_run_skips_queries_without_relevant_judgements_and_zeroes_missing_ones():
    means, per_query = evaluate_run(RUN, QRELS, ["hit_rate@1", "recall@1"])
    assert set(per_query) == {"found", "missed", "absent_from_run"}
    assert per_query["absent_from_run"] == {"hit_rate@1": 0.0, "recall@1": 0.0}
    assert means == pytest.approx({"hit_rate@1": 1 / 3, "recall@1": 1 / 3})


def test_evaluate_run_can_leave_out_queries_missing_from_the_run_like_plain_trec_eval():
    means, per_query = evaluate_run(RUN, QRELS, ["hit_rate@1"], missing="skip")
    assert set(per_query) == {"found", "missed"}
    assert means == {"hit_rate@1": 0.5}


def test_evaluate_run_with_nothing_to_evaluate_has_zero_means():
    assert evaluate_run({}, {"q": {"a": 0}}, ["ndcg@10", "map"]) == ({"ndcg@10": 0.0, "map": 0.0}, {})


def test_evaluate_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="missing"):
        evaluate_run(RUN, QRELS, ["map"], missing="ignore")
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_run({}, {}, ["ndcg10"])


# --- parity with trec_eval (pytrec_eval) ---------------------------------------------

CUT_MEASURES = {"ndcg": "ndcg_cut", "precision": "P", "recall": "recall", "hit_rate": "success", "map": "map_cut"}
OURS_CUT = [f"{name}@{k}" for name in CUT_MEASURES for k in KS]


def _trec_name(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{CUT_MEASURES[name]}_{k}" if k else name


def _trec_run(run: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    # Strictly decreasing scores reproduce our order (trec_eval sorts by score).
    return {qid: {doc: float(len(ranked) - rank) for rank, doc in enumerate(ranked)} for qid, ranked in run.items()}


def _trec_eval(qrels, run, measures) -> dict[str, dict[str, float]]:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(_trec_run(run))


def _random_collection(rng: random.Random, queries: int, grades: list[int]):
    """Qrels and a run with the awkward cases: no relevant docs, empty and short runs, unjudged
    hits, judged queries absent from the run and run queries absent from the qrels."""
    docs = [f"d{i}" for i in range(40)]
    qrels, run = {}, {}
    for q in range(queries):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 15))
        qrels[qid] = {doc: rng.choice(grades) for doc in judged}
        if q % 7 == 0:
            qrels[qid] = {doc: 0 for doc in judged}
        if q % 11 == 5:
            continue  # judged but not retrieved at all
        run[qid] = rng.sample(docs, rng.choice([0, 1, 2, 4, 7, 9, 12, 20, 40]))
    run["only_in_run"] = docs[:5]
    return qrels, run


@pytest.mark.parity
@pytest.mark.parametrize(("grades", "seed"), [([0, 1], 1), ([0, 0, 1, 2, 3], 2), ([-1, 0, 1, 2, 3, 4], 3)],
                         ids=["binary", "graded", "graded-with-junk"])
def test_parity_with_trec_eval_on_random_runs(grades, seed):
    rng = random.Random(seed)
    qrels, run = _random_collection(rng, 150, grades)
    measures = {f"{m}.{','.join(map(str, KS))}" for m in CUT_MEASURES.values()} | {"map"}
    reference = _trec_eval(qrels, run, measures)
    metrics = OURS_CUT + ["map"]

    checked = 0
    for qid, expected in reference.items():
        ours = evaluate_query(run[qid], qrels[qid], metrics)
        for metric in metrics:
            assert ours[metric] == pytest.approx(expected[_trec_name(metric)], abs=TOLERANCE), (qid, metric)
        checked += 1
    assert checked > 100
    # The awkward cases really occurred.
    assert any(not has_relevant(qrels[qid]) for qid in reference)
    assert any(len(run[qid]) < 10 for qid in reference)
    assert any(len(run[qid]) == 0 for qid in reference)

    # Means: plain trec_eval averages over queries in the run; we also drop those without relevant docs.
    means, per_query = evaluate_run(run, qrels, metrics, missing="skip")
    counted = [qid for qid in reference if has_relevant(qrels[qid])]
    assert sorted(per_query) == sorted(counted)
    for metric in metrics:
        expected_mean = math.fsum(reference[qid][_trec_name(metric)] for qid in counted) / len(counted)
        assert means[metric] == pytest.approx(expected_mean, abs=TOLERANCE), metric

    # trec_eval -c: judged queries absent from the run count as 0, which is our default.
    means_zero, per_query_zero = evaluate_run(run, qrels, metrics)
    judged = [qid for qid in qrels if has_relevant(qrels[qid])]
    assert sorted(per_query_zero) == sorted(judged) and len(judged) > len(counted)
    for metric in metrics:
        expected_mean = math.fsum(reference[qid][_trec_name(metric)] for qid in counted) / len(judged)
        assert means_zero[metric] == pytest.approx(expected_mean, abs=TOLERANCE), metric


@pytest.mark.parity
@pytest.mark.parametrize("k", KS)
def test_mrr_at_k_matches_trec_eval_recip_rank_on_runs_cut_to_k(k):
    rng = random.Random(100 + k)
    qrels, run = _random_collection(rng, 150, [0, 0, 0, 1, 2])
    reference = _trec_eval(qrels, {qid: ranked[:k] for qid, ranked in run.items()}, {"recip_rank"})
    assert any(v["recip_rank"] > 0 for v in reference.values())
    for qid, expected in reference.items():
        ours = evaluate_query(run[qid], qrels[qid], [f"mrr@{k}"])[f"mrr@{k}"]
        assert ours == pytest.approx(expected["recip_rank"], abs=TOLERANCE), qid


@pytest.mark.parity
def test_mrr_without_a_real_cut_matches_trec_eval_recip_rank():
    rng = random.Random(7)
    qrels, run = _random_collection(rng, 60, [0, 0, 1])
    reference = _trec_eval(qrels, run, {"recip_rank"})
    for qid, expected in reference.items():
        ours = evaluate_query(run[qid], qrels[qid], ["mrr@1000"])["mrr@1000"]
        assert ours == pytest.approx(expected["recip_rank"], abs=TOLERANCE), qid


@st.composite
def _query_and_ranking(draw):
    docs = [f"d{i}" for i in range(12)]
    judged = draw(st.lists(st.sampled_from(docs), unique=True, max_size=12))
    judgements = {doc: draw(st.integers(min_value=-1, max_value=4)) for doc in judged}
    ranked = draw(st.lists(st.sampled_from(docs + ["u1", "u2"]), unique=True, max_size=14))
    return judgements, ranked


@pytest.mark.parity
@settings(max_examples=150, deadline=None)
@given(_query_and_ranking())
def test_parity_with_trec_eval_on_generated_queries(case):
    judgements, ranked = case
    if not judgements:
        return  # trec_eval needs at least one judgement to know the query
    metrics = OURS_CUT + ["map"]
    measures = {f"{m}.{','.join(map(str, KS))}" for m in CUT_MEASURES.values()} | {"map"}
    expected = _trec_eval({"q": judgements}, {"q": ranked}, measures)["q"]
    ours = evaluate_query(ranked, judgements, metrics)
    for metric in metrics:
        assert ours[metric] == pytest.approx(expected[_trec_name(metric)], abs=TOLERANCE), metric


# --- parity with ranx (a second reference, with MRR@k cut-offs of its own) ------------


@pytest.mark.parity
def test_parity_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = random.Random(11)
    qrels, run = _random_collection(rng, 80, [0, 1, 2, 3])
    # ranx needs a non-empty ranking and a relevant judgement per query.
    qids = [qid for qid in qrels if has_relevant(qrels[qid]) and run.get(qid)]
    metrics = [f"{name}@{k}" for name in ("ndcg", "mrr") for k in KS]
    ranx_run = ranx.Run(_trec_run({qid: run[qid] for qid in qids}))
    ranx.evaluate(ranx.Qrels({qid: qrels[qid] for qid in qids}), ranx_run, metrics, return_mean=False)
    for qid in qids:
        ours = evaluate_query(run[qid], qrels[qid], metrics)
        for metric in metrics:
            assert ours[metric] == pytest.approx(ranx_run.scores[metric][qid], abs=TOLERANCE), (qid, metric)
