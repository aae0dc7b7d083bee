"""Shared plumbing for the service benchmarks (quality, ingest_throughput, latency).

Every benchmark starts the real service in-process (App + Server on
127.0.0.1, port 0) and talks to it only through `ProtoClient`, so the
numbers include protobuf (de)serialisation and the gRPC transport. Caches
(stores, the tiny cross-encoder, result files) live under bench/.cache/,
which git ignores.

`write_doc_section` replaces (or appends) one headed section of
docs/benchmarks.md between HTML comment markers, so several scripts (and
people) can own separate sections of the same file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
DOC = REPO / "docs" / "benchmarks.md"
DEFAULT_DATA_ROOT = Path("/work/shared/data")

DOC_HEADER = """# Benchmarks

Measured numbers for retrieval-svc. Each section below is written by the script
named in it (`--write-doc` replaces only that script's section, between its
`<!-- BEGIN ... -->` / `<!-- END ... -->` markers); add new sections the same way.
Every benchmark runs the real server in-process on 127.0.0.1 (port 0) and talks
to it only through `retrieval_svc.client.ProtoClient` (gRPC), unless the
section says otherwise.
"""


# --- machine and time ------------------------------------------------------------


_MACHINE_LINE: str | None = None


def machine_line() -> str:
    """The machine, torch's thread count and the load average, as of the first call:
    call it when a benchmark starts (App's FAISS set-up lowers torch's thread count in
    the thread that builds it, and the load average changes)."""
    global _MACHINE_LINE
    if _MACHINE_LINE is None:
        _MACHINE_LINE = _describe_machine()
    return _MACHINE_LINE


def _describe_machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} cores ({cpu}), CPU only (torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads), Python {platform.python_version()}; "
            f"1-min load average at start {load:.1f} (the cores are shared with other "
            f"engineers' test runs, so timings are noisy)")


def today() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def command_line() -> str:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


# --- data -------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirDoc:
    doc_id: str
    title: str
    text: str


def read_corpus(folder: Path) -> list[BeirDoc]:
    docs = []
    with open(folder / "corpus.jsonl", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                record = json.loads(line)
                docs.append(BeirDoc(str(record["_id"]), record.get("title") or "", record.get("text") or ""))
    return docs


def title_in_text(doc: BeirDoc) -> bool:
    """True when the text already starts with the title (Cranfield repeats it)."""
    title = " ".join(doc.title.lower().split())
    text = " ".join(doc.text.lower().split())
    return bool(title) and text.startswith(title)


def indexed_text(doc: BeirDoc, title_mode: str) -> str:
    """The text the service chunks and indexes for `doc`.

    title_mode: "separate" (text only; the title goes in Document.title, and the
    service heads every chunk with it: chunker.prepend_title), "prepend" (title +
    newline + text), or "auto"
    (prepend unless the text already starts with the title).
    """
    if title_mode == "separate" or not doc.title.strip():
        return doc.text
    if title_mode == "auto" and title_in_text(doc):
        return doc.text
    if not doc.text.strip():
        return doc.title
    return f"{doc.title.strip()}\n{doc.text}"


# --- caches -----------------------------------------------------------------------


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def tiny_cross_encoder() -> Path:
    """The tiny UNTRAINED cross-encoder of tests/_fixtures, built once into bench/.cache."""
    out = CACHE / "tiny-cross-encoder"
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    spec = importlib.util.spec_from_file_location(
        "tiny_cross_encoder", REPO / "tests" / "_fixtures" / "tiny_cross_encoder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.build_tiny_cross_encoder(out))


def copy_ledger(source_store: Path, target_store: Path) -> None:
    """Seed `target_store` with a copy of `source_store`'s ledger (no index snapshot),
    so the service rebuilds its indexes from the stored embeddings: a store with
    different index settings (BM25 k1/b) without re-embedding anything."""
    target_store.mkdir(parents=True, exist_ok=True)
    target = target_store / "ledger.sqlite3"
    if target.exists():
        return
    src = sqlite3.connect(source_store / "ledger.sqlite3")
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


# --- the in-process service -------------------------------------------------------


def bench_settings(store_path: Path, **sections):
    from retrieval_svc.settings import Settings

    base = {
        "server": {"port": 0, "metrics_port": -1, "host": "127.0.0.1"},
        "store": {"path": str(store_path), "snapshot_interval_seconds": 3600.0},
        "evaluation": {"schedule_seconds": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Settings().replace(**base)


@contextlib.contextmanager
def running_service(settings, *, encoder=None, reranker=None,
                    client_timeout: float | None = 600.0) -> Iterator[tuple[object, object]]:
    """Start App + Server on 127.0.0.1:0; yield (server, client); stop both."""
    from retrieval_svc.app import App
    from retrieval_svc.client import ProtoClient
    from retrieval_svc.server import Server

    if settings.server.host != "127.0.0.1":
        raise ValueError("benchmarks only listen on 127.0.0.1")
    app = App(settings, encoder=encoder, reranker=reranker)
    server = Server(app).start()
    client = ProtoClient(f"127.0.0.1:{server.port}", timeout=client_timeout)
    try:
        client.wait_ready(60)
        yield server, client
    finally:
        client.close()
        server.stop(0)


def namespace_counts(client, namespace: str) -> tuple[int, int]:
    """(documents, chunks) the server holds in `namespace`, (0, 0) if none."""
    for ns in client.info().namespaces:
        if ns.name == namespace:
            return int(ns.document_count), int(ns.chunk_count)
    return 0, 0


# --- tables and the doc -----------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (also readable on a terminal)."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def write_doc_section(key: str, body: str, doc: Path = DOC) -> None:
    """Replace the section marked `key` in docs/benchmarks.md, or append it.

    The body should start with its own `##` heading. A lock file keeps two
    benchmark processes from clobbering each other's writes.
    """
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    block = f"{begin}\n{body.strip()}\n{end}\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    lock_path = CACHE / "benchmarks-doc.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = doc.read_text() if doc.exists() else DOC_HEADER
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + block
        tmp = doc.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(doc)
    print(f"wrote section {key!r} of {doc.relative_to(REPO)}")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


# --- the product's CLI against a served store -------------------------------------------

CLI = [sys.executable, "-m", "retrieval_svc.cli"]


def serve_cli(settings: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`retrieval-svc serve --config settings` as a child; (process, target) once READY."""
    with open(log, "w") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([*CLI, "serve", "--config", str(settings)], stdout=subprocess.PIPE,
                                stderr=err, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            return proc, line.split()[1].split("=", 1)[1]
    raise RuntimeError(f"the server exited with {proc.wait()}; see {log}")


def cli_ingest_and_eval(sections: dict, data: Path, folder: Path,
                        stages: str = "dense,bm25,fused") -> dict:
    """In a fresh `folder`: serve with default settings plus `sections` ("{folder}" in a
    string value is replaced by the folder; the store defaults to folder/store), `retrieval-svc
    ingest` the BEIR corpus `data`, `retrieval-svc eval --beir` its test split (ks 10 and 100),
    stop the server (SIGTERM, by pid). Returns timings and nDCG@10, recall@100 and mean latency
    by stage."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    settings = {"server": {"port": 0, "metrics_port": -1}, "evaluation": {"schedule_seconds": 0},
                "store": {"path": str(folder / "store")}}
    for name, values in sections.items():
        settings.setdefault(name, {}).update(
            {k: v.replace("{folder}", str(folder)) if isinstance(v, str) else v for k, v in values.items()})
    (folder / "settings.yaml").write_text(json.dumps(settings))
    proc, target = serve_cli(folder / "settings.yaml", folder / "server.log")
    try:
        t = time.perf_counter()
        subprocess.run([*CLI, "ingest", str(data), "--target", target, "--quiet", "--allow-rejects",
                        "--dead-letter", str(folder / "rejected.jsonl")], check=True)
        ingest_seconds = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([*CLI, "eval", "--beir", str(data), "--ks", "10,100", "--stages", stages,
                        "--json", str(folder / "eval.json"), "--target", target],
                       check=True, stdout=subprocess.DEVNULL)
        eval_seconds = time.perf_counter() - t
        chunks = subprocess.run([*CLI, "namespaces", "--json", "--target", target], check=True,
                                capture_output=True, text=True).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    result = json.loads((folder / "eval.json").read_text())
    by_stage = {}
    for stage in result["stages"]:
        values = {f'{m["metric"]}@{m["k"]}': m["value"] for m in stage["metrics"]}
        by_stage[stage["stage"]] = {"ndcg@10": values["ndcg@10"], "recall@100": values["recall@100"],
                                    "mean_latency_ms": 1000 * stage["latency"]["mean"]}
    return {"ingest_seconds": ingest_seconds, "eval_seconds": eval_seconds,
            "queries": result.get("evaluated_query_count", result.get("queries_evaluated")),
            "chunks": sum(n["chunk_count"] for n in json.loads(chunks)), "stages": by_stage}
