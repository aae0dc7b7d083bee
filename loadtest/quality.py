"""Quality under load: nDCG@10 of sampled OK answers against the qrels.

Every `every`-th OK answer (in arrival order: the 1st, the every+1-th, ...) is
scored. Scoring is the evaluation service's, at document level: the hits'
doc_ids are deduplicated in rank order (`dedupe_by_document`), then
trec_eval's ndcg_cut_10 (`retrieval_svc.evaluation.metrics`):

    DCG@10 = sum_{i=1..10} rel_i / log2(i + 1)     rel_i = graded relevance in the qrels
    nDCG@10 = DCG@10 / IDCG@10                      IDCG over all the query's judgements

A query without a relevant judgement has no nDCG (0/0) and is not a sample,
as in the evaluation service. A BatchSearch answer gives one sample per query.
"""

from __future__ import annotations

from typing import Sequence

from loadtest.driver import Answered
from loadtest.queries import Judgements
from retrieval_svc.evaluation.metrics import dedupe_by_document, evaluate_query, has_relevant

METRIC = "ndcg@10"


class QualitySampler:
    """`on_ok` for `SearchCaller`; `scores` maps a request index to the nDCG@10 of its queries."""

    def __init__(self, judgements: Sequence[Judgements], every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"quality sample must be >= 1 (every Nth OK answer), got {every}")
        self.judgements = judgements
        self.every = every
        self.ok_seen = 0
        self.scores: dict[int, list[float]] = {}

    def __call__(self, i: int, answered: Answered) -> None:
        self.ok_seen += 1
        if (self.ok_seen - 1) % self.every:
            return
        values = [score(doc_ids, self.judgements[q]) for q, doc_ids in answered
                  if has_relevant(self.judgements[q])]
        if values:
            self.scores[i] = values


def score(doc_ids: Sequence[str], judgements: Judgements) -> float:
    """nDCG@10 of one answer's hits (doc_ids in rank order, chunks of one document repeated)."""
    return evaluate_query(dedupe_by_document(doc_ids), judgements, [METRIC])[METRIC]
