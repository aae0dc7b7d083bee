"""Fixtures that start real servers on 127.0.0.1 around the session's encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from retrieval_svc.app import App
from retrieval_svc.client import RetrievalClient
from retrieval_svc.server import Server
from retrieval_svc.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))  # corpus.py, shared test corpora

SMALL_WINDOWS = {"window_tokens": 48, "overlap_tokens": 8}


def make_settings(store_path, **sections) -> Settings:
    base = {
        "server": {"port": 0, "metrics_port": -1},
        "store": {"path": str(store_path)},
        "chunker": dict(SMALL_WINDOWS),
        "evaluation": {"schedule_seconds": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Settings().replace(**base)


@pytest.fixture
def start_server(tmp_path, encoder):
    """start_server(store_path=None, reranker_model=None, encoder_override=None, **sections)
    -> (Server, RetrievalClient)."""
    running = []

    def start(store_path=None, reranker_model=None, encoder_override=None, **sections):
        settings = make_settings(store_path or tmp_path / "store", **sections)
        app = App(settings, encoder=encoder_override or encoder, reranker=reranker_model)
        server = Server(app).start()
        client = RetrievalClient(f"127.0.0.1:{server.port}", timeout=60)
        running.append((server, client))
        return server, client

    yield start
    for server, client in running:
        client.close()
        try:
            server.stop(0)
        except Exception:
            pass
