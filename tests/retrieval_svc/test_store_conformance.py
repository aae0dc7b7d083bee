"""One conformance suite for every store backend (retrieval_svc.store.base), through the real
server: the embedded store, Milvus Lite, and a real Milvus server when one can be started
(tests/retrieval_svc/milvus_server.py; dense only, so the lexical cases skip there)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.domain import Document

from corpus import long_text, topic_documents

DENSE, BM25, HYBRID = pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_BM25, pb.SEARCH_MODE_HYBRID


class CountingEncoder:
    def __init__(self, inner) -> None:
        self.inner, self.identity, self.dimension, self.passages = inner, inner.identity, inner.dimension, 0

    def encode(self, texts, *, is_query: bool):
        if not is_query:
            self.passages += len(texts)
        return self.inner.encode(texts, is_query=is_query)


@pytest.fixture(params=["embedded", "milvus-lite", "milvus-server"])
def backend(request, tmp_path):
    """Settings sections for one backend, plus whether it has BM25."""
    if request.param == "embedded":
        return {"store": {"path": str(tmp_path / "store")}}, True
    if request.param == "milvus-lite":
        pytest.importorskip("milvus_lite")
        return {"store": {"backend": "milvus"},
                "milvus": {"uri": str(tmp_path / "milvus.db")}}, True
    server = request.getfixturevalue("milvus_server")
    return {"store": {"backend": "milvus"},
            "milvus": {"uri": server, "collection_prefix": _emptied(server, "conformance"),
                       "lexical": False},
            "search": {"default_mode": "dense"}}, False


def _emptied(uri: str, prefix: str) -> str:
    """`prefix`, with every row of its collections on the Milvus server deleted. The cases
    share one set of collections: creating and loading a store's three collections takes
    the 2.3 server about 12 s, emptying them about 1 s; each case still starts from an
    empty store (meta rows -- bindings, namespace settings -- included)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    try:
        for name, expression in ((f"{prefix}_chunks", "key >= -9223372036854775807"),
                                 (f"{prefix}_documents", 'pk != ""'), (f"{prefix}_meta", 'pk != ""')):
            if client.has_collection(name):
                client.delete(name, filter=expression)
                assert not client.query(name, filter=expression, output_fields=["count(*)"],
                                        consistency_level="Strong")[0]["count(*)"], name
    finally:
        client.close()
    return prefix


@pytest.fixture
def serve(start_server, backend):
    sections, lexical = backend

    def start(**overrides):
        merged = {name: dict(values) for name, values in sections.items()}
        for name, values in overrides.items():
            if name in ("encoder_override",):
                continue
            merged.setdefault(name, {}).update(values)
        return start_server(encoder_override=overrides.get("encoder_override"), **merged)

    start.lexical = lexical
    start.embedded = sections.get("store", {}).get("backend", "embedded") == "embedded"
    # Expiry cases: long enough for a Milvus commit (a flush on Milvus Lite takes seconds)
    # before the first read; the embedded store commits in milliseconds.
    start.ttl = 4.0 if start.embedded else 10.0
    return start


def _modes(serve):
    return (DENSE, BM25, HYBRID) if serve.lexical else (DENSE,)


def _ranking(client, query, mode, **fields):
    return [(h.chunk_id, round(h.score, 4)) for h in client.search(query, k=8, mode=mode, **fields).hits]


def _needs_lexical(serve):
    if not serve.lexical:
        pytest.skip("this backend has no BM25 (Milvus 2.3)")


def test_ingest_search_and_counts(serve):
    server, client = serve()
    summary = client.ingest(topic_documents())
    assert summary.added_document_count == 12 and summary.added_chunk_count >= 12
    for mode in _modes(serve):
        hits = client.search("bread dough oven", k=3, mode=mode).hits
        assert hits and hits[0].doc_id.startswith("cooking"), (mode, [h.doc_id for h in hits])
        assert all(h.text and h.chunk_id for h in hits)
    ns = {n.name: n for n in client.info().namespaces}["default"]
    assert (ns.document_count, ns.chunk_count) == (12, summary.added_chunk_count)


def test_hits_carry_lineage(serve):
    _needs_lexical(serve)
    _, client = serve()
    client.ingest(topic_documents())
    hit = client.search("bread dough oven", k=1, mode=HYBRID).hits[0]
    assert hit.HasField("dense") and hit.HasField("bm25") and hit.HasField("fused")
    assert hit.dense.rank >= 1 and hit.bm25.rank >= 1 and hit.bm25.score > 0


def test_documents_and_chunks_round_trip(serve):
    _, client = serve()
    text = long_text(60, seed=3)
    client.ingest([Document("", "long", text, title="A long one", metadata={"lang": "en"},
                            source_uri="s3://bucket/long.txt", source_updated_at=1_700_000_000.0)])
    got = client.get_document("", "long", include_chunks=True)
    assert got.document.text == text and got.document.title == "A long one"
    assert dict(got.document.metadata) == {"lang": "en"}
    assert got.document.source_uri == "s3://bucket/long.txt"
    assert got.document.source_updated_at.seconds == 1_700_000_000
    assert got.chunk_count == len(got.chunks) > 2
    assert [c.ordinal for c in got.chunks] == list(range(len(got.chunks)))
    for c in got.chunks:
        assert text[c.start_char:c.end_char] == c.text
        assert client.get_chunk(c.chunk_id).text == c.text


def test_reingest_keeps_unchanged_and_replaces_changed(serve, encoder):
    counting = CountingEncoder(encoder)
    _, client = serve(encoder_override=counting)
    client.ingest(topic_documents())
    embedded = counting.passages
    again = client.ingest(topic_documents())
    assert again.unchanged_document_count == 12 and again.embedded_chunk_count == 0
    assert counting.passages == embedded
    old = {c.chunk_id for c in client.get_document("", "music-0", include_chunks=True).chunks}
    changed = client.ingest([Document("", "music-0", "A rewritten text about violins and cellos.")])
    assert changed.updated_document_count == 1 and changed.removed_chunk_count == len(old)
    new = {c.chunk_id for c in client.get_document("", "music-0", include_chunks=True).chunks}
    assert new and not new & old
    for chunk_id in old:
        with pytest.raises(grpc.RpcError) as info:
            client.get_chunk(chunk_id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    for mode in _modes(serve):
        hits = client.search("violins and cellos", k=20, mode=mode).hits
        assert not {h.chunk_id for h in hits} & old
        assert any(h.chunk_id in new for h in hits)


def test_delete(serve):
    _, client = serve()
    client.ingest(topic_documents())
    gone = client.delete("", ["cooking-0", "cooking-1", "nope"])
    assert gone.deleted_document_count == 2 and list(gone.not_found) == ["nope"]
    for mode in _modes(serve):
        assert not [h for h in client.search("bread dough oven", k=20, mode=mode).hits
                    if h.doc_id.startswith("cooking")]
    with pytest.raises(grpc.RpcError) as info:
        client.get_document("", "baking-0")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert {n.name: n for n in client.info().namespaces}["default"].document_count == 10


def test_filters(serve):
    _, client = serve()
    docs = [Document("", f"d{i}", f"Harbour sails and wind, note {i}.", metadata={"team": t, "tier": str(i % 2)},
                     source_uri=f"uri-{i}") for i, t in enumerate(["red", "blue", "red", "green", "blue", "red"])]
    client.ingest(docs)

    def found(mode, *clauses):
        filters = [pb.FilterClause(key=k, any_of=v) for k, v in clauses]
        return {h.doc_id for h in client.search("harbour sails", k=50, mode=mode, filters=filters).hits}

    for mode in _modes(serve):
        assert found(mode, ("team", ["red"])) == {"d0", "d2", "d5"}
        assert found(mode, ("team", ["red", "green"]), ("tier", ["1"])) == {"d3", "d5"}
        assert found(mode, ("doc_id", ["d1", "d4", "zz"])) == {"d1", "d4"}
        assert found(mode, ("source_uri", ["uri-2"])) == {"d2"}
        assert found(mode, ("team", ['with "quotes" \\ and ünïcode'])) == set()


def test_max_age(serve):
    _, client = serve()
    now = time.time()
    client.ingest([Document("", "old", "Harbour sails in the wind.", source_updated_at=now - 86_400 * 30),
                   Document("", "new", "Harbour sails in the breeze.", source_updated_at=now - 60)])
    for mode in _modes(serve):
        assert {h.doc_id for h in client.search("harbour sails", k=10, mode=mode,
                                                max_age_seconds=3600).hits} == {"new"}
        assert {h.doc_id for h in client.search("harbour sails", k=10, mode=mode).hits} == {"new", "old"}


def test_namespaces_are_apart(serve):
    _, client = serve()
    client.ingest(topic_documents(namespace="tenant-a"))
    client.ingest([Document("tenant-b", "only", "Bread dough rises in a warm oven.")])
    for mode in _modes(serve):
        hits = client.search("bread dough oven", k=20, mode=mode, namespace="tenant-b").hits
        assert {h.doc_id for h in hits} == {"only"}
    with pytest.raises(grpc.RpcError) as info:
        client.search("bread", namespace="tenant-c")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert {n.name for n in client.info().namespaces} >= {"tenant-a", "tenant-b"}


def test_atomic_swap_under_concurrent_searches(serve):
    _, client = serve()
    version_a = long_text(30, seed=1, marker="sharedterm")
    version_b = long_text(30, seed=2, marker="sharedterm")
    client.ingest([Document("", "swap", version_a)])
    ids_a = {c.chunk_id for c in client.get_document("", "swap", include_chunks=True).chunks}
    client.ingest([Document("", "swap", version_b)])
    ids_b = {c.chunk_id for c in client.get_document("", "swap", include_chunks=True).chunks}
    assert ids_a and ids_b and not ids_a & ids_b
    stop = threading.Event()
    observed, errors = [], []

    def searcher(mode):
        while not stop.is_set():
            try:
                hits = client.search("sharedterm", k=200, mode=mode, bm25_candidates=200,
                                     dense_candidates=200).hits
                observed.append({h.chunk_id for h in hits})
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(m,)) for m in _modes(serve)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 4.0
    swaps = 0
    while time.monotonic() < deadline or swaps < 4:
        client.ingest([Document("", "swap", version_a if swaps % 2 else version_b)])
        swaps += 1
    stop.set()
    for t in threads:
        t.join()
    assert not errors and len(observed) >= 5
    for ids in observed:
        assert ids <= ids_a or ids <= ids_b, "a search saw a mix of two versions"
        if serve.embedded:
            # Under the store's lock a search sees a whole version. On Milvus a search can
            # meet a version whose rows it did not find (inserted after it searched): those
            # hits are dropped, so it may see less, never a mix.
            assert ids in (ids_a, ids_b), "a search saw part of a version"


def test_restart_serves_the_same_without_reembedding(serve, encoder):
    server, client = serve()
    client.ingest(topic_documents())
    queries = ["bread dough oven", "interest rates and inflation"]
    before = {(q, m): _ranking(client, q, m) for q in queries for m in _modes(serve)}
    client.close()
    server.stop(0)
    counting = CountingEncoder(encoder)
    _, client2 = serve(encoder_override=counting)
    assert {(q, m): _ranking(client2, q, m) for q in queries for m in _modes(serve)} == before
    assert client2.ingest(topic_documents()).embedded_chunk_count == 0 and counting.passages == 0


def test_lexical_side_stems_and_drops_stop_words(serve):
    _needs_lexical(serve)
    _, client = serve()
    client.ingest([Document("", "run", "The runner was running in the races."),
                   Document("", "swim", "Swimmers swim laps in the pool."),
                   *topic_documents(per_topic=1)])
    assert [h.doc_id for h in client.search("runs race", k=5, mode=BM25).hits] == ["run"]
    # Only stop words: nothing to match, an empty answer rather than every chunk.
    assert not client.search("the was in", k=5, mode=BM25).hits


def test_bm25_ranks_as_the_embedded_store_does(start_server, tmp_path):
    """The Milvus store's BM25 over our analyzed text orders hits as our own index does.
    Terms in over half the chunks rank differently (our idf floors their negative idf at
    bm25.epsilon x the mean; Milvus's idf, log(1 + (N - n + .5) / (n + .5)), stays
    positive), so the queries here have selective terms; bench/ compares nDCG on SciFact."""
    pytest.importorskip("milvus_lite")
    docs = topic_documents(per_topic=3)
    queries = ["bread dough oven", "interest rates inflation", "violin concert", "harbour wind sails",
               "telescope galaxies", "antibiotics infection"]
    _, embedded = start_server(store={"path": str(tmp_path / "e")})
    _, milvus = start_server(store={"backend": "milvus"}, milvus={"uri": str(tmp_path / "m.db")})
    embedded.ingest(docs)
    milvus.ingest(docs)
    for q in queries:
        ours = [h.chunk_id for h in embedded.search(q, k=5, mode=BM25).hits]
        theirs = [h.chunk_id for h in milvus.search(q, k=5, mode=BM25).hits]
        assert ours[:3] == theirs[:3], q


# --- session memory: expiry, refresh, as_of, namespaces --------------------------------


def _wait_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


def test_expired_documents_vanish_at_once_and_the_sweep_deletes_them(serve):
    server, client = serve(memory={"sweep_interval_seconds": 0})
    ttl = serve.ttl
    started = time.time()
    client.ingest([Document("session-1", "short", "A note about violins in the orchestra pit.", ttl_seconds=ttl),
                   Document("session-1", "kept", "A note about violins made in Cremona.")])
    client.ingest([Document("session-2", "only", "A note about violins, soon gone.", ttl_seconds=ttl)])
    hits = client.search("violins", namespace="session-1", k=5).hits
    by_doc = {h.doc_id: h for h in hits}
    assert set(by_doc) == {"short", "kept"}
    assert by_doc["short"].HasField("expires_at") and not by_doc["kept"].HasField("expires_at")
    assert started + ttl <= by_doc["short"].expires_at.ToNanoseconds() / 1e9 <= time.time() + ttl
    chunk_id = by_doc["short"].chunk_id
    later = client.get_document("session-2", "only").document.expires_at.ToNanoseconds() / 1e9
    _wait_until(by_doc["short"].expires_at.ToNanoseconds() / 1e9 + 0.05)
    # Invisible at once, before any sweep: search, GetDocument, GetChunk.
    for mode in _modes(serve):
        assert {h.doc_id for h in client.search("violins", namespace="session-1", k=5, mode=mode).hits} == {"kept"}
    for call in (lambda: client.get_document("session-1", "short"), lambda: client.get_chunk(chunk_id)):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    _wait_until(later + 0.05)
    documents, chunks, namespaces = server.app.memory.sweep()
    assert (documents, namespaces) == (2, 1) and chunks >= 2
    listed = {n.name: n for n in client.retrieval.ListNamespaces(pb.ListNamespacesRequest()).namespaces}
    assert "session-2" not in listed and listed["session-1"].document_count == 1
    with pytest.raises(grpc.RpcError) as info:
        client.search("violins", namespace="session-2")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert server.app.memory.sweep() == (0, 0, 0)


def test_a_refreshing_read_extends_the_ttl(serve):
    _, client = serve(memory={"sweep_interval_seconds": 0})
    ttl = serve.ttl
    client.ingest([Document("agent", "fact", "The user prefers green tea in the morning.", ttl_seconds=ttl)])
    first = client.get_document("agent", "fact").document.expires_at.ToNanoseconds() / 1e9
    time.sleep(2.0)
    # Not asked to refresh (and no namespace policy): the expiry stays.
    plain = client.search("green tea", namespace="agent", k=1).hits[0]
    assert plain.expires_at.ToNanoseconds() / 1e9 == pytest.approx(first)
    refreshed = client.search("green tea", namespace="agent", k=1, refresh_ttl=True).hits[0]
    moved = refreshed.expires_at.ToNanoseconds() / 1e9
    assert moved >= first + 1.5
    got = client.get_document("agent", "fact").document
    assert got.expires_at.ToNanoseconds() / 1e9 == pytest.approx(moved) and got.ttl_seconds == ttl
    _wait_until(first + 0.3)
    assert [h.doc_id for h in client.search("green tea", namespace="agent", k=1).hits] == ["fact"]
    # GetDocument refreshes too.
    again = client.retrieval.GetDocument(pb.GetDocumentRequest(namespace="agent", doc_id="fact", refresh_ttl=True))
    assert again.document.expires_at.ToNanoseconds() / 1e9 > moved


def test_as_of_recalls_what_had_been_ingested_by_then(serve):
    _, client = serve()
    client.ingest([Document("", "early", "Apples grow on trees in the orchard.")])
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    client.ingest([Document("", "late", "Apples are pressed into cider in autumn.")])
    as_of = pb.SearchRequest(query="apples").as_of
    as_of.FromNanoseconds(int(between * 1e9))
    for mode in _modes(serve):
        assert {h.doc_id for h in client.search("apples", k=5, mode=mode).hits} == {"early", "late"}
        assert {h.doc_id for h in client.search("apples", k=5, mode=mode, as_of=as_of).hits} == {"early"}


def test_delete_namespace(serve):
    _, client = serve()
    client.ingest([Document("tenant-a", f"a{i}", f"Tenant a writes about rivers, note {i}.") for i in range(3)])
    client.ingest([Document("tenant-b", "b0", "Tenant b writes about rivers too.")])
    client.ingest([Document("", "d0", "The default namespace has rivers.")])
    deleted = client.retrieval.DeleteNamespace(pb.DeleteNamespaceRequest(namespace="tenant-a"))
    assert deleted.deleted_document_count == 3 and deleted.removed_chunk_count >= 3
    names = [n.name for n in client.retrieval.ListNamespaces(pb.ListNamespacesRequest(prefix="tenant-")).namespaces]
    assert names == ["tenant-b"]
    for call in (lambda: client.search("rivers", namespace="tenant-a"),
                 lambda: client.retrieval.DeleteNamespace(pb.DeleteNamespaceRequest(namespace="tenant-a"))):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert [h.doc_id for h in client.search("rivers", namespace="tenant-b", k=5).hits] == ["b0"]
    # Written again, it is a new, empty namespace.
    client.ingest([Document("tenant-a", "new", "Tenant a is back, writing about rivers.")])
    assert [h.doc_id for h in client.search("rivers", namespace="tenant-a", k=5).hits] == ["new"]
    # The default namespace is emptied and still exists.
    emptied = client.retrieval.DeleteNamespace(pb.DeleteNamespaceRequest(namespace="default"))
    assert emptied.deleted_document_count == 1
    assert client.search("rivers", k=5).hits == []
