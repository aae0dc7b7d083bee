"""The Milvus store: chunks, documents and the store's own records in Milvus, none in the process.

Any number of replicas serve one Milvus (a server, or a Milvus Lite file for one
process). Three collections, `<prefix>_chunks`, `<prefix>_documents` and `<prefix>_meta`:

- **chunks**: one row per chunk of a document *version*: text, offsets, timestamps, the
  document's filterable fields (source_uri, metadata as `key=value` tags, source time),
  the dense vector, and for BM25 the text analyzed by *our* tokenizer (stop words, Porter
  stemming) with Milvus's BM25 function over it into a sparse field. Milvus's own
  analyzers do not stem English; fed our tokens, its BM25 ranks as ours does.
- **documents**: one row per document: title, metadata, source, content hash, timestamps
  and the current `version`, a random 62-bit number.
- **meta**: the encoder binding, the generation, the namespaces.

**Expiry** (session memory): chunk rows and the document row carry `expires_at` (never:
`NEVER`, the last Timestamp second), so every search filters expired chunks in Milvus
and k stays whole. A refreshing read that moves a TTL writes a new version of the
document (the same swap, vectors kept), at most once per `refresh_interval`.
Collections made before expiry existed (0.1) lack the field: they serve as before and
refuse writes with an expiry (FailedPrecondition naming `milvus.collection_prefix`).

**Atomic swap without transactions.** A write inserts the new version's chunk rows
(under keys derived from the version, so they are new rows), then upserts the document
row naming the new version (one row: atomic), then deletes the replaced version's rows.
A reader keeps only chunk rows whose version is their document row's version, so it
sees the old set or the new one, never a mix. Rows of a write that crashed between the
steps (or lost a race with another replica writing the same document) are never
visible, and are deleted when the document is next written, once older than
`ORPHAN_GRACE_SECONDS` (a live write never takes that long).

**Read your writes**: collections use Strong consistency; Milvus Lite also needs a flush
after writes (`milvus.flush`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import zlib
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from retrieval_svc.domain import (
    DEFAULT_NAMESPACE, MAX_TIMESTAMP_SECONDS, Candidate, Chunk, Document, indexed_text,
)
from retrieval_svc.errors import FailedPrecondition, InvalidArgument, StartupError, Unavailable
from retrieval_svc.settings import MilvusSettings
from retrieval_svc.store.base import (
    NO_FILTER, DocumentMeta, NewChunk, PutResult, SearchFilter, StoredDocument, StoreStats, expired,
)
from retrieval_svc.store.ledger import EncoderBinding

log = logging.getLogger(__name__)

# Rows of an unfinished write older than this are garbage (see the module docstring).
ORPHAN_GRACE_SECONDS = 600.0
# Milvus limits: VARCHAR bytes, array capacity, rows per query result.
MAX_VARCHAR_BYTES = 65_535
MAX_TAGS = 4096
QUERY_WINDOW = 16_384
# Seconds a reader trusts its copy of the generation and the stats.
GENERATION_TTL_SECONDS = 1.0
STATS_TTL_SECONDS = 30.0
# Characters of a record per meta row (under the VARCHAR limit).
RECORD_PART_CHARS = 60_000

_CHUNK_FIELDS = ["key", "chunk_id", "namespace", "doc_id", "version", "ordinal", "text", "start_char",
                 "end_char", "token_count", "source_updated_at", "first_indexed_at"]
_DOC_FIELDS = ["pk", "namespace", "doc_id", "title", "metadata", "source_uri", "source_updated_at",
               "content_hash", "first_indexed_at", "last_verified_at", "version", "chunk_count"]
_EXPIRY_FIELDS = ["expires_at", "ttl_seconds"]
# expires_at of what never expires (a number, so filters stay one comparison).
NEVER = float(MAX_TIMESTAMP_SECONDS)
# Seconds this process trusts that a namespace exists (another replica may delete it).
NAMESPACE_TTL_SECONDS = 5.0
_PLAIN_TOKEN = re.compile(r"^[a-z0-9]{1,40}$")
# Milvus requires a vector field in every collection; documents and meta rows carry this one.
_PLACEHOLDER = [1.0, 0.0]


def _literal(value: str) -> str:
    """A Milvus expression string literal (JSON escapes; non-ASCII kept as is, since
    Milvus rejects \\u escapes)."""
    return json.dumps(value, ensure_ascii=False)


def _literals(values: Iterable[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def chunk_key(chunk_id: str, version: int) -> int:
    """The row key of a chunk in one document version: 63 bits of a hash, so replicas make
    keys without coordinating (collision odds ~n²/2⁶⁴: 3e-6 at 10M chunks)."""
    digest = hashlib.blake2b(f"{version}\x1f{chunk_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def lexical_terms(tokens: Iterable[str]) -> str:
    """Our tokens as text Milvus's standard analyzer splits back into exactly these tokens:
    plain lowercase ASCII words pass; any other token becomes a hash word."""
    words = []
    for token in tokens:
        if _PLAIN_TOKEN.match(token):
            words.append(token)
        else:
            words.append("x" + hashlib.blake2b(token.encode(), digest_size=8).hexdigest())
    return " ".join(words)


def filter_expression(namespace: str, where: SearchFilter, expiry: bool = True) -> str:
    """A SearchFilter as a Milvus boolean expression over chunk rows (`expiry`: the rows
    carry expires_at)."""
    parts = [f"namespace == {_literal(namespace)}"]
    for key, values in where.clauses:
        if key in ("doc_id", "source_uri"):
            parts.append(f"{key} in {_literals(values)}")
        else:
            parts.append(f"array_contains_any(tags, {_literals(f'{key}={v}' for v in values)})")
    if where.min_source_updated_at is not None:
        parts.append(f"source_updated_at >= {float(where.min_source_updated_at)!r}")
    if where.visible_at is not None and expiry:
        parts.append(f"expires_at > {float(where.visible_at)!r}")
    if where.indexed_by is not None:
        parts.append(f"first_indexed_at <= {float(where.indexed_by)!r}")
    return " and ".join(parts)


def _pk(namespace: str, doc_id: str) -> str:
    # Namespaces are [A-Za-z0-9_.-]: the first "/" ends one.
    return f"{namespace}/{doc_id}"


class MilvusStore:
    """store.base.DocumentStore on Milvus (see the module docstring)."""

    def __init__(self, settings: MilvusSettings, *, dimension: int, tokenize: Callable[[str], list[str]],
                 k1: float = 1.5, b: float = 0.75, prepend_title: bool = False,
                 encoder: EncoderBinding | None = None, analysis: dict | None = None) -> None:
        """`analysis`: what makes the BM25 text and its scores (the tokenizer's spec, k1, b),
        recorded at first start; a store holding chunks refuses another (StartupError)."""
        from pymilvus import MilvusClient

        self.settings = settings
        self.dimension = dimension
        self.prepend_title = prepend_title
        self._tokenize = tokenize
        self._k1, self._b = k1, b
        prefix = settings.collection_prefix
        self._chunks, self._docs, self._meta = f"{prefix}_chunks", f"{prefix}_documents", f"{prefix}_meta"
        self._flush = settings.flush == "always" or (settings.flush == "auto" and settings.is_lite)
        if settings.is_lite:
            # Milvus Lite logs every flush and segment build at INFO.
            logging.getLogger("milvus_lite").setLevel(logging.WARNING)
        try:
            kwargs: dict[str, Any] = {"uri": settings.uri, "timeout": settings.timeout_seconds}
            if settings.token:
                kwargs["token"] = settings.token
            if settings.database:
                kwargs["db_name"] = settings.database
            self._client = MilvusClient(**kwargs)
            self._create_collections()
            if encoder is not None:
                self._bind_encoder(encoder)
            if analysis is not None and settings.lexical:
                self._bind_analysis({**analysis, "k1": k1, "b": b})
        except StartupError:
            raise
        except Exception as exc:
            raise StartupError(f"milvus.uri {settings.uri}: cannot open the Milvus store: "
                               f"{_reason(exc)}") from None
        self._lock = threading.Lock()
        # namespace -> when its meta row was last seen (monotonic); trusted NAMESPACE_TTL_SECONDS.
        self._seen: dict[str, float] = {}
        self._generation = self._read_generation()
        self._generation_read = time.monotonic()
        self._stats: tuple[float, list[StoreStats]] | None = None
        self._closed = False

    # --- schema ---------------------------------------------------------------

    def _create_collections(self) -> None:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        c = self._client
        if c.has_collection(self._chunks):
            self._check_chunks_schema()
        else:
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.INT64, is_primary=True)
            schema.add_field("chunk_id", DataType.VARCHAR, max_length=256)
            schema.add_field("namespace", DataType.VARCHAR, max_length=512)
            schema.add_field("doc_id", DataType.VARCHAR, max_length=4096)
            schema.add_field("version", DataType.INT64)
            for name in ("ordinal", "start_char", "end_char", "token_count"):
                schema.add_field(name, DataType.INT64)
            schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES)
            schema.add_field("source_uri", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES)
            schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR,
                             max_capacity=MAX_TAGS, max_length=MAX_VARCHAR_BYTES)
            for name in ("source_updated_at", "first_indexed_at", "written_at", "expires_at"):
                schema.add_field(name, DataType.DOUBLE)
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
            index = c.prepare_index_params()
            index.add_index("dense", index_type=self.settings.index_type, metric_type="IP",
                            params=dict(self.settings.index_params))
            if self.settings.lexical:
                schema.add_field("analyzed", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES,
                                 enable_analyzer=True, analyzer_params={"tokenizer": "standard"})
                schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
                schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                             input_field_names=["analyzed"], output_field_names=["sparse"]))
                index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                                params={"bm25_k1": self._k1, "bm25_b": self._b})
            c.create_collection(self._chunks, schema=schema, index_params=index,
                                consistency_level="Strong")
        if not c.has_collection(self._docs):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=8192)
            schema.add_field("namespace", DataType.VARCHAR, max_length=512)
            schema.add_field("doc_id", DataType.VARCHAR, max_length=4096)
            schema.add_field("title", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES)
            schema.add_field("metadata", DataType.JSON)
            schema.add_field("source_uri", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES)
            schema.add_field("content_hash", DataType.VARCHAR, max_length=128)
            for name in ("source_updated_at", "first_indexed_at", "last_verified_at", *_EXPIRY_FIELDS):
                schema.add_field(name, DataType.DOUBLE)
            schema.add_field("version", DataType.INT64)
            schema.add_field("chunk_count", DataType.INT64)
            schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
            self._create_with_placeholder(self._docs, schema)
        if not c.has_collection(self._meta):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=1024)
            schema.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES)
            schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
            self._create_with_placeholder(self._meta, schema)
        for name in (self._chunks, self._docs, self._meta):
            c.load_collection(name)
        chunk_fields = {f["name"] for f in c.describe_collection(self._chunks)["fields"]}
        doc_fields = {f["name"] for f in c.describe_collection(self._docs)["fields"]}
        # Collections of 0.1 have no expiry fields (see the module docstring).
        self.expiry = "expires_at" in chunk_fields and set(_EXPIRY_FIELDS) <= doc_fields
        self._doc_fields = _DOC_FIELDS + (_EXPIRY_FIELDS if self.expiry else [])

    def _create_with_placeholder(self, name: str, schema) -> None:
        index = self._client.prepare_index_params()
        index.add_index("placeholder", index_type="FLAT", metric_type="L2")
        self._client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")

    # --- meta rows ------------------------------------------------------------

    def _get_meta(self, key: str) -> str | None:
        rows = self._client.query(self._meta, filter=f"pk == {_literal(key)}", output_fields=["value"])
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self._client.upsert(self._meta, [{"pk": key, "value": value, "placeholder": _PLACEHOLDER}])
        if self._flush:
            self._client.flush(self._meta)

    def _bind(self, key: str, value: str, same: Callable[[str], bool],
              refusal: Callable[[str, int], str]) -> None:
        """Record what made the stored chunks under meta `key`; when a store that holds chunks
        recorded something else (`same(stored)` false), refuse: StartupError(refusal(stored, n))."""
        stored = self._get_meta(key)
        if stored is not None and not same(stored):
            chunks = self._count(self._chunks, "key >= 0")
            if chunks:
                raise StartupError(refusal(stored, chunks))
        if stored != value:
            self._set_meta(key, value)

    def _bind_encoder(self, encoder: EncoderBinding) -> None:
        """The same weights (hash) and dimension; the name may differ (another path)."""
        def same(stored: str) -> bool:
            binding = EncoderBinding.parse(stored)
            return binding is not None and (binding.revision, binding.dimension) == (encoder.revision,
                                                                                     encoder.dimension)

        def refusal(stored: str, chunks: int) -> str:
            binding = EncoderBinding.parse(stored)
            return (f"the Milvus store {self.settings.uri} ({self.settings.collection_prefix}) holds {chunks} "
                    f"chunks embedded by {binding.describe() if binding else stored}, not by the configured "
                    f"encoder {encoder.describe()}; use another milvus.collection_prefix (and re-ingest) or "
                    "configure the encoder the store was built with")

        self._bind("encoder", json.dumps({"name": encoder.name, "revision": encoder.revision,
                                          "dimension": encoder.dimension}), same, refusal)

    def _bind_analysis(self, analysis: dict) -> None:
        value = json.dumps(analysis, sort_keys=True)
        self._bind("analysis", value, lambda stored: json.loads(stored) == analysis, lambda stored, chunks: (
            f"bm25 settings {value} differ from those the Milvus store {self.settings.uri} "
            f"({self.settings.collection_prefix}) analyzed its {chunks} chunks with, {stored}; configure "
            "those, or use another milvus.collection_prefix and re-ingest"))

    def _check_chunks_schema(self) -> None:
        """An existing chunk collection must fit the settings: the vector dimension and BM25."""
        fields = {f["name"]: f for f in self._client.describe_collection(self._chunks)["fields"]}
        dim = int(fields["dense"].get("params", {}).get("dim", self.dimension))
        if dim != self.dimension:
            raise StartupError(
                f"the Milvus collection {self._chunks} at {self.settings.uri} holds {dim}-d vectors, the "
                f"encoder makes {self.dimension}-d ones; use another milvus.collection_prefix")
        if self.settings.lexical != ("sparse" in fields):
            made = "with" if "sparse" in fields else "without"
            raise StartupError(
                f"milvus.lexical is {str(self.settings.lexical).lower()} but the Milvus collection {self._chunks} "
                f"was made {made} BM25; set it back or use another milvus.collection_prefix")

    def _read_generation(self) -> int:
        return int(self._get_meta("generation") or 0)

    @property
    def generation(self) -> int:
        if time.monotonic() - self._generation_read > GENERATION_TTL_SECONDS:
            try:
                self._generation = max(self._generation, self._read_generation())
            except Exception as exc:  # a reader must not fail for a number in its reply
                log.warning("cannot read the generation from Milvus: %s", _reason(exc))
            self._generation_read = time.monotonic()
        return self._generation

    def _advance_generation(self) -> None:
        # Across replicas the generation is the newest commit's time in microseconds, kept
        # ahead of any value seen: it grows with every commit without a shared counter.
        with self._lock:
            self._generation = max(self._generation + 1, time.time_ns() // 1000)
            value = self._generation
        self._set_meta("generation", str(value))

    # --- reads ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down; retry on another replica or after restart",
                              retry_after_seconds=1.0)

    @contextmanager
    def reader(self) -> Iterator["MilvusReader"]:
        self._check_open()
        with _translated():
            yield MilvusReader(self)

    def has_namespace(self, namespace: str) -> bool:
        if namespace == DEFAULT_NAMESPACE:
            return True
        seen = self._seen.get(namespace)
        if seen is not None and time.monotonic() - seen < NAMESPACE_TTL_SECONDS:
            return True
        with _translated():
            found = self._get_meta(f"namespace/{namespace}") is not None
        if found:
            self._seen[namespace] = time.monotonic()
        return found

    def _doc_rows(self, pks: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for start in range(0, len(pks), 1000):
            part = pks[start:start + 1000]
            for row in self._client.query(self._docs, filter=f"pk in {_literals(part)}",
                                          output_fields=self._doc_fields):
                out[row["pk"]] = row
        return out

    def _current(self, namespace: str, doc_ids: Sequence[str], fields: Sequence[str],
                 live_at: float | None = None) -> dict[str, tuple[dict, list[dict]]]:
        """doc_id -> (document row, its current version's chunk rows by ordinal) for the
        documents that exist (with `live_at`: and have not expired by then): two queries
        per 100 documents."""
        out: dict[str, tuple[dict, list[dict]]] = {}
        ids = list(dict.fromkeys(doc_ids))
        for start in range(0, len(ids), 100):
            part = ids[start:start + 100]
            docs = {row["doc_id"]: row for row in self._doc_rows([_pk(namespace, d) for d in part]).values()
                    if live_at is None or not expired(_expires_at(row), live_at)}
            if not docs:
                continue
            versions = sorted({int(row["version"]) for row in docs.values()})
            rows = self._client.query(
                self._chunks, limit=QUERY_WINDOW,
                output_fields=sorted({*fields, "doc_id", "version", "ordinal"}),
                filter=f"namespace == {_literal(namespace)} and doc_id in {_literals(docs)} "
                       f"and version in {versions}")
            if len(rows) >= QUERY_WINDOW:
                raise Unavailable(f"over {QUERY_WINDOW} chunk rows for {len(docs)} documents in one read; "
                                  "ingest smaller batches", retry_after_seconds=0.0)
            grouped: dict[str, list[dict]] = {d: [] for d in docs}
            for r in rows:
                if r["version"] == docs[r["doc_id"]]["version"]:
                    grouped[r["doc_id"]].append(r)
            for doc_id, row in docs.items():
                out[doc_id] = (row, sorted(grouped[doc_id], key=lambda r: r["ordinal"]))
        return out

    def document(self, namespace: str, doc_id: str) -> StoredDocument | None:
        with _translated():
            found = self._current(namespace, [doc_id], ["text", "start_char", "end_char"],
                                  time.time()).get(doc_id)
        return None if found is None else _stored(found[0], _reassemble(found[1]))

    def doc_chunks(self, namespace: str, doc_id: str) -> list[Chunk]:
        with _translated():
            found = self._current(namespace, [doc_id], _CHUNK_FIELDS, time.time()).get(doc_id)
        return [] if found is None else [_chunk(r, found[0]) for r in found[1]]

    def chunk_ids(self, namespace: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
        with _translated():
            found = self._current(namespace, doc_ids, ["chunk_id"])
        return {doc_id: {r["chunk_id"] for r in rows} for doc_id, (_, rows) in found.items()}

    def chunk(self, chunk_id: str) -> Chunk | None:
        with _translated():
            rows = self._client.query(self._chunks, filter=f"chunk_id == {_literal(chunk_id)}",
                                      output_fields=_CHUNK_FIELDS, limit=QUERY_WINDOW)
            docs = self._doc_rows(sorted({_pk(r["namespace"], r["doc_id"]) for r in rows}))
        now = time.time()
        for r in rows:
            doc = docs.get(_pk(r["namespace"], r["doc_id"]))
            if doc is not None and doc["version"] == r["version"] and not expired(_expires_at(doc), now):
                return _chunk(r, doc)
        return None

    def expired(self, now: float, limit: int) -> list[tuple[str, str]]:
        if not self.expiry:
            return []
        with _translated():
            rows = self._client.query(self._docs, filter=f"expires_at <= {float(now)!r}",
                                      output_fields=["namespace", "doc_id"], limit=min(limit, QUERY_WINDOW))
        return [(r["namespace"], r["doc_id"]) for r in rows]

    def _count(self, collection: str, expression: str) -> int:
        rows = self._client.query(collection, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def namespaces(self) -> list[str]:
        rows = self._client.query(self._meta, filter='pk like "namespace/%"', output_fields=["pk"],
                                  limit=QUERY_WINDOW)
        return sorted(r["pk"].split("/", 1)[1] for r in rows)

    def _scan(self, collection: str, expression: str, fields: Sequence[str]) -> Iterator[dict]:
        iterator = self._client.query_iterator(collection, batch_size=4096, filter=expression,
                                               output_fields=list(fields))
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()

    def stats(self) -> list[StoreStats]:
        """Counts per namespace, cached for STATS_TTL_SECONDS (metrics scrapes, Info).
        Documents and chunk rows are counted by Milvus (count(*)); the current version's
        chunks and the oldest source time are summed over the document rows' two
        numbers, an O(documents) read. Chunk rows beyond the documents' chunks are
        writes in flight or left by a crash (`verify()`)."""
        cached = self._stats
        if cached is not None and time.monotonic() - cached[0] < STATS_TTL_SECONDS:
            return cached[1]
        out = []
        with _translated():
            for namespace in self.namespaces():
                ns = f"namespace == {_literal(namespace)}"
                chunks, oldest = 0, None
                for d in self._scan(self._docs, ns, ["chunk_count", "source_updated_at"]):
                    chunks += int(d["chunk_count"])
                    t = float(d["source_updated_at"])
                    oldest = t if oldest is None else min(oldest, t)
                rows = self._count(self._chunks, ns)
                documents = self._count(self._docs, ns)
                out.append(StoreStats(namespace, documents, chunks, rows, rows if self.settings.lexical else 0,
                                      max(0, chunks - rows), max(0, chunks - rows), oldest))
        self._stats = (time.monotonic(), out)
        return out

    def verify(self) -> dict[str, dict[str, int]]:
        """Per namespace: chunk rows the documents name but Milvus lacks (`dense_missing`)
        and rows no document version names (`dense_extra`: writes in flight or orphans)."""
        self._stats = None
        out = {}
        for s in self.stats():
            extra = max(0, s.dense_entries - s.chunks)
            row = {"dense_missing": s.dense_missing, "dense_extra": extra}
            if self.settings.lexical:
                row.update(bm25_missing=s.lexical_missing, bm25_extra=extra)
            out[s.namespace] = row
        return out

    # --- writes ---------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator["MilvusWriter"]:
        self._check_open()
        writer = MilvusWriter(self)
        with _translated():
            yield writer
            if writer.changed:
                self._advance_generation()
                self._stats = None

    def analyzed(self, title: str, text: str) -> str:
        return lexical_terms(self._tokenize(indexed_text(title, text, self.prepend_title)))

    # --- records --------------------------------------------------------------

    shared = True  # replicas write to the same Milvus

    def put_record(self, kind: str, name: str, value: dict) -> None:
        """Meta rows: the JSON, compressed and base64'd, in parts of RECORD_PART_CHARS
        (`record/<kind>/<name>@<write>#<i>`), then the head row naming that write; the
        previous write's parts are deleted after the head moves, so a reader sees one
        whole write."""
        with _translated():
            head_key = f"record/{kind}/{name}"
            previous = self._get_meta(head_key)
            write = secrets.token_hex(8)
            data = base64.b64encode(zlib.compress(json.dumps(value).encode(), 6)).decode("ascii")
            parts = [data[i:i + RECORD_PART_CHARS] for i in range(0, len(data), RECORD_PART_CHARS)] or [""]
            rows = [{"pk": f"{head_key}@{write}#{i}", "value": part, "placeholder": _PLACEHOLDER}
                    for i, part in enumerate(parts)]
            for start in range(0, len(rows), 16):
                self._client.upsert(self._meta, rows[start:start + 16])
            self._set_meta(head_key, json.dumps({"write": write, "parts": len(parts)}))
            if previous:
                old = json.loads(previous)["write"]
                self._client.delete(self._meta, filter=f"pk like {_literal(f'{head_key}@{old}#%')}")

    def records(self, kind: str) -> dict[str, dict]:
        prefix = f"record/{kind}/"
        with _translated():
            rows = self._client.query(self._meta, filter=f"pk like {_literal(prefix + '%')}",
                                      output_fields=["pk", "value"], limit=QUERY_WINDOW)
        values = {r["pk"]: r["value"] for r in rows}
        out = {}
        for key, head in values.items():
            if "@" in key or not key.startswith(prefix):  # parts; `like` may match more
                continue
            name = key[len(prefix):]
            try:
                h = json.loads(head)
                data = "".join(values[f"{key}@{h['write']}#{i}"] for i in range(h["parts"]))
                out[name] = json.loads(zlib.decompress(base64.b64decode(data)))
            except (KeyError, ValueError, zlib.error) as exc:
                # A write in progress (its head moved after this read) or a damaged record.
                log.warning("record %s/%s unreadable now: %s", kind, name, exc)
        return out

    # --- lifecycle ------------------------------------------------------------

    def maintain(self) -> int:
        return 0  # Milvus builds and compacts its own indexes

    def snapshot_if_due(self, interval_seconds: float) -> bool:
        return False  # nothing held in the process

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()


class MilvusReader:
    def __init__(self, store: MilvusStore) -> None:
        self._store = store
        self._client = store._client
        self.generation = store.generation

    def dense(self, namespace: str, vector: np.ndarray, k: int,
              where: SearchFilter = NO_FILTER) -> list[Candidate]:
        hits = self._client.search(
            self._store._chunks, data=[np.asarray(vector, dtype=np.float32).tolist()], anns_field="dense",
            limit=k, filter=filter_expression(namespace, where, self._store.expiry), output_fields=["version"],
            search_params={"metric_type": "IP", "params": {}})
        return [Candidate(_hit_key(h), float(h["distance"])) for h in hits[0]]

    def lexical(self, namespace: str, query: str, k: int,
                where: SearchFilter = NO_FILTER) -> list[Candidate]:
        if not self._store.settings.lexical:
            raise FailedPrecondition("BM25 is off on this Milvus store (milvus.lexical: false): "
                                     "search with mode DENSE")
        terms = lexical_terms(self._store._tokenize(query))
        if not terms:
            return []
        hits = self._client.search(
            self._store._chunks, data=[terms], anns_field="sparse", limit=k,
            filter=filter_expression(namespace, where, self._store.expiry), output_fields=["version"],
            search_params={"metric_type": "BM25"})
        # Milvus Lite reports BM25 scores negated; servers report them as they are.
        return [Candidate(_hit_key(h), abs(float(h["distance"]))) for h in hits[0]]

    def hydrate(self, namespace: str, keys: Sequence[int]
                ) -> tuple[dict[int, Chunk], dict[str, DocumentMeta]]:
        rows = []
        keys = [int(k) for k in keys]
        for start in range(0, len(keys), 1000):
            rows += self._client.query(self._store._chunks, filter=f"key in {keys[start:start + 1000]}",
                                       output_fields=_CHUNK_FIELDS)
        docs = self._store._doc_rows(sorted({_pk(r["namespace"], r["doc_id"]) for r in rows}))
        chunks: dict[int, Chunk] = {}
        metas: dict[str, DocumentMeta] = {}
        now = time.time()
        for r in rows:
            doc = docs.get(_pk(r["namespace"], r["doc_id"]))
            if doc is None or doc["version"] != r["version"] or r["namespace"] != namespace:
                continue  # a replaced, deleted or unfinished version
            if expired(_expires_at(doc), now):
                continue  # expired since the search filtered
            chunks[int(r["key"])] = _chunk(r, doc)
            metas[doc["doc_id"]] = DocumentMeta(doc["title"], dict(doc["metadata"]), doc["source_uri"],
                                                _expires_at(doc), _ttl(doc))
        return chunks, metas


class MilvusWriter:
    """Writes document by document (see the module docstring: the atomic swap)."""

    # What put_document needs of a document's current version.
    _FIELDS = ("chunk_id", "dense", "first_indexed_at")

    def __init__(self, store: MilvusStore) -> None:
        self._store = store
        self._client = store._client
        self.changed = False
        self._read: dict[tuple[str, str], tuple[dict, list[dict]] | None] = {}

    def chunk_ids(self, namespace: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
        self._load(namespace, doc_ids)
        out = {}
        for doc_id in doc_ids:
            found = self._read[(namespace, doc_id)]
            if found is not None:
                out[doc_id] = {r["chunk_id"] for r in found[1]}
        return out

    def _load(self, namespace: str, doc_ids: Sequence[str]) -> None:
        missing = [d for d in doc_ids if (namespace, d) not in self._read]
        if missing:
            found = self._store._current(namespace, missing, self._FIELDS)
            for doc_id in missing:
                self._read[(namespace, doc_id)] = found.get(doc_id)

    def _stored(self, namespace: str, doc_id: str) -> tuple[dict, list[dict]] | None:
        self._load(namespace, [doc_id])
        return self._read[(namespace, doc_id)]

    def _flush(self, *collections: str) -> None:
        if self._store._flush:
            for name in collections:
                self._client.flush(name)

    def put_document(self, doc: Document, content_hash: str, source_updated_at: float,
                     chunks: Sequence[NewChunk], now: float) -> PutResult:
        s, ns = self._store, doc.namespace
        if doc.expires_at is not None and not s.expiry:
            raise FailedPrecondition(
                f"document {doc.doc_id[:140]!r} has an expiry, but the Milvus collections "
                f"{s.settings.collection_prefix}_* were made before expiry existed; set "
                "milvus.collection_prefix to a new name (and re-ingest) to use TTLs")
        found = self._stored(ns, doc.doc_id)
        self._read.pop((ns, doc.doc_id), None)  # changed below: read again if asked
        stored, old = found if found is not None else (None, [])
        old_by_id = {r["chunk_id"]: r for r in old}
        new_ids = {c.chunk_id for c in chunks}
        kept = sum(1 for c in chunks if c.chunk_id in old_by_id)
        previous = stored["content_hash"] if stored is not None and not expired(_expires_at(stored), now) else None
        result = PutResult(len(chunks) - kept, kept, sum(1 for i in old_by_id if i not in new_ids), previous)
        self.changed = True
        self._ensure_namespace(ns, now)
        row = _doc_record(doc, content_hash, source_updated_at, now, stored, len(chunks), s.expiry)
        if (stored is not None and stored["content_hash"] == content_hash
                and stored["source_updated_at"] == source_updated_at and not result.added
                and not result.removed and _expires_at(stored) == doc.expires_at):
            # The same version again: confirm it (last_verified_at) and keep its rows.
            row["version"] = stored["version"]
            self._client.upsert(s._docs, [row])
            self._flush(s._docs)
            return result
        self._write_version(doc, row, chunks, old_by_id, stored, now)
        return result

    def _ensure_namespace(self, namespace: str, now: float) -> None:
        s = self._store
        seen = s._seen.get(namespace)
        if seen is None or time.monotonic() - seen >= NAMESPACE_TTL_SECONDS:
            if s._get_meta(f"namespace/{namespace}") is None:
                s._set_meta(f"namespace/{namespace}", json.dumps({"created_at": now}))
            s._seen[namespace] = time.monotonic()

    def _write_version(self, doc: Document, row: dict, chunks: Sequence[NewChunk],
                       old_by_id: dict[str, dict], stored: dict | None, now: float) -> None:
        """The atomic swap (module docstring): the new version's rows, the document row, then
        the old rows go. A chunk without an embedding keeps its stored vector."""
        s, ns = self._store, doc.namespace
        version = secrets.randbits(62) + 1
        tags = sorted(f"{k}={v}" for k, v in doc.metadata.items())
        records = []
        for c in chunks:
            previous = old_by_id.get(c.chunk_id)
            if c.embedding is not None:
                vector = np.asarray(c.embedding, dtype=np.float32).tolist()
            elif previous is not None:
                vector = previous["dense"]
            else:
                raise ValueError(f"chunk {c.chunk_id} is new to document {doc.doc_id!r} and needs its embedding")
            if len(c.text.encode()) > MAX_VARCHAR_BYTES:
                raise InvalidArgument(
                    f"document {doc.doc_id[:140]!r}: chunk {c.ordinal} has {len(c.text.encode())} bytes of "
                    f"text, over Milvus's VARCHAR limit of {MAX_VARCHAR_BYTES}; use smaller chunker windows")
            record = {
                "key": chunk_key(c.chunk_id, version), "chunk_id": c.chunk_id, "namespace": ns,
                "doc_id": doc.doc_id, "version": version, "ordinal": c.ordinal, "start_char": c.start_char,
                "end_char": c.end_char, "token_count": c.token_count, "text": c.text,
                "source_uri": doc.source_uri, "tags": tags, "source_updated_at": row["source_updated_at"],
                "first_indexed_at": previous["first_indexed_at"] if previous else now,
                "written_at": now, "dense": vector,
            }
            if s.expiry:
                record["expires_at"] = row["expires_at"]
            if s.settings.lexical:
                record["analyzed"] = s.analyzed(doc.title, c.text)
            records.append(record)
        for start in range(0, len(records), 500):
            self._client.insert(s._chunks, records[start:start + 500])
        self._flush(s._chunks)
        row["version"] = version
        self._client.upsert(s._docs, [row])  # the swap: readers now see `version`
        self._flush(s._docs)
        self._delete_versions(ns, doc.doc_id, keep=version,
                              replaced=stored["version"] if stored else None, now=now)

    def extend_expiry(self, namespace: str, doc_id: str, expires_at: float) -> bool:
        """A new version with the same chunks and vectors and the new expiry."""
        s, now = self._store, time.time()
        if not s.expiry:
            return False
        self._read.pop((namespace, doc_id), None)
        found = s._current(namespace, [doc_id], [*_CHUNK_FIELDS, "dense"], now).get(doc_id)
        if found is None or _expires_at(found[0]) is None:
            return False
        stored, rows = found
        doc = Document(namespace, doc_id, "", stored["title"], dict(stored["metadata"]),
                       float(stored["source_updated_at"]), stored["source_uri"], expires_at, _ttl(stored))
        chunks = [NewChunk(r["chunk_id"], int(r["ordinal"]), r["text"], int(r["start_char"]),
                           int(r["end_char"]), int(r["token_count"]), None) for r in rows]
        row = _doc_record(doc, stored["content_hash"], float(stored["source_updated_at"]), now, stored,
                          len(chunks), True)
        row["last_verified_at"] = stored["last_verified_at"]  # a read verifies nothing
        self.changed = True
        self._write_version(doc, row, chunks, {r["chunk_id"]: r for r in rows}, stored, now)
        return True

    def delete_namespace(self, namespace: str, *, only_if_empty: bool = False) -> tuple[int, int] | None:
        s = self._store
        if not s.has_namespace(namespace):
            return None
        ns = f"namespace == {_literal(namespace)}"
        documents, chunks = 0, 0
        for d in s._scan(s._docs, ns, ["chunk_count"]):
            documents += 1
            chunks += int(d["chunk_count"])
        if only_if_empty and documents:
            return None
        self.changed = True
        # Documents first: once a document row is gone its chunk rows are invisible.
        self._client.delete(s._docs, filter=ns)
        self._flush(s._docs)
        self._client.delete(s._chunks, filter=ns)
        self._flush(s._chunks)
        if namespace != DEFAULT_NAMESPACE:
            self._client.delete(s._meta, ids=[f"namespace/{namespace}"])
            self._flush(s._meta)
            s._seen.pop(namespace, None)
        self._read = {key: value for key, value in self._read.items() if key[0] != namespace}
        return documents, chunks

    def _delete_versions(self, namespace: str, doc_id: str, *, keep: int | None,
                         replaced: int | None, now: float) -> None:
        where = f"namespace == {_literal(namespace)} and doc_id == {_literal(doc_id)}"
        if keep is not None:
            stale = f"written_at < {now - ORPHAN_GRACE_SECONDS!r}"
            if replaced is not None:
                stale = f"(version == {int(replaced)} or {stale})"
            where += f" and version != {int(keep)} and {stale}"
        self._client.delete(self._store._chunks, filter=where)
        self._flush(self._store._chunks)

    def delete_document(self, namespace: str, doc_id: str, *, expired_by: float | None = None) -> int | None:
        found = self._stored(namespace, doc_id)
        self._read.pop((namespace, doc_id), None)
        if found is None or (expired_by is not None and not expired(_expires_at(found[0]), expired_by)):
            return None
        stored = found[0]
        self.changed = True
        self._client.delete(self._store._docs, ids=[stored["pk"]])
        self._flush(self._store._docs)
        self._delete_versions(namespace, doc_id, keep=None, replaced=None, now=time.time())
        return int(stored["chunk_count"])


def _hit_key(hit: Any) -> int:
    # Newer servers name the primary key field in results; Milvus 2.3 calls it "id".
    key = hit.get("key")
    return int(key if key is not None else hit["id"])


def _doc_record(doc: Document, content_hash: str, source_updated_at: float, now: float,
                stored: dict | None, chunk_count: int, expiry: bool) -> dict:
    row = {
        "pk": _pk(doc.namespace, doc.doc_id), "namespace": doc.namespace, "doc_id": doc.doc_id,
        "title": doc.title, "metadata": dict(doc.metadata), "source_uri": doc.source_uri,
        "content_hash": content_hash, "source_updated_at": source_updated_at,
        "first_indexed_at": stored["first_indexed_at"] if stored else now, "last_verified_at": now,
        "version": 0, "chunk_count": chunk_count, "placeholder": _PLACEHOLDER,
    }
    if expiry:
        row["expires_at"] = NEVER if doc.expires_at is None else float(doc.expires_at)
        row["ttl_seconds"] = float(doc.ttl_seconds or 0.0)
    return row


def _expires_at(row: dict) -> float | None:
    value = row.get("expires_at")
    return None if value is None or value >= NEVER else float(value)


def _ttl(row: dict) -> float | None:
    return float(row["ttl_seconds"]) if row.get("ttl_seconds") else None


def _chunk(r: dict, doc: dict) -> Chunk:
    # A chunk is verified whenever its document is (rows are rewritten only for a new version).
    return Chunk(int(r["key"]), r["chunk_id"], r["namespace"], r["doc_id"], int(r["ordinal"]), r["text"],
                 int(r["start_char"]), int(r["end_char"]), int(r["token_count"]),
                 float(r["source_updated_at"]), float(r["first_indexed_at"]),
                 float(doc["last_verified_at"]))


def _stored(row: dict, text: str) -> StoredDocument:
    doc = Document(row["namespace"], row["doc_id"], text, row["title"], dict(row["metadata"]),
                   float(row["source_updated_at"]), row["source_uri"], _expires_at(row), _ttl(row))
    return StoredDocument(doc, row["content_hash"], float(row["first_indexed_at"]),
                          float(row["last_verified_at"]))


def _reassemble(parts: Sequence[dict]) -> str:
    """The document text from its chunks (windows that overlap and cover every character):
    Milvus keeps no field long enough for a whole document."""
    out: list[str] = []
    end = 0
    for p in sorted(parts, key=lambda p: p["start_char"]):
        if p["end_char"] > end:
            out.append(p["text"][max(0, end - p["start_char"]):])
            end = p["end_char"]
    return "".join(out)


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:300]


@contextmanager
def _translated() -> Iterator[None]:
    """Milvus failures as UNAVAILABLE (retryable) with Milvus's reason."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise Unavailable(f"the Milvus store failed: {_reason(exc)}", retry_after_seconds=1.0) from exc
