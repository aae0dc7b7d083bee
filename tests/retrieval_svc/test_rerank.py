"""CrossEncoderReranker on the tiny local cross-encoder, and RerankStage budgets,
ordering and fallbacks with fake rerankers."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
import torch

from retrieval_svc.batching import DynamicBatcher
from retrieval_svc.domain import FusedCandidate, ModelIdentity, StageScore
from retrieval_svc.models import CrossEncoderReranker, weights_revision
from retrieval_svc.rerank import RerankOutcome, RerankStage

QUERY = "what is the capital of france"
PASSAGES = [
    "Paris is the capital and largest city of France.",
    "The stock market fell sharply on Monday.",
    "Giraffes are the tallest land animals.",
    "France borders Spain, Italy and Germany.",
]


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_path):
    return CrossEncoderReranker(
        str(tiny_cross_encoder_path), device="cpu", max_length=64, batch_size=2, max_passage_chars=40
    )


# The real model (tiny, random weights: mechanics only).


def test_scores_are_raw_logits_in_input_order_and_deterministic(reranker):
    scores = reranker.rerank(QUERY, PASSAGES)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert np.array_equal(scores, reranker.rerank(QUERY, PASSAGES))
    assert np.allclose(reranker.rerank(QUERY, PASSAGES[::-1]), scores[::-1], atol=1e-6)
    assert len(set(scores.tolist())) == 4  # inputs are told apart
    # Raw logits, not the sigmoid probabilities a 1-label CrossEncoder gives by default.
    probabilities = reranker.model.predict(
        [(QUERY, p[:40]) for p in PASSAGES], activation_fn=torch.nn.Sigmoid()
    )
    assert np.allclose(1 / (1 + np.exp(-scores)), probabilities, atol=1e-5)
    assert np.any((scores < 0) | (scores > 1))


def test_score_pairs_matches_rerank(reranker):
    pairs = [(QUERY, p) for p in PASSAGES] + [("giraffe height", PASSAGES[2])]
    scores = reranker.score_pairs(pairs)
    assert np.allclose(scores[:4], reranker.rerank(QUERY, PASSAGES), atol=1e-6)
    assert np.isclose(scores[4], reranker.rerank("giraffe height", [PASSAGES[2]])[0], atol=1e-6)
    assert reranker.score_pairs([]).shape == (0,)


def test_passages_are_cut_to_max_passage_chars(reranker):
    long = "Paris is the capital and largest city of France; " * 20
    assert np.allclose(reranker.rerank(QUERY, [long]), reranker.rerank(QUERY, [long[:40]]), atol=1e-6)
    assert not np.allclose(reranker.rerank(QUERY, [long[:30]]), reranker.rerank(QUERY, [long[:40]]))


def test_identity(reranker, tiny_cross_encoder_path):
    identity = reranker.identity
    assert identity.role == "reranker"
    assert identity.name == str(tiny_cross_encoder_path)
    assert re.fullmatch(r"[0-9a-f]{16}", identity.revision)
    assert identity.revision == weights_revision(tiny_cross_encoder_path)
    assert identity.device == "cpu"


def test_stage_with_real_model_and_batcher_agrees_with_direct_scores(reranker):
    fused = fused_list(4)
    texts = dict(zip(range(1, 5), PASSAGES))
    expected = reranker.rerank(QUERY, PASSAGES)
    with DynamicBatcher(reranker.score_pairs, max_batch_size=3, max_wait_ms=1, name="reranker") as batcher:
        outcome = RerankStage(reranker, max_candidates=10, max_passage_chars=40,
                              timeout_seconds=30, batcher=batcher).rerank(QUERY, fused, texts, top_n=4)
    assert not outcome.fallback and outcome.reranked_count == 4
    want = sorted(range(4), key=lambda i: -expected[i])
    assert [k for k, _ in outcome.order] == [i + 1 for i in want]
    assert np.allclose([s for _, s in outcome.order], expected[want], atol=1e-5)


# RerankStage with fakes.


def fused_list(n: int) -> list[FusedCandidate]:
    """Keys 1..n, fused best first with scores n/10 .. 1/10."""
    return [FusedCandidate(k, (n - k + 1) / 10, {"dense": StageScore(k, 0.0)}) for k in range(1, n + 1)]


def texts_for(n: int) -> dict[int, str]:
    return {k: f"passage {k} " + "x" * (10 * k) for k in range(1, n + 1)}


class FakeReranker:
    """Scores a passage by a lookup on its first two words; records every call."""

    identity = ModelIdentity("reranker", "fake", "0" * 16)

    def __init__(self, scores: dict[int, float] | None = None, delay: float = 0.0):
        self.scores = scores or {}
        self.delay = delay
        self.release = threading.Event()
        self.calls: list[tuple[str, list[str]]] = []

    def rerank(self, query, passages):
        self.calls.append((query, list(passages)))
        if self.delay:
            self.release.wait(self.delay)
        return np.array([self.scores.get(int(p.split()[1]), 0.0) for p in passages], dtype=np.float32)

    def score_pairs(self, pairs):
        return [float(self.rerank(q, [p])[0]) for q, p in pairs]


def stage(reranker, **kwargs) -> RerankStage:
    options = dict(max_candidates=100, max_passage_chars=1000, timeout_seconds=5.0)
    options.update(kwargs)
    return RerankStage(reranker, **options)


def test_head_is_reranked_and_tail_keeps_fused_order():
    fake = FakeReranker({1: 0.1, 2: 0.9, 3: 0.5})
    outcome = stage(fake).rerank("q", fused_list(5), texts_for(5), top_n=3)
    assert outcome == RerankOutcome(
        order=[(2, pytest.approx(0.9)), (3, pytest.approx(0.5)), (1, pytest.approx(0.1)), (4, 0.2), (5, 0.1)],
        reranked_count=3,
    )
    assert not outcome.fallback and outcome.reason == ""


def test_equal_scores_keep_fused_order():
    fake = FakeReranker({1: 0.5, 2: 0.7, 3: 0.5, 4: 0.5})
    outcome = stage(fake).rerank("q", fused_list(4), texts_for(4), top_n=4)
    assert [k for k, _ in outcome.order] == [2, 1, 3, 4]


def test_max_candidates_caps_what_the_model_sees():
    fake = FakeReranker({5: 9.0, 3: 1.0})
    outcome = stage(fake, max_candidates=3).rerank("q", fused_list(8), texts_for(8), top_n=50)
    assert len(fake.calls) == 1 and len(fake.calls[0][1]) == 3
    assert outcome.reranked_count == 3
    # Key 5 would win but lies beyond the budget: it stays in the fused tail.
    assert [k for k, _ in outcome.order] == [3, 1, 2, 4, 5, 6, 7, 8]


def test_max_passage_chars_cuts_passages():
    fake = FakeReranker()
    texts = texts_for(4)
    stage(fake, max_passage_chars=15).rerank("q", fused_list(4), texts, top_n=4)
    sent = fake.calls[0][1]
    assert sent == [texts[k][:15] for k in range(1, 5)]
    assert all(len(p) <= 15 for p in sent)


def test_top_n_zero_or_empty_list_skips_the_model():
    fake = FakeReranker()
    outcome = stage(fake).rerank("q", fused_list(3), texts_for(3), top_n=0)
    assert outcome == RerankOutcome([(1, 0.3), (2, 0.2), (3, 0.1)], 0)
    assert stage(fake).rerank("q", [], {}, top_n=10) == RerankOutcome([], 0)
    assert fake.calls == []


def test_timeout_returns_fused_order_within_budget():
    slow = FakeReranker({3: 9.0}, delay=10.0)
    rerank_stage = stage(slow, timeout_seconds=0.2)
    started = time.monotonic()
    outcome = rerank_stage.rerank("q", fused_list(3), texts_for(3), top_n=3)
    elapsed = time.monotonic() - started
    try:
        assert outcome.fallback and outcome.reason == "timeout"
        assert outcome.order == [(1, 0.3), (2, 0.2), (3, 0.1)] and outcome.reranked_count == 0
        assert 0.19 <= elapsed < 0.2 + 0.3
        # A second request queued behind the stuck call also times out, and is
        # cancelled: the model never sees it.
        again = rerank_stage.rerank("q2", fused_list(3), texts_for(3), top_n=3)
        assert again.reason == "timeout"
    finally:
        slow.release.set()
        time.sleep(0.05)
        rerank_stage.close()
    assert [q for q, _ in slow.calls] == ["q"]


def test_timeout_through_a_batcher():
    slow = FakeReranker(delay=10.0)
    with DynamicBatcher(slow.score_pairs, max_batch_size=8, max_wait_ms=0) as batcher:
        started = time.monotonic()
        outcome = stage(slow, timeout_seconds=0.15, batcher=batcher).rerank(
            "q", fused_list(3), texts_for(3), top_n=3
        )
        assert time.monotonic() - started < 0.15 + 0.3
        assert outcome.fallback and outcome.reason == "timeout"
        slow.release.set()


class Broken(FakeReranker):
    def rerank(self, query, passages):
        raise RuntimeError("CUDA out of memory")


class Stalled(FakeReranker):
    def rerank(self, query, passages):
        raise TimeoutError("device stalled")  # the model's own error, not the stage's budget


class TooFewScores(FakeReranker):
    def rerank(self, query, passages):
        return np.zeros(len(passages) - 1)


class NaNScores(FakeReranker):
    def rerank(self, query, passages):
        return np.full(len(passages), np.nan)


@pytest.mark.parametrize("reranker", [Broken(), Stalled(), TooFewScores(), NaNScores()],
                         ids=lambda r: type(r).__name__)
def test_model_errors_fall_back_to_fused_order(reranker):
    outcome = stage(reranker).rerank("q", fused_list(3), texts_for(3), top_n=3)
    assert outcome == RerankOutcome([(1, 0.3), (2, 0.2), (3, 0.1)], 0, fallback=True, reason="error")


def test_error_through_a_batcher():
    with DynamicBatcher(Broken().score_pairs, max_wait_ms=0) as batcher:
        outcome = stage(Broken(), batcher=batcher).rerank("q", fused_list(2), texts_for(2), top_n=2)
    assert outcome.fallback and outcome.reason == "error"


def test_missing_text_is_a_caller_error():
    with pytest.raises(ValueError, match=r"no passage text for candidate keys \[2\]"):
        stage(FakeReranker()).rerank("q", fused_list(3), {1: "passage 1", 3: "passage 3"}, top_n=3)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_candidates": 0}, {"max_passage_chars": 0}, {"timeout_seconds": 0}, {"timeout_seconds": float("inf")}],
)
def test_bad_budgets_rejected(kwargs):
    with pytest.raises(ValueError):
        stage(FakeReranker(), **kwargs)
