"""Labeled query sets and their loaders (BEIR and TREC layouts).

A query set is a list of queries with graded relevance judgements
(``target_id -> relevance``, relevance >= 0) over the documents (or chunks) of
one namespace. Loaders return validated sets; a malformed file raises
ValueError naming the file and the line, a missing one FileNotFoundError.

Negative grades in a qrels file (TREC "junk" documents, -1/-2) are stored as
0: trec_eval with its default relevance_level 1 treats them as not relevant
and gives them no gain, so every metric is unchanged, and the API rejects
negative relevance.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

log = logging.getLogger(__name__)

Level = Literal["document", "chunk"]
LEVELS: tuple[Level, ...] = ("document", "chunk")
_BEIR_QRELS_HEADER = ["query-id", "corpus-id", "score"]


@dataclass(frozen=True)
class LabeledQuery:
    """One query and its judgements: target id (doc_id or chunk_id) -> relevance (0 = not relevant).

    The judgements are copied, so the caller's dict can change without changing the query.
    """

    query_id: str
    text: str
    judgements: Mapping[str, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "judgements", dict(self.judgements))


@dataclass(frozen=True)
class QuerySet:
    """A named set of labeled queries whose judgements refer to `namespace`.

    `level` says whether the target ids are documents or chunks; `source` is
    "upload" or the path it was loaded from.
    """

    name: str
    namespace: str
    level: Level
    queries: tuple[LabeledQuery, ...]
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(self.queries))


def validate_query_set(query_set: QuerySet) -> None:
    """Raises ValueError, naming the set and the query, if the set is unusable.

    Checks: a non-empty name, a known level, at least one query, a non-empty
    and unique query_id and a non-blank text per query, and judgements with a
    non-empty target id and an integer relevance >= 0. A query may have no
    relevant judgement; the evaluation skips and counts it.
    """
    if not query_set.name or not query_set.name.strip():
        raise ValueError("query set name is empty")
    where = f"query set {query_set.name!r}"
    if query_set.level not in LEVELS:
        raise ValueError(f"{where}: level {query_set.level!r} is not one of {', '.join(LEVELS)}")
    if not query_set.queries:
        raise ValueError(f"{where} has no queries")
    seen: set[str] = set()
    for index, query in enumerate(query_set.queries):
        label = f"{where}: queries[{index}] (query_id {query.query_id!r})"
        if not query.query_id:
            raise ValueError(f"{where}: queries[{index}] has an empty query_id")
        if query.query_id in seen:
            raise ValueError(f"{label} repeats a query_id")
        seen.add(query.query_id)
        if not query.text or not query.text.strip():
            raise ValueError(f"{label} has no text")
        for target_id, relevance in query.judgements.items():
            if not target_id:
                raise ValueError(f"{label} has a judgement with an empty target id")
            if isinstance(relevance, bool) or not isinstance(relevance, int):
                raise ValueError(f"{label}: relevance of {target_id!r} must be an integer, got {relevance!r}")
            if relevance < 0:
                raise ValueError(f"{label}: relevance of {target_id!r} is {relevance}; it must be >= 0")


def load_beir(path: Path, split: str = "test", name: str | None = None,
              namespace: str = "default", level: Level = "document") -> QuerySet:
    """Loads a BEIR folder: ``queries.jsonl`` and ``qrels/<split>.tsv``.

    ``queries.jsonl`` has one JSON object per line with ``_id`` and ``text``;
    the qrels file is tab separated with the header ``query-id corpus-id score``.
    Only queries that appear in the qrels are kept, in queries.jsonl order;
    qrels rows of a query missing from queries.jsonl are dropped with a
    warning. `name` defaults to the folder's name.
    """
    path = Path(path)
    queries_path = path / "queries.jsonl"
    qrels_path = path / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (path / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"BEIR set {path}: no qrels for split {split!r} ({qrels_path} not found; "
                                f"splits present: {', '.join(splits) or 'none'})")
    qrels = _read_qrels(qrels_path, fields=3, header=_BEIR_QRELS_HEADER)
    texts = _read_queries(queries_path)
    return _build(texts, qrels, queries_path, qrels_path,
                  name=name or path.resolve().name, namespace=namespace, level=level, source=str(path))


def load_trec(queries_path: Path, qrels_path: Path, name: str | None = None,
              namespace: str = "default", level: Level = "document") -> QuerySet:
    """Loads TREC qrels (``qid iter docno rel``, whitespace separated; iter is ignored) and queries.

    Queries are either TSV lines ``qid<TAB>text`` or JSONL objects with an id
    (``_id``, ``query_id`` or ``qid``) and ``text`` (or ``query``); a file
    whose first non-blank character is ``{`` is read as JSONL. Only queries
    that appear in the qrels are kept. `name` defaults to the qrels file stem.
    """
    queries_path, qrels_path = Path(queries_path), Path(qrels_path)
    qrels = _read_qrels(qrels_path, fields=4, header=None)
    texts = _read_queries(queries_path)
    return _build(texts, qrels, queries_path, qrels_path,
                  name=name or qrels_path.stem, namespace=namespace, level=level, source=str(qrels_path))


# --- readers -------------------------------------------------------------------


def _read_qrels(path: Path, fields: int, header: list[str] | None) -> dict[str, dict[str, int]]:
    """qid -> {target_id: relevance} from a BEIR (3 fields) or TREC (4 fields) qrels file."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8-sig") as lines:
        for line_number, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts:
                continue
            if header is not None and line_number == 1 and [p.lower() for p in parts] == header:
                continue
            if len(parts) != fields:
                layout = "query-id corpus-id score" if fields == 3 else "qid iter docno rel"
                raise ValueError(f"{path}:{line_number}: expected {fields} fields ({layout}), "
                                 f"got {len(parts)}: {line.strip()[:120]!r}")
            query_id, target_id, grade = parts[0], parts[-2], parts[-1]
            try:
                relevance = int(grade)
            except ValueError:
                raise ValueError(f"{path}:{line_number}: relevance {grade!r} is not an integer") from None
            relevance = max(relevance, 0)
            judgements = qrels.setdefault(query_id, {})
            if judgements.get(target_id, relevance) != relevance:
                raise ValueError(f"{path}:{line_number}: {target_id!r} is judged again for query {query_id!r} "
                                 f"with relevance {relevance} (was {judgements[target_id]})")
            judgements[target_id] = relevance
    return qrels


def _read_queries(path: Path) -> dict[str, tuple[str, int]]:
    """query_id -> (text, line number) from a JSONL or TSV queries file."""
    with open(path, encoding="utf-8-sig") as f:
        content = f.read()
    if content.lstrip().startswith("{"):
        return _parse_jsonl_queries(path, content)
    return _parse_tsv_queries(path, content)


def _parse_jsonl_queries(path: Path, content: str) -> dict[str, tuple[str, int]]:
    queries: dict[str, tuple[str, int]] = {}
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
        query_id = next((record[key] for key in ("_id", "query_id", "qid") if key in record), None)
        text = next((record[key] for key in ("text", "query") if key in record), None)
        if query_id is None or str(query_id) == "":
            raise ValueError(f"{path}:{line_number}: query has no id (_id, query_id or qid)")
        if not isinstance(text, str):
            raise ValueError(f"{path}:{line_number}: query {str(query_id)!r} has no text string (text or query)")
        _add_query(queries, path, line_number, str(query_id), text)
    return queries


def _parse_tsv_queries(path: Path, content: str) -> dict[str, tuple[str, int]]:
    queries: dict[str, tuple[str, int]] = {}
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        query_id, tab, text = line.partition("\t")
        if not tab or not query_id.strip():
            raise ValueError(f"{path}:{line_number}: expected 'qid<TAB>text', got {line[:120]!r}")
        _add_query(queries, path, line_number, query_id.strip(), text)
    return queries


def _add_query(queries: dict[str, tuple[str, int]], path: Path, line_number: int, query_id: str, text: str) -> None:
    if query_id in queries:
        raise ValueError(f"{path}:{line_number}: query id {query_id!r} repeats line {queries[query_id][1]}")
    queries[query_id] = (text.strip(), line_number)


def _build(texts: dict[str, tuple[str, int]], qrels: dict[str, dict[str, int]], queries_path: Path,
           qrels_path: Path, *, name: str, namespace: str, level: Level, source: str) -> QuerySet:
    unknown = [query_id for query_id in qrels if query_id not in texts]
    if unknown:
        log.warning("%s: %d judged queries are not in %s and are dropped (first: %r)",
                    qrels_path, len(unknown), queries_path, unknown[0])
    queries = []
    for query_id, (text, line_number) in texts.items():
        if query_id not in qrels:
            continue
        if not text:
            raise ValueError(f"{queries_path}:{line_number}: query {query_id!r} has no text")
        queries.append(LabeledQuery(query_id, text, qrels[query_id]))
    if not queries:
        raise ValueError(f"no query of {queries_path} is judged in {qrels_path}")
    query_set = QuerySet(name, namespace, level, tuple(queries), source)
    validate_query_set(query_set)
    return query_set
