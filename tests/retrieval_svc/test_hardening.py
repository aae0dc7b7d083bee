"""The hardening issue's defects, each reproduced through a real server on 127.0.0.1.

Numbers in test names follow the issue's list: 1 taken port, 2 shared store, 3 fresh
store, 4 encoder identity, 6 hostile input, 7 deadlines and overload, 8 BatchSearch in
the latency SLO, 9 index maintenance off the request path, 10 shutdown.
(5, settings, is tests/retrieval_svc/test_settings.py; 11, ingestion jobs, is
tests/retrieval_svc/test_ingest_job.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.app import App
from retrieval_svc.client import document_to_pb
from retrieval_svc.domain import Document
from retrieval_svc.errors import StartupError
from retrieval_svc.server import Server

from corpus import topic_documents

REPO = Path(__file__).resolve().parents[2]


class SlowEncoder:
    """The real encoder, with a delay before every query encode and a count of them."""

    def __init__(self, inner, delay: float = 0.0) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.dimension = inner.dimension
        self.delay = delay
        self.query_batches = 0
        self.queries = 0

    def encode(self, texts, *, is_query: bool):
        if is_query:
            self.query_batches += 1
            self.queries += len(texts)
            time.sleep(self.delay)
        return self.inner.encode(texts, is_query=is_query)


def _metric(server: Server, name: str, **labels) -> float:
    value = server.app.telemetry.registry.get_sample_value(name, labels)
    return value or 0.0


# --- 1. a taken port stops start-up ----------------------------------------------------


def test_1_a_taken_port_stops_start_up(start_server, encoder, tmp_path):
    first, _ = start_server()
    settings = first.app.settings.replace(store={"path": str(tmp_path / "second")},
                                          server={"port": first.port})
    app = App(settings, encoder=encoder)
    try:
        with pytest.raises(StartupError, match=rf"cannot listen on 127.0.0.1:{first.port}.*in use"):
            Server(app)
    finally:
        app.close()


def test_1_serve_on_a_taken_port_exits_with_one_line(start_server, tmp_path):
    first, _ = start_server()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(tmp_path / "other"),
         "--port", str(first.port), "--metrics-port", "-1"],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert "READY" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("retrieval-svc:")]
    assert len(errors) == 1 and f"127.0.0.1:{first.port}" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


# --- 2. one process per store; snapshots checked against the ledger's keys ----------------


def test_2_a_second_server_cannot_open_a_store_in_use(start_server, encoder, tmp_path):
    first, _ = start_server(store_path=tmp_path / "shared")
    with pytest.raises(StartupError, match=rf"store {tmp_path / 'shared'} is in use by process {os.getpid()}"):
        App(first.app.settings, encoder=encoder)


def test_2_a_snapshot_whose_keys_differ_from_the_ledger_is_rebuilt(start_server, tmp_path):
    """The issue's case: another writer's snapshot with the same generation and count but
    other chunk keys. X: 3 documents in 2 commits (keys 1..3, generation 2). Y: 4 documents
    in one commit, then one deleted (keys 1, 2, 4; generation 2). Y opened with X's snapshot
    must not serve X's keys."""

    def single_chunk(doc_id: str, text: str) -> Document:
        return Document("", doc_id, text)

    x, cx = start_server(store_path=tmp_path / "x")
    cx.ingest_batch([single_chunk("a", "alpha apples"), single_chunk("b", "beta bananas")])
    cx.ingest_batch([single_chunk("c", "gamma grapes")])
    x.stop(0)
    y, cy = start_server(store_path=tmp_path / "y")
    cy.ingest_batch([single_chunk("p", "pears"), single_chunk("q", "quinces"),
                     single_chunk("r", "raspberries"), single_chunk("s", "strawberries")])
    cy.delete("", ["r"])
    y.stop(0)
    x_manifest = (tmp_path / "x" / "indexes" / "manifest.json").read_text()
    assert '"generation": 2' in x_manifest
    shutil.rmtree(tmp_path / "y" / "indexes")
    shutil.copytree(tmp_path / "x" / "indexes", tmp_path / "y" / "indexes")

    reopened, client = start_server(store_path=tmp_path / "y")
    hits = client.search("strawberries", k=1, mode=pb.SEARCH_MODE_BM25).hits
    assert [h.doc_id for h in hits] == ["s"]
    assert reopened.app.store.verify() == {
        "default": {"dense_missing": 0, "dense_extra": 0, "bm25_missing": 0, "bm25_extra": 0}}


# --- 3. a fresh, empty store ----------------------------------------------------------------


def test_3_a_fresh_store_snapshots_and_stops_cleanly(start_server, tmp_path, caplog):
    server, client = start_server(store_path=tmp_path / "fresh")
    resp = client.delete("", ["never-ingested"])  # an empty commit on a store with no index
    assert list(resp.not_found) == ["never-ingested"]
    assert server.app.store.snapshot() is True
    server.stop(0)
    assert (tmp_path / "fresh" / "indexes" / "manifest.json").exists()
    assert not [r for r in caplog.records if "snapshot failed" in r.getMessage()]


def test_3_sigterm_on_a_fresh_store_exits_0_without_a_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RETRIEVAL_SVC_STORE__SNAPSHOT_INTERVAL_SECONDS": "0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(tmp_path / "store"),
         "--port", "0", "--metrics-port", "-1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().startswith("READY"), proc.stderr.read()
        time.sleep(1.5)  # several snapshot-loop turns on the empty store
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr and "snapshot failed" not in stderr, stderr
    finally:
        if proc.poll() is None:
            proc.kill()


# --- 6. hostile input gets a status that names the field or limit, never INTERNAL -------------


@pytest.fixture
def hostile_target(start_server):
    server, client = start_server()
    client.ingest(topic_documents())
    return server, client


@pytest.mark.parametrize("seconds, nanos", [(10**15, 0), (2**63 - 1, 0), (1_700_000_000, -1),
                                            (1_700_000_000, 1_000_000_000), (-5, 0),
                                            # valid as a Timestamp, but a float of it rounds past the last one
                                            (253_402_300_799, 999_999_999)])
def test_6_out_of_range_timestamps_are_invalid_argument(hostile_target, seconds, nanos):
    _, client = hostile_target
    doc = pb.Document(doc_id="t", text="some text")
    doc.source_updated_at.seconds, doc.source_updated_at.nanos = seconds, nanos
    with pytest.raises(grpc.RpcError) as e:
        client.retrieval.IngestBatch(pb.IngestRequest(documents=[doc]), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source_updated_at" in e.value.details()
    status = rpc_status.from_call(e.value)
    bad = error_details_pb2.BadRequest()
    assert status is not None and status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "documents[0].source_updated_at"


@pytest.mark.parametrize("doc, limit", [
    (pb.Document(doc_id="t", text="x", title="T" * 10_000_000), "limits.max_title_chars"),
    (pb.Document(doc_id="t", text="x", metadata={f"k{i}": "v" for i in range(100_000)}),
     "limits.max_metadata_keys"),
    (pb.Document(doc_id="t", text="x", metadata={"k": "v" * 9_000_000}), "limits.max_metadata_value_chars"),
    (pb.Document(doc_id="t", text="x", metadata={f"k{i}": "v" * 4000 for i in range(60)}),
     "limits.max_metadata_chars"),
    (pb.Document(doc_id="t", text="x", source_uri="u" * 100_000), "limits.max_source_uri_chars"),
])
def test_6_oversized_fields_are_refused_naming_the_limit(hostile_target, doc, limit):
    _, client = hostile_target
    with pytest.raises(grpc.RpcError) as e:
        client.retrieval.IngestBatch(pb.IngestRequest(documents=[doc]), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and limit in e.value.details()


def test_6_filter_clause_and_value_limits(hostile_target):
    _, client = hostile_target
    clauses = [pb.FilterClause(key=f"k{i}", any_of=["v"]) for i in range(2000)]
    with pytest.raises(grpc.RpcError) as e:
        client.search("bread", filters=clauses)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limits.max_filter_clauses" in e.value.details()
    values = [pb.FilterClause(key="doc_id", any_of=[f"d{i}" for i in range(5000)])]
    with pytest.raises(grpc.RpcError) as e:
        client.search("bread", filters=values)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limits.max_filter_values" in e.value.details()
    ok = [pb.FilterClause(key="doc_id", any_of=["cooking-0", "cooking-1"])] * 32  # at the limit
    assert {h.doc_id for h in client.search("bread", filters=ok, k=5).hits} <= {"cooking-0", "cooking-1"}


def test_6_malformed_bytes_to_health_and_reflection_are_invalid_argument(hostile_target):
    server, client = hostile_target
    check = client.channel.unary_unary("/grpc.health.v1.Health/Check")
    with pytest.raises(grpc.RpcError) as e:
        check(b"\xff\xff\xff\xff", timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reflect = client.channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    with pytest.raises(grpc.RpcError) as e:
        list(reflect(iter([b"\x0a\xff\xff"]), timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    health = health_pb2_grpc.HealthStub(client.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    statuses = health.List(health_pb2.HealthListRequest(), timeout=10).statuses
    assert statuses["retrieval.v1.RetrievalService"].status == health_pb2.HealthCheckResponse.SERVING


def test_6_info_lists_every_limit(hostile_target):
    server, client = hostile_target
    limits = client.info().limits
    for name in ("limits.max_k", "limits.max_title_chars", "limits.max_metadata_keys",
                 "limits.max_filter_clauses", "limits.max_query_sets", "admission.search_queue",
                 "server.max_message_bytes"):
        assert name in limits
    assert limits["limits.max_filter_clauses"] == server.app.settings.limits.max_filter_clauses


def test_6_an_evaluation_names_each_stage_once(hostile_target):
    from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb

    _, client = hostile_target
    judged = [epb.Judgement(target_id="cooking-0", relevance=1)]
    labeled = [epb.LabeledQuery(query_id="q", text="bread", judgements=judged)]
    client.register_query_set(epb.RegisterQuerySetRequest(name="once", queries=labeled))
    with pytest.raises(grpc.RpcError) as e:
        client.evaluate(epb.EvaluateRequest(query_set="once", stages=[epb.EVAL_STAGE_DENSE] * 2000), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "once" in e.value.details()


def test_6_query_set_count_is_bounded(start_server):
    from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb

    _, client = start_server(limits={"max_query_sets": 2})
    labeled = [epb.LabeledQuery(query_id="q", text="bread", judgements=[epb.Judgement(target_id="d", relevance=1)])]
    for name in ("one", "two", "two"):  # replacing a set does not count twice
        client.register_query_set(epb.RegisterQuerySetRequest(name=name, queries=labeled))
    with pytest.raises(grpc.RpcError) as e:
        client.register_query_set(epb.RegisterQuerySetRequest(name="three", queries=labeled))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limits.max_query_sets" in e.value.details()


# --- 7. deadlines, cancellation and overload ---------------------------------------------------


def test_7_a_call_whose_deadline_passes_in_the_queue_is_never_run(start_server, encoder):
    slow = SlowEncoder(encoder, delay=0.6)
    server, client = start_server(
        encoder_override=slow, admission={"search_in_flight": 1, "search_queue": 4,
                                          "queue_timeout_seconds": 5.0})
    client.ingest(topic_documents())
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.search, "bread oven", mode=pb.SEARCH_MODE_DENSE)
        time.sleep(0.15)  # the first holds the only slot
        with pytest.raises(grpc.RpcError) as e:
            client.retrieval.Search(pb.SearchRequest(query="violins", mode=pb.SEARCH_MODE_DENSE), timeout=0.3)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert first.result().hits
    time.sleep(0.2)
    assert slow.queries == 1  # the late call was dropped before encoding
    assert _metric(server, "retrieval_admission_refused_total", pool="search", reason="deadline") == 1
    assert _metric(server, "retrieval_deadline_overruns_total", rpc="Search") == 0
    assert _metric(server, "retrieval_requests_total", rpc="Search", code="DEADLINE_EXCEEDED") == 1


def test_7_past_capacity_calls_are_refused_at_once_with_a_retry_hint(start_server, encoder):
    slow = SlowEncoder(encoder, delay=0.5)
    server, client = start_server(
        encoder_override=slow, encoder={"max_wait_ms": 0.0},
        admission={"search_in_flight": 1, "search_queue": 1, "queue_timeout_seconds": 2.0,
                   "retry_after_seconds": 0.25})
    client.ingest(topic_documents())

    def timed_search(i):
        started = time.perf_counter()
        try:
            client.retrieval.Search(pb.SearchRequest(query=f"bread {i}", mode=pb.SEARCH_MODE_DENSE), timeout=10)
            return "OK", time.perf_counter() - started, None
        except grpc.RpcError as exc:
            return exc.code().name, time.perf_counter() - started, exc

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(timed_search, range(6)))
    codes = [c for c, _, _ in outcomes]
    assert codes.count("OK") == 2 and codes.count("RESOURCE_EXHAUSTED") == 4, codes
    for code, seconds, exc in outcomes:
        if code == "RESOURCE_EXHAUSTED":
            assert seconds < 0.4  # refused at once, not after the 0.5 s encode of those admitted
            assert "admission.search_queue" in exc.details()
            info = error_details_pb2.RetryInfo()
            assert rpc_status.from_call(exc).details[0].Unpack(info)
            assert info.retry_delay.ToNanoseconds() == 250_000_000
    assert slow.queries == 2
    assert _metric(server, "retrieval_admission_refused_total", pool="search", reason="queue_full") == 4


def test_7_a_caller_that_goes_away_stops_an_evaluation(start_server, encoder):
    from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb

    slow = SlowEncoder(encoder, delay=0.2)
    server, client = start_server(encoder_override=slow)
    client.ingest(topic_documents())
    queries = [epb.LabeledQuery(query_id=f"q{i}", text=f"bread oven {i}",
                                judgements=[epb.Judgement(target_id="cooking-0", relevance=1)])
               for i in range(40)]
    client.register_query_set(epb.RegisterQuerySetRequest(name="slow", queries=queries))
    future = client.evaluation.Evaluate.future(
        epb.EvaluateRequest(query_set="slow", stages=[epb.EVAL_STAGE_DENSE]), timeout=60)
    time.sleep(1.0)
    future.cancel()
    time.sleep(1.0)  # the handler notices at its next query
    encoded = slow.queries
    time.sleep(1.0)
    assert slow.queries == encoded < 40  # nothing more is encoded for a caller that left
    assert _metric(server, "retrieval_requests_total", rpc="Evaluate", code="CANCELLED") == 1
    assert _metric(server, "retrieval_requests_total", rpc="Evaluate", code="OK") == 0


# --- 8. BatchSearch does not count as many slow searches ------------------------------------------


def test_8_a_batch_adds_no_total_samples_a_search_adds_one(start_server):
    server, client = start_server()
    client.ingest(topic_documents())

    def totals():
        return sum(_metric(server, "retrieval_stage_duration_seconds_count", stage="total", mode=m)
                   for m in ("dense", "bm25", "hybrid"))

    before = totals()
    client.batch_search([pb.SearchRequest(query=f"bread {i}") for i in range(32)])
    assert totals() == before
    client.search("bread")
    assert totals() == before + 1
    assert _metric(server, "retrieval_request_duration_seconds_count", rpc="BatchSearch") == 1


# --- 9. index maintenance beside the live index; stats without key scans --------------------------


def test_9_an_hnsw_rebuild_runs_beside_the_live_index(start_server, monkeypatch):
    server, client = start_server(dense={"kind": "hnsw", "params": {"rebuild_fraction": 0.1}})
    client.ingest(topic_documents(per_topic=3))
    store = server.app.store
    client.delete("", ["cooking-0", "finance-0", "music-0"])  # past 10% tombstones
    dense = store._indexes["default"].dense
    assert dense.tombstones > 0 and dense.maintenance_due()  # not rebuilt inside the commit

    building = threading.Event()
    release = threading.Event()
    original = dense.maintenance_copy

    def gated_copy():
        build = original()

        def slow_build():
            building.set()
            assert release.wait(30)
            return build()

        return slow_build

    monkeypatch.setattr(dense, "maintenance_copy", gated_copy)
    with ThreadPoolExecutor(1) as pool:
        maintained = pool.submit(store.maintain)
        assert building.wait(30)
        # While the replacement is being built: searches and commits go on.
        assert client.retrieval.Search(
            pb.SearchRequest(query="bread oven", k=3, mode=pb.SEARCH_MODE_DENSE), timeout=5).hits
        client.ingest([Document("", "late", "zeppelins drifting over quiet lakes at dawn")])
        release.set()
        assert maintained.result(timeout=60) == 1
    fresh = store._indexes["default"].dense
    assert fresh is not dense and fresh.tombstones == 0
    # The commit made during the build was replayed into the replacement.
    hits = client.search("zeppelins over lakes", k=1, mode=pb.SEARCH_MODE_DENSE).hits
    assert hits[0].doc_id == "late"
    assert store.verify()["default"] == {"dense_missing": 0, "dense_extra": 0, "bm25_missing": 0,
                                         "bm25_extra": 0}


def test_9_stats_do_not_scan_ledger_keys(start_server, monkeypatch):
    server, client = start_server()
    client.ingest(topic_documents())
    client.ingest(topic_documents(namespace="other"))

    def no_scans(*_):
        raise AssertionError("stats must not read every chunk key")

    monkeypatch.setattr(server.app.store.ledger, "chunk_keys", no_scans)
    stats = {s.namespace: s for s in server.app.store.stats()}
    assert stats["default"].documents == 12 and stats["other"].documents == 12
    assert stats["default"].chunks == stats["default"].dense_entries > 0
    assert stats["default"].dense_missing == 0
    client.delete("other", ["cooking-0"])
    assert {s.namespace: s for s in server.app.store.stats()}["other"].documents == 11


def test_9_bm25_compaction_runs_beside_the_live_index(start_server, monkeypatch):
    import retrieval_svc.lexical.bm25 as bm25_module

    monkeypatch.setattr(bm25_module, "_MIN_COMPACTION", 2)
    server, client = start_server()
    client.ingest(topic_documents(per_topic=2))
    client.delete("", [d.doc_id for d in topic_documents(per_topic=2)][:10])
    lexical = server.app.store._indexes["default"].lexical
    assert lexical.maintenance_due()
    assert server.app.store.maintain() == 1
    assert server.app.store._indexes["default"].lexical is not lexical
    hits = client.search("orchestra violins", k=5, mode=pb.SEARCH_MODE_BM25).hits
    assert {h.doc_id for h in hits} == {"music-0", "music-1"}
    assert server.app.store.verify()["default"]["bm25_extra"] == 0


# --- 10. shutdown -----------------------------------------------------------------------------------


def test_10_shutdown_tells_an_ingest_stream_how_much_it_committed(start_server):
    server, client = start_server()
    first_committed = threading.Event()
    stopping = threading.Event()

    def messages():
        yield pb.IngestRequest(documents=[document_to_pb(d) for d in topic_documents(per_topic=1)])
        # Wait until the server has committed the first message and begun shutting down.
        deadline = time.monotonic() + 30
        while server.app.store.generation == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        first_committed.set()
        assert stopping.wait(30)
        time.sleep(0.2)
        yield pb.IngestRequest(documents=[document_to_pb(d) for d in topic_documents(namespace="more")])

    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(client.retrieval.Ingest, messages(), timeout=60)
        assert first_committed.wait(30)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
        stopper.start()
        stopping.set()
        with pytest.raises(grpc.RpcError) as e:
            call.result(timeout=60)
        stopper.join(60)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "6 documents of this stream were committed" in e.value.details(), e.value.details()


def test_10_sigterm_during_ingest_and_searches_exits_cleanly(tmp_path):
    """SIGTERM while ingest streams and searches run: exit 0, no crash, every acknowledged
    document searchable after a restart."""
    from retrieval_svc.client import ProtoClient

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": "1",
           "RETRIEVAL_SVC_CHUNKER__WINDOW_TOKENS": "64", "RETRIEVAL_SVC_CHUNKER__OVERLAP_TOKENS": "8"}
    store = tmp_path / "store"
    acknowledged: dict[str, str] = {}  # doc_id -> text
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(store),
             "--port", "0", "--metrics-port", "-1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        try:
            line = proc.stdout.readline()
            assert line.startswith("READY"), proc.stderr.read()
            target = line.split()[1].split("=", 1)[1]
            stop = threading.Event()
            with ProtoClient(target, timeout=30) as client, ThreadPoolExecutor(4) as pool:
                for doc_id in acknowledged:
                    assert client.get_document("", doc_id).document.doc_id == doc_id

                def ingest(worker: int, stop=stop, round_=round_) -> None:
                    n = 0
                    while not stop.is_set():
                        docs = topic_documents(namespace="", per_topic=1)
                        docs = [Document("", f"r{round_}-w{worker}-{n}-{d.doc_id}", d.text) for d in docs]
                        try:
                            client.ingest_batch(docs)
                        except grpc.RpcError:
                            return
                        acknowledged.update((d.doc_id, d.text) for d in docs)
                        n += 1

                def search(_: int, stop=stop) -> None:
                    while not stop.is_set():
                        try:
                            client.search("bread oven", k=5)
                        except grpc.RpcError:
                            return

                jobs = [pool.submit(ingest, 0), pool.submit(ingest, 1), pool.submit(search, 0),
                        pool.submit(search, 1)]
                time.sleep(2.0 + round_)
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=90)
                stop.set()
                for job in jobs:
                    job.result(timeout=60)
            stderr = proc.stderr.read()
            assert code == 0, stderr[-3000:]
            assert "Fatal Python error" not in stderr and "Segmentation fault" not in stderr
        finally:
            if proc.poll() is None:
                proc.kill()
    # A last start: every acknowledged document is there and searchable.
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(store), "--port", "0",
         "--metrics-port", "-1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        target = line.split()[1].split("=", 1)[1]
        with ProtoClient(target, timeout=30) as client:
            info = client.info()
            ns = {n.name: n for n in info.namespaces}["default"]
            assert ns.chunk_count == ns.dense_vector_count == ns.bm25_chunk_count
            assert ns.document_count >= len(acknowledged) > 0
            sample = sorted(acknowledged)[:: max(1, len(acknowledged) // 10)]
            for doc_id in sample:
                flt = [pb.FilterClause(key="doc_id", any_of=[doc_id])]
                query = acknowledged[doc_id][:200]
                for mode in (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_BM25, pb.SEARCH_MODE_HYBRID):
                    assert client.search(query, k=1, filters=flt, mode=mode).hits, (doc_id, mode)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()

