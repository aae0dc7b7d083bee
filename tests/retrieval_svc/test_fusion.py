"""Fusion formulas on hand-checked examples, weights, the missing-candidate
convention, ties and validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval_svc.domain import Candidate, StageScore
from retrieval_svc.fusion import METHODS, make_fuser, minmax, rrf, zscore

# Keys: A=1, B=2, C=3, D=4. C is only in dense, D only in bm25.
A, B, C, D = 1, 2, 3, 4
DENSE = [Candidate(A, 0.9), Candidate(B, 0.8), Candidate(C, 0.5)]
BM25 = [Candidate(B, 12.0), Candidate(D, 7.0), Candidate(A, 3.0)]
RANKED = {"dense": DENSE, "bm25": BM25}


def scores_by_key(fused):
    return {c.key: c.score for c in fused}


def test_rrf_hand_checked():
    fused = make_fuser("rrf").fuse(RANKED, {})
    # A: dense rank 1, bm25 rank 3; B: dense 2, bm25 1; C: dense 3 only; D: bm25 2 only.
    expected = {
        A: 1 / 61 + 1 / 63,  # 0.0322664...
        B: 1 / 62 + 1 / 61,  # 0.0325224...
        C: 1 / 63,  # 0.0158730...
        D: 1 / 62,  # 0.0161290...
    }
    assert scores_by_key(fused) == pytest.approx(expected, rel=1e-12)
    assert [c.key for c in fused] == [B, A, D, C]
    assert fused[0].score == pytest.approx(0.0325224748, abs=1e-10)


def test_rrf_uses_rrf_k_and_weights():
    fused = make_fuser("rrf", rrf_k=1).fuse(RANKED, {"dense": 2.0, "bm25": 0.5})
    expected = {
        A: 2.0 / 2 + 0.5 / 4,  # 1.125
        B: 2.0 / 3 + 0.5 / 2,  # 0.91666...
        C: 2.0 / 4,  # 0.5
        D: 0.5 / 3,  # 0.1666...
    }
    assert scores_by_key(fused) == pytest.approx(expected, rel=1e-12)
    assert [c.key for c in fused] == [A, B, C, D]


def test_rrf_sources_give_rank_and_raw_score():
    fused = {c.key: c for c in make_fuser("rrf").fuse(RANKED, {})}
    assert dict(fused[A].sources) == {"dense": StageScore(1, 0.9), "bm25": StageScore(3, 3.0)}
    assert dict(fused[B].sources) == {"dense": StageScore(2, 0.8), "bm25": StageScore(1, 12.0)}
    # Missing from a list: no entry for that retriever (and no contribution).
    assert dict(fused[C].sources) == {"dense": StageScore(3, 0.5)}
    assert dict(fused[D].sources) == {"bm25": StageScore(2, 7.0)}


def test_minmax_hand_checked():
    fused = make_fuser("minmax").fuse(RANKED, {})
    # dense 0.9, 0.8, 0.5 -> (s - 0.5) / 0.4: A 1.0, B 0.75, C 0.0
    # bm25 12, 7, 3 -> (s - 3) / 9: B 1.0, D 4/9, A 0.0
    expected = {A: 1.0 + 0.0, B: 0.75 + 1.0, C: 0.0, D: 4 / 9}
    assert scores_by_key(fused) == pytest.approx(expected, rel=1e-12)
    assert [c.key for c in fused] == [B, A, D, C]


def test_minmax_weights_change_the_winner():
    # dense weight 5: A = 5 * 1.0 = 5.0, B = 5 * 0.75 + 1.0 = 4.75
    fused = make_fuser("minmax").fuse(RANKED, {"dense": 5.0, "bm25": 1.0})
    assert scores_by_key(fused) == pytest.approx({A: 5.0, B: 4.75, C: 0.0, D: 4 / 9}, rel=1e-12)
    assert [c.key for c in fused] == [A, B, D, C]


def test_zscore_hand_checked():
    fused = make_fuser("zscore").fuse(RANKED, {})
    # dense: mean 0.73333, population std sqrt(0.0866667 / 3) = 0.16996732
    #   A 0.98058068, B 0.39223227, C -1.37281295
    # bm25: mean 7.33333, std sqrt(40.666667 / 3) = 3.68178701
    #   B 1.26750044, D -0.09053575, A -1.17696469
    expected = {
        A: 0.98058068 - 1.17696469,  # -0.19638401
        B: 0.39223227 + 1.26750044,  # 1.65973271
        C: -1.37281295,  # missing from bm25: + 0, i.e. level with an average bm25 hit
        D: -0.09053575,
    }
    assert scores_by_key(fused) == pytest.approx(expected, abs=1e-7)
    assert [c.key for c in fused] == [B, D, A, C]


def test_missing_candidate_contributes_zero():
    only_dense = make_fuser("minmax").fuse({"dense": DENSE}, {})
    both = make_fuser("minmax").fuse(RANKED, {})
    # C is absent from bm25, so its fused score is exactly its dense contribution.
    assert scores_by_key(both)[C] == scores_by_key(only_dense)[C]
    assert set(scores_by_key(both)) == {A, B, C, D}


def test_zero_weight_keeps_candidates_but_adds_nothing():
    fused = make_fuser("rrf").fuse(RANKED, {"bm25": 0.0})
    assert scores_by_key(fused)[D] == 0.0
    assert scores_by_key(fused)[A] == pytest.approx(1 / 61)
    assert dict(next(c for c in fused if c.key == D).sources) == {"bm25": StageScore(2, 7.0)}


def test_ties_broken_by_key_ascending():
    # Mirror-image lists: 9 and 5 both score 1/61 + 1/62.
    fused = make_fuser("rrf").fuse(
        {"dense": [Candidate(9, 1.0), Candidate(5, 0.5)], "bm25": [Candidate(5, 3.0), Candidate(9, 2.0)]},
        {},
    )
    assert fused[0].score == fused[1].score
    assert [c.key for c in fused] == [5, 9]


def test_minmax_constant_list_normalises_to_one():
    fused = make_fuser("minmax").fuse({"dense": [Candidate(7, 2.0), Candidate(4, 2.0)]}, {})
    assert [(c.key, c.score) for c in fused] == [(4, 1.0), (7, 1.0)]
    assert minmax([3.5]) == [1.0]


def test_zscore_constant_list_is_zero():
    assert zscore([2.0, 2.0, 2.0]) == [0.0, 0.0, 0.0]
    assert zscore([]) == []


def test_contribution_functions():
    assert rrf([0.3, 0.2], 60.0) == [1 / 61, 1 / 62]
    assert minmax([4.0, 2.0, 0.0]) == [1.0, 0.5, 0.0]
    # mean 2, population std sqrt(8/3)
    assert zscore([4.0, 2.0, 0.0]) == pytest.approx([2 / math.sqrt(8 / 3), 0.0, -2 / math.sqrt(8 / 3)])
    assert set(METHODS) == {"rrf", "minmax", "zscore"}


def test_empty_inputs():
    for method in METHODS:
        assert make_fuser(method).fuse({}, {}) == []
        assert make_fuser(method).fuse({"dense": [], "bm25": []}, {}) == []


@pytest.mark.parametrize("method", ["", "RRF", "wsum", "borda"])
def test_unknown_method_rejected(method):
    with pytest.raises(ValueError, match="unknown fusion method"):
        make_fuser(method)


@pytest.mark.parametrize("rrf_k", [0, -1.0, math.nan, math.inf])
def test_bad_rrf_k_rejected(rrf_k):
    with pytest.raises(ValueError, match="rrf_k must be"):
        make_fuser("rrf", rrf_k=rrf_k)


@pytest.mark.parametrize("weight", [-0.5, math.nan, math.inf])
def test_bad_weight_rejected(weight):
    with pytest.raises(ValueError, match="fusion weight for 'bm25'"):
        make_fuser("rrf").fuse(RANKED, {"dense": 1.0, "bm25": weight})


def test_duplicate_key_in_one_list_rejected():
    with pytest.raises(ValueError, match="lists key 1 twice"):
        make_fuser("rrf").fuse({"dense": [Candidate(1, 0.9), Candidate(1, 0.8)]}, {})


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_non_finite_score_rejected(method):
    with pytest.raises(ValueError, match="finite"):
        make_fuser(method).fuse({"dense": [Candidate(1, math.nan)]}, {})


lists = st.lists(
    st.tuples(st.integers(0, 30), st.floats(-100, 100, allow_nan=False)),
    max_size=12,
    unique_by=lambda t: t[0],
).map(lambda xs: [Candidate(k, s) for k, s in sorted(xs, key=lambda t: -t[1])])


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(sorted(METHODS)),
    dense=lists,
    bm25=lists,
    weights=st.dictionaries(st.sampled_from(["dense", "bm25"]), st.floats(0, 10)),
)
def test_fused_list_is_union_sorted_and_sources_consistent(method, dense, bm25, weights):
    fused = make_fuser(method).fuse({"dense": dense, "bm25": bm25}, weights)
    assert {c.key for c in fused} == {c.key for c in dense} | {c.key for c in bm25}
    assert fused == sorted(fused, key=lambda c: (-c.score, c.key))
    for name, candidates in (("dense", dense), ("bm25", bm25)):
        for rank, cand in enumerate(candidates, start=1):
            entry = next(c for c in fused if c.key == cand.key)
            assert entry.sources[name] == StageScore(rank, cand.score)
