"""What each request asks: query texts replayed in order, and a request-kind mix.

Request i carries query ``texts[i % len(texts)]`` (in file order, wrapping
around) and kind ``mix.cycle()[i % len(cycle)]``, so a run is reproducible and
two runs at different rates send the same requests in the same order. A
``batch`` request carries the next `batch_size` queries from its own position.

Kinds (`MODES`): ``dense``, ``bm25``, ``hybrid`` (one Search in that mode,
re-ranking left to the server's configuration); ``rerank`` (a hybrid Search
with rerank=true: FAILED_PRECONDITION, an error, where the server has no
re-ranker); ``batch`` (one BatchSearch of hybrid queries, one request).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from retrieval_svc.evaluation.querysets import load_beir

MODES = ("dense", "bm25", "hybrid", "rerank", "batch")

Judgements = Mapping[str, int]


@dataclass(frozen=True)
class LabeledQueries:
    """Query texts, and where they came from a BEIR folder with a qrels split, each
    query's judgements (doc_id -> graded relevance), in the same order."""

    texts: tuple[str, ...]
    judgements: tuple[Judgements, ...] | None = None


def load_labeled(path: str | Path, split: str | None = None) -> LabeledQueries:
    """`load_queries`, plus the judgements when `path` is a BEIR folder and `split` is given
    (read by the evaluation service's own BEIR loader: the queries judged in
    qrels/<split>.tsv, in queries.jsonl order)."""
    path = Path(path)
    if not (split and path.is_dir() and (path / "queries.jsonl").exists()):
        return LabeledQueries(tuple(load_queries(path, split)))
    try:
        query_set = load_beir(path, split)
    except FileNotFoundError as exc:
        raise ValueError(f"queries: {exc}") from None
    if not query_set.queries:
        raise ValueError(f"queries: no queries in {path} (split {split!r})")
    return LabeledQueries(tuple(q.text for q in query_set.queries),
                          tuple(q.judgements for q in query_set.queries))


def load_queries(path: str | Path, split: str | None = None) -> list[str]:
    """Query texts from a BEIR folder (its queries.jsonl), a queries.jsonl file, or a
    text file with one query per line (blank lines skipped).

    `split` (BEIR folders only) keeps the queries that have judgements in
    qrels/<split>.tsv, e.g. "test", in queries.jsonl order.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"queries: {path} does not exist")
    if path.is_dir():
        jsonl = path / "queries.jsonl"
        if not jsonl.exists():
            raise ValueError(f"queries: {path} is a folder without queries.jsonl (not a BEIR folder)")
        texts = _read_beir_queries(jsonl, _judged_ids(path / "qrels" / f"{split}.tsv") if split else None)
    else:
        if split:
            raise ValueError("queries: --split needs a BEIR folder, not a file")
        if path.suffix == ".jsonl":
            texts = _read_beir_queries(path, None)
        else:
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"queries: no queries in {path}" + (f" (split {split!r})" if split else ""))
    return texts


def _judged_ids(qrels: Path) -> set[str]:
    if not qrels.exists():
        raise ValueError(f"queries: {qrels} does not exist")
    with open(qrels, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        return {row[0] for row in rows if row and row[0] != "query-id"}


def _read_beir_queries(path: Path, keep: set[str] | None) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"queries: {path}:{line_no}: not valid JSON ({exc.msg})") from None
            if keep is not None and str(record.get("_id")) not in keep:
                continue
            text = (record.get("text") or "").strip()
            if text:
                texts.append(text)
    return texts


@dataclass(frozen=True)
class ModeMix:
    """Integer weights per search mode, interleaved by smooth weighted round-robin
    (nginx's: each turn every mode gains its weight, the richest is picked and pays
    the total), so every window of sum(weights) requests holds each mode exactly
    `weight` times and the modes are spread out rather than in runs."""

    weights: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, spec: str) -> "ModeMix":
        """"hybrid" or "dense=1,bm25=1,hybrid=2"."""
        weights = []
        for part in spec.split(","):
            name, _, weight = part.strip().partition("=")
            name = name.strip().lower()
            if name not in MODES:
                raise ValueError(f"mix: unknown mode {name!r} in {spec!r}; modes are {', '.join(MODES)}")
            try:
                value = int(weight) if weight else 1
            except ValueError:
                raise ValueError(f"mix: weight of {name} must be a whole number, got {weight!r}") from None
            if value < 0:
                raise ValueError(f"mix: weight of {name} must be >= 0, got {value}")
            if value:
                weights.append((name, value))
        if not weights:
            raise ValueError(f"mix: {spec!r} gives no mode a positive weight")
        return cls(tuple(weights))

    def cycle(self) -> tuple[str, ...]:
        total = sum(w for _, w in self.weights)
        credit = {name: 0 for name, _ in self.weights}
        order = []
        for _ in range(total):
            for name, w in self.weights:
                credit[name] += w
            pick = max(credit, key=lambda name: credit[name])
            credit[pick] -= total
            order.append(pick)
        return tuple(order)

    def describe(self) -> str:
        return ",".join(f"{name}={w}" for name, w in self.weights)


@dataclass(frozen=True)
class RequestPlan:
    """Request i -> (query text, kind). `first_index` shifts the plan, so consecutive
    runs can continue through the query list instead of replaying its start."""

    texts: tuple[str, ...]
    modes: tuple[str, ...]
    first_index: int = 0

    @classmethod
    def build(cls, texts: list[str], mix: ModeMix, first_index: int = 0) -> "RequestPlan":
        if not texts:
            raise ValueError("a request plan needs at least one query")
        return cls(tuple(texts), mix.cycle(), first_index)

    def __call__(self, i: int) -> tuple[str, str]:
        return self.texts[self.query_index(i)], self.mode(i)

    def query_index(self, i: int, offset: int = 0) -> int:
        """Position in `texts` of request i's query (its offset-th, for a batch)."""
        return (i + self.first_index + offset) % len(self.texts)

    def mode(self, i: int) -> str:
        return self.modes[(i + self.first_index) % len(self.modes)]
