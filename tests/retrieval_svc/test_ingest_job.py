"""Ingestion jobs (`retrieval-svc ingest`): reject policy, dead letters, exit codes, and
retry-with-resume across a server killed and restarted mid-job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from retrieval_svc import cli
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client import ProtoClient, RetryPolicy, call_with_retries, error_details
from retrieval_svc.sources import read_records

REPO = Path(__file__).resolve().parents[2]
SMALL_CHUNKS = {"RETRIEVAL_SVC_CHUNKER__WINDOW_TOKENS": "64", "RETRIEVAL_SVC_CHUNKER__OVERLAP_TOKENS": "8",
                "RETRIEVAL_SVC_EVALUATION__SCHEDULE_SECONDS": "0", "HF_HUB_OFFLINE": "1"}
SUMMARY_LINE = ("8 documents: 5 committed (5 added, 0 updated, 0 unchanged), 3 rejected (dead letters: {}), "
                "{} embedded, 0 retries")


def _doc(doc_id: str, text: str, **fields) -> str:
    return json.dumps({"doc_id": doc_id, "text": text, **fields})


def _mixed_jsonl(path: Path) -> Path:
    """Good records, three bad ones (each a different kind) and a title-only one; a blank line
    makes line numbers differ from record numbers."""
    lines = [
        _doc("a", "Lighthouses warn ships about rocks near the coast.", title="Lighthouses"),  # record 0, line 1
        _doc("b", "Kites fly when the wind lifts them over the hill."),  # 1, line 2
        "",  # blank: no record
        _doc("empty", "", title=""),  # 2, line 4: server rejects, missing_field
        '{"doc_id": "broken", "text": "an unterminated string}',  # 3, line 5: does not parse
        _doc("c", "Glaciers carve valleys as they slowly move downhill."),  # 4, line 6
        _doc("huge-meta", "Bees dance to tell where flowers are.", metadata={"note": "x" * 100_000}),  # 5, line 7
        _doc("title-only", "", title="Zeppelin hangar inspection checklist"),  # 6, line 8
        _doc("d", "Bread rises as yeast ferments the sugars in the dough."),  # 7, line 9
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys, *argv) -> tuple[int, dict, str]:
    code = cli.main(["ingest", *argv, "--quiet"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def _dead_letters(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sources_yield_every_record_with_its_place(tmp_path):
    path = _mixed_jsonl(tmp_path / "mixed.jsonl")
    records = list(read_records(path))
    assert [r.index for r in records] == list(range(8))
    assert records[3].location == f"{path}:5" and records[3].document is None
    assert records[3].reason == "unparseable" and "not valid JSON" in records[3].message
    assert records[6].document.title == "Zeppelin hangar inspection checklist"
    assert [r.index for r in read_records(path, start=6)] == [6, 7]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('[1, 2]\n{"doc_id": "m", "text": "t", "metadata": ["x"]}\n'
                   '{"doc_id": "t", "text": "t", "source_updated_at": "last tuesday"}\n'
                   '{"doc_id": "n", "text": "t", "source_updated_at": NaN}\n'
                   '{"doc_id": "s", "text": "\\ud800"}\n')
    bad.open("ab").write(b'{"doc_id": "u", "text": "\xff"}\n')
    got = [(r.field, r.reason) for r in read_records(bad)]
    assert got == [("record", "unparseable"), ("metadata", "malformed"), ("source_updated_at", "malformed"),
                   ("source_updated_at", "malformed"), ("text", "malformed"), ("record", "unparseable")]


def test_default_job_skips_bad_records_dead_letters_them_and_exits_3(start_server, tmp_path, capsys):
    server, client = start_server()
    target = f"127.0.0.1:{server.port}"
    path = _mixed_jsonl(tmp_path / "mixed.jsonl")
    dead = tmp_path / "dead.jsonl"

    code, out, err = _run(capsys, str(path), "--target", target, "--batch-size", "3", "--dead-letter", str(dead))
    assert code == 3
    assert out["records"] == 8 and out["added_document_count"] == 5 and out["rejected_document_count"] == 3
    assert out["outcome"] == "completed" and out["resume_from"] is None and out["dead_letters"] == str(dead)
    assert isinstance(out["embedded_chunk_count"], int) and out["embedded_chunk_count"] >= 5
    line = SUMMARY_LINE.format(dead, f"{out['embedded_chunk_count']} chunks")
    assert line in err.splitlines()

    rows = _dead_letters(dead)
    assert [(r["source"], r["record"], r["doc_id"], r["field"], r["reason"], r["rejected_by"]) for r in rows] == [
        (f"{path}:4", 2, "empty", "text", "missing_field", "server"),
        (f"{path}:5", 3, "", "record", "unparseable", "client"),
        (f"{path}:7", 5, "huge-meta", "metadata", "too_large", "server"),
    ]
    assert rows[2]["message"].startswith("metadata['note'] has 100000 characters")  # not "document 4 ..."
    assert "max_metadata_value_chars" in rows[2]["message"]
    assert rows[2]["original"]["metadata"]["note"] == "x" * 100_000
    assert rows[1]["original"] == '{"doc_id": "broken", "text": "an unterminated string}'

    for doc_id in ("a", "b", "c", "title-only", "d"):
        assert client.get_document("", doc_id).document.doc_id == doc_id
    hits = client.search("zeppelin hangar inspection", k=1, mode=pb.SEARCH_MODE_BM25).hits
    assert hits[0].doc_id == "title-only"

    # Again, allowing rejects: nothing changed, exit 0, the dead letters appended to the same file.
    code, out, err = _run(capsys, str(path), "--target", target, "--dead-letter", str(dead), "--allow-rejects")
    assert code == 0
    assert out["unchanged_document_count"] == 5 and out["rejected_document_count"] == 3
    assert out["embedded_chunk_count"] == 0
    assert len(_dead_letters(dead)) == 6


def test_default_dead_letter_file_is_new_and_named_after_the_input(start_server, tmp_path, capsys, monkeypatch):
    server, _ = start_server()
    path = _mixed_jsonl(tmp_path / "mixed.jsonl")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = _run(capsys, str(path), "--target", f"127.0.0.1:{server.port}")
    assert code == 3
    [dead] = list(work.glob("mixed.rejected-*.jsonl"))
    assert out["dead_letters"] == str(dead)
    assert f"(dead letters: {out['dead_letters']})" in err
    assert len(_dead_letters(dead)) == 3


def test_on_error_stop_commits_only_the_records_before_the_first_bad_one(start_server, tmp_path, capsys):
    server, client = start_server()
    target = f"127.0.0.1:{server.port}"
    path = _mixed_jsonl(tmp_path / "mixed.jsonl")
    dead = tmp_path / "dead.jsonl"

    # The first bad record (line 4) fails server-side, in the middle of the one batch.
    code, out, err = _run(capsys, str(path), "--target", target, "--on-error", "stop", "--dead-letter", str(dead))
    assert code == 2
    assert out["added_document_count"] == 2 and out["rejected_document_count"] == 1
    assert out["outcome"] == "stopped_on_invalid" and out["resume_from"] == 2
    assert f"stopped at {path}:4 (record 2): text and title are both blank" in err and "--resume-from 2" in err
    ns = {n.name: n for n in client.info().namespaces}
    assert ns["default"].document_count == 2
    with pytest.raises(grpc.RpcError) as missing:
        client.get_document("", "c")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert [(r["record"], r["reason"]) for r in _dead_letters(dead)] == [(2, "missing_field")]

    # Resuming past it, the next bad record (line 5) fails to parse here: "c" after it stays out.
    code, out, err = _run(capsys, str(path), "--target", target, "--on-error", "stop", "--dead-letter", str(dead),
                          "--resume-from", "3")
    assert code == 2 and out["resume_from"] == 3 and out["added_document_count"] == 0
    assert f"stopped at {path}:5 (record 3): not valid JSON" in err
    with pytest.raises(grpc.RpcError):
        client.get_document("", "c")
    assert [r["record"] for r in _dead_letters(dead)] == [2, 3]


def test_unreadable_input_and_bad_usage_exit_2(tmp_path, capsys):
    assert cli.main(["ingest", str(tmp_path / "missing.jsonl"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli.main(["ingest", "x.jsonl", "--batch-size", "0"])
    assert usage.value.code == 2


def test_no_server_fails_with_exit_1_and_the_resume_command(tmp_path, capsys):
    path = _mixed_jsonl(tmp_path / "mixed.jsonl")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = cli.main(["ingest", str(path), "--quiet", "--target", f"127.0.0.1:{port}", "--retries", "2",
                     "--dead-letter", str(tmp_path / "dead.jsonl")])
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["resume_from"] == 0 and json.loads(out)["retries"] == 2
    assert f"stopped at {path}:1 (record 0): UNAVAILABLE" in err and "gave up after 2 retries" in err
    assert f"no server answers at 127.0.0.1:{port}? Start one with `retrieval-svc serve`" in err
    assert (f"  retrieval-svc ingest {path} --target 127.0.0.1:{port} --retries 2 "
            f"--dead-letter {tmp_path / 'dead.jsonl'} --quiet --resume-from 0") in err.splitlines()
    assert not (tmp_path / "dead.jsonl").exists()  # nothing was acknowledged, so nothing dead-lettered


# --- retry policy, against fake errors ---------------------------------------------------


class _FakeError(grpc.RpcError, grpc.Call):
    def __init__(self, code: grpc.StatusCode, retry_after: float | None = None, violation: str = ""):
        self._code, self._details = code, f"{code.name} for a test"
        status = status_pb2.Status(code=code.value[0], message=self._details)
        if retry_after is not None:
            info = error_details_pb2.RetryInfo()
            info.retry_delay.FromNanoseconds(int(retry_after * 1e9))
            status.details.append(_packed(info))
        if violation:
            status.details.append(_packed(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=violation, description="bad")])))
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def _packed(message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def test_error_details_unpack_retry_info_and_field_violations():
    details = error_details(_FakeError(grpc.StatusCode.INVALID_ARGUMENT, violation="documents[7].metadata"))
    assert details.retry_after_seconds is None and details.document_index() == 7
    assert error_details(_FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, 2.5)).retry_after_seconds == 2.5


def test_retry_policy_backs_off_honours_retry_info_and_gives_up():
    policy = RetryPolicy(retries=3, max_seconds=60, initial_backoff_seconds=1, max_backoff_seconds=4)
    unavailable = _FakeError(grpc.StatusCode.UNAVAILABLE)
    delays = [policy.delay(unavailable, n, 0.0) for n in range(4)]
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 2 <= delays[2] <= 4 and delays[3] is None
    assert policy.delay(_FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, 7.0), 0, 0.0) == 7.0
    assert policy.delay(_FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED), 0, 0.0) is None  # over a limit
    assert policy.delay(_FakeError(grpc.StatusCode.INVALID_ARGUMENT), 0, 0.0) is None
    assert policy.delay(unavailable, 0, 59.5) == pytest.approx(0.5, abs=0.5)  # clipped to the budget
    assert policy.delay(unavailable, 0, 60.0) is None

    calls, slept = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _FakeError(grpc.StatusCode.DEADLINE_EXCEEDED)
        return "done"

    assert call_with_retries(flaky, policy, sleep=slept.append) == "done"
    assert len(calls) == 3 and len(slept) == 2


# --- retry-with-resume across a server killed mid-job --------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(store: Path, port: int, log: Path) -> subprocess.Popen:
    with open(log, "a") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(store), "--port", str(port),
             "--metrics-port", "-1"], stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **SMALL_CHUNKS},
            cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if f"READY grpc=127.0.0.1:{port}" in log.read_text():
            return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not start:\n{log.read_text()}")


def _document_count(client: ProtoClient) -> int:
    try:
        return sum(n.document_count for n in client.info().namespaces)
    except grpc.RpcError:
        return -1


def test_job_survives_a_server_killed_mid_job_and_commits_every_record_once(tmp_path):
    n_docs, batch = 120, 2
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(
        _doc(f"doc-{i}", f"Record {i} tells of a {('river', 'castle', 'orbit', 'meadow')[i % 4]} and "
                         f"the number {i} written in full.", title=f"Title {i}") + "\n" for i in range(n_docs)))
    store, log, port = tmp_path / "store", tmp_path / "server.log", _free_port()
    target = f"127.0.0.1:{port}"
    server = _serve(store, port, log)
    job = None
    try:
        job = subprocess.Popen(
            [sys.executable, "-m", "retrieval_svc.cli", "ingest", str(corpus), "--target", target, "--quiet",
             "--batch-size", str(batch), "--retries", "60", "--retry-max-seconds", "120",
             "--dead-letter", str(tmp_path / "dead.jsonl")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **SMALL_CHUNKS})
        with ProtoClient(target, timeout=10) as probe:
            deadline = time.monotonic() + 60
            while _document_count(probe) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert job.poll() is None, "the job finished before the server could be killed"
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        time.sleep(2)  # the job meets a closed port for a while
        assert job.poll() is None
        server = _serve(store, port, log)
        out, err = job.communicate(timeout=180)
        assert job.returncode == 0, err
        summary = json.loads(out)
        assert summary["outcome"] == "completed" and summary["retries"] >= 1, err
        assert summary["records"] == n_docs and summary["rejected_document_count"] == 0
        # A batch committed just before the kill but not acknowledged comes back unchanged.
        assert summary["added_document_count"] + summary["unchanged_document_count"] == n_docs
        assert summary["updated_document_count"] == 0 and summary["unchanged_document_count"] <= batch
        assert "UNAVAILABLE" in err and f"{n_docs} documents: {n_docs} committed" in err
        with ProtoClient(target, timeout=30) as client:
            for i in range(n_docs):
                assert client.get_document("", f"doc-{i}").document.title == f"Title {i}"
            assert _document_count(client) == n_docs
    finally:
        if job is not None and job.poll() is None:
            job.kill()
            job.wait()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0, log.read_text()
