"""Fixtures that start real servers on 127.0.0.1 around the session's encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from retrieval_svc.app import App
from retrieval_svc.client import ProtoClient
from retrieval_svc.server import Server

sys.path.insert(0, str(Path(__file__).parent))  # corpus.py, shared test corpora

from server_settings import SMALL_WINDOWS, make_settings  # noqa: E402, F401  (re-exported)


@pytest.fixture
def start_server(tmp_path, encoder):
    """start_server(store_path=None, reranker_model=None, encoder_override=None, **sections)
    -> (Server, ProtoClient)."""
    running = []

    def start(store_path=None, reranker_model=None, encoder_override=None, **sections):
        settings = make_settings(store_path or tmp_path / "store", **sections)
        app = App(settings, encoder=encoder_override or encoder, reranker=reranker_model)
        server = Server(app).start()
        client = ProtoClient(f"127.0.0.1:{server.port}", timeout=60)
        running.append((server, client))
        return server, client

    yield start
    for server, client in running:
        client.close()
        try:
            server.stop(0)
        except Exception:
            pass


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """The URI of a real Milvus standalone server on 127.0.0.1 for the session
    (milvus_server.py), or a skip where none is installed."""
    from milvus_server import MilvusServer, milvus_server_available

    if not milvus_server_available():
        pytest.skip("no Milvus server here (scripts/tools.sh installs milvus==2.3.5 into .venv-milvus)")
    with MilvusServer(tmp_path_factory.mktemp("milvus-server")) as server:
        yield server.uri
