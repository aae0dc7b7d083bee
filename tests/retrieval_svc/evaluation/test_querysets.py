"""Query-set loaders (BEIR, TREC) and validation, on small files written to tmp_path."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from retrieval_svc.evaluation.querysets import (
    LabeledQuery, QuerySet, load_beir, load_trec, validate_query_set,
)


def write_beir(root, queries, qrels_lines, split="test"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "queries.jsonl").write_text(
        "".join((q if isinstance(q, str) else json.dumps(q)) + "\n" for q in queries), encoding="utf-8")
    (root / "qrels" / f"{split}.tsv").write_text("".join(line + "\n" for line in qrels_lines), encoding="utf-8")
    return root


BEIR_QUERIES = [
    {"_id": "1", "text": "first query", "metadata": {"orig_id": "001"}},
    {"_id": "2", "text": "unjudged query"},
    {"_id": 3, "text": "  third query  "},  # numeric id, padded text
]
BEIR_QRELS = ["query-id\tcorpus-id\tscore", "3\tdocA\t2", "1\tdocB\t1", "1\tdocC\t0", "", "3\tdocB\t1"]


# --- BEIR ------------------------------------------------------------------------


def test_load_beir_keeps_judged_queries_in_file_order(tmp_path):
    root = write_beir(tmp_path / "tiny-set", BEIR_QUERIES, BEIR_QRELS)
    qs = load_beir(root)
    assert (qs.name, qs.namespace, qs.level, qs.source) == ("tiny-set", "default", "document", str(root))
    assert [q.query_id for q in qs.queries] == ["1", "3"]
    assert qs.queries[0] == LabeledQuery("1", "first query", {"docB": 1, "docC": 0})
    assert qs.queries[1].text == "third query"
    assert dict(qs.queries[1].judgements) == {"docA": 2, "docB": 1}


def test_load_beir_options(tmp_path):
    root = write_beir(tmp_path / "set", BEIR_QUERIES, ["query-id\tcorpus-id\tscore", "2\tdocX\t1"], split="dev")
    qs = load_beir(root, split="dev", name="mine", namespace="papers", level="chunk")
    assert (qs.name, qs.namespace, qs.level) == ("mine", "papers", "chunk")
    assert [q.query_id for q in qs.queries] == ["2"]


def test_load_beir_missing_split_names_the_splits_present(tmp_path):
    root = write_beir(tmp_path / "set", BEIR_QUERIES, BEIR_QRELS)
    with pytest.raises(FileNotFoundError, match=r"split 'train'.*splits present: test"):
        load_beir(root, split="train")


def test_load_beir_drops_qrels_of_unknown_queries_with_a_warning(tmp_path, caplog):
    root = write_beir(tmp_path / "set", BEIR_QUERIES, BEIR_QRELS + ["99\tdocA\t1"])
    with caplog.at_level(logging.WARNING):
        qs = load_beir(root)
    assert [q.query_id for q in qs.queries] == ["1", "3"]
    assert "1 judged queries are not in" in caplog.text and "'99'" in caplog.text


def test_load_beir_stores_negative_grades_as_not_relevant(tmp_path):
    root = write_beir(tmp_path / "set", BEIR_QUERIES, ["1\tdocA\t-2", "1\tdocB\t1"])  # and no header
    assert dict(load_beir(root).queries[0].judgements) == {"docA": 0, "docB": 1}


@pytest.mark.parametrize(("queries", "qrels", "message"), [
    (BEIR_QUERIES, ["query-id\tcorpus-id\tscore", "1\tdocA"], r"test\.tsv:2: expected 3 fields"),
    (BEIR_QUERIES, ["query-id\tcorpus-id\tscore", "1\tdocA\t1", "1\tdocB\tyes"],
     r"test\.tsv:3: relevance 'yes' is not an integer"),
    (BEIR_QUERIES, ["1\tdocA\t1", "1\tdocA\t2"], r"test\.tsv:2: 'docA' is judged again for query '1'"),
    (BEIR_QUERIES, ["corpus-id\tquery-id\tscore"], r"test\.tsv:1: relevance 'score' is not an integer"),
    ([BEIR_QUERIES[0], "{not json"], ["1\tdocA\t1"], r"queries\.jsonl:2: not valid JSON"),
    ([BEIR_QUERIES[0], "[1, 2]"], ["1\tdocA\t1"], r"queries\.jsonl:2: expected a JSON object"),
    ([{"text": "no id"}], ["1\tdocA\t1"], r"queries\.jsonl:1: query has no id"),
    ([{"_id": "1"}], ["1\tdocA\t1"], r"queries\.jsonl:1: query '1' has no text"),
    ([{"_id": "1", "text": "a"}, {"_id": "1", "text": "b"}], ["1\tdocA\t1"],
     r"queries\.jsonl:2: query id '1' repeats line 1"),
    ([{"_id": "1", "text": "   "}], ["1\tdocA\t1"], r"queries\.jsonl:1: query '1' has no text"),
    ([{"_id": "5", "text": "a"}], ["1\tdocA\t1"], r"no query of .*queries\.jsonl is judged"),
])
def test_load_beir_malformed_input_names_file_and_line(tmp_path, queries, qrels, message):
    root = write_beir(tmp_path / "set", queries, qrels)
    with pytest.raises(ValueError, match=message):
        load_beir(root)


def test_duplicate_identical_judgement_is_accepted(tmp_path):
    root = write_beir(tmp_path / "set", BEIR_QUERIES, ["1\tdocA\t1", "1\tdocA\t1"])
    assert dict(load_beir(root).queries[0].judgements) == {"docA": 1}


# --- TREC ------------------------------------------------------------------------

TREC_QRELS = "101 0 docA 1\n101 0 docB 0\n\n102 Q0 docC 2\n102 0 docD -1\n103 0 docA 1\n"


def test_load_trec_with_tsv_queries(tmp_path):
    (tmp_path / "topics.tsv").write_text("101\tfirst query\n102\tsecond\tquery with a tab\n104\tunjudged\n")
    (tmp_path / "qrels.robust").write_text(TREC_QRELS)
    qs = load_trec(tmp_path / "topics.tsv", tmp_path / "qrels.robust")
    assert qs.name == "qrels"
    assert [(q.query_id, q.text) for q in qs.queries] == [("101", "first query"), ("102", "second\tquery with a tab")]
    assert dict(qs.queries[1].judgements) == {"docC": 2, "docD": 0}  # -1 (junk) is stored as 0


def test_load_trec_with_jsonl_queries(tmp_path):
    lines = [{"query_id": "101", "text": "first"}, {"qid": 102, "query": "second"}, {"_id": "103", "text": "third"}]
    (tmp_path / "queries.txt").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (tmp_path / "qrels.txt").write_text(TREC_QRELS)
    qs = load_trec(tmp_path / "queries.txt", tmp_path / "qrels.txt", name="robust", namespace="news")
    assert (qs.name, qs.namespace) == ("robust", "news")
    assert [(q.query_id, q.text) for q in qs.queries] == [("101", "first"), ("102", "second"), ("103", "third")]


@pytest.mark.parametrize(("queries", "qrels", "message"), [
    ("101\tq\n", "101 0 docA\n", r"qrels\.txt:1: expected 4 fields \(qid iter docno rel\), got 3"),
    ("101\tq\n", "101 0 docA 1\n101 0 docB 1 extra\n", r"qrels\.txt:2: expected 4 fields"),
    ("101\tq\n", "101 0 docA 1.5\n", r"qrels\.txt:1: relevance '1.5' is not an integer"),
    ("101\tq\n101 no tab here\n", "101 0 docA 1\n", r"queries\.tsv:2: expected 'qid<TAB>text'"),
    ("\tno id\n", "101 0 docA 1\n", r"queries\.tsv:1: expected 'qid<TAB>text'"),
    ("101\t\n", "101 0 docA 1\n", r"queries\.tsv:1: query '101' has no text"),
])
def test_load_trec_malformed_input_names_file_and_line(tmp_path, queries, qrels, message):
    (tmp_path / "queries.tsv").write_text(queries)
    (tmp_path / "qrels.txt").write_text(qrels)
    with pytest.raises(ValueError, match=message):
        load_trec(tmp_path / "queries.tsv", tmp_path / "qrels.txt")


def test_load_trec_missing_file(tmp_path):
    (tmp_path / "qrels.txt").write_text(TREC_QRELS)
    with pytest.raises(FileNotFoundError):
        load_trec(tmp_path / "nope.tsv", tmp_path / "qrels.txt")


# --- domain objects and validation --------------------------------------------------


def test_query_set_objects_are_frozen_and_copy_their_inputs():
    judgements = {"d": 1}
    query = LabeledQuery("q", "text", judgements)
    judgements["d"] = 2
    assert query.judgements == {"d": 1}
    qs = QuerySet("set", "default", "document", [query], "upload")
    assert isinstance(qs.queries, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        qs.name = "other"
    assert dataclasses.asdict(qs)["queries"][0] == {"query_id": "q", "text": "text", "judgements": {"d": 1}}


def _set(name="set", level="document", queries=None):
    if queries is None:
        queries = (LabeledQuery("q1", "text", {"d1": 1}),)
    return QuerySet(name, "default", level, queries, "upload")


def test_validate_accepts_a_query_without_relevant_judgements():
    validate_query_set(_set(queries=(LabeledQuery("q1", "text", {"d1": 0}), LabeledQuery("q2", "text", {}))))


@pytest.mark.parametrize(("query_set", "message"), [
    (_set(name=""), "name is empty"),
    (_set(name="  "), "name is empty"),
    (_set(level="passage"), "level 'passage'"),
    (_set(queries=()), "has no queries"),
    (_set(queries=(LabeledQuery("q1", "", {"d": 1}),)), r"queries\[0\] \(query_id 'q1'\) has no text"),
    (_set(queries=(LabeledQuery("q1", "ok", {}), LabeledQuery("q2", " \n", {}))), r"queries\[1\].*has no text"),
    (_set(queries=(LabeledQuery("q1", "ok", {"": 1}),)), "empty target id"),
    (_set(queries=(LabeledQuery("q1", "ok", {"d": -1}),)), r"relevance of 'd' is -1; it must be >= 0"),
    (_set(queries=(LabeledQuery("q1", "ok", {"d": 1.5}),)), "must be an integer"),
    (_set(queries=(LabeledQuery("", "ok", {}),)), "empty query_id"),
    (_set(queries=(LabeledQuery("q1", "a", {}), LabeledQuery("q1", "b", {}))), "repeats a query_id"),
])
def test_validate_rejects(query_set, message):
    with pytest.raises(ValueError, match=message):
        validate_query_set(query_set)
