"""retrieval-svc as a LangGraph store (`pip install "retrieval-svc[langgraph]"`): long-term memory
for LangGraph agents, kept as documents of the service and found by its search.

    from retrieval_svc.integrations.langgraph import RetrievalStore

    store = RetrievalStore("127.0.0.1:50051", index={"fields": ["text"]},
                           ttl={"default_ttl": 24 * 60, "refresh_on_read": True})
    store.put(("memories", "user-1"), "kites", {"text": "flies kites on Sundays", "kind": "hobby"})
    store.get(("memories", "user-1"), "kites").value
    store.search(("memories",), query="what does the user do at weekends?", filter={"kind": "hobby"})
    store.list_namespaces(prefix=("memories",), max_depth=2)
    graph = builder.compile(store=store)   # nodes get it as `store`; async graphs use aget, asearch, ...

`batch` runs on the sync client (RetrievalClient) and `abatch` on the asyncio one
(AsyncRetrievalClient, grpc.aio), not on a thread. Both run the same plans (the `_Plan`
generators below), which say which client calls to make and turn their results into LangGraph's;
the calls a plan asks for at once are made one after another on the sync path and together
(asyncio.gather) on the async path.

How LangGraph's model maps onto the service's (the design decisions):

- Namespaces. A namespace tuple is one service namespace: the store's `prefix` (default "lg",
  keeping the store's namespaces apart from the service's others) and the labels, joined with
  ".". A label's characters outside [A-Za-z0-9-] are escaped reversibly ("_" as "__", any
  other as "_" and the hex of each UTF-8 byte: ("users", "a b@c") -> "lg.users.a_20b_40c"), so
  no label can contain the separator. Service namespaces have at most 128 characters; a longer
  one raises InvalidNamespaceError naming its length. `list_namespaces` lists the service's
  namespaces under the encoded prefix (ListNamespaces), decodes them, leaves out those with no
  documents, and applies LangGraph's prefix/suffix conditions ("*" wildcards), max_depth,
  limit and offset. A namespace whose only documents have expired is listed until the
  service's sweep deletes it (memory.sweep_interval_seconds).
- Items. The key is the doc_id; the value is the document's text as canonical JSON (sorted
  keys, no spaces, non-ASCII kept, NaN refused), so `get` returns an equal dict. A document
  whose text is not a JSON object (one the store did not write) is no item: `get` gives None
  and `search` leaves it out. Item.created_at is the document's first_indexed_at (kept across
  updates) and Item.updated_at its last_verified_at, both the server's clock: when it indexed
  the first put and the last. (A put also sets source_updated_at, the client's now, from which
  the service's staleness and recency decay count.)
- What is searched. The service embeds (and BM25-indexes) a document's text, so by default
  the JSON is what a query matches. With `index={"fields": [...]}` (LangGraph's paths:
  "text", "a.b", "tags[*]", ...) or a put's `index=[...]`, the text at those paths also goes
  into the document's title, which the service puts before every chunk it indexes
  (chunker.prepend_title, the default), so those fields weigh in every chunk, however long
  the JSON (bench/langgraph_index_fields.py measures it: docs/memory.md); the title
  is cut at `max_title_chars` (limits.max_title_chars, 2048). `index=False` puts no title.
  The service embeds with its own encoder: an index config's "embed" is refused, "dims" ignored.
- Filters. A value's top-level strings, numbers and bools are also kept as document metadata
  "v.<escaped field>": strings as JSON, numbers and bools as float(x)'s repr (Python
  equality: 1 == 1.0 == True); one whose encoding is over 512 characters is not kept, nor is
  None (a filter {"f": None} matches values without "f" too, as in InMemoryStore). A
  SearchOp.filter equality on a kept kind of value ({"kind": "hobby"}, {"n": {"$eq": 2}})
  becomes a service metadata filter, so the service finds only matching documents. Every
  filter, including those ($ne, $gt, $gte, $lt, $lte, None, nested dicts, lists) the service
  cannot express, is then checked on the items' values as LangGraph's InMemoryStore checks
  it; for those, the store fetches more hits (doubling k up to `max_k`) until `limit` items
  pass. A value with more than `max_metadata_keys` (64, limits.max_metadata_keys) kept
  scalars raises ValueError at put, since its missing fields could not be filtered on.
- Search. A SearchOp lists the namespaces under its prefix and searches the query in each
  that has documents (one Search, or BatchSearch for several), merges their hits by score,
  keeps one item per document (its best chunk's score is SearchItem.score), and honours
  limit and offset, fetching more chunks (doubling k up to `max_k`, limits.max_k) while
  fewer documents than offset + limit came back and a namespace may hold more. The values
  come from GetDocument, one per returned item (a hit holds one chunk of the text, not the
  whole value). `search_options` (mode, rerank, fusion, ...) apply to every query; the mode
  is "dense" unless they say otherwise, so that SearchItem.score is a cosine similarity, as
  LangGraph's own stores give, and comparable across namespaces. With "hybrid" the service's
  fused scores (minmax by default) are relative to one namespace's candidates, so a search
  over several namespaces interleaves them by those per-namespace scores.
- Search without a query (LangGraph's listing). The service has no listing RPC; the store
  lists exactly anyway where it can: it searches each namespace in dense mode with k above
  the namespace's chunk count. The dense index returns every allowed chunk when fewer than k
  exist (every FAISS kind holds to it, dense/faiss_index.py; on the Milvus store it holds for
  a FLAT milvus.index_type, while an approximate one may leave chunks out), so a result under
  k is the complete set of live documents. Items come newest first (updated_at), score
  None. A namespace with `max_k` chunks or more cannot be listed that
  way: ValueError names it (search with a query, or raise limits.max_k and `max_k`).
- TTL. `supports_ttl` is True. A put's ttl (minutes; `ttl["default_ttl"]` when the put names
  none) becomes the document's ttl_seconds; a put without one clears it (the namespace's
  memory.namespaces policy, if any, applies). GetOp.refresh_ttl is GetDocument's refresh_ttl
  and SearchOp.refresh_ttl that of the GetDocument of each returned item (so only items
  returned are refreshed); BaseStore's methods take their default from
  `ttl["refresh_on_read"]` (True when unset). Expired items are invisible at once; the
  service's sweep deletes them later (memory.sweep_interval_seconds), not this store.
- Batches. As in LangGraph's InMemoryStore, a batch's reads see the store as it was before
  the batch; its writes follow, the last PutOp of a (namespace, key) winning. Puts are one
  IngestBatch per namespace (of up to 64 documents); deletes one DeleteDocuments per namespace.
"""

from __future__ import annotations

import asyncio
import json
import math
import string
from collections import defaultdict
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

try:
    from langgraph.store.base import (
        BaseStore, GetOp, InvalidNamespaceError, Item, ListNamespacesOp, MatchCondition, Op, PutOp, Result,
        SearchItem, SearchOp, TTLConfig, get_text_at_path, tokenize_path, validate_op_namespace,
    )
except ImportError as exc:
    raise ImportError('RetrievalStore needs langgraph: pip install "retrieval-svc[langgraph]" '
                      f"({exc})") from exc

from retrieval_svc.client.aio import AsyncRetrievalClient
from retrieval_svc.client.errors import NotFound
from retrieval_svc.client.sync import RetrievalClient
from retrieval_svc.client.types import Hit, NamespaceInfo, SearchResult, StoredDocument
from retrieval_svc.integrations._search import Clients

T = TypeVar("T")

# The service's namespace and metadata-key rule: 1..128 characters of [A-Za-z0-9_.-].
MAX_NAME_CHARS = 128
# A scalar kept as metadata is at most this long (64 of them stay under limits.max_metadata_chars).
MAX_FILTER_VALUE_CHARS = 512
# Documents per IngestBatch.
INGEST_BATCH = 64
# Queries per BatchSearch (limits.max_batch_queries is 256).
SEARCH_BATCH = 256
VALUE_KEY_PREFIX = "v."
# The query text of a listing: in dense mode with k over the namespace's chunk count, every
# chunk comes back whatever the text.
LISTING_QUERY = "*"
OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
# Options the store sets itself on each search.
OWN_SEARCH_OPTIONS = frozenset({"namespace", "k", "filters", "refresh_ttl"})

_PLAIN = frozenset(string.ascii_letters + string.digits + "-")
_HEX = frozenset("0123456789abcdef")


# --- names ------------------------------------------------------------------------------


def escape_label(label: str) -> str:
    """A namespace label (or a value's field name) in [A-Za-z0-9_-]: "_" becomes "__", any other
    character outside [A-Za-z0-9-] "_" and the two lower-case hex digits of each UTF-8 byte."""
    out = []
    for char in label:
        if char in _PLAIN:
            out.append(char)
        elif char == "_":
            out.append("__")
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def unescape_label(text: str) -> str:
    """escape_label's inverse; ValueError for text it cannot have made."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char in _PLAIN:
            out += char.encode("ascii")
            i += 1
        elif char == "_" and text[i + 1:i + 2] == "_":
            out += b"_"
            i += 2
        elif char == "_" and len(pair := text[i + 1:i + 3]) == 2 and set(pair) <= _HEX:
            out.append(int(pair, 16))
            i += 3
        else:
            raise ValueError(f"{text!r} is not an escaped label")
    label = out.decode("utf-8")
    if not label or escape_label(label) != text:  # e.g. "_41" for "A": not what escape_label makes
        raise ValueError(f"{text!r} is not an escaped label")
    return label


def encode_scalar(value: Any) -> str | None:
    """A top-level scalar as a metadata value, or None where it is not kept: strings as JSON,
    numbers and bools as float(x)'s repr (so that 1, 1.0 and True, equal in Python, are
    equal here too). Not None: a filter {"f": None} matches values without "f" too, which
    the service's metadata filter would not."""
    if isinstance(value, str):
        encoded = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (bool, int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        if not math.isfinite(number):
            return None
        encoded = repr(number)
    else:
        return None
    return encoded if len(encoded) <= MAX_FILTER_VALUE_CHARS else None


def value_key(field_name: str) -> str | None:
    """The metadata key of a top-level field, None where it would be over 128 characters."""
    key = VALUE_KEY_PREFIX + escape_label(field_name)
    return key if len(key) <= MAX_NAME_CHARS else None


def canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --- filters, as LangGraph's InMemoryStore applies them ---------------------------------


def matches(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    return all(_compare(value.get(key), condition) for key, condition in filter.items())


def _compare(item_value: Any, condition: Any) -> bool:
    if isinstance(condition, Mapping):
        if any(str(key).startswith("$") for key in condition):
            return all(_apply(item_value, operator, operand) for operator, operand in condition.items())
        if not isinstance(item_value, Mapping):
            return False
        return all(_compare(item_value.get(key), sub) for key, sub in condition.items())
    if isinstance(condition, (list, tuple)):
        return (isinstance(item_value, (list, tuple)) and len(item_value) == len(condition)
                and all(_compare(a, b) for a, b in zip(item_value, condition)))
    return bool(item_value == condition)


def _apply(value: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return bool(value == operand)
    if operator == "$ne":
        return bool(value != operand)
    try:
        left, right = float(value), float(operand)
    except (TypeError, ValueError):
        return False  # a missing or non-numeric field is not greater or smaller than anything
    if operator == "$gt":
        return left > right
    if operator == "$gte":
        return left >= right
    if operator == "$lt":
        return left < right
    if operator == "$lte":
        return left <= right
    raise ValueError(f"unsupported filter operator {operator!r}; use one of {', '.join(sorted(OPERATORS))}")


def service_filters(filter: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The equality conditions of a SearchOp.filter that the service can apply itself, as its
    metadata filters; ValueError for an unknown operator. The others are checked on the values."""
    out: dict[str, list[str]] = {}
    for field_name, condition in (filter or {}).items():
        if isinstance(condition, Mapping) and any(str(key).startswith("$") for key in condition):
            unknown = sorted(str(key) for key in condition if key not in OPERATORS)
            if unknown:
                raise ValueError(f"filter {field_name!r}: unsupported operator {unknown[0]!r}; "
                                 f"use one of {', '.join(sorted(OPERATORS))}")
            if "$eq" not in condition:
                continue
            condition = condition["$eq"]
        key, encoded = value_key(str(field_name)), encode_scalar(condition)
        if key is not None and encoded is not None:
            out[key] = [encoded]
    return out


# --- plans ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One client call a plan asks for: a RetrievalClient/AsyncRetrievalClient method and its
    arguments. Its outcome is the method's result, or the NotFound it raised."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


# Yields the calls to make together, receives their outcomes in order, returns its result.
_Plan = Generator[list[_Call], list[Any], T]


def _together(plans: Sequence[_Plan[Any]]) -> _Plan[list[Any]]:
    """Run plans side by side: each round makes the calls every unfinished plan asks for."""
    results: list[Any] = [None] * len(plans)
    asking: dict[int, list[_Call]] = {}
    for i, plan in enumerate(plans):
        try:
            asking[i] = next(plan)
        except StopIteration as done:
            results[i] = done.value
    while asking:
        order = list(asking.items())
        outcomes = yield [call for _, calls in order for call in calls]
        asking = {}
        start = 0
        for i, calls in order:
            mine, start = outcomes[start:start + len(calls)], start + len(calls)
            try:
                asking[i] = plans[i].send(mine)
            except StopIteration as done:
                results[i] = done.value
    return results


@dataclass
class _Namespace:
    """A service namespace under a search's prefix: its name, LangGraph namespace, chunk
    count, the hits read so far, their k, and whether they are all there are."""

    name: str
    labels: tuple[str, ...]
    chunk_count: int
    k: int = 0
    read_k: int = 0
    hits: tuple[Hit, ...] = ()
    complete: bool = False


@dataclass
class _Candidate:
    namespace: _Namespace
    hit: Hit
    item: SearchItem | None = None
    hydrated: bool = False


class RetrievalStore(BaseStore):
    """A LangGraph BaseStore over a retrieval server (the module docstring says how items map
    onto documents). Pass `client` and `async_client` to share clients; otherwise they are
    opened on first use from `target` and `client_options` (retrieval_svc.integrations.Clients:
    token, tls, ca_file, ...; the RETRIEVAL_SVC_* variables fill in what is not given).

    `prefix`: the service namespace prefix of every LangGraph namespace ("" or None: none, and
    then list_namespaces and a search from the root see every service namespace). `index`:
    {"fields": [paths]} to put those fields' text in each document's title. `ttl`: LangGraph's
    TTLConfig (default_ttl in minutes, refresh_on_read). `search_options`: SearchOptions for
    every query (mode, default "dense"; rerank, fusion, dense_weight, ...). `max_k`,
    `max_metadata_keys`, `max_title_chars`: the server's limits of those names.
    `timeout`: each call's deadline in seconds (None: the client's). Failed calls raise the
    client's errors (retrieval_svc.client.errors), except NotFound, which is a missing item.
    """

    supports_ttl = True

    def __init__(self, target: str | None = None, *, client: RetrievalClient | None = None,
                 async_client: AsyncRetrievalClient | None = None,
                 client_options: Mapping[str, Any] | None = None, prefix: str | None = "lg",
                 index: Mapping[str, Any] | None = None, ttl: TTLConfig | None = None,
                 search_options: Mapping[str, Any] | None = None, max_k: int = 1000,
                 max_metadata_keys: int = 64, max_title_chars: int = 2048, timeout: float | None = None) -> None:
        prefix = prefix or ""
        if prefix and (len(prefix) >= MAX_NAME_CHARS or prefix.startswith(".") or prefix.endswith(".")
                       or ".." in prefix or not set(prefix) <= _PLAIN | {"_", "."}):
            raise ValueError(f"prefix {prefix!r} is not a namespace prefix: use up to 127 characters of "
                             "[A-Za-z0-9_.-], not starting or ending with '.'")
        index = dict(index or {})
        if "embed" in index:
            raise ValueError("index['embed'] cannot be used: the retrieval server embeds documents with its own "
                             "encoder; give index={'fields': [...]} only")
        fields = index.get("fields")
        if isinstance(fields, str) or not isinstance(fields, (list, tuple, type(None))):
            raise ValueError(f"index['fields'] must be a list of paths, got {fields!r}")
        options = {"mode": "dense", **(search_options or {})}
        reserved = sorted(OWN_SEARCH_OPTIONS & set(options))
        if reserved:
            raise ValueError(f"search_options cannot set {', '.join(reserved)}: the store sets them per operation")
        for name, value in (("max_k", max_k), ("max_metadata_keys", max_metadata_keys),
                            ("max_title_chars", max_title_chars)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.prefix = prefix
        self.index_fields: list[str] = [str(f) for f in fields or ()]
        self.ttl_config = ttl
        self.search_options = options
        self.max_k = max_k
        self.max_metadata_keys = max_metadata_keys
        self.max_title_chars = max_title_chars
        self.timeout = timeout
        self._clients = Clients(target, client, async_client, client_options)

    # --- running plans ---------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        plan = self._batch(list(ops))
        client = self._clients.sync()
        try:
            calls = next(plan)
            while True:
                calls = plan.send([self._call(client, call) for call in calls])
        except StopIteration as done:
            return done.value

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        plan = self._batch(list(ops))
        client = self._clients.aio()
        try:
            calls = next(plan)
            while True:
                outcomes = await asyncio.gather(*(self._acall(client, call) for call in calls))
                calls = plan.send(list(outcomes))
        except StopIteration as done:
            return done.value

    def _call(self, client: RetrievalClient, call: _Call) -> Any:
        try:
            return getattr(client, call.method)(*call.args, timeout=self.timeout, **call.kwargs)
        except NotFound as exc:
            return exc

    async def _acall(self, client: AsyncRetrievalClient, call: _Call) -> Any:
        try:
            return await getattr(client, call.method)(*call.args, timeout=self.timeout, **call.kwargs)
        except NotFound as exc:
            return exc

    def close(self) -> None:
        """Close the sync client opened here (a given `client` stays open)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async client opened here for the running event loop."""
        await self._clients.aclose()

    def __enter__(self) -> "RetrievalStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the batch ---------------------------------------------------------------------------

    def _batch(self, ops: list[Op]) -> _Plan[list[Result]]:
        reads: list[tuple[int, _Plan[Any]]] = []
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for i, op in enumerate(ops):
            validate_op_namespace(op)
            if isinstance(op, GetOp):
                reads.append((i, self._get(op)))
            elif isinstance(op, SearchOp):
                reads.append((i, self._search(op)))
            elif isinstance(op, ListNamespacesOp):
                reads.append((i, self._list_namespaces(op)))
            elif isinstance(op, PutOp):
                puts[(tuple(op.namespace), str(op.key))] = op
            else:
                raise ValueError(f"unknown operation {type(op).__name__}")
        results: list[Result] = [None] * len(ops)
        outcomes = yield from _together([plan for _, plan in reads])
        for (i, _), outcome in zip(reads, outcomes):
            results[i] = outcome
        yield from self._write(list(puts.values()))
        return results

    # --- namespaces --------------------------------------------------------------------------

    def namespace_name(self, namespace: Sequence[str]) -> str:
        """The service namespace of a LangGraph namespace; InvalidNamespaceError when it would
        be over 128 characters."""
        name = ".".join([self.prefix] * bool(self.prefix) + [escape_label(label) for label in namespace])
        if not name:
            raise InvalidNamespaceError("a namespace needs at least one label")
        if len(name) > MAX_NAME_CHARS:
            raise InvalidNamespaceError(
                f"namespace {tuple(namespace)} is {len(name)} characters as the service namespace {name[:60]!r}..., "
                f"over the service's {MAX_NAME_CHARS}: use fewer or shorter labels (characters outside "
                "[A-Za-z0-9-] take 2 to 12 characters each)")
        return name

    def namespace_labels(self, name: str) -> tuple[str, ...] | None:
        """The LangGraph namespace of a service namespace; None for one this store cannot have made."""
        if self.prefix:
            if not name.startswith(self.prefix + "."):
                return None
            name = name[len(self.prefix) + 1:]
        try:
            return tuple(unescape_label(part) for part in name.split("."))
        except ValueError:
            return None

    def _under(self, labels: Sequence[str]) -> _Plan[list[tuple[NamespaceInfo, tuple[str, ...]]]]:
        """The service namespaces (with documents) under a LangGraph namespace prefix."""
        labels = tuple(labels)
        root = self.prefix + "." if self.prefix else ""
        listing = self.namespace_name(labels) if labels else root
        if len(listing) > MAX_NAME_CHARS:
            return []
        [infos] = yield [_Call("list_namespaces", (listing,))]
        found = []
        for info in infos:
            decoded = self.namespace_labels(info.name)
            if decoded is not None and decoded[:len(labels)] == labels and info.document_count > 0:
                found.append((info, decoded))
        return found

    def _list_namespaces(self, op: ListNamespacesOp) -> _Plan[list[tuple[str, ...]]]:
        conditions = tuple(op.match_conditions or ())
        # The literal labels that lead the first prefix condition narrow the service's listing.
        literal: list[str] = []
        for condition in conditions:
            if condition.match_type == "prefix":
                for label in condition.path:
                    if label == "*":
                        break
                    literal.append(label)
                break
        try:
            under = yield from self._under(literal)
        except InvalidNamespaceError:
            return []  # a prefix too long for any namespace
        namespaces = [labels for _, labels in under if all(_does_match(c, labels) for c in conditions)]
        if op.max_depth is not None:
            namespaces = [labels[:op.max_depth] for labels in namespaces]
        return sorted(set(namespaces))[op.offset:op.offset + op.limit]

    # --- reads -------------------------------------------------------------------------------

    def _get(self, op: GetOp) -> _Plan[Item | None]:
        [doc] = yield [_Call("get_document", (str(op.key),),
                             {"namespace": self.namespace_name(op.namespace), "refresh_ttl": op.refresh_ttl})]
        if isinstance(doc, NotFound):
            return None
        return _item(doc, tuple(op.namespace))

    def _search(self, op: SearchOp) -> _Plan[list[SearchItem]]:
        wanted = op.offset + op.limit
        if op.limit <= 0 or op.offset < 0:
            return []
        try:
            under = yield from self._under(op.namespace_prefix)
        except InvalidNamespaceError:
            return []
        namespaces = [_Namespace(info.name, labels, info.chunk_count) for info, labels in under]
        if not namespaces:
            return []
        listing = op.query is None
        filters = service_filters(op.filter)
        options: dict[str, Any] = {"refresh_ttl": False}
        if filters:
            options["filters"] = filters
        if listing:
            query = LISTING_QUERY
            options["mode"] = "dense"
            for ns in namespaces:
                ns.k = min(self.max_k, ns.chunk_count + 1)
        else:
            query = str(op.query)
            options.update(self.search_options)
            for ns in namespaces:
                ns.k = min(self.max_k, max(2 * wanted, 10))
        candidates: dict[tuple[str, str], _Candidate] = {}
        while True:
            pending = [ns for ns in namespaces if ns.read_k != ns.k]
            if pending:
                yield from self._search_round(query, pending, options, dense_depth=listing)
            # Namespaces that may hold more than was read, and could be read deeper.
            deeper = [ns for ns in namespaces if not ns.complete and ns.k < self.max_k]
            if listing:
                full = [ns for ns in namespaces if not ns.complete and ns.k >= self.max_k]
                if full:
                    raise ValueError(
                        f"cannot list namespace {full[0].labels} without a query: it holds {self.max_k} chunks or "
                        f"more, and a listing reads at most max_k ({self.max_k}, the server's limits.max_k) per "
                        "namespace; search it with a query, or raise limits.max_k and the store's max_k")
                settled = [] if deeper else self._ranked(namespaces, candidates, by_time=True)
            else:
                # A hit not read yet scores at most the last hit read in its namespace.
                bound = max((ns.hits[-1].score for ns in deeper if ns.hits), default=-math.inf)
                settled = [c for c in self._ranked(namespaces, candidates, by_time=False) if c.hit.score >= bound]
            if op.filter:
                # Values are needed to check the filter: read them in order until enough pass.
                passing = yield from self._passing(settled, op.filter, wanted, listing)
            else:
                passing = settled[:wanted]
            if not deeper or len(passing) >= wanted:
                break
            for ns in deeper:
                ns.k = min(self.max_k, 2 * ns.k)
        page = passing[op.offset:wanted]
        if op.filter:
            # Values were read without refreshing (candidates that failed the filter are not
            # returned, so their TTLs stay); the returned items are refreshed now.
            if op.refresh_ttl and page:
                yield [self._get_call(c, refresh_ttl=True) for c in page]
        else:
            outcomes = yield [self._get_call(c, refresh_ttl=op.refresh_ttl) for c in page]
            for candidate, doc in zip(page, outcomes):
                candidate.item = None if isinstance(doc, NotFound) else _search_item(doc, candidate, listing)
        return [c.item for c in page if c.item is not None]

    def _get_call(self, candidate: _Candidate, *, refresh_ttl: bool) -> _Call:
        return _Call("get_document", (candidate.hit.doc_id,),
                     {"namespace": candidate.namespace.name, "refresh_ttl": refresh_ttl})

    def _search_round(self, query: str, pending: list[_Namespace], options: Mapping[str, Any],
                      dense_depth: bool) -> _Plan[None]:
        """Search each pending namespace with its k: one Search, or BatchSearch for several; a
        namespace deleted meanwhile (NotFound) has no hits."""

        def own(ns: _Namespace) -> dict[str, Any]:
            return {"namespace": ns.name, "k": ns.k, **({"dense_candidates": ns.k} if dense_depth else {})}

        groups = [pending[i:i + SEARCH_BATCH] for i in range(0, len(pending), SEARCH_BATCH)]
        calls = [_Call("search", (query,), {**options, **own(group[0])}) if len(group) == 1
                 else _Call("batch_search", ([{"query": query, **own(ns)} for ns in group],), options)
                 for group in groups]
        outcomes = yield calls
        alone: list[_Namespace] = []
        results: list[tuple[_Namespace, SearchResult | NotFound]] = []
        for group, outcome in zip(groups, outcomes):
            if isinstance(outcome, NotFound) and len(group) > 1:
                alone.extend(group)  # which one went is unknown: ask each
            elif isinstance(outcome, list):
                results.extend(zip(group, outcome))
            else:
                results.append((group[0], outcome))
        if alone:
            outcomes = yield [_Call("search", (query,), {**options, **own(ns)}) for ns in alone]
            results.extend(zip(alone, outcomes))
        for ns, result in results:
            ns.hits = () if isinstance(result, NotFound) else result.hits
            ns.read_k = ns.k
            ns.complete = len(ns.hits) < ns.k

    def _ranked(self, namespaces: list[_Namespace], seen: dict[tuple[str, str], _Candidate],
                by_time: bool) -> list[_Candidate]:
        """One candidate per document (its best hit), best first (newest first for a listing);
        candidates whose values were read keep them."""
        best: dict[tuple[str, str], _Candidate] = {}
        for ns in namespaces:
            for hit in ns.hits:
                key = (ns.name, hit.doc_id)
                if key in best:
                    continue
                candidate = seen.get(key) or _Candidate(ns, hit)
                candidate.hit = hit
                best[key] = seen[key] = candidate
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        if by_time:  # a chunk's last_verified_at is its document's (every put confirms every chunk)
            return sorted(best.values(), key=lambda c: (-(c.hit.last_verified_at or epoch).timestamp(),
                                                        c.namespace.labels, c.hit.doc_id))
        return sorted(best.values(), key=lambda c: -c.hit.score)  # stable: namespaces, then server order

    def _passing(self, candidates: list[_Candidate], filter: Mapping[str, Any], wanted: int,
                 listing: bool) -> _Plan[list[_Candidate]]:
        """The candidates whose values pass `filter`, in order, until `wanted` of them; values
        are read (without refreshing TTLs) in rounds of as many as are still missing."""
        passing: list[_Candidate] = []
        position = 0
        while len(passing) < wanted and position < len(candidates):
            chunk = candidates[position:position + wanted - len(passing)]
            position += len(chunk)
            unread = [c for c in chunk if not c.hydrated]
            if unread:
                outcomes = yield [self._get_call(c, refresh_ttl=False) for c in unread]
                for candidate, doc in zip(unread, outcomes):
                    candidate.hydrated = True
                    candidate.item = None if isinstance(doc, NotFound) else _search_item(doc, candidate, listing)
            passing.extend(c for c in chunk if c.item is not None and matches(c.item.value, filter))
        return passing

    # --- writes ------------------------------------------------------------------------------

    def _write(self, puts: list[PutOp]) -> _Plan[None]:
        upserts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        deletes: dict[str, list[str]] = defaultdict(list)
        now = datetime.now(timezone.utc)
        for op in puts:
            name = self.namespace_name(op.namespace)
            if op.value is None:
                deletes[name].append(str(op.key))
            else:
                upserts[name].append(self.document(op, now))
        calls = [_Call("ingest_batch", (docs[i:i + INGEST_BATCH],), {"namespace": name})
                 for name, docs in upserts.items() for i in range(0, len(docs), INGEST_BATCH)]
        # A namespace that does not exist holds nothing to delete (NotFound is left as it is).
        calls += [_Call("delete", (keys,), {"namespace": name}) for name, keys in deletes.items()]
        if calls:
            yield calls

    def document(self, op: PutOp, now: datetime) -> dict[str, Any]:
        """The document a PutOp stores (the module docstring says what goes where)."""
        value = op.value
        if not isinstance(value, Mapping):
            raise TypeError(f"the value of {op.namespace}/{op.key} must be a mapping, got {type(value).__name__}")
        try:
            text = canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the value of {op.namespace}/{op.key} must be JSON (string keys; no NaN or "
                             f"infinity): {exc}") from exc
        metadata = {}
        for field_name, item in value.items():
            key, encoded = value_key(str(field_name)), encode_scalar(item)
            if key is not None and encoded is not None:
                metadata[key] = encoded
        if len(metadata) > self.max_metadata_keys:
            raise ValueError(
                f"the value of {op.namespace}/{op.key} has {len(metadata)} top-level scalar fields; the store keeps "
                f"at most max_metadata_keys ({self.max_metadata_keys}, the server's limits.max_metadata_keys) "
                "to filter on: nest some of them in an object")
        paths = self.index_fields if op.index is None else (op.index or [])
        texts = [text for path in paths if path != "$" for text in get_text_at_path(value, tokenize_path(path))]
        document: dict[str, Any] = {
            "doc_id": str(op.key), "text": text, "title": "\n".join(texts)[:self.max_title_chars],
            "metadata": metadata, "source_updated_at": now,
        }
        if op.ttl is not None:
            document["ttl_seconds"] = float(op.ttl) * 60.0
        return document


def _does_match(condition: MatchCondition, labels: tuple[str, ...]) -> bool:
    """LangGraph's namespace condition: a prefix or suffix of labels, "*" matching any one."""
    path = tuple(condition.path)
    if len(labels) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(labels, path)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(labels), reversed(path))
    else:
        raise ValueError(f"unsupported match type {condition.match_type!r}; use 'prefix' or 'suffix'")
    return all(want == "*" or label == want for label, want in pairs)


def _value(doc: StoredDocument) -> dict[str, Any] | None:
    try:
        value = json.loads(doc.text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _times(doc: StoredDocument) -> tuple[datetime, datetime]:
    """(created_at, updated_at): the server's times of the first put and of the last."""
    updated = doc.last_verified_at or doc.source_updated_at or datetime.now(timezone.utc)
    return doc.first_indexed_at or updated, updated


def _item(doc: StoredDocument, namespace: tuple[str, ...]) -> Item | None:
    value = _value(doc)
    if value is None:
        return None
    created, updated = _times(doc)
    return Item(value=value, key=doc.doc_id, namespace=namespace, created_at=created, updated_at=updated)


def _search_item(doc: StoredDocument, candidate: _Candidate, listing: bool) -> SearchItem | None:
    value = _value(doc)
    if value is None:
        return None
    created, updated = _times(doc)
    return SearchItem(namespace=candidate.namespace.labels, key=doc.doc_id, value=value, created_at=created,
                      updated_at=updated, score=None if listing else candidate.hit.score)


__all__ = ["RetrievalStore", "escape_label", "unescape_label", "encode_scalar", "matches", "service_filters"]
