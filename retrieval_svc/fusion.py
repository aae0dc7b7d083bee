"""Fusion of per-retriever ranked lists into one list (the `Fuser` protocol).

Each method is a tiny pure function from one retriever's scores (best first) to
that retriever's contribution per candidate, chosen by name from `METHODS`
(as ranx does). A candidate's fused score is the weighted sum of its
contributions:

    fused(d) = sum over retrievers r of  w_r * contribution_r(d)

- ``rrf``: contribution = 1 / (rrf_k + rank_r(d)), rank 1-based; reciprocal rank
  fusion (Cormack, Clarke & Büttcher, SIGIR 2009), which uses k = 60.
- ``minmax``: contribution = (s - min_r) / (max_r - min_r). A list whose scores
  are all equal (max == min, e.g. a single item) gives every item 1.0: each was
  the best that retriever found.
- ``zscore``: contribution = (s - mean_r) / std_r, with the population standard
  deviation. A list with std 0 gives every item 0.0.

Min, max, mean and std are taken over the list the retriever returned (its
top-k), not over the whole collection.

A candidate missing from a retriever's list contributes 0 from that retriever,
the common convention (ranx, Elasticsearch and others do the same). For
``minmax`` that ranks it level with that retriever's worst candidate; for
``zscore`` level with an average one.

Weights default to 1 for a retriever that `weights` does not name; weights for
retrievers absent from `ranked` are checked but unused. A weight of 0 keeps that
retriever's candidates (and its `sources` entries) but adds nothing to scores.
The output is sorted by fused score, best first; ties go to the smaller key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from retrieval_svc.domain import Candidate, FusedCandidate, StageScore

DEFAULT_RRF_K = 60.0

# (scores of one retriever's list, best first; rrf_k) -> contribution per item.
# Only rrf uses rrf_k; the score-based methods ignore it.
ContributionFn = Callable[[Sequence[float], float], list[float]]


def rrf(scores: Sequence[float], rrf_k: float = DEFAULT_RRF_K) -> list[float]:
    """1 / (rrf_k + rank) for ranks 1..n; the scores themselves are not used."""
    return [1.0 / (rrf_k + rank) for rank in range(1, len(scores) + 1)]


def minmax(scores: Sequence[float], rrf_k: float = DEFAULT_RRF_K) -> list[float]:
    """(s - min) / (max - min); every item 1.0 when max == min."""
    _require_finite(scores, "minmax")
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    span = high - low
    return [(s - low) / span for s in scores]


def zscore(scores: Sequence[float], rrf_k: float = DEFAULT_RRF_K) -> list[float]:
    """(s - mean) / std with the population std; every item 0.0 when std == 0."""
    _require_finite(scores, "zscore")
    if not scores:
        return []
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0.0:
        return [0.0] * len(scores)
    return [(s - mean) / std for s in scores]


METHODS: Mapping[str, ContributionFn] = MappingProxyType(
    {"rrf": rrf, "minmax": minmax, "zscore": zscore}
)


@dataclass(frozen=True)
class ScoreFuser:
    """A `Fuser` for one method of `METHODS`; build it with `make_fuser`."""

    method: str
    rrf_k: float = DEFAULT_RRF_K

    def fuse(
        self,
        ranked: Mapping[str, Sequence[Candidate]],
        weights: Mapping[str, float],
    ) -> list[FusedCandidate]:
        """Merge per-retriever ranked lists (best first) into one list, best first.

        `sources` of each result maps every retriever that listed the candidate
        to its 1-based rank and raw score there. Raises ValueError for a negative
        or non-finite weight, a key listed twice by one retriever, or (minmax,
        zscore) a non-finite score.
        """
        contribute = METHODS[self.method]
        checked = {name: _check_weight(name, w) for name, w in weights.items()}
        scores: dict[int, float] = {}
        sources: dict[int, dict[str, StageScore]] = {}
        for name, candidates in ranked.items():
            weight = checked.get(name, 1.0)
            contributions = contribute([c.score for c in candidates], self.rrf_k)
            for rank, (candidate, contribution) in enumerate(zip(candidates, contributions), start=1):
                seen = sources.setdefault(candidate.key, {})
                if name in seen:
                    raise ValueError(
                        f"retriever {name!r} lists key {candidate.key} twice "
                        f"(ranks {seen[name].rank} and {rank}); each list must hold distinct keys"
                    )
                seen[name] = StageScore(rank, candidate.score)
                scores[candidate.key] = scores.get(candidate.key, 0.0) + weight * contribution
        fused = [FusedCandidate(key, score, sources[key]) for key, score in scores.items()]
        fused.sort(key=lambda c: (-c.score, c.key))
        return fused


def make_fuser(method: str, rrf_k: float = DEFAULT_RRF_K) -> ScoreFuser:
    """The fuser for `method` ("rrf", "minmax" or "zscore").

    Raises ValueError for an unknown method or rrf_k <= 0 (or not finite).
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown fusion method {method!r}; expected one of {', '.join(sorted(METHODS))}"
        )
    try:
        k = float(rrf_k)
    except (TypeError, ValueError):
        k = math.nan
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"rrf_k must be a finite number > 0, got {rrf_k!r}")
    return ScoreFuser(method, k)


def _check_weight(name: str, weight: float) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"fusion weight for {name!r} must be a finite number >= 0, got {weight!r}")
    return value


def _require_finite(scores: Sequence[float], method: str) -> None:
    for i, s in enumerate(scores):
        if not math.isfinite(s):
            raise ValueError(f"{method} fusion needs finite scores; item {i} has score {s!r}")


__all__ = ["DEFAULT_RRF_K", "METHODS", "ScoreFuser", "make_fuser", "rrf", "minmax", "zscore"]
