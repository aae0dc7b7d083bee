"""A real Prometheus (Debian's package) scrapes a running service; a quality gauge is read
back through Prometheus's HTTP API. Both run on 127.0.0.1 and are stopped by the test."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb

from corpus import topic_documents


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(port: int, promql: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus(tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: install Debian's `prometheus` package "
                    "(scripts/setup.sh does, as root)")

    def start(target: str):
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: retrieval-svc\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        with open(tmp_path / "prometheus.log", "w") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return port

    procs: list[subprocess.Popen] = []
    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_prometheus_reads_back_the_quality_gauge(start_server, prometheus, tmp_path):
    server, client = start_server(server={"metrics_port": 0})
    client.ingest(topic_documents())
    client.register_query_set(epb.RegisterQuerySetRequest(
        name="smoke", queries=[epb.LabeledQuery(query_id="q1", text="violins and a symphony orchestra",
                                                judgements=[epb.Judgement(target_id="music-0", relevance=1),
                                                            epb.Judgement(target_id="music-1", relevance=1)])]))
    resp = client.evaluate(epb.EvaluateRequest(query_set="smoke", ks=[10], export_metrics=True,
                                               stages=[epb.EVAL_STAGE_BM25, epb.EVAL_STAGE_DENSE]))
    expected = {s.stage: next(m.value for m in s.metrics if m.metric == "ndcg" and m.k == 10) for s in resp.stages}
    port = prometheus(f"127.0.0.1:{server.metrics_port}")
    promql = 'retrieval_eval_quality{query_set="smoke",metric="ndcg",k="10"}'
    deadline = time.monotonic() + 60
    result = []
    while time.monotonic() < deadline:
        try:
            result = _query(port, promql)
        except OSError:
            result = []
        if len(result) == 2:
            break
        time.sleep(0.5)
    assert len(result) == 2, (tmp_path / "prometheus.log").read_text()[-2000:]
    by_stage = {r["metric"]["stage"]: float(r["value"][1]) for r in result}
    assert by_stage["bm25"] == pytest.approx(expected[epb.EVAL_STAGE_BM25])
    assert by_stage["dense"] == pytest.approx(expected[epb.EVAL_STAGE_DENSE])
    assert by_stage["bm25"] > 0.5
    up = _query(port, 'up{job="retrieval-svc"}')
    assert up and up[0]["value"][1] == "1"
