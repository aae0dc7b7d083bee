"""Retrieval-quality metrics with trec_eval semantics, addressed as strings.

A metric is named like ranx names it: ``"ndcg@10"``, ``"precision@5"``,
``"recall@10"``, ``"mrr@10"``, ``"hit_rate@10"``, ``"map"`` (whole list) or
``"map@10"``. Each is a tiny pure function ``(ranked_ids, judgements, k) -> float``
chosen from the explicit registry `METRICS`.

Conventions, the same as trec_eval 9 (and so pytrec_eval) with its default
``relevance_level`` 1:

- A judged id is *relevant* when its relevance is > 0. Relevance 0 and below
  (TREC "junk" grades) is not relevant and has no gain.
- ``ranked_ids`` is the returned list, best first, without duplicates (call
  `dedupe_by_document` at document level first; duplicates raise ValueError,
  as trec_eval refuses a run with a repeated docno).
- ``|relevant|`` counts every relevant judgement of the query, retrieved or not.
- A query with no relevant judgement has every metric 0.0 (recall and nDCG
  would be 0/0); `evaluate_run` leaves such queries out of the averages.

Correspondence with trec_eval measures (``trec_eval -m``):

=============  =====================  ==========================================
ours           trec_eval              note
=============  =====================  ==========================================
precision@k    P_k                    divides by k even when fewer are returned
recall@k       recall_k
ndcg@k         ndcg_cut_k             linear gain = relevance, log2 discount
mrr@k          recip_rank             ours stops at rank k; trec_eval has no
                                      cut-off, so they agree on runs cut to k
hit_rate@k     success_k
map            map
map@k          map_cut_k
=============  =====================  ==========================================
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Literal, Mapping, Sequence

Judgements = Mapping[str, int]
MetricFunction = Callable[[Sequence[str], Judgements, "int | None"], float]


def has_relevant(judgements: Judgements) -> bool:
    """True if at least one judgement has relevance > 0 (trec_eval relevance_level 1)."""
    return any(relevance > 0 for relevance in judgements.values())


def _num_relevant(judgements: Judgements) -> int:
    return sum(1 for relevance in judgements.values() if relevance > 0)


def _is_relevant(target_id: str, judgements: Judgements) -> bool:
    return judgements.get(target_id, 0) > 0


def precision(ranked_ids: Sequence[str], judgements: Judgements, k: int | None) -> float:
    """precision@k = |relevant in top k| / k (trec_eval P_k).

    The denominator is k even when fewer than k ids were returned: a short
    list is not rewarded for stopping early. With k None the whole returned
    list counts: |relevant returned| / |returned| (trec_eval set_P), 0 for an
    empty list.
    """
    hits = sum(1 for target_id in ranked_ids[:k] if _is_relevant(target_id, judgements))
    denominator = len(ranked_ids) if k is None else k
    return hits / denominator if denominator else 0.0


def recall(ranked_ids: Sequence[str], judgements: Judgements, k: int | None) -> float:
    """recall@k = |relevant in top k| / |relevant| (trec_eval recall_k); 0 if nothing is relevant."""
    num_relevant = _num_relevant(judgements)
    if num_relevant == 0:
        return 0.0
    hits = sum(1 for target_id in ranked_ids[:k] if _is_relevant(target_id, judgements))
    return hits / num_relevant


def ndcg(ranked_ids: Sequence[str], judgements: Judgements, k: int | None) -> float:
    """nDCG@k = DCG@k / IDCG@k (Järvelin & Kekäläinen 2002; trec_eval ndcg_cut_k).

    DCG@k = sum_{i=1..k} gain_i / log2(i + 1), gain_i = relevance of the id at
    rank i (linear gain, negative grades count 0, unjudged ids 0). IDCG@k is the
    DCG@k of the ideal ordering of *all* the query's judgements, retrieved or
    not. 0 when no judgement has positive relevance.
    """
    dcg = sum(max(judgements.get(target_id, 0), 0) / math.log2(rank + 1)
              for rank, target_id in enumerate(ranked_ids[:k], start=1))
    ideal_gains = sorted((relevance for relevance in judgements.values() if relevance > 0), reverse=True)
    idcg = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains[:k], start=1))
    return dcg / idcg if idcg > 0 else 0.0


def mrr(ranked_ids: Sequence[str], judgements: Judgements, k: int | None) -> float:
    """MRR@k = 1 / rank of the first relevant id in the top k, else 0 (Voorhees, TREC-8 QA).

    trec_eval's recip_rank looks at the whole list; it equals ours on a list cut to k.
    """
    for rank, target_id in enumerate(ranked_ids[:k], start=1):
        if _is_relevant(target_id, judgements):
            return 1.0 / rank
    return 0.0


def average_precision(ranked_ids: Sequence[str], judgements: Judgements, k: int | None) -> float:
    """AP = sum over relevant ids at ranks i <= k of precision@i, divided by |relevant|.

    With k None the whole returned list counts (trec_eval map); with k it is
    trec_eval map_cut_k. Relevant ids never returned contribute 0, which is
    why the denominator is |relevant| and not the number found.
    """
    num_relevant = _num_relevant(judgements)
    if num_relevant == 0:
        return 0.0
    hits, precision_sum = 0, 0.0
    for rank, target_id in enumerate(ranked_ids[:k], start=1):
        if _is_relevant(target_id, judgements):
            hits += 1
            precision_sum += hits / rank
    return precision_sum / num_relevant


def hit_rate(ranked_ids: Sequence[str], judgements: Judgements, k: int | None) -> float:
    """hit_rate@k = 1 if any relevant id is in the top k, else 0 (trec_eval success_k)."""
    return 1.0 if any(_is_relevant(target_id, judgements) for target_id in ranked_ids[:k]) else 0.0


# name -> (function, cut-off rule): "required" metrics must be written name@k,
# "optional" ones may be (map is over the whole list, map@k is map_cut_k).
CutoffRule = Literal["required", "optional"]
METRICS: Mapping[str, tuple[MetricFunction, CutoffRule]] = {
    "precision": (precision, "required"),
    "recall": (recall, "required"),
    "ndcg": (ndcg, "required"),
    "mrr": (mrr, "required"),
    "hit_rate": (hit_rate, "required"),
    "map": (average_precision, "optional"),
}


def parse_metric(metric: str) -> tuple[str, int | None]:
    """'ndcg@10' -> ('ndcg', 10); 'map' -> ('map', None). ValueError names the bad string."""
    name, sep, cutoff = metric.partition("@")
    if name not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)} (written name@k, e.g. ndcg@10)")
    rule = METRICS[name][1]
    if not sep:
        if rule == "required":
            raise ValueError(f"metric {metric!r} needs a cut-off, e.g. {name}@10")
        return name, None
    if not cutoff.isdigit() or int(cutoff) < 1:
        raise ValueError(f"metric {metric!r}: cut-off {cutoff!r} is not a positive integer")
    return name, int(cutoff)


def dedupe_by_document(doc_ids: Iterable[str]) -> list[str]:
    """Keeps the first occurrence of each doc id, in rank order.

    At document level several chunks of one document may be returned; the
    document counts once, at the rank of its best chunk, and later chunks are
    dropped (neither relevant again nor penalised), so the ranks behind them
    move up.
    """
    return list(dict.fromkeys(doc_ids))


def evaluate_query(ranked_ids: Sequence[str], judgements: Judgements, metrics: Sequence[str]) -> dict[str, float]:
    """Each metric of one query's ranked list, keyed by the metric string as given.

    ValueError for an unknown metric or a repeated id in ``ranked_ids``.
    """
    parsed = [(metric, *parse_metric(metric)) for metric in metrics]
    ranked_ids = list(ranked_ids)
    seen: set[str] = set()
    for target_id in ranked_ids:
        if target_id in seen:
            raise ValueError(f"ranked list repeats {target_id!r}; deduplicate it first (dedupe_by_document)")
        seen.add(target_id)
    return {metric: METRICS[name][0](ranked_ids, judgements, k) for metric, name, k in parsed}


MissingQueries = Literal["zero", "skip"]


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Judgements],
    metrics: Sequence[str],
    *,
    missing: MissingQueries = "zero",
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Metrics of a whole run: (mean per metric, per-query values).

    Which queries count, explicitly:

    - Queries of ``qrels`` with no relevant judgement are skipped: they are
      absent from the per-query dict and the means (count them with
      `has_relevant`). This is the EvaluationService contract.
    - Queries of ``run`` that are not in ``qrels`` are ignored, as trec_eval does.
    - A judged query with relevant judgements but absent from ``run``:
      ``missing="zero"`` (default) scores it 0 on every metric, like
      ``trec_eval -c`` and like the service, which runs every query of a set;
      ``missing="skip"`` leaves it out, like plain trec_eval.

    Means are arithmetic means over the counted queries (0.0 when none count).
    """
    if missing not in ("zero", "skip"):
        raise ValueError(f"missing must be 'zero' or 'skip', got {missing!r}")
    for metric in metrics:
        parse_metric(metric)
    per_query: dict[str, dict[str, float]] = {}
    for query_id, judgements in qrels.items():
        if not has_relevant(judgements):
            continue
        if query_id not in run and missing == "skip":
            continue
        per_query[query_id] = evaluate_query(run.get(query_id, ()), judgements, metrics)
    count = len(per_query)
    means = {metric: math.fsum(values[metric] for values in per_query.values()) / count if count else 0.0
             for metric in metrics}
    return means, per_query
