"""The open-loop load generator: schedules, percentiles, pacing on a fake clock, reports,
Prometheus deltas, SLO verdicts, the capacity search, and short low-rate runs against a
real in-process server (verdicts both ways, nDCG under load, the plot)."""

from __future__ import annotations

import asyncio
import json
import math
import random

import numpy as np
import pytest

from loadtest import metrics
from loadtest.capacity import search_rates
from loadtest.cli import main as loadtest_main
from loadtest.driver import Outcome, run_open_loop
from loadtest.queries import ModeMix, RequestPlan, load_labeled, load_queries
from loadtest.report import summarize
from loadtest.schedule import constant, make_schedule, poisson
from loadtest.slo import SLO, judge
from loadtest.stats import LatencySummary, percentile

# --- stats --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_percentile_matches_numpy_linear(n):
    rng = random.Random(n)
    values = [rng.expovariate(10.0) for _ in range(n)]
    for q in (0, 1, 25, 50, 90, 95, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-15)


def test_percentile_edges():
    assert math.isnan(percentile([], 50))
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    with pytest.raises(ValueError, match="in \\[0, 100\\]"):
        percentile([1.0], 101)
    summary = LatencySummary.of([0.001 * i for i in range(1, 101)])
    assert (summary.count, summary.max) == (100, 0.1)
    assert summary.p99 == pytest.approx(0.09901)
    assert summary.to_ms()["p50_ms"] == 50.5
    assert LatencySummary.of([]).to_ms()["p99_ms"] is None


# --- schedules ------------------------------------------------------------------------------


def test_constant_schedule_sends_rate_times_duration_evenly():
    offsets = constant(20, 3)
    assert len(offsets) == 60
    assert offsets[0] == 0 and offsets[-1] < 3
    assert np.allclose(np.diff(offsets), 0.05)
    assert len(constant(7.5, 2)) == 15
    with pytest.raises(ValueError, match="rate must be > 0"):
        constant(0, 1)


def test_poisson_schedule_is_seeded_and_has_the_right_rate():
    a, b = poisson(50, 20, seed=7), poisson(50, 20, seed=7)
    assert a == b and a != poisson(50, 20, seed=8)
    assert a == sorted(a) and a[0] > 0 and a[-1] < 20
    long = poisson(100, 100, seed=1)
    # Count ~ Poisson(10000): sd 100, so 5 sd either side.
    assert abs(len(long) - 10_000) < 500
    gaps = np.diff(long)
    assert gaps.mean() == pytest.approx(0.01, rel=0.05)
    # Exponential gaps: the standard deviation equals the mean (constant arrivals have 0).
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.1)
    with pytest.raises(ValueError, match="unknown arrival"):
        make_schedule("bursty", 1, 1)


# --- queries and the mode mix ----------------------------------------------------------------


def test_mode_mix_interleaves_exact_shares():
    mix = ModeMix.parse("dense=1,bm25=1,hybrid=2")
    cycle = mix.cycle()
    assert len(cycle) == 4 and sorted(cycle) == ["bm25", "dense", "hybrid", "hybrid"]
    assert cycle[0] != cycle[1]  # spread out, not hybrid, hybrid, dense, bm25
    assert ModeMix.parse("hybrid").cycle() == ("hybrid",)
    plan = RequestPlan.build(["q0", "q1", "q2"], mix)
    assert [plan(i) for i in range(5)] == [("q0", cycle[0]), ("q1", cycle[1]), ("q2", cycle[2]),
                                           ("q0", cycle[3]), ("q1", cycle[0])]
    assert RequestPlan.build(["q0", "q1", "q2"], mix, first_index=4)(0) == ("q1", cycle[0])
    assert RequestPlan.build(["q0"], ModeMix.parse("rerank=1,batch=1")).modes == ("rerank", "batch")
    for bad, message in (("sparse=1", "unknown mode"), ("dense=x", "whole number"), ("dense=0", "no mode")):
        with pytest.raises(ValueError, match=message):
            ModeMix.parse(bad)


def test_load_queries_beir_split_jsonl_and_text(tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "queries.jsonl").write_text("".join(
        json.dumps({"_id": str(i), "text": f"query {i}"}) + "\n" for i in range(5)))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n3\td\t1\n1\td\t1\n1\te\t1\n")
    assert load_queries(beir) == [f"query {i}" for i in range(5)]
    assert load_queries(beir, "test") == ["query 1", "query 3"]
    assert load_queries(beir / "queries.jsonl") == [f"query {i}" for i in range(5)]
    text = tmp_path / "q.txt"
    text.write_text("first\n\n  second  \n")
    assert load_queries(text) == ["first", "second"]
    with pytest.raises(ValueError, match="train.tsv does not exist"):
        load_queries(beir, "train")
    with pytest.raises(ValueError, match="needs a BEIR folder"):
        load_queries(text, "test")


# --- the pacer, on a fake clock -----------------------------------------------------------


class FakeTime:
    """A clock that moves only when the pacer sleeps; `stalls` make chosen sleeps overshoot,
    like a generator that was descheduled or an event loop busy with answers."""

    def __init__(self, start: float = 1000.0, stalls: dict[int, float] | None = None) -> None:
        self.now = start
        self.stalls = dict(stalls or {})
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.stalls.get(self.sleeps, 0.0)
        self.sleeps += 1
        await asyncio.sleep(0)


def test_pacer_counts_latency_from_the_intended_send_time():
    # 10 req/s; the sleep before request 1 overshoots by 250 ms, so requests 1-3 leave late
    # (2 and 3 at once, without sleeping: the pacer catches up rather than skipping).
    fake = FakeTime(stalls={0: 0.25})

    async def call(i: int) -> str:
        return "OK"  # answers take no (fake) time: all latency is the generator's lateness

    outcomes = asyncio.run(run_open_loop([0.0, 0.1, 0.2, 0.3, 0.4], call, clock=fake.clock, sleep=fake.sleep))
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert [round(o.sent, 6) for o in outcomes] == [0.0, 0.35, 0.35, 0.35, 0.4]
    assert [round(o.lateness, 6) for o in outcomes] == [0.0, 0.25, 0.15, 0.05, 0.0]
    assert [round(o.latency, 6) for o in outcomes] == [0.0, 0.25, 0.15, 0.05, 0.0]
    assert all(o.service_time == 0 for o in outcomes)
    assert fake.sleeps == 2  # before request 1 and before request 4 only


def test_pacer_does_not_wait_for_outstanding_requests():
    # Closed loop would send one at a time; open loop keeps to the schedule while
    # every earlier request is still outstanding.
    outstanding, most = 0, 0

    async def slow(i: int) -> str:
        nonlocal outstanding, most
        outstanding += 1
        most = max(most, outstanding)
        await asyncio.sleep(0.4)
        outstanding -= 1
        return "UNAVAILABLE" if i % 2 else "OK"

    outcomes = asyncio.run(run_open_loop(constant(50, 0.2), slow, label=lambda i: "bm25"))
    assert len(outcomes) == 10 and most == 10
    assert max(o.lateness for o in outcomes) < 0.1
    assert all(o.latency >= 0.4 for o in outcomes)
    assert {o.code for o in outcomes} == {"OK", "UNAVAILABLE"} and {o.mode for o in outcomes} == {"bm25"}


def test_pacer_cancels_calls_outstanding_past_the_wait():
    async def hang(i: int) -> str:
        await asyncio.sleep(10)
        return "OK"

    outcomes = asyncio.run(run_open_loop([0.0, 0.01], hang, wait_after_s=0.05))
    assert [o.code for o in outcomes] == ["CLIENT_CANCELLED", "CLIENT_CANCELLED"]


# --- reports ---------------------------------------------------------------------------


def test_summarize_buckets_offered_by_intent_and_achieved_by_completion():
    outcomes = [
        Outcome(0, "hybrid", 0.0, 0.0, 0.1, "OK"),
        Outcome(1, "hybrid", 0.5, 0.5, 1.7, "OK"),               # offered in 0-1, answered in 1-2
        Outcome(2, "hybrid", 1.0, 1.002, 1.003, "RESOURCE_EXHAUSTED"),
        Outcome(3, "dense", 1.5, 1.5, 2.5, "DEADLINE_EXCEEDED"),
    ]
    report = summarize(outcomes, target="t", arrival="constant", rate=2, duration=2, deadline_s=1.0,
                       mix="hybrid", interval=1.0)
    first, second, tail = report.intervals
    assert (first.offered, first.ok_completed, first.codes) == (2, 1, {"OK": 2})
    assert first.ok_latency.max == pytest.approx(1.2)
    assert (second.offered, second.ok_completed, second.refused) == (2, 1, 1)
    assert second.refusal_latency.p50 == pytest.approx(0.003)
    assert (tail.offered, tail.end, tail.achieved_rate) == (0, 3.0, 0.0)
    o = report.overall
    assert o.offered_rate == 2.0 and o.achieved_rate == pytest.approx(2 / 2.5)
    assert o.error_ratio == 0.5 and o.codes == {"OK": 2, "RESOURCE_EXHAUSTED": 1, "DEADLINE_EXCEEDED": 1}
    assert set(report.ok_latency_by_mode) == {"hybrid", "dense"}
    assert report.ok_latency_by_mode["dense"].count == 0
    assert not report.generator_behind
    late = summarize([Outcome(0, "", 0.0, 0.05, 0.06, "OK")], target="t", arrival="constant", rate=1,
                     duration=1, deadline_s=1.0, mix="hybrid")
    assert late.generator_behind
    json.dumps(report.to_dict())  # NaNs become None: plain JSON


# --- Prometheus deltas -----------------------------------------------------------------


def _exposition(ok: float, exhausted: float | None = None, overruns: float | None = None,
                declare_overruns: bool = False) -> str:
    lines = ["# HELP retrieval_requests_total RPCs finished.", "# TYPE retrieval_requests_total counter",
             f'retrieval_requests_total{{rpc="Search",code="OK"}} {ok}',
             'retrieval_requests_total{rpc="Info",code="OK"} 4.0']
    if exhausted is not None:
        lines.append(f'retrieval_requests_total{{rpc="Search",code="RESOURCE_EXHAUSTED"}} {exhausted}')
    if overruns is not None or declare_overruns:
        lines.append("# TYPE retrieval_deadline_overruns_total counter")
    if overruns is not None:
        lines.append(f'retrieval_deadline_overruns_total{{rpc="Search"}} {overruns}')
    return "\n".join(lines) + "\n"


def test_server_deltas_by_code_and_overruns_when_exported():
    before = metrics.parse(_exposition(10.0))
    after = metrics.parse(_exposition(25.0, exhausted=3.0))
    deltas = metrics.server_deltas(before, after)
    assert deltas["requests_by_code"] == {"OK": 15, "RESOURCE_EXHAUSTED": 3}
    assert deltas["deadline_overruns"] is None
    with_overruns = metrics.server_deltas(metrics.parse(_exposition(1.0, overruns=2.0)),
                                          metrics.parse(_exposition(1.0, overruns=9.0)))
    assert with_overruns["deadline_overruns"] == 7 and with_overruns["requests_by_code"] == {}
    # A labelled counter nobody incremented yet is exported without samples: 0, not n/a.
    declared = metrics.server_deltas(metrics.parse(_exposition(1.0, declare_overruns=True)),
                                     metrics.parse(_exposition(2.0, declare_overruns=True)))
    assert declared["deadline_overruns"] == 0 and declared["requests_by_code"] == {"OK": 1}
    with pytest.raises(ValueError, match="127.0.0.1"):
        metrics.check_local("http://10.0.0.1:9464/metrics")


# --- a real server ----------------------------------------------------------------------


def test_run_against_a_real_server_counts_requests_and_codes(start_server, tmp_path, capsys):
    from corpus import topic_documents

    # Generous admission: this test checks the generator's counting, not the server's shedding.
    server, client = start_server(server={"metrics_port": 0},
                                  admission={"search_in_flight": 16, "queue_timeout_seconds": 10.0})
    client.ingest(topic_documents())
    queries = tmp_path / "queries.txt"
    # Every fourth query is over limits.max_query_chars (4096): INVALID_ARGUMENT.
    queries.write_text("bread in a hot oven\ninterest rates and inflation\nsails and wind\n"
                       + "x " * 2500 + "\n")
    out = tmp_path / "run.json"
    rc = loadtest_main([
        "--target", f"127.0.0.1:{server.port}", "--queries", str(queries), "--rate", "20", "--duration", "3",
        "--mix", "bm25=1,hybrid=1", "--deadline-ms", "5000",
        "--metrics", f"http://127.0.0.1:{server.metrics_port}/metrics", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    overall = report["overall"]
    assert overall["offered"] == 60 and overall["offered_rate"] == 20
    assert overall["codes"] == {"INVALID_ARGUMENT": 15, "OK": 45}
    assert overall["ok_latency"]["count"] == 45 and overall["ok_latency"]["p50_ms"] > 0
    assert [w["offered"] for w in report["intervals"][:3]] == [20, 20, 20]
    assert sum(w["ok_completed"] for w in report["intervals"]) == 45
    assert report["ok_latency_by_mode"].keys() == {"bm25", "hybrid"}
    # What the server counted matches what the client saw.
    assert report["server"]["requests_by_code"] == {"INVALID_ARGUMENT": 15, "OK": 45}
    printed = capsys.readouterr().out
    assert "| all |" in printed and "OK=45 INVALID_ARGUMENT=15" in printed
    overruns = report["server"]["deadline_overruns"]
    assert overruns in (None, 0)  # None where the server does not export the counter
    assert f"retrieval_deadline_overruns_total: {'n/a' if overruns is None else 0}" in printed


# --- SLO verdicts and the capacity search (no server) -------------------------------------


def _report(codes: list[str], latency_s: float = 0.05, ndcg: dict | None = None):
    outcomes = [Outcome(i, "hybrid", i * 0.1, i * 0.1, i * 0.1 + latency_s, code) for i, code in enumerate(codes)]
    return summarize(outcomes, target="t", arrival="constant", rate=10, duration=len(codes) / 10,
                     deadline_s=1.0, mix="hybrid", ndcg=ndcg)


def test_judge_passes_and_fails_each_criterion():
    report = _report(["OK"] * 9 + ["RESOURCE_EXHAUSTED"], ndcg={0: [0.5], 3: [0.7, 0.9]})
    assert report.overall.ndcg_count == 3 and report.overall.ndcg_mean == pytest.approx(0.7)
    verdict = judge(report, SLO(p99_ms=60, max_error_ratio=0.1, min_ndcg=0.7))
    assert verdict.passed and verdict.word == "PASS"
    assert [c.measured for c in verdict.criteria] == [pytest.approx(50), 0.1, pytest.approx(0.7)]
    # The refusal counts as an error; a latency or quality just over the line fails.
    for slo, failed in ((SLO(max_error_ratio=0.09), "error ratio"), (SLO(p99_ms=49.9), "OK p99 latency"),
                        (SLO(min_ndcg=0.71), "mean ndcg@10 (n=3 sampled)")):
        verdict = judge(report, slo)
        assert not verdict.passed and [c.name for c in verdict.criteria if not c.passed] == [failed]
        assert verdict.format().startswith("SLO verdict: FAIL\n  FAIL  ")
    # Nothing to measure fails rather than passes.
    empty = judge(_report(["UNAVAILABLE"] * 3), SLO(p99_ms=1e9, min_ndcg=0.0))
    assert not empty.passed and [c.measured for c in empty.criteria] == [None, None]
    with pytest.raises(ValueError, match="p99_ms must be >= 0"):
        SLO(p99_ms=-1)


def test_capacity_search_doubles_then_bisects():
    tried = []

    async def passes(rate: float) -> bool:
        tried.append(rate)
        return rate <= 37

    assert asyncio.run(search_rates(passes, start_rate=5, max_rate=1000, bisect_steps=3)) == 35
    assert tried == [5, 10, 20, 40, 30, 35, 38]
    tried.clear()
    assert asyncio.run(search_rates(passes, start_rate=50, max_rate=1000, bisect_steps=0)) == 0
    assert asyncio.run(search_rates(passes, start_rate=4, max_rate=16, bisect_steps=3,
                                    log=lambda message: None)) == 16


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    text = tmp_path / "q.txt"
    text.write_text("a query\n")
    base = ["--target", "127.0.0.1:1", "--queries", str(text), "--rate", "1", "--duration", "1"]
    assert loadtest_main(base + ["--slo-min-ndcg", "0.5"]) == 2
    assert "needs qrels" in capsys.readouterr().err
    assert loadtest_main(base + ["--find-capacity"]) == 2
    assert "needs an SLO" in capsys.readouterr().err
    assert loadtest_main(base + ["--slo-max-error-ratio", "-0.1"]) == 2
    with pytest.raises(SystemExit) as exited:
        loadtest_main(base + ["--mode", "sparse"])
    assert exited.value.code == 2


# --- against a real server: verdicts, quality under load, the plot ------------------------

# A BEIR split over tests/retrieval_svc/corpus.topic_documents, graded. Each query also
# judges documents of other topics that hybrid search (40 chunks, deduplicated: 10-12
# documents) ranks 7th-9th, inside the cut-off, or 12th, outside it, so nDCG@10 is
# neither 0 nor 1 and differs from nDCG@3 and from an uncut nDCG.
QRELS = {
    "q1": ("bread in a hot oven", {"cooking-0": 2, "cooking-1": 1, "music-1": 1}),
    "q2": ("interest rates and inflation", {"finance-1": 2, "finance-0": 1, "cooking-0": 1}),
    "q3": ("sails and wind in the harbour", {"sailing-0": 1, "music-1": 2, "medicine-0": 2}),
    "q4": ("telescope galaxies and planets", {"astronomy-1": 1, "medicine-0": 1, "cooking-1": 0}),
}


def _topic_beir(folder, documents):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n" for d in documents))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": qid, "text": text}) + "\n" for qid, (text, _) in QRELS.items())
        + json.dumps({"_id": "unjudged", "text": "not in the split"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{qid}\t{doc}\t{grade}\n" for qid, (_, judged) in QRELS.items() for doc, grade in judged.items()))
    return folder


def _served_topics(start_server, tmp_path):
    from corpus import topic_documents

    documents = topic_documents()
    server, client = start_server(admission={"search_in_flight": 16, "queue_timeout_seconds": 10.0})
    client.ingest(documents)
    return server, client, _topic_beir(tmp_path / "beir", documents)


def test_load_labeled_carries_the_judgements(tmp_path):
    from corpus import topic_documents

    beir = _topic_beir(tmp_path / "beir", topic_documents())
    labeled = load_labeled(beir, "test")
    assert labeled.texts == tuple(text for text, _ in QRELS.values())
    assert labeled.judgements == tuple(judged for _, judged in QRELS.values())
    assert load_labeled(beir).judgements is None and len(load_labeled(beir).texts) == 5
    with pytest.raises(ValueError, match="no qrels for split 'dev'"):
        load_labeled(beir, "dev")


def test_slo_verdict_both_ways_through_the_cli(start_server, tmp_path, capsys):
    server, _, beir = _served_topics(start_server, tmp_path)
    base = ["--target", f"127.0.0.1:{server.port}", "--queries", str(beir), "--split", "test",
            "--rate", "8", "--duration", "1", "--deadline-ms", "5000", "--quality-sample", "1"]
    plot, out = tmp_path / "plot" / "run.png", tmp_path / "run.json"

    generous = ["--slo-p99-ms", "60000", "--slo-max-error-ratio", "0", "--slo-min-ndcg", "0.05"]
    assert loadtest_main(base + generous + ["--plot", str(plot), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SLO verdict: PASS" in printed and "FAIL" not in printed
    assert "pass  OK p99 latency:" in printed and "(threshold <= 60000.000 ms)" in printed
    report = json.loads(out.read_text())
    assert report["slo"]["verdict"] == "PASS" and report["overall"]["codes"] == {"OK": 8}
    data = plot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    impossible = ["--slo-p99-ms", "0.001", "--slo-max-error-ratio", "1", "--slo-min-ndcg", "1.01"]
    assert loadtest_main(base + impossible) == 1
    printed = capsys.readouterr().out
    assert "SLO verdict: FAIL" in printed
    assert "FAIL  OK p99 latency:" in printed and "(threshold <= 0.001 ms)" in printed
    assert "FAIL  mean ndcg@10 (n=8 sampled):" in printed and "(threshold >= 1.010)" in printed
    assert "pass  error ratio: 0.00% (threshold <= 100.00%)" in printed

    # No re-ranker on this server: rerank requests fail, and count against the error budget.
    assert loadtest_main(base + ["--mode", "rerank", "--slo-max-error-ratio", "0.01", "--json", str(out)]) == 1
    assert json.loads(out.read_text())["overall"]["codes"] == {"FAILED_PRECONDITION": 8}
    assert "FAIL  error ratio: 100.00%" in capsys.readouterr().out

    # --find-capacity: 2 and 4 req/s pass, 8 is past --max-rate; then an impossible SLO.
    capacity = ["--rate", "2", "--duration", "0.5", "--max-rate", "5", "--json", str(out)]
    assert loadtest_main(base + generous + ["--find-capacity"] + capacity) == 0
    printed = capsys.readouterr().out
    assert "capacity: 4 req/s" in printed and "SLO verdict: PASS at 4 req/s" in printed
    assert [s["rate"] for s in json.loads(out.read_text())["steps"]] == [2, 4]
    assert loadtest_main(base + impossible + ["--find-capacity", "--bisect-steps", "0", "--drain-timeout", "0.5"]
                         + capacity) == 1
    printed = capsys.readouterr().out
    assert "capacity: none" in printed and "SLO verdict: FAIL at 2 req/s" in printed


def _ndcg10(doc_ids: list[str], judged: dict[str, int]) -> float:
    """trec_eval ndcg_cut_10 by hand: first occurrence of each document, rel_i / log2(i + 1),
    ideal from every judgement of the query."""
    ranked = list(dict.fromkeys(doc_ids))[:10]
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def test_ndcg_under_load_matches_a_direct_computation(start_server, tmp_path, capsys):
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

    server, client, beir = _served_topics(start_server, tmp_path)
    direct = {}
    for text, judged in QRELS.values():
        hits = [h.doc_id for h in client.search(text, k=40, mode=pb.SEARCH_MODE_HYBRID).hits]
        assert len(hits) > len(set(hits))  # several chunks of a document: deduplication matters
        direct[text] = _ndcg10(hits, judged)
    expected = sum(direct.values()) / len(direct)
    assert 0.2 < expected < 0.99  # neither trivial

    out = tmp_path / "run.json"
    base = ["--target", f"127.0.0.1:{server.port}", "--queries", str(beir), "--split", "test", "--k", "40",
            "--deadline-ms", "5000", "--json", str(out)]
    # 8 hybrid requests: each of the 4 queries twice, every answer scored.
    assert loadtest_main(base + ["--rate", "8", "--duration", "1", "--quality-sample", "1"]) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["codes"] == {"OK": 8}
    assert report["overall"]["ndcg@10"]["count"] == 8
    assert report["overall"]["ndcg@10"]["mean"] == pytest.approx(expected, abs=1e-6)
    windows = [w["ndcg@10"] for w in report["intervals"] if w["ndcg@10"]["count"]]
    assert sum(w["count"] for w in windows) == 8
    assert sum(w["mean"] * w["count"] for w in windows) / 8 == pytest.approx(expected, abs=1e-5)
    assert "nDCG@10 (n)" in capsys.readouterr().out

    # 4 BatchSearch requests of all 4 queries: one sample per query of a sampled answer.
    assert loadtest_main(base + ["--mode", "batch", "--batch-size", "4", "--rate", "4", "--duration", "1",
                                 "--quality-sample", "1"]) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["codes"] == {"OK": 4} and report["overall"]["ndcg@10"]["count"] == 16
    assert report["overall"]["ndcg@10"]["mean"] == pytest.approx(expected, abs=1e-6)

    # Every 3rd OK answer: the 1st, 4th and 7th of 8.
    assert loadtest_main(base + ["--rate", "8", "--duration", "1", "--quality-sample", "3"]) == 0
    assert json.loads(out.read_text())["overall"]["ndcg@10"]["count"] == 3


def test_the_api_key_reaches_a_server_that_requires_keys(start_server, tmp_path, capsys, monkeypatch):
    import yaml

    from retrieval_svc.auth import hash_token

    token = "rsvc_loadtest-token-0123456789"
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"id": "ops", "sha256": hash_token(token), "roles": ["admin:*"]}]}))
    server, _ = start_server(auth={"keys_file": str(keys)})
    queries = tmp_path / "queries.txt"
    queries.write_text("bread in a hot oven\n")
    for name in ("RETRIEVAL_SVC_TOKEN", "RETRIEVAL_SVC_TLS", "RETRIEVAL_SVC_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    args = ["--target", f"127.0.0.1:{server.port}", "--queries", str(queries), "--rate", "5", "--duration", "1",
            "--mode", "bm25", "--slo-max-error-ratio", "0"]
    assert loadtest_main(args) == 1
    assert "UNAUTHENTICATED=5" in capsys.readouterr().out
    monkeypatch.setenv("RETRIEVAL_SVC_TOKEN", "")  # restored after the test; --token sets it
    assert loadtest_main([*args, "--token", token]) == 0
    assert "OK=5" in capsys.readouterr().out
