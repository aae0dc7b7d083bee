"""Durability of the embedded store, through the real server (the atomic swap and what
every store must do: test_store_conformance.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.domain import Document
from retrieval_svc.errors import StartupError

from corpus import topic_documents


class CountingEncoder:
    """Wraps the real encoder and counts passages it embeds."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.dimension = inner.dimension
        self.passages = 0

    def encode(self, texts, *, is_query: bool):
        if not is_query:
            self.passages += len(texts)
        return self.inner.encode(texts, is_query=is_query)


def _ranking(client, query, mode):
    return [(h.chunk_id, round(h.score, 5)) for h in client.search(query, k=8, mode=mode).hits]


QUERIES = ["bread dough oven", "interest rates and inflation", "sails harbour wind"]
MODES = (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_BM25, pb.SEARCH_MODE_HYBRID)


@pytest.mark.parametrize("clean_shutdown", [True, False], ids=["snapshot", "crash"])
def test_restart_serves_same_results_without_reembedding(start_server, encoder, tmp_path, clean_shutdown):
    store = tmp_path / "persist"
    server, client = start_server(store_path=store)
    client.ingest(topic_documents())
    before = {(q, m): _ranking(client, q, m) for q in QUERIES for m in MODES}
    if clean_shutdown:
        server.stop(0)  # writes index snapshots
    else:
        # A crash after the ledger committed: no snapshot is written, the indexes die with
        # the process. Drop them without closing the store.
        server.grpc.stop(0).wait()
        server.app.store._indexes.clear()
        server.app.store.ledger.close()
        server.app.store._unlock()  # the kernel releases a dead process's flock
    counting = CountingEncoder(encoder)
    _, client2 = start_server(store_path=store, encoder_override=counting)
    after = {(q, m): _ranking(client2, q, m) for q in QUERIES for m in MODES}
    assert after == before
    assert counting.passages == 0
    summary = client2.ingest(topic_documents())
    assert summary.unchanged_document_count == 12 and summary.embedded_chunk_count == 0 and counting.passages == 0
    manifest = store / "indexes" / "manifest.json"
    assert manifest.exists() == clean_shutdown


def test_indexes_match_ledger_after_mixed_writes(start_server):
    server, client = start_server()
    client.ingest(topic_documents())
    client.ingest([Document("", "music-0", "A rewritten text about violins and cellos.")])
    client.delete("", ["finance-1"])
    stats = {s.namespace: s for s in server.app.store.stats()}["default"]
    assert stats.chunks == stats.dense_entries == stats.lexical_entries
    assert stats.dense_missing == stats.lexical_missing == 0
    ledger_keys = np.sort(server.app.store.ledger.chunk_keys("default"))
    with server.app.store.index_pairs() as indexes:
        assert np.array_equal(np.sort(indexes["default"].dense.keys()), ledger_keys)
        assert np.array_equal(np.sort(indexes["default"].lexical.keys()), ledger_keys)


def test_titles_head_every_chunk_in_the_index(start_server, tmp_path):
    server, client = start_server(store_path=tmp_path / "titled")
    body = " ".join(f"Sentence {i} talks about gears, levers and pulleys." for i in range(20))
    client.ingest([Document("", "machines", body, title="Zeppelin maintenance manual")])
    chunks = client.get_document("", "machines", include_chunks=True).chunks
    assert len(chunks) > 2
    hits = client.search("zeppelin", k=50, mode=pb.SEARCH_MODE_BM25).hits
    # Only the title holds the word, yet every chunk matches; hits return the raw chunk text.
    assert {h.chunk_id for h in hits} == {c.chunk_id for c in chunks}
    assert all("Zeppelin" not in h.text for h in hits)
    before = {(q, m): _ranking(client, q, m) for q in ("zeppelin", "gears and levers") for m in MODES}
    # A restart rebuilds BM25 from the ledger with the same titled text.
    server.grpc.stop(0).wait()
    server.app.store._indexes.clear()
    server.app.store.ledger.close()
    server.app.store._unlock()  # the kernel releases a dead process's flock
    _, client2 = start_server(store_path=tmp_path / "titled")
    assert {(q, m): _ranking(client2, q, m) for q in ("zeppelin", "gears and levers") for m in MODES} == before
    # A new title changes what every chunk embeds, so every chunk is re-embedded.
    summary = client2.ingest([Document("", "machines", body, title="Airship upkeep")])
    assert summary.embedded_chunk_count == len(chunks) and summary.updated_document_count == 1
    assert client2.search("zeppelin", k=5, mode=pb.SEARCH_MODE_BM25).hits == []


def test_titles_stay_out_of_the_index_when_disabled(start_server):
    _, client = start_server(chunker={"prepend_title": False})
    client.ingest([Document("", "d", "Gears and levers.", title="Zeppelin")])
    assert client.search("zeppelin", k=5, mode=pb.SEARCH_MODE_BM25).hits == []
    summary = client.ingest([Document("", "d", "Gears and levers.", title="Airship")])
    assert summary.updated_document_count == 1 and summary.embedded_chunk_count == 0


def test_passage_encodes_keep_torch_threads_after_faiss_updates(start_server, encoder):
    """FAISS pins OpenMP to dense.search_threads in each thread that touches an index; ingest's
    encodes must not inherit that (they run on their own thread)."""
    import torch

    seen = []

    class Recording(CountingEncoder):
        def encode(self, texts, *, is_query):
            if not is_query:
                seen.append(torch.get_num_threads())
            return super().encode(texts, is_query=is_query)

    fresh = []
    probe = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    probe.start()
    probe.join()
    _, client = start_server(
        encoder_override=Recording(encoder), server={"max_workers": 10},
        admission={"search_in_flight": 1, "search_queue": 0, "write_in_flight": 1, "write_queue": 0})
    for i in range(12):  # more ingests than workers: some worker encodes after its own FAISS update
        client.ingest(topic_documents(namespace=f"ns{i}", per_topic=1))
    assert len(seen) == 12 and set(seen) == set(fresh)


def test_a_store_refuses_an_encoder_it_was_not_built_with(start_server, encoder, tmp_path):
    import dataclasses

    server, client = start_server(store_path=tmp_path / "bound")
    client.ingest(topic_documents())
    server.stop(0)
    other = CountingEncoder(encoder)
    other.identity = dataclasses.replace(encoder.identity, revision="0123456789abcdef")
    with pytest.raises(StartupError, match="embedded by .* not by the configured encoder"):
        start_server(store_path=tmp_path / "bound", encoder_override=other)
    _, client2 = start_server(store_path=tmp_path / "bound")  # the original encoder still opens it
    assert client2.search("bread", k=1).hits


def test_the_same_weights_under_another_path_open_the_store(start_server, encoder, tmp_path):
    """Identity is the weights' hash and dimension: an upgrade that installs the same model
    under another path (another venv or image) keeps the store usable."""
    import dataclasses

    server, client = start_server(store_path=tmp_path / "moved")
    client.ingest(topic_documents())
    server.stop(0)
    moved = CountingEncoder(encoder)
    moved.identity = dataclasses.replace(encoder.identity, name="/opt/another-venv/models/minilm")
    _, client2 = start_server(store_path=tmp_path / "moved", encoder_override=moved)
    assert client2.search("bread", k=1).hits and moved.passages == 0
    assert client2.ingest(topic_documents()).embedded_chunk_count == 0
