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
    assert first["added_document_count"] == 12 and first["embedded_chunk_count"] >= 12
    assert first["outcome"] == "completed"
    again = _cli("ingest", str(sample), "--quiet", env=env)
    second = json.loads(again.stdout)
    assert second["unchanged_document_count"] == 12 and second["embedded_chunk_count"] == 0
    assert ("12 documents: 12 committed (0 added, 0 updated, 12 unchanged), 0 rejected, 0 chunks embedded, "
            "0 retries") in again.stderr.splitlines()

    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Glaciers", "text": "Glaciers carve valleys as they slowly move."}) + "\n")
    out = json.loads(_cli("ingest", str(beir), "--namespace", "beir", "--quiet", env=env).stdout)
    assert out["added_document_count"] == 1

    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Kites\nKites fly when wind lifts them.\n")
    (folder / "sub" / "b.txt").write_text("Lighthouses warn ships about rocks.")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    out = json.loads(_cli("ingest", str(folder), "--namespace", "notes", "--quiet", env=env).stdout)
    assert out["added_document_count"] == 2

    found = json.loads(_cli("search", "ships and rocks", "--namespace", "notes", "--k", "1", "--json",
                            env=env).stdout)
    assert found["hits"][0]["doc_id"] == "sub/b.txt"
    assert found["hits"][0]["source_uri"].startswith("file://")
    text = _cli("search", "fusing the ranked lists of several retrievers", "--k", "2", env=env).stdout
    first_hit = text.splitlines()[1]
    assert " rrf [" in first_hit and "fused#" in first_hit and "dense#" in first_hit
    filtered = json.loads(_cli("search", "fermentation", "--filter", "topic=cooking", "--k", "5", "--json",
                               env=env).stdout)
    assert {h["metadata"]["topic"] for h in filtered["hits"]} == {"cooking"}
    info = json.loads(_cli("info", "--json", env=env).stdout)
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
    assert proc.returncode == 3 and "NOT_FOUND" in proc.stderr
    proc = _cli("ingest", str(tmp_path / "missing.jsonl"), env=env, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


# --- client commands in process, against a server of the start_server fixture ---------------


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    from retrieval_svc import cli

    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def target(start_server):
    from corpus import topic_documents

    server, client = start_server()
    client.ingest(topic_documents(), batch_size=6)
    return f"127.0.0.1:{server.port}"


def test_json_output_is_snake_case_with_numbers(target, capsys):
    code, out, _ = _run(capsys, "search", "bake bread dough oven", "--k", "2", "--mode", "hybrid",
                        "--filter", "topic=cooking|music", "--json", "--target", target)
    found = json.loads(out)
    assert code == 0 and found["mode"] == "hybrid" and isinstance(found["index_generation"], int)
    hit = found["hits"][0]
    assert hit["doc_id"].startswith("cooking") and isinstance(hit["start_char"], int)
    assert isinstance(hit["lineage"]["fused"]["rank"], int) and isinstance(hit["score"], float)
    assert hit["source_updated_at"].endswith("Z") and "timings" in found and "total" in found["timings"]

    code, out, _ = _run(capsys, "info", "--json", "--target", target)
    info = json.loads(out)
    default = {n["name"]: n for n in info["namespaces"]}["default"]
    assert code == 0 and default["document_count"] == 12 and isinstance(default["chunk_count"], int)
    assert isinstance(info["index_generation"], int) and isinstance(info["config"], dict)

    code, out, _ = _run(capsys, "namespaces", "--json", "--target", target)
    assert code == 0 and [n["name"] for n in json.loads(out)] == ["default"]
    code, out, _ = _run(capsys, "namespaces", "--target", target)
    assert code == 0 and out.splitlines()[1].split()[:3] == ["default", "12", str(default["chunk_count"])]

    code, out, _ = _run(capsys, "info", "--target", target)
    assert code == 0 and "index generation" in out and "1 namespace, 12 documents" in out


def test_get_and_delete(target, capsys):
    code, out, _ = _run(capsys, "get", "music-1", "--chunks", "--target", target)
    assert code == 0 and out.startswith("default/music-1  'music 1': ") and "metadata parity=1 topic=music" in out
    code, out, _ = _run(capsys, "get", "music-1", "--chunks", "--json", "--target", target)
    doc = json.loads(out)
    assert doc["chunk_count"] == len(doc["chunks"]) >= 1 and doc["metadata"] == {"parity": "1", "topic": "music"}
    chunk_id = doc["chunks"][0]["chunk_id"]
    code, out, _ = _run(capsys, "get", "--chunk", chunk_id, "--json", "--target", target)
    assert code == 0 and json.loads(out)["doc_id"] == "music-1" and isinstance(json.loads(out)["token_count"], int)
    code, out, _ = _run(capsys, "get", "--chunk", chunk_id, "--target", target)
    assert code == 0 and out.startswith(f"chunk {chunk_id}: default/music-1 #0 ")

    code, out, _ = _run(capsys, "delete", "music-1", "ghost", "--target", target)
    assert code == 0 and out.startswith("1 document deleted (") and "not found: ghost" in out
    code, out, _ = _run(capsys, "delete", "music-0", "--json", "--target", target)
    assert code == 0 and json.loads(out)["deleted_document_count"] == 1 and json.loads(out)["not_found"] == []

    code, _, err = _run(capsys, "get", "music-1", "--target", target)
    assert code == 3 and "NOT_FOUND" in err
    code, _, err = _run(capsys, "get", "--target", target)
    assert code == 2 and "give a DOC_ID, or --chunk CHUNK_ID" in err


def test_exit_codes_by_class(target, capsys):
    code, _, err = _run(capsys, "search", "x", "--namespace", "absent", "--target", target)
    assert code == 3 and "NOT_FOUND" in err
    code, _, err = _run(capsys, "delete", "", "--target", target)
    assert code == 2 and "INVALID_ARGUMENT" in err
    code, _, err = _run(capsys, "search", "x", "--filter", "topic", "--target", target)
    assert code == 2 and "--filter 'topic': give KEY=VALUE" in err
    code, _, err = _run(capsys, "search", "x", "--rerank", "--target", target)
    assert code == 2 and "FAILED_PRECONDITION" in err  # no reranker configured
    with pytest.raises(SystemExit) as usage:
        _run(capsys, "search", "x", "--mode", "unspecified")
    assert usage.value.code == 2 and "invalid choice: 'unspecified'" in capsys.readouterr().err


def test_no_server_names_serve_and_target(capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for argv in (("search", "x"), ("namespaces",), ("delete", "doc")):
        code, out, err = _run(capsys, *argv, "--target", f"127.0.0.1:{port}")
        assert code == 4 and out == "", argv
        assert f"no server answers at 127.0.0.1:{port}" in err and "retrieval-svc serve" in err and "--target" in err


def test_log_level_after_the_command_and_help_lists_exit_codes(capsys):
    from retrieval_svc import cli

    parser = cli.build_parser()
    assert parser.parse_args(["search", "x", "--log-level", "debug"]).log_level == "DEBUG"
    assert parser.parse_args(["--log-level", "error", "search", "x"]).log_level == "ERROR"
    assert parser.parse_args(["search", "x"]).log_level == os.environ.get("RETRIEVAL_SVC_LOG_LEVEL", "INFO").upper()
    assert parser.parse_args(["keys", "hash", "--log-level", "warning"]).log_level == "WARNING"
    with pytest.raises(SystemExit):
        parser.parse_args(["info", "--log-level", "loud"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "--help"])
    help_text = capsys.readouterr().out
    assert "{dense,bm25,hybrid}" in help_text and "unspecified" not in help_text
    assert "3    not found" in help_text and "5    not allowed" in help_text


def test_server_commands_say_what_to_install_when_server_dependencies_are_missing(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "faiss") else real(name, *a))
    code, _, err = _run(capsys, "serve", "--port", "0")
    assert code == 2
    assert "serve: needs the server's dependencies, and torch, faiss-cpu are not installed" in err
    assert 'pip install "retrieval-svc[server]"' in err


def test_keys_json(tmp_path, capsys):
    code, out, _ = _run(capsys, "keys", "new", "--id", "bot", "--role", "read:tenant-*", "--json")
    issued = json.loads(out)
    assert code == 0 and issued["id"] == "bot" and issued["token"] and "sha256" in issued["keys_file_entry"]
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n" + issued["keys_file_entry"])
    code, out, _ = _run(capsys, "keys", "check", str(keys), "--json")
    assert code == 0 and json.loads(out)["key_count"] == 1


def test_namespaces_prefix_and_delete_all(target, capsys):
    from retrieval_svc.client import RetrievalClient

    with RetrievalClient(target) as client:
        client.ingest([{"namespace": "scratch-1", "doc_id": "s", "text": "Scratch notes about kites."}])
    code, out, _ = _run(capsys, "namespaces", "--prefix", "scratch", "--json", "--target", target)
    assert code == 0 and [n["name"] for n in json.loads(out)] == ["scratch-1"]
    code, _, err = _run(capsys, "delete", "--all", "--target", target)
    assert code == 2 and "--namespace NS" in err
    code, _, err = _run(capsys, "delete", "s", "--all", "--namespace", "scratch-1", "--target", target)
    assert code == 2 and "not both" in err
    code, out, _ = _run(capsys, "delete", "--all", "--namespace", "scratch-1", "--target", target)
    assert code == 0 and out.startswith("namespace scratch-1 deleted: 1 document (")
    code, out, _ = _run(capsys, "namespaces", "--prefix", "scratch", "--json", "--target", target)
    assert code == 0 and json.loads(out) == []
    code, _, err = _run(capsys, "delete", "--all", "--namespace", "scratch-1", "--target", target)
    assert code == 3 and "NOT_FOUND" in err
