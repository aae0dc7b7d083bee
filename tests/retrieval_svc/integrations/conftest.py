"""One real server for the framework retrievers' tests: the topic corpus in the default
namespace and examples/sample.jsonl in "sample"."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval_svc.app import App
from retrieval_svc.client import RetrievalClient
from retrieval_svc.server import Server
from retrieval_svc.sources import read_documents

from corpus import topic_documents  # on sys.path via tests/retrieval_svc/conftest.py
from server_settings import make_settings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def target(tmp_path_factory, encoder) -> str:
    """host:port of a server on 127.0.0.1 for the tests of this folder, which only read it. Session
    scope: pytest has no folder scope for a folder without __init__.py; the server idles to the end."""
    server = Server(App(make_settings(tmp_path_factory.mktemp("store")), encoder=encoder)).start()
    target = f"127.0.0.1:{server.port}"
    with RetrievalClient(target) as client:
        client.ingest(topic_documents(), batch_size=6)
        client.ingest(read_documents(REPO / "examples" / "sample.jsonl"), namespace="sample")
    yield target
    server.stop(0)
