"""Ingestion jobs end to end: `retrieval-svc serve` as a process, `ingest`/`search` CLIs against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli(*args, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "retrieval_svc.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def served_process(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RETRIEVAL_SVC_CHUNKER__WINDOW_TOKENS": "64",
           "RETRIEVAL_SVC_CHUNKER__OVERLAP_TOKENS": "8", "RETRIEVAL_SVC_EVALUATION__SCHEDULE_SECONDS": "0"}
    with open(tmp_path / "server.log", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(tmp_path / "store"),
             "--port", "0", "--metrics-port", "-1"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    target = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and target is None:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        for line in (tmp_path / "server.log").read_text().splitlines():
            if line.startswith("READY grpc="):
                target = line.split()[1].split("=", 1)[1]
        time.sleep(0.2)
    assert target, "server did not start"
    yield target, {**env, "RETRIEVAL_SVC_TARGET": target}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, (tmp_path / "server.log").read_text()
    assert (tmp_path / "store" / "indexes" / "manifest.json").exists()


def test_ingest_jsonl_beir_and_folder_then_search(served_process, tmp_path):
    _, env = served_process
    sample = REPO / "examples" / "sample.jsonl"
    first = json.loads(_cli("ingest", str(sample), "--quiet", env=env).stdout)
    assert first["documents_added"] == 12 and first["chunks_embedded"] >= 12 and first["outcome"] == "completed"
    again = _cli("ingest", str(sample), "--quiet", env=env)
    assert json.loads(again.stdout)["documents_unchanged"] == 12 and json.loads(again.stdout)["chunks_embedded"] == 0
    assert ("12 documents: 12 committed (0 added, 0 updated, 12 unchanged), 0 rejected, 0 chunks embedded, "
            "0 retries") in again.stderr.splitlines()

    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Glaciers", "text": "Glaciers carve valleys as they slowly move."}) + "\n")
    out = json.loads(_cli("ingest", str(beir), "--namespace", "beir", "--quiet", env=env).stdout)
    assert out["documents_added"] == 1

    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Kites\nKites fly when wind lifts them.\n")
    (folder / "sub" / "b.txt").write_text("Lighthouses warn ships about rocks.")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    out = json.loads(_cli("ingest", str(folder), "--namespace", "notes", "--quiet", env=env).stdout)
    assert out["documents_added"] == 2

    found = json.loads(_cli("search", "ships and rocks", "--namespace", "notes", "--k", "1", "--json",
                            env=env).stdout)
    assert found["hits"][0]["docId"] == "sub/b.txt"
    assert found["hits"][0]["sourceUri"].startswith("file://")
    text = _cli("search", "fusing the ranked lists of several retrievers", "--k", "2", env=env).stdout
    first_hit = text.splitlines()[1]
    assert " rrf [" in first_hit and "fused#" in first_hit and "dense#" in first_hit
    filtered = json.loads(_cli("search", "fermentation", "--filter", "topic=cooking", "--k", "5", "--json",
                               env=env).stdout)
    assert {h["metadata"]["topic"] for h in filtered["hits"]} == {"cooking"}
    info = json.loads(_cli("info", env=env).stdout)
    assert {n["name"] for n in info["namespaces"]} == {"default", "beir", "notes"}


def test_cli_reports_errors_clearly(served_process, tmp_path):
    _, env = served_process
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc_id": "a", "text": "ok"}\n{not json}\n')
    dead = tmp_path / "dead.jsonl"
    proc = _cli("ingest", str(bad), "--quiet", "--dead-letter", str(dead), env=env, check=False)
    assert proc.returncode == 3 and f"1 rejected (dead letters: {dead})" in proc.stderr
    assert json.loads(dead.read_text())["source"] == f"{bad}:2"
    proc = _cli("ingest", str(bad), "--quiet", "--on-error", "stop", "--dead-letter", str(dead), env=env, check=False)
    assert proc.returncode == 2 and f"stopped at {bad}:2 (record 1): not valid JSON" in proc.stderr
    proc = _cli("search", "x", "--namespace", "absent", env=env, check=False)
    assert proc.returncode == 1 and "NOT_FOUND" in proc.stderr
    proc = _cli("ingest", str(tmp_path / "missing.jsonl"), env=env, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
