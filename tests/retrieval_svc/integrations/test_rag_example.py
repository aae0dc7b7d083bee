"""examples/rag.py against a real server holding examples/sample.jsonl: the offline extractive
answer cites the document it quotes, and the pluggable generators (a LangChain chat model, an
OpenAI-compatible server) get the prompt with the cited context."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "rag.py"
QUESTION = "How does BM25 weigh rare terms?"


@pytest.fixture(scope="module")
def rag():
    spec = importlib.util.spec_from_file_location("rag_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_answers_offline_with_citations(target):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAG_OPENAI_BASE_URL", None)
    ran = subprocess.run([sys.executable, str(EXAMPLE), QUESTION, "--target", target, "--namespace", "sample"],
                         capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert ran.returncode == 0, ran.stderr
    context, answer = ran.stdout.split("\nAnswer (extractive, offline):\n")
    assert "1. [bm25] 'Okapi BM25'" in context and "updated 2026-02-15T12:00:00+00:00" in context
    assert "Rare terms weigh more through the inverse document frequency. [bm25]" in answer


def test_a_langchain_chat_model_gets_the_cited_context(rag, target, capsys):
    fake = "langchain_core.language_models.fake_chat_models:FakeListChatModel"
    code = rag.main([QUESTION, "--target", target, "--namespace", "sample", "--k", "2", "--show-prompt",
                     "--chat-model", fake, "--chat-model-kwargs", json.dumps({"responses": ["By IDF [bm25]."]})])
    out = capsys.readouterr().out
    assert code == 0 and out.endswith(f"Answer ({fake}):\nBy IDF [bm25].\n")
    assert "[bm25] Okapi BM25 (https://example.org/bm25, updated 2026-02-15)\nBM25 is a bag-of-words" in out


def test_an_openai_compatible_server_gets_the_prompt(rag, target, capsys, monkeypatch):
    received = []

    class Completions(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.headers["Authorization"],
                             json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "IDF [bm25]"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http = HTTPServer(("127.0.0.1", 0), Completions)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    monkeypatch.setenv("RAG_OPENAI_BASE_URL", f"http://127.0.0.1:{http.server_port}/v1")
    monkeypatch.setenv("RAG_OPENAI_MODEL", "local-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        assert rag.main([QUESTION, "--target", target, "--namespace", "sample", "--k", "3"]) == 0
    finally:
        http.shutdown()
    assert capsys.readouterr().out.endswith("):\nIDF [bm25]\n")
    ((path, authorization, body),) = received
    assert (path, authorization, body["model"]) == ("/v1/chat/completions", "Bearer sk-test", "local-model")
    system, user = body["messages"]
    assert "cite the passage" in system["content"] and user["content"].endswith(f"Question: {QUESTION}")
    assert user["content"].count("\n\n[") == 3 and "[bm25] Okapi BM25" in user["content"]


def test_no_server_is_a_message_not_a_traceback(rag, capsys):
    assert rag.main([QUESTION, "--target", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "Is a server running?" in err and "Traceback" not in err
