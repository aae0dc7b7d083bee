"""RetrievalStore against langgraph's BaseStore interface and a real server: put/get round trips,
updates, deletes, searches with queries, filters and namespace prefixes, listings without a query,
list_namespaces, TTL expiry and refresh, the async twins on grpc.aio, and the namespace escape."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import TypedDict

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, GetOp, InvalidNamespaceError, Item, PutOp, SearchItem, SearchOp
from langgraph.store.memory import InMemoryStore

from retrieval_svc.app import App
from retrieval_svc.client import NotFound, RetrievalClient
from retrieval_svc.integrations.langgraph import (
    RetrievalStore, _Namespace, encode_scalar, escape_label, matches, service_filters, unescape_label,
)
from retrieval_svc.server import Server

from corpus import long_text  # on sys.path via tests/retrieval_svc/conftest.py
from server_settings import make_settings

FACTS = {
    "climbing": ("Alice goes rock climbing in the mountains every summer", "who climbs rocks in the mountains?"),
    "cello": ("Bob plays the cello in a string quartet", "which person plays a string instrument in a quartet?"),
    "vegan": ("Carol follows a strict vegan diet", "who does not eat animal products?"),
    "chess": ("Dan competes in online chess tournaments", "who plays chess competitively?"),
    "garden": ("Frank grows tomatoes in his backyard garden", "who grows vegetables at home?"),
    "allergy": ("Hank is allergic to peanuts", "who has a nut allergy?"),
}


@pytest.fixture(scope="module")
def target(tmp_path_factory, encoder) -> str:
    """One server for the module (small chunker windows: a long value is several chunks), with a
    document of its own in the default namespace, which the store must never see."""
    server = Server(App(make_settings(tmp_path_factory.mktemp("store")), encoder=encoder)).start()
    target = f"127.0.0.1:{server.port}"
    with RetrievalClient(target) as client:
        client.ingest_batch([{"doc_id": "foreign", "text": "kites fly on windy beaches"}])
    yield target
    server.stop(0)


@pytest.fixture
def store(target, request):
    """A store with a prefix of the test's own, so tests do not see each other's items."""
    stores = []

    def make(**options) -> RetrievalStore:
        options.setdefault("prefix", re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60])
        made = RetrievalStore(target, **options)
        stores.append(made)
        return made

    yield make
    for made in stores:
        made.close()


def test_put_get_round_trip_keeps_the_value_exactly(store, target):
    s = store()
    value = {"text": "Grüße, 世界 🪁", "n": 3, "x": 0.1, "big": 2**70, "ok": True, "none": None,
             "list": [1, "a", {"b": [2.5, False]}], "nested": {"z": 1, "a": {"deep": "é"}}}
    namespace = ("users", "user_1", "odd label @é")
    s.put(namespace, "key/with spaces", value)
    item = s.get(namespace, "key/with spaces")
    assert isinstance(item, Item)
    assert item.value == value and json.dumps(item.value) == json.dumps(value, sort_keys=True)
    assert item.key == "key/with spaces" and item.namespace == namespace
    assert item.created_at.tzinfo == timezone.utc and item.created_at <= item.updated_at
    assert abs((datetime.now(timezone.utc) - item.updated_at).total_seconds()) < 30
    assert s.get(namespace, "missing") is None
    assert s.get(("nobody",), "key/with spaces") is None  # a namespace the service does not have

    with RetrievalClient(target) as client:
        name = s.namespace_name(namespace)
        assert name == f"{s.prefix}.users.user__1.odd_20label_20_40_c3_a9"
        doc = client.get_document("key/with spaces", namespace=name)
    # The text is canonical JSON; top-level scalars are filterable metadata, the rest are not.
    assert doc.text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert dict(doc.metadata) == {"v.text": '"Grüße, 世界 🪁"', "v.n": "3.0", "v.x": "0.1",
                                  "v.big": repr(float(2**70)), "v.ok": "1.0"}
    assert doc.title == "" and doc.ttl_seconds is None and doc.expires_at is None


def test_update_moves_updated_at_and_keeps_created_at(store):
    s = store()
    s.put(("notes",), "a", {"text": "first version"})
    first = s.get(("notes",), "a")
    time.sleep(0.05)
    s.put(("notes",), "a", {"text": "second version", "extra": 1})
    second = s.get(("notes",), "a")
    assert second.value == {"text": "second version", "extra": 1}
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    # Only the latest value is searched.
    [hit] = s.search(("notes",), query="second version")
    assert hit.key == "a" and hit.value == second.value


def test_delete_and_put_of_none(store):
    s = store()
    s.put(("docs",), "a", {"text": "alpha"})
    s.put(("docs",), "b", {"text": "beta"})
    s.delete(("docs",), "a")
    assert s.get(("docs",), "a") is None and s.get(("docs",), "b") is not None
    s.delete(("docs",), "a")  # already gone
    s.delete(("never", "made"), "a")  # no such namespace: nothing to do
    s.batch([PutOp(("docs",), "b", None)])
    assert s.get(("docs",), "b") is None
    assert s.list_namespaces() == []  # emptied namespaces are not listed


def test_batch_reads_see_the_store_before_its_writes(store):
    s = store()
    s.put(("b",), "k", {"v": 1})
    results = s.batch([PutOp(("b",), "k", {"v": 2}), GetOp(("b",), "k"), PutOp(("b",), "k", {"v": 3}),
                       SearchOp(("b",), filter={"v": 1})])
    assert results[0] is None and results[2] is None
    assert results[1].value == {"v": 1} and [i.value for i in results[3]] == [{"v": 1}]
    assert s.get(("b",), "k").value == {"v": 3}  # the last put of a key wins


def test_search_with_query_filters_limit_and_offset(store):
    s = store()
    for i, (key, (fact, _)) in enumerate(FACTS.items()):
        s.put(("memories",), key, {"text": fact, "rank": i, "even": i % 2 == 0, "tags": {"kind": "fact"}})
    # A value many chunks long is still one item.
    s.put(("memories",), "long", {"text": long_text(40, seed=1), "rank": 99, "even": False})

    items = s.search(("memories",), query="who plays chess competitively?", limit=3)
    assert [i.key for i in items][:1] == ["chess"] and len(items) == 3
    assert all(isinstance(i, SearchItem) and i.namespace == ("memories",) for i in items)
    assert items[0].value == {"text": FACTS["chess"][0], "rank": 3, "even": False, "tags": {"kind": "fact"}}
    scores = [i.score for i in items]
    assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1  # cosine (dense)

    everything = s.search(("memories",), query="a person", limit=20)
    assert sorted(i.key for i in everything) == sorted([*FACTS, "long"])  # one item per document
    paged = s.search(("memories",), query="a person", limit=3, offset=2)
    assert [i.key for i in paged] == [i.key for i in everything[2:5]]

    # Equalities run on the server (1 == 1.0 == True, as in Python); the rest on the values.
    assert {i.key for i in s.search(("memories",), query="a person", filter={"even": True})} == {
        "climbing", "vegan", "garden"}
    assert [i.key for i in s.search(("memories",), query="a person", filter={"rank": 1.0})] == ["cello"]
    assert [i.key for i in s.search(("memories",), query="a person", filter={"rank": {"$eq": True}})] == ["cello"]
    assert {i.key for i in s.search(("memories",), query="a person", filter={"rank": {"$gte": 4}})} == {
        "garden", "allergy", "long"}
    assert {i.key for i in s.search(("memories",), query="a person",
                                    filter={"rank": {"$gt": 0, "$lt": 3}, "even": {"$ne": True}})} == {"cello"}
    assert {i.key for i in s.search(("memories",), query="a person", filter={"tags": {"kind": "fact"}})} == set(FACTS)
    # A filter that only the values can check still fills `limit` (k grows until it does).
    top = s.search(("memories",), query="chess", filter={"rank": {"$ne": 3}}, limit=6)
    assert len(top) == 6 and "chess" not in {i.key for i in top}
    assert s.search(("memories",), query="a person", filter={"rank": 12345}) == []
    with pytest.raises(ValueError, match=r"unsupported operator '\$in'"):
        s.search(("memories",), query="a person", filter={"rank": {"$in": [1, 2]}})


def test_search_over_a_namespace_prefix_merges_by_score(store):
    s = store()
    s.put(("users", "a"), "kite", {"text": "I fly kites on windy beaches"})
    s.put(("users", "a"), "tax", {"text": "Filing the annual tax return"})
    s.put(("users", "b"), "sail", {"text": "Sailing a boat when the wind is strong"})
    s.put(("users", "b", "deep"), "storm", {"text": "Wind turbines spin in a storm"})
    s.put(("usersx",), "wind", {"text": "windy windy wind"})  # a sibling, not under ("users",)
    s.put(("other",), "kite2", {"text": "kites and wind"})

    items = s.search(("users",), query="wind", limit=10)
    assert {(i.namespace, i.key) for i in items} == {
        (("users", "a"), "kite"), (("users", "a"), "tax"), (("users", "b"), "sail"),
        (("users", "b", "deep"), "storm")}
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)
    assert items[-1].key == "tax"
    assert [i.key for i in s.search(("users", "b"), query="wind")] in (["sail", "storm"], ["storm", "sail"])
    # Hybrid search: the same items (its fused scores are per namespace, so only the set is compared).
    hybrid = store(prefix=s.prefix, search_options={"mode": "hybrid"})
    assert {i.key for i in hybrid.search(("users",), query="wind", limit=10)} == {i.key for i in items}
    # The root covers the store's namespaces, never the server's others ("default" has "foreign").
    assert {i.key for i in s.search((), query="kites wind", limit=20)} == {"kite", "tax", "sail", "storm", "wind",
                                                                         "kite2"}
    assert s.search(("nobody",), query="wind") == []


def test_search_without_a_query_lists_every_item_newest_first(store):
    s = store()
    for i in range(5):
        s.put(("log",), f"e{i}", {"text": f"entry {i}", "i": i, "odd": i % 2 == 1})
        time.sleep(0.01)
    s.put(("log", "sub"), "s", {"text": "sub entry", "i": 10})
    s.put(("log",), "long", {"text": long_text(30, seed=2), "i": 20})  # several chunks, one item

    items = s.search(("log",), limit=20)
    assert [i.key for i in items] == ["long", "s", "e4", "e3", "e2", "e1", "e0"]
    assert all(i.score is None for i in items)
    assert [i.key for i in s.search(("log",), limit=2, offset=3)] == ["e3", "e2"]
    assert [i.key for i in s.search(("log",), filter={"odd": True})] == ["e3", "e1"]
    assert [i.key for i in s.search(("log",), filter={"i": {"$gt": 2, "$lt": 15}})] == ["s", "e4", "e3"]

    # A namespace with max_k chunks or more cannot be listed exactly: a clear error, not a partial list.
    small = store(prefix=s.prefix, max_k=4)
    with pytest.raises(ValueError, match=r"cannot list namespace \('log',\) without a query"):
        small.search(("log",))
    assert [i.key for i in small.search(("log",), query="entry 4", limit=1)] == ["e4"]


def test_list_namespaces_prefix_suffix_depth_and_paging(store, target):
    s = store()
    for namespace in [("a", "x", "1"), ("a", "x", "2"), ("a", "y"), ("b", "x"), ("b", "y", "1"), ("ab",)]:
        s.put(namespace, "k", {"text": "t"})
    assert s.list_namespaces() == [("a", "x", "1"), ("a", "x", "2"), ("a", "y"), ("ab",), ("b", "x"),
                                   ("b", "y", "1")]
    assert s.list_namespaces(prefix=("a",)) == [("a", "x", "1"), ("a", "x", "2"), ("a", "y")]
    assert s.list_namespaces(prefix=("a",), max_depth=2) == [("a", "x"), ("a", "y")]
    assert s.list_namespaces(max_depth=1) == [("a",), ("ab",), ("b",)]
    assert s.list_namespaces(suffix=("x",)) == [("b", "x")]
    assert s.list_namespaces(prefix=("*", "x")) == [("a", "x", "1"), ("a", "x", "2"), ("b", "x")]
    assert s.list_namespaces(prefix=("a", "*"), suffix=("1",)) == [("a", "x", "1")]
    assert s.list_namespaces(limit=2, offset=1) == [("a", "x", "2"), ("a", "y")]
    assert s.list_namespaces(prefix=("c",)) == []
    # Without a prefix the store sees every service namespace it can decode, the default one too.
    with RetrievalClient(target) as client:
        unprefixed = RetrievalStore(client=client, prefix=None)
        assert ("default",) in unprefixed.list_namespaces()
        assert unprefixed.get(("default",), "foreign") is None  # not JSON: not an item
        assert [i.key for i in unprefixed.search(("default",), query="kites")] == []


def test_index_fields_go_into_the_title_and_find_items_by_them(store, target):
    """With a long value the field a query is about may sit in a later chunk than the first (here
    "context" sorts before "text"); in the title it is in every chunk. Measured with the small test
    windows: each fact is found first."""
    plain, fields = store(prefix="plain"), store(prefix="fields", index={"fields": ["text", "tags[*]"]})
    for i, (key, (fact, _)) in enumerate(FACTS.items()):
        value = {"context": long_text(12, seed=i), "text": fact, "tags": [key, "memory"]}
        plain.put(("m",), key, value)
        fields.put(("m",), key, value)
    for key, (_, query) in FACTS.items():
        assert fields.search(("m",), query=query, limit=1)[0].key == key, query
    with RetrievalClient(target) as client:
        doc = client.get_document("chess", namespace=fields.namespace_name(("m",)))
        assert doc.title == FACTS["chess"][0] + "\nchess\nmemory"
        assert client.get_document("chess", namespace=plain.namespace_name(("m",))).title == ""
        fields.put(("m",), "unindexed", {"text": "not in the title"}, index=False)
        fields.put(("m",), "own", {"text": "x", "summary": "in the title"}, index=["summary"])
        assert client.get_document("unindexed", namespace=fields.namespace_name(("m",))).title == ""
        assert client.get_document("own", namespace=fields.namespace_name(("m",))).title == "in the title"


def _sleep_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.monotonic()))


def test_ttl_expiry_and_refresh_on_read(store, target):
    """Times count from after the puts (every expiry is at most then + TTL) and from before or
    after a refreshing read (its new expiry is at least before + TTL, at most after + TTL)."""
    s = store()
    s.put(("ttl",), "got", {"text": "refreshed by get"}, ttl=0.05)  # 3 s
    s.put(("ttl",), "idle", {"text": "never read"}, ttl=0.05)
    s.put(("ttl",), "found", {"text": "zebra crossing"}, ttl=0.05)
    s.put(("ttl",), "missed", {"text": "another entry"}, ttl=0.05)
    s.put(("ttl",), "forever", {"text": "no ttl"})
    put = time.monotonic()
    with RetrievalClient(target) as client:
        assert client.get_document("got", namespace=s.namespace_name(("ttl",))).ttl_seconds == pytest.approx(3.0)
    _sleep_until(put + 1.5)
    assert s.get(("ttl",), "got", refresh_ttl=True) is not None  # now expires >= put + 4.5 s
    # A search refreshes the items it returns, not the other candidates.
    assert [i.key for i in s.search(("ttl",), query="zebra crossing", limit=1, refresh_ttl=True)] == ["found"]
    refreshed = time.monotonic()
    assert s.get(("ttl",), "missed", refresh_ttl=False) is not None
    _sleep_until(put + 3.4)
    assert s.get(("ttl",), "idle", refresh_ttl=False) is None  # expired: gone at once
    assert s.get(("ttl",), "missed", refresh_ttl=False) is None
    assert s.get(("ttl",), "got", refresh_ttl=False) is not None
    assert s.get(("ttl",), "found", refresh_ttl=False) is not None
    assert {i.key for i in s.search(("ttl",), refresh_ttl=False)} == {"got", "found", "forever"}
    _sleep_until(refreshed + 3.4)
    assert s.get(("ttl",), "got", refresh_ttl=False) is None
    assert [i.key for i in s.search(("ttl",), refresh_ttl=False)] == ["forever"]


def test_ttl_config_default_ttl_and_refresh_on_read(store):
    refreshing = store(ttl={"default_ttl": 0.04, "refresh_on_read": True})  # 2.4 s
    reading = store(prefix=refreshing.prefix, ttl={"default_ttl": 0.04, "refresh_on_read": False})
    refreshing.put(("cfg",), "read", {"text": "read with refresh_on_read"})
    refreshing.put(("cfg",), "plain", {"text": "read without refreshing"})
    refreshing.put(("cfg",), "kept", {"text": "no ttl"}, ttl=None)
    put = time.monotonic()
    _sleep_until(put + 1.2)
    assert refreshing.get(("cfg",), "read") is not None  # refresh_on_read: expires >= put + 3.6 s
    assert reading.get(("cfg",), "plain") is not None  # refresh_on_read False: at most put + 2.4 s
    _sleep_until(put + 2.8)
    assert reading.get(("cfg",), "plain") is None
    assert reading.get(("cfg",), "read") is not None
    assert reading.get(("cfg",), "kept") is not None


async def test_async_twins_run_on_grpc_aio(store):
    s = store()
    await s.aput(("a", "u1"), "k1", {"text": "I fly kites on windy beaches", "kind": "hobby"})
    await s.aput(("a", "u2"), "k2", {"text": "Filing the annual tax return", "kind": "chore"})
    await s.aput(("a", "u2"), "gone", {"text": "short lived"}, ttl=0.02)  # 1.2 s
    item = await s.aget(("a", "u1"), "k1")
    assert item.value == {"text": "I fly kites on windy beaches", "kind": "hobby"}
    assert [i.key for i in await s.asearch(("a",), query="windy beach kites", limit=1)] == ["k1"]
    assert [i.key for i in await s.asearch(("a",), query="paperwork", filter={"kind": "chore"})] == ["k2"]
    assert {i.key for i in await s.asearch(("a",))} == {"k1", "k2", "gone"}
    assert await s.alist_namespaces(prefix=("a",)) == [("a", "u1"), ("a", "u2")]
    results = await s.abatch([GetOp(("a", "u1"), "k1"), SearchOp(("a",), query="taxes", limit=1),
                              PutOp(("a", "u1"), "k3", {"text": "new"})])
    assert results[0] == item and [i.key for i in results[1]] == ["k2"] and results[2] is None
    await s.aput(("a", "u1"), "k3", {"text": "newer"})
    updated = await s.aget(("a", "u1"), "k3")
    assert updated.value == {"text": "newer"} and updated.updated_at > updated.created_at
    await s.adelete(("a", "u1"), "k1")
    assert await s.aget(("a", "u1"), "k1") is None
    await asyncio.sleep(1.5)
    assert await s.aget(("a", "u2"), "gone") is None
    assert s._clients._client is None  # the sync client was never opened: no thread hop
    await s.aclose()


async def test_async_refresh_on_read_extends_the_ttl(store):
    s = store(ttl={"default_ttl": 0.03, "refresh_on_read": True})  # 1.8 s
    await s.aput(("r",), "read", {"text": "read"})
    await s.aput(("r",), "unread", {"text": "unread"})
    put = time.monotonic()
    await asyncio.sleep(max(0.0, put + 1.0 - time.monotonic()))
    # Returned, so refreshed: expires >= put + 2.8 s; "unread" was not returned: at most put + 1.8 s.
    assert [i.key for i in await s.asearch(("r",), query="read", filter={"text": "read"})] == ["read"]
    await asyncio.sleep(max(0.0, put + 2.2 - time.monotonic()))
    assert await s.aget(("r",), "unread", refresh_ttl=False) is None
    assert (await s.aget(("r",), "read", refresh_ttl=False)).value == {"text": "read"}
    await s.aclose()


def test_invalid_namespaces_values_and_options(store):
    s = store()
    with pytest.raises(InvalidNamespaceError, match="over the service's 128"):
        s.put(("x" * 130,), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError, match="over the service's 128"):
        s.get(("é" * 30,), "k")  # 30 characters, 180 escaped
    with pytest.raises(ValueError, match="must be JSON"):
        s.put(("v",), "k", {"x": math.nan})
    with pytest.raises(ValueError, match="65 top-level scalar fields"):
        s.put(("v",), "k", {f"f{i}": i for i in range(65)})
    s.put(("v",), "k", {"nested": {f"f{i}": i for i in range(65)}})  # nested fields are not kept as metadata
    with pytest.raises(ValueError, match="embeds documents with its own encoder"):
        RetrievalStore("127.0.0.1:1", index={"fields": ["text"], "embed": "openai:text-embedding-3-small"})
    with pytest.raises(ValueError, match="cannot set k"):
        RetrievalStore("127.0.0.1:1", search_options={"k": 3})
    with pytest.raises(ValueError, match="is not a namespace prefix"):
        RetrievalStore("127.0.0.1:1", prefix="a..b")


def test_a_namespace_deleted_during_a_search_has_no_hits():
    """The plans are plain generators: drive one by hand. A BatchSearch that fails with NotFound
    (one of its namespaces went between ListNamespaces and the search) is asked again one
    namespace at a time, and the namespace that went has no hits."""
    store = RetrievalStore("127.0.0.1:1")
    first, second = _Namespace("lg.a", ("a",), 3, k=10), _Namespace("lg.b", ("b",), 3, k=10)
    plan = store._search_round("q", [first, second], {"mode": "dense"}, dense_depth=False)
    [call] = next(plan)
    assert call.method == "batch_search" and [q["namespace"] for q in call.args[0]] == ["lg.a", "lg.b"]
    gone = NotFound(grpc.StatusCode.NOT_FOUND, "namespace 'lg.a' does not exist")
    calls = plan.send([gone])
    assert [(c.method, c.kwargs["namespace"], c.kwargs["k"]) for c in calls] == [
        ("search", "lg.a", 10), ("search", "lg.b", 10)]
    hit = SimpleNamespace(doc_id="d", score=0.5)
    with pytest.raises(StopIteration):
        plan.send([gone, SimpleNamespace(hits=(hit,))])
    assert first.hits == () and first.complete and second.hits == (hit,) and second.complete


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_label_escape_round_trips_into_the_service_alphabet(label):
    escaped = escape_label(label)
    assert set(escaped) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    assert unescape_label(escaped) == label


def test_unescape_rejects_what_escape_cannot_make():
    for text in ["_41", "a_", "_zz", "a.b", "_c3", "", "_C3_A9"]:
        with pytest.raises(ValueError):
            unescape_label(text)


def test_filters_split_between_server_and_values():
    assert encode_scalar(1) == encode_scalar(1.0) == encode_scalar(True) == "1.0"
    assert encode_scalar("1") == '"1"' and encode_scalar(None) is None and encode_scalar([1]) is None
    assert encode_scalar("x" * 600) is None and encode_scalar(10**400) is None
    assert service_filters({"a": "x", "b": {"$eq": 2}, "c": {"$gt": 1}, "d": {"e": 1}, "f": [1], "g": None}) == {
        "v.a": ['"x"'], "v.b": ["2.0"]}
    assert matches({"a": 2, "b": {"c": "x", "d": 1}}, {"a": {"$gte": 2, "$ne": 3}, "b": {"c": "x"}})
    assert not matches({"a": "two"}, {"a": {"$gt": 1}})
    assert not matches({}, {"a": None, "b": {"$lt": 1}}) and matches({}, {"a": None})


def test_parity_with_langgraphs_in_memory_store(store):
    """The same operations on RetrievalStore and on LangGraph's own InMemoryStore: the same
    values, namespaces and filtered listings (a listing's order is the store's own: newest
    first here, insertion order there)."""
    ours, theirs = store(), InMemoryStore()
    values = {
        (("p", "u1"), "a"): {"text": "alpha", "n": 1, "tags": ["x", "y"], "meta": {"lang": "en"}},
        (("p", "u1"), "b"): {"text": "beta", "n": 2.5, "ok": False, "meta": {"lang": "de"}},
        (("p", "u2"), "c"): {"text": "gamma ü", "n": 3, "ok": True, "none": None},
        (("p", "u2", "deep"), "d"): {"text": "delta", "n": -1},
        (("q",), "e"): {"text": "epsilon", "n": 1.0},
    }
    for s in (ours, theirs):
        for (namespace, key), value in values.items():
            s.put(namespace, key, value)
        s.put(("p", "u1"), "a", {**values[(("p", "u1"), "a")], "n": 10})
        s.delete(("p", "u2"), "c")
        s.put(("p", "u2"), "gone", {"text": "x"})
        s.delete(("p", "u2"), "gone")
    for namespace, key in [*values, (("p", "u2"), "gone"), (("nope",), "a")]:
        mine, reference = ours.get(namespace, key), theirs.get(namespace, key)
        assert (mine and (mine.namespace, mine.key, mine.value)) == (
            reference and (reference.namespace, reference.key, reference.value))
    # InMemoryStore lists every namespace it ever touched, emptied ones too (as ("p", "u2") and,
    # after the get above, ("nope",)); this store, like LangGraph's PostgresStore, lists those
    # that hold items: the reference is an InMemoryStore holding just the items left.
    left = InMemoryStore()
    for item in theirs.search((), limit=100):
        left.put(item.namespace, item.key, item.value)
    for options in [{}, {"prefix": ("p",)}, {"prefix": ("p",), "max_depth": 2}, {"suffix": ("deep",)},
                    {"prefix": ("*", "u1")}, {"max_depth": 1}, {"limit": 2, "offset": 1}]:
        assert ours.list_namespaces(**options) == left.list_namespaces(**options), options
    for prefix, filter in [((), None), (("p",), {"n": 1}), ((), {"n": 1}), ((), {"n": {"$gt": 0}}),
                           ((), {"meta": {"lang": "en"}}), ((), {"ok": {"$ne": True}}),
                           (("p", "u1"), {"tags": ["x", "y"]}),
                           ((), {"n": {"$gte": -1, "$lt": 3}}), ((), {"none": None})]:
        mine = {(i.namespace, i.key, json.dumps(i.value, sort_keys=True)) for i in ours.search(prefix, filter=filter)}
        reference = {(i.namespace, i.key, json.dumps(i.value, sort_keys=True))
                     for i in theirs.search(prefix, filter=filter)}
        assert mine == reference, (prefix, filter)


class _State(TypedDict):
    text: str
    recalled: list[str]


def _memory_graph(store: BaseStore, *, asynchronous: bool):
    """A LangGraph graph whose nodes remember and recall through the store LangGraph hands them."""

    def remember(state: _State, *, store: BaseStore) -> dict:
        store.put(("graph", "user-1"), "fact", {"text": state["text"]})
        return {}

    def recall(state: _State, *, store: BaseStore) -> dict:
        return {"recalled": [i.value["text"] for i in store.search(("graph",), query="what does the user fly?")]}

    async def aremember(state: _State, *, store: BaseStore) -> dict:
        await store.aput(("graph", "user-2"), "fact", {"text": state["text"]})
        return {}

    async def arecall(state: _State, *, store: BaseStore) -> dict:
        found = await store.asearch(("graph", "user-2"), query="what does the user fly?")
        return {"recalled": [i.value["text"] for i in found]}

    builder = StateGraph(_State)
    builder.add_node("remember", aremember if asynchronous else remember)
    builder.add_node("recall", arecall if asynchronous else recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    return builder.compile(store=store)


def test_a_langgraph_graph_remembers_and_recalls_through_the_store(store):
    s = store()
    out = _memory_graph(s, asynchronous=False).invoke({"text": "The user flies kites", "recalled": []})
    assert out["recalled"] == ["The user flies kites"]

    async def run():
        try:
            return await _memory_graph(s, asynchronous=True).ainvoke({"text": "The user flies drones", "recalled": []})
        finally:
            await s.aclose()

    assert asyncio.run(run())["recalled"] == ["The user flies drones"]
    assert s.get(("graph", "user-2"), "fact").value == {"text": "The user flies drones"}
