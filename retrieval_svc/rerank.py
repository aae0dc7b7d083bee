"""The re-ranking stage: a cross-encoder re-orders the head of the fused list, within budgets.

Budgets:
- `max_candidates`: at most this many fused candidates are scored, whatever
  `top_n` a request asks for; the head re-ranked is the first
  min(top_n, max_candidates) fused candidates.
- `max_passage_chars`: each passage is cut to this many characters before it
  reaches the model.
- `timeout_seconds`: the caller gets an answer within this budget (measured
  from the call). Scoring runs on another thread (the dynamic batcher's, or
  the stage's own worker) and the caller waits on its future with a timeout.
  A late result is discarded; a request still queued is cancelled. A model call
  already running cannot be interrupted: it finishes on its own thread.

When the budget runs out or the model raises, the outcome is a fallback
(`fallback=True`, `reason="timeout"` or `"error"`) carrying the fused order
unchanged, so a search degrades to hybrid ranking instead of failing.

Order of a re-ranked outcome: the head sorted by cross-encoder score (best
first; equal scores keep their fused order), then the candidates beyond the
head in their fused order. Entries carry the score of the stage that placed
them: the cross-encoder logit for the first `reranked_count`, the fused score
for the rest. A reranker with a `combine(scores, head)` method (a learned
reranker, retrieval_svc.learned_rerank) turns the model's scores and the head's
fused candidates into the scores that order the head.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from retrieval_svc.batching import DynamicBatcher
from retrieval_svc.domain import FusedCandidate, ModelIdentity
from retrieval_svc.protocols import Reranker

log = logging.getLogger(__name__)

REASON_TIMEOUT = "timeout"
REASON_ERROR = "error"


@dataclass(frozen=True)
class RerankOutcome:
    """The order a re-ranking produced.

    `order` lists (key, score) best first, every fused candidate once. The first
    `reranked_count` entries were re-ranked and carry cross-encoder scores; the
    rest keep their fused order and fused scores. On a fallback `order` is the
    fused order, `reranked_count` is 0 and `reason` says why.
    """

    order: list[tuple[int, float]]
    reranked_count: int
    fallback: bool = False
    reason: str = ""  # "" | "timeout" | "error"


class RerankStage:
    """Re-ranks the head of a fused list with a `Reranker`, within budgets.

    With a `batcher`, scoring goes through it: it must map a list of
    (query, passage) pairs to one score per pair, e.g.
    ``DynamicBatcher(reranker.score_pairs, ...)``, so concurrent searches share
    model calls. Without one, the stage runs `reranker.rerank` on a worker
    thread of its own, one call at a time (the model serialises calls anyway).
    """

    def __init__(
        self,
        reranker: Reranker,
        max_candidates: int,
        max_passage_chars: int,
        timeout_seconds: float,
        batcher: DynamicBatcher | None = None,
    ) -> None:
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates!r}")
        if max_passage_chars < 1:
            raise ValueError(f"max_passage_chars must be >= 1, got {max_passage_chars!r}")
        if not (timeout_seconds > 0 and math.isfinite(timeout_seconds)):
            raise ValueError(f"timeout_seconds must be a finite number > 0, got {timeout_seconds!r}")
        self.reranker = reranker
        self.max_candidates = max_candidates
        self.max_passage_chars = max_passage_chars
        self.timeout_seconds = float(timeout_seconds)
        self.batcher = batcher
        # Scoring runs on the shared batcher (items: (query, passage) pairs) or, without
        # one, on the stage's own worker (items: whole (query, passages) calls): a batch
        # of one call at a time, on a daemon thread with a cancellable queue.
        self._own_worker = batcher is None
        self._scorer: DynamicBatcher = batcher if batcher is not None else DynamicBatcher(
            lambda calls: [reranker.rerank(query, passages) for query, passages in calls],
            max_batch_size=1, max_wait_ms=0.0, name="rerank-stage",
        )

    @property
    def identity(self) -> ModelIdentity:
        return self.reranker.identity

    def rerank(
        self,
        query: str,
        fused: Sequence[FusedCandidate],
        texts: Mapping[int, str],
        top_n: int,
    ) -> RerankOutcome:
        """Re-rank the first min(top_n, max_candidates) of `fused` (best first).

        `texts` maps each key of that head to its passage text; a missing one is
        a ValueError (the caller's bug, not the model's). Returns within about
        `timeout_seconds`, falling back to the fused order on timeout or error.
        """
        started = time.monotonic()
        if top_n < 0:
            raise ValueError(f"top_n must be >= 0, got {top_n!r}")
        head = list(fused[: min(top_n, self.max_candidates)])
        fused_order = [(c.key, c.score) for c in fused]
        if not head:
            return RerankOutcome(fused_order, 0)
        missing = [c.key for c in head if c.key not in texts]
        if missing:
            raise ValueError(f"no passage text for candidate keys {missing[:10]}")
        passages = [texts[c.key][: self.max_passage_chars] for c in head]

        try:
            future = self._submit(query, passages)
            remaining = self.timeout_seconds - (time.monotonic() - started)
            scores = future.result(timeout=max(0.0, remaining))
            if self._own_worker:
                scores = scores[0]  # the worker ran one call
            values = np.asarray(scores, dtype=np.float64).reshape(-1)
            if values.shape[0] != len(passages) or not np.all(np.isfinite(values)):
                raise ValueError(
                    f"reranker returned {values.shape[0]} scores for {len(passages)} passages "
                    f"({int(np.sum(~np.isfinite(values)))} not finite)"
                )
            combine = getattr(self.reranker, "combine", None)
            if combine is not None:  # a learned reranker (retrieval_svc.learned_rerank)
                values = np.asarray(combine(values, head), dtype=np.float64).reshape(-1)
                if values.shape[0] != len(passages) or not np.all(np.isfinite(values)):
                    raise ValueError(f"reranker combined {values.shape[0]} scores for {len(passages)} "
                                     "passages, or some are not finite")
        except FutureTimeoutError as exc:
            if future.done() and future.exception() is exc:  # the model raised a TimeoutError
                log.warning("re-ranking failed; returning the fused order", exc_info=True)
                return RerankOutcome(fused_order, 0, fallback=True, reason=REASON_ERROR)
            future.cancel()  # still queued: never runs; already running: result dropped
            log.warning("re-ranking %d passages ran past %.3f s; returning the fused order",
                        len(passages), self.timeout_seconds)
            return RerankOutcome(fused_order, 0, fallback=True, reason=REASON_TIMEOUT)
        except Exception:
            log.warning("re-ranking failed; returning the fused order", exc_info=True)
            return RerankOutcome(fused_order, 0, fallback=True, reason=REASON_ERROR)

        ranked = sorted(range(len(head)), key=lambda i: (-values[i], i))
        order = [(head[i].key, float(values[i])) for i in ranked]
        order.extend(fused_order[len(head):])
        return RerankOutcome(order, len(head))

    def _submit(self, query: str, passages: list[str]) -> Future:
        if self._own_worker:
            return self._scorer.submit([(query, passages)])
        return self._scorer.submit([(query, p) for p in passages])

    def close(self) -> None:
        """Stop the stage's own worker (a shared batcher is its owner's to close)."""
        if self._own_worker:
            self._scorer.close(timeout=0)


__all__ = ["REASON_ERROR", "REASON_TIMEOUT", "RerankOutcome", "RerankStage"]
