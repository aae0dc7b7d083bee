"""Session memory through a real server: namespace TTL policies, per-document expiry
validation, the background sweep and its metrics, the typed client's namespace calls,
and a ledger made before expiry existed. The store-level behaviour (expired documents
invisible at once, refresh, as_of, DeleteNamespace) is in test_store_conformance.py, on
every backend."""

from __future__ import annotations

import sqlite3
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client import NotFound, RetrievalClient
from retrieval_svc.domain import Document
from retrieval_svc.settings import SettingsError

from server_settings import make_settings


def test_namespace_policy_sets_the_ttl_and_refreshes_on_read(start_server):
    _, client = start_server(memory={"sweep_interval_seconds": 0, "namespaces": [
        {"match": "session-*", "ttl_seconds": 60, "refresh_on_read": True}]})
    before = time.time()
    client.ingest([Document("session-7", "turn-1", "The user asked about the weather in Oslo."),
                   Document("notes", "n1", "Oslo is the capital of Norway."),
                   Document("session-7", "own", "An explicit expiry wins over the policy.",
                            expires_at=before + 3600)])
    turn = client.get_document("session-7", "turn-1").document
    assert turn.ttl_seconds == 60
    first = turn.expires_at.ToNanoseconds() / 1e9
    assert before + 60 <= first <= time.time() + 60
    assert not client.get_document("notes", "n1").document.HasField("expires_at")
    own = client.get_document("session-7", "own").document
    assert own.expires_at.ToNanoseconds() / 1e9 == pytest.approx(before + 3600) and own.ttl_seconds == 0
    # refresh_on_read: a read more than ttl/10 = 6 s later moves the expiry; refresh_ttl=false does not.
    time.sleep(6.5)
    hit = client.search("weather in Oslo", namespace="session-7", k=1, refresh_ttl=False).hits[0]
    assert hit.doc_id == "turn-1" and hit.expires_at.ToNanoseconds() / 1e9 == pytest.approx(first)
    hit = client.search("weather in Oslo", namespace="session-7", k=1).hits[0]
    assert hit.expires_at.ToNanoseconds() / 1e9 >= first + 6
    # Within ttl/10 of the last refresh a read writes nothing.
    again = client.search("weather in Oslo", namespace="session-7", k=1).hits[0]
    assert again.expires_at == hit.expires_at


def test_the_background_sweep_deletes_and_counts(start_server):
    server, client = start_server(memory={"sweep_interval_seconds": 0.5})
    client.ingest([Document("chat-1", f"m{i}", f"Message {i} about the migration plan.", ttl_seconds=1.0)
                   for i in range(3)])
    client.ingest([Document("", "keep", "The migration plan is kept.")])
    deadline = time.time() + 30
    while time.time() < deadline and "chat-1" in {n.name for n in client.info().namespaces}:
        time.sleep(0.2)
    assert "chat-1" not in {n.name for n in client.info().namespaces}
    registry = server.app.telemetry.registry
    assert registry.get_sample_value("retrieval_expired_deleted_total", {"kind": "documents"}) == 3
    assert registry.get_sample_value("retrieval_expired_deleted_total", {"kind": "namespaces"}) == 1
    assert registry.get_sample_value("retrieval_expired_deleted_total", {"kind": "chunks"}) >= 3
    assert [h.doc_id for h in client.search("migration plan", k=5).hits] == ["keep"]


def test_a_document_written_again_is_not_swept(start_server):
    server, client = start_server(memory={"sweep_interval_seconds": 0})
    client.ingest([Document("", "d", "Short lived.", ttl_seconds=0.5)])
    time.sleep(0.6)
    expired = server.app.store.expired(time.time(), 10)
    assert expired == [("default", "d")]
    summary = client.ingest([Document("", "d", "Short lived.")])  # no expiry now
    assert summary.added_document_count == 1  # an expired document counts as gone
    with server.app.store.writer() as writer:
        assert writer.delete_document("default", "d", expired_by=time.time()) is None
    assert client.get_document("", "d").document.text == "Short lived."


@pytest.mark.parametrize("fields, field, message", [
    ({"ttl_seconds": -1.0}, "ttl_seconds", "ttl_seconds must be > 0"),
    ({"expires_at": 1_000_000.0}, "expires_at", "expires_at must be in the future"),
    ({"expires_at": time.time() + 60, "ttl_seconds": 5.0}, "expires_at", "not both"),
])
def test_bad_expiry_is_invalid_argument_naming_the_field(start_server, fields, field, message):
    _, client = start_server()
    with pytest.raises(grpc.RpcError) as info:
        client.ingest_batch([Document("", "d", "text", **fields)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()
    status = rpc_status.from_call(info.value)
    violation = error_details_pb2.BadRequest()
    assert any(d.Unpack(violation) for d in status.details)
    assert violation.field_violations[0].field == f"documents[0].{field}"


def test_settings_name_a_bad_policy():
    with pytest.raises(SettingsError, match=r"memory\.namespaces"):
        make_settings("/tmp/unused", memory={"namespaces": [{"match": "bad/glob", "ttl_seconds": 5}]})
    with pytest.raises(SettingsError, match=r"memory\.namespaces"):
        make_settings("/tmp/unused", memory={"namespaces": [{"match": "s-*", "ttl_seconds": -5}]})


def test_typed_client_lists_and_deletes_namespaces(start_server):
    server, _ = start_server()
    with RetrievalClient(f"127.0.0.1:{server.port}") as client:
        client.ingest([{"namespace": "agent-1", "doc_id": "a", "text": "Remember the blue door.", "ttl_seconds": 600},
                       {"namespace": "agent-2", "doc_id": "b", "text": "Remember the red door."}])
        assert [n.name for n in client.list_namespaces("agent-")] == ["agent-1", "agent-2"]
        hit = client.search("blue door", namespace="agent-1", k=1, refresh_ttl=True).hits[0]
        assert hit.expires_at is not None and hit.expires_at.timestamp() > time.time() + 590
        stored = client.get_document("a", namespace="agent-1", refresh_ttl=False)
        assert stored.ttl_seconds == 600 and stored.expires_at is not None
        assert client.search("door", namespace="agent-1", k=1, as_of=time.time() - 3600).hits == ()
        deleted = client.delete_namespace("agent-1")
        assert deleted.deleted_document_count == 1
        assert [n.name for n in client.list_namespaces("agent-")] == ["agent-2"]
        with pytest.raises(NotFound):
            client.delete_namespace("agent-1")


def test_a_ledger_from_before_expiry_opens_and_gains_it(tmp_path, start_server):
    path = tmp_path / "old"
    path.mkdir()
    ledger = sqlite3.connect(path / "ledger.sqlite3")
    ledger.executescript("""
        CREATE TABLE documents (namespace TEXT NOT NULL, doc_id TEXT NOT NULL, title TEXT NOT NULL,
            text TEXT NOT NULL, metadata TEXT NOT NULL, source_uri TEXT NOT NULL,
            source_updated_at REAL NOT NULL, content_hash TEXT NOT NULL, first_indexed_at REAL NOT NULL,
            last_verified_at REAL NOT NULL, PRIMARY KEY (namespace, doc_id));
    """)
    ledger.close()
    _, client = start_server(store_path=path)
    client.ingest([Document("", "d", "Now it can expire.", ttl_seconds=600)])
    assert client.get_document("", "d").document.ttl_seconds == 600
    columns = {row[1] for row in sqlite3.connect(path / "ledger.sqlite3").execute("PRAGMA table_info(documents)")}
    assert {"expires_at", "ttl_seconds"} <= columns


def test_list_namespaces_rejects_a_long_prefix(start_server):
    _, client = start_server()
    with pytest.raises(grpc.RpcError) as info:
        client.retrieval.ListNamespaces(pb.ListNamespacesRequest(prefix="x" * 129))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "prefix" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        client.retrieval.DeleteNamespace(pb.DeleteNamespaceRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "namespace is required" in info.value.details()
