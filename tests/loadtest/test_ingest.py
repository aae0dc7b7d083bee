"""The ingest beside the searches: the corpus and its passes, the batch schedule, the
report's arithmetic, and short low-rate runs against a real server on 127.0.0.1 (the
writes are committed, the JSON carries them, the searches still get a verdict, refused
batches are counted by status code)."""

from __future__ import annotations

import asyncio
import json

import pytest

from loadtest.cli import main as loadtest_main
from loadtest.driver import Outcome, run_open_loop
from loadtest.ingest import BatchCounts, Corpus, IngestLoad, IngestRun
from loadtest.ingest_report import summarize_ingest
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb


def _write_jsonl(path, docs: list[dict]) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return str(path)


def _new_docs(count: int, prefix: str = "ingest", sentences: int = 3) -> list[dict]:
    return [{"_id": f"{prefix}-{i}", "title": f"lighthouse log {i}",
             "text": " ".join(f"Lighthouse keeper entry {i}.{j} notes fog, a passing ship and the lamp oil."
                              for j in range(sentences))}
            for i in range(count)]


# --- corpus and schedule (no server) ---------------------------------------------------------


def test_corpus_cycles_with_pass_suffixes_and_skips_unparseable_records(tmp_path):
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"_id": "a", "text": "alpha", "namespace": "elsewhere"}) + "\n"
                      + "{not json\n\n"
                      + json.dumps({"_id": "b", "text": "beta"}) + "\n"
                      + json.dumps({"_id": "c", "text": "gamma"}) + "\n")
    corpus = Corpus(source)
    assert corpus.size is None  # nothing read yet
    assert [d.doc_id for d in corpus.documents(0, 2)] == ["a", "b"]
    assert corpus.size is None and corpus.pass_of(1) == 1  # not read to its end: still the first pass
    assert [d.doc_id for d in corpus.documents(2, 5)] == ["c", "a#pass2", "b#pass2", "c#pass2", "a#pass3"]
    assert (corpus.size, corpus.skipped, corpus.pass_of(6)) == (3, 1, 3)

    # Every document goes to the ingest's namespace, whatever the record says.
    load = IngestLoad(corpus, rate=4, batch_size=2, namespace="writes", first_document=5)
    requests = load.requests(2)
    assert [[d.doc_id for d in r.documents] for r in requests] == [["c#pass2", "a#pass3"], ["b#pass3", "c#pass3"]]
    assert {d.namespace for r in requests for d in r.documents} == {"writes"}
    assert {r.on_invalid for r in requests} == {pb.INVALID_DOCUMENT_POLICY_SKIP}

    # 4 docs/s in batches of 2: a batch every 0.5 s.
    assert load.offsets(2) == [0.0, 0.5, 1.0, 1.5] and load.documents_in(2) == 8
    with pytest.raises(ValueError, match="sends no batch in 0.2 s"):
        load.offsets(0.2)
    with pytest.raises(ValueError, match="ingest rate must be > 0"):
        IngestLoad(corpus, rate=0)
    with pytest.raises(ValueError, match="ingest: .*does not exist"):
        Corpus(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{broken\n")
    with pytest.raises(ValueError, match=r"no documents in .*empty.jsonl \(1 records did not parse\)"):
        Corpus(empty).documents(0, 1)


def test_pacers_share_a_start():
    seen = []

    async def call(i: int) -> str:
        return "OK"

    async def both():
        first = await run_open_loop([0.0, 0.05], call, on_start=seen.append)
        # A second pacer given an earlier start is late by the difference, and says so.
        second = await run_open_loop([0.0], call, start=seen[0])
        return first, second

    _, (late,) = asyncio.run(both())
    assert len(seen) == 1 and late.lateness >= 0.05 and late.intended == 0.0


def test_ingest_report_offers_by_intent_and_commits_by_answer(tmp_path):
    corpus = Corpus(_write_jsonl(tmp_path / "docs.jsonl", _new_docs(4)))
    load = IngestLoad(corpus, rate=4, batch_size=2)
    outcomes = (
        Outcome(0, "ingest", 0.0, 0.0, 0.3, "OK"),
        Outcome(1, "ingest", 0.5, 0.5, 1.4, "OK"),                    # offered in 0-1, committed in 1-2
        Outcome(2, "ingest", 1.0, 1.0, 1.01, "RESOURCE_EXHAUSTED"),
        Outcome(3, "ingest", 1.5, 1.5, 2.5, "DEADLINE_EXCEEDED"),
    )
    counts = {0: BatchCounts(added=2, chunks_embedded=5), 1: BatchCounts(unchanged=1, rejected=1)}
    report = summarize_ingest(IngestRun(load, 2.0, outcomes, counts), interval=1.0)
    first, second, tail = report.intervals
    assert (first.batches, first.documents, first.committed, first.codes) == (2, 4, 2, {"OK": 2})
    assert first.offered_rate == 4.0 and first.ok_latency.max == pytest.approx(0.9)
    assert (second.committed, second.refused, second.codes) == (1, 1, {"RESOURCE_EXHAUSTED": 1,
                                                                       "DEADLINE_EXCEEDED": 1})
    assert (tail.batches, tail.committed) == (0, 0)
    o = report.overall
    assert (o.documents, o.committed, o.offered_rate) == (8, 3, 4.0)
    assert o.committed_rate == pytest.approx(3 / 2.5)
    assert report.totals == BatchCounts(added=2, unchanged=1, rejected=1, chunks_embedded=5)
    assert report.outcome().startswith("ingest ran: 8 documents offered (4.0/s) in 4 IngestBatch calls; "
                                       "3 committed (1.2/s), 1 rejected by validation, 4 in failed batches")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["totals"]["committed"] == 3 and data["overall"]["codes"]["OK"] == 2
    assert "| all | 4.0 | 1.2 | 4 |" in report.format()


# --- against a real server ----------------------------------------------------------------------


def _queries(tmp_path) -> str:
    path = tmp_path / "queries.txt"
    path.write_text("bread in a hot oven\ninterest rates and inflation\nsails and wind\n")
    return str(path)


def _namespace(client, name: str):
    return next((ns for ns in client.info().namespaces if ns.name == name), None)


def test_ingest_beside_searches_commits_documents_and_reports_them(start_server, tmp_path, capsys):
    from corpus import topic_documents

    server, client = start_server(server={"metrics_port": 0},
                                  admission={"search_in_flight": 16, "queue_timeout_seconds": 10.0})
    topics = topic_documents()
    client.ingest(topics)
    source = _write_jsonl(tmp_path / "new.jsonl", _new_docs(6))
    out, plot = tmp_path / "run.json", tmp_path / "run.png"
    # 10 bm25 searches over 2 s beside 6 batches of 2 documents: 12 documents from a corpus
    # of 6, so the second pass writes ingest-0#pass2 .. ingest-5#pass2.
    rc = loadtest_main([
        "--target", f"127.0.0.1:{server.port}", "--queries", _queries(tmp_path), "--rate", "5",
        "--duration", "2", "--mode", "bm25", "--deadline-ms", "5000",
        "--ingest", source, "--ingest-rate", "6", "--ingest-batch", "2",
        "--metrics", f"http://127.0.0.1:{server.metrics_port}/metrics",
        "--slo-p99-ms", "60000", "--slo-max-error-ratio", "0", "--json", str(out), "--plot", str(plot)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["overall"]["codes"] == {"OK": 10} and report["slo"]["verdict"] == "PASS"
    ingest = report["ingest"]
    assert ingest["namespace"] == "default" and ingest["passes"] == 2 and ingest["corpus_documents"] == 6
    assert ingest["overall"]["codes"] == {"OK": 6} and ingest["overall"]["documents_offered"] == 12
    assert ingest["totals"]["added"] == ingest["totals"]["committed"] == 12
    assert ingest["totals"]["chunks_embedded"] >= 12
    assert ingest["overall"]["offered_docs_per_s"] == 6 and ingest["overall"]["ok_batch_latency"]["count"] == 6
    assert sum(w["documents_committed"] for w in ingest["intervals"]) == 12
    assert [w["batches"] for w in ingest["intervals"][:2]] == [3, 3]
    assert report["slo"]["judged_on"] == "searches" and report["slo"]["ingest"].startswith("ingest ran: 12 ")
    assert report["server"]["ingest_batch_by_code"] == {"OK": 6}

    # The writes are in the searched namespace, both passes of them.
    assert _namespace(client, "default").document_count == len(topics) + 12
    assert client.get_document("", "ingest-5#pass2").document.title == "lighthouse log 5"
    printed = capsys.readouterr().out
    assert "ingest beside the searches: 6 docs/s in IngestBatch calls of 2 into namespace 'default'" in printed
    assert "judged on the searches; beside them: ingest ran: 12 documents offered (6.0/s)" in printed
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # The same corpus again: every document is stored unchanged, nothing is embedded, and
    # the report says the write load was not real.
    assert loadtest_main(["--target", f"127.0.0.1:{server.port}", "--queries", _queries(tmp_path),
                          "--rate", "2", "--duration", "1", "--mode", "bm25", "--ingest", source,
                          "--ingest-rate", "4", "--ingest-batch", "2", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["ingest"]["totals"]["unchanged"] == 4
    assert "the ingest embedded nothing" in capsys.readouterr().out


def test_find_capacity_keeps_the_ingest_rate_at_every_step(start_server, tmp_path, capsys):
    from corpus import topic_documents

    server, client = start_server(admission={"search_in_flight": 16, "queue_timeout_seconds": 10.0})
    client.ingest(topic_documents())
    source = _write_jsonl(tmp_path / "new.jsonl", _new_docs(10))
    out = tmp_path / "capacity.json"
    # Steps of 0.5 s at 2 and 4 searches/s (8 is past --max-rate); one batch of 2 documents
    # per step, into a namespace of its own, continuing through the corpus.
    rc = loadtest_main([
        "--target", f"127.0.0.1:{server.port}", "--queries", _queries(tmp_path), "--mode", "bm25",
        "--rate", "2", "--duration", "0.5", "--max-rate", "5", "--find-capacity", "--deadline-ms", "5000",
        "--slo-max-error-ratio", "0", "--ingest", source, "--ingest-rate", "4", "--ingest-batch", "2",
        "--ingest-namespace", "ingest-side", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert [s["rate"] for s in result["steps"]] == [2, 4]
    assert [s["ingest"]["offered_docs_per_s"] for s in result["steps"]] == [4, 4]
    assert [s["ingest"]["codes"] for s in result["steps"]] == [{"OK": 1}, {"OK": 1}]
    assert result["report"]["ingest"]["first_document"] == 2  # the second step went on from the first
    side = _namespace(client, "ingest-side")
    assert side is not None and side.document_count == 4
    assert client.get_document("ingest-side", "ingest-3").document.doc_id == "ingest-3"
    printed = capsys.readouterr().out
    assert "ingest offered / committed docs/s" in printed and "capacity: 4 req/s" in printed


def test_refused_batches_are_counted_by_status_code(start_server, tmp_path):
    from corpus import topic_documents

    # One write at a time and no queue: a batch that arrives while another is being
    # embedded is refused at once. A batch of 3 is over limits.max_batch_documents.
    server, client = start_server(admission={"search_in_flight": 16, "queue_timeout_seconds": 10.0,
                                             "write_in_flight": 1, "write_queue": 0},
                                  limits={"max_batch_documents": 2, "max_document_chars": 6000})
    client.ingest(topic_documents(), batch_size=2)
    base = ["--target", f"127.0.0.1:{server.port}", "--queries", _queries(tmp_path), "--mode", "bm25",
            "--rate", "4", "--duration", "1", "--deadline-ms", "5000", "--slo-max-error-ratio", "0"]
    out = tmp_path / "run.json"

    # Long documents, two per batch, ten batches a second: they overlap.
    heavy = _write_jsonl(tmp_path / "heavy.jsonl", _new_docs(20, "heavy", sentences=60))
    assert loadtest_main(base + ["--ingest", heavy, "--ingest-rate", "20", "--ingest-batch", "2",
                                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    codes = report["ingest"]["overall"]["codes"]
    assert sum(codes.values()) == 10 and codes.get("OK", 0) >= 1 and codes.get("RESOURCE_EXHAUSTED", 0) >= 1
    assert report["ingest"]["overall"]["refused"] == codes["RESOURCE_EXHAUSTED"]
    assert report["ingest"]["totals"]["committed"] == 2 * codes["OK"]
    assert report["slo"]["verdict"] == "PASS"  # the searches were all answered

    # Over the batch limit: every batch is refused, nothing is committed.
    small = _write_jsonl(tmp_path / "small.jsonl", _new_docs(3, "small"))
    assert loadtest_main(base + ["--ingest", small, "--ingest-rate", "3", "--ingest-batch", "3",
                                 "--json", str(out)]) == 0
    ingest = json.loads(out.read_text())["ingest"]
    assert ingest["overall"]["codes"] == {"RESOURCE_EXHAUSTED": 1} and ingest["totals"]["committed"] == 0

    # A document over limits.max_document_chars: skipped (counted rejected) by default,
    # the whole batch INVALID_ARGUMENT with --ingest-on-invalid reject.
    mixed = _write_jsonl(tmp_path / "mixed.jsonl", [{"_id": "fine", "text": "a short note"},
                                                    {"_id": "huge", "text": "word " * 2000}])
    assert loadtest_main(base + ["--ingest", mixed, "--ingest-rate", "2", "--ingest-batch", "2",
                                 "--ingest-namespace", "mixed", "--json", str(out)]) == 0
    totals = json.loads(out.read_text())["ingest"]["totals"]
    assert (totals["committed"], totals["rejected"]) == (1, 1)
    assert loadtest_main(base + ["--ingest", mixed, "--ingest-rate", "2", "--ingest-batch", "2",
                                 "--ingest-namespace", "mixed-reject", "--ingest-on-invalid", "reject",
                                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["ingest"]["overall"]["codes"] == {"INVALID_ARGUMENT": 1}
    assert _namespace(client, "mixed-reject") is None


def test_ingest_usage_errors_exit_2(tmp_path, capsys):
    base = ["--target", "127.0.0.1:1", "--queries", _queries(tmp_path), "--rate", "1", "--duration", "1"]
    assert loadtest_main(base + ["--ingest", str(tmp_path / "nowhere.jsonl"), "--ingest-rate", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    source = _write_jsonl(tmp_path / "d.jsonl", _new_docs(1))
    assert loadtest_main(base + ["--ingest", source]) == 2
    assert "--ingest needs --ingest-rate" in capsys.readouterr().err
    assert loadtest_main(base + ["--ingest-rate", "5"]) == 2
    assert "need --ingest PATH" in capsys.readouterr().err
    assert loadtest_main(base + ["--ingest", source, "--ingest-rate", "1", "--ingest-batch", "8"]) == 2
    assert "sends no batch in 1 s" in capsys.readouterr().err
