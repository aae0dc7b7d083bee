"""The durable ledger: documents, chunks, their embeddings and timestamps, in SQLite.

The ledger is the source of truth. Indexes are derived from it and can always be
rebuilt from it without re-embedding (embeddings are stored as float32 blobs).
Every commit bumps a generation number in the same transaction, so an index
snapshot knows whether it is current.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from retrieval_svc.domain import Chunk, Document
from retrieval_svc.store.base import DocumentMeta, NewChunk, SearchFilter, StoredDocument

_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (name TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    namespace TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    source_uri TEXT NOT NULL,
    source_updated_at REAL NOT NULL,
    content_hash TEXT NOT NULL,
    first_indexed_at REAL NOT NULL,
    last_verified_at REAL NOT NULL,
    expires_at REAL,
    ttl_seconds REAL,
    PRIMARY KEY (namespace, doc_id)
);
CREATE TABLE IF NOT EXISTS doc_metadata (
    namespace TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, doc_id, key)
);
CREATE INDEX IF NOT EXISTS doc_metadata_lookup ON doc_metadata (namespace, key, value);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    source_updated_at REAL NOT NULL,
    first_indexed_at REAL NOT NULL,
    last_verified_at REAL NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (namespace, doc_id);
-- Kept by every transaction, so counts cost O(1) per namespace (metrics scrapes, Info).
CREATE TABLE IF NOT EXISTS namespace_counts (
    name TEXT PRIMARY KEY,
    documents INTEGER NOT NULL,
    chunks INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_age ON chunks (namespace, source_updated_at);
"""

# After the columns exist (a ledger from before expiry gets them in _migrate).
_EXPIRY_INDEXES = """
CREATE INDEX IF NOT EXISTS documents_by_expiry ON documents (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS documents_by_namespace_expiry ON documents (namespace, expires_at)
    WHERE expires_at IS NOT NULL;
"""
# A document is visible at `now` unless it expired by then.
_LIVE = "(d.expires_at IS NULL OR d.expires_at > ?)"

_CHUNK_COLUMNS = (
    "key, chunk_id, namespace, doc_id, ordinal, text, start_char, end_char, token_count, "
    "source_updated_at, first_indexed_at, last_verified_at"
)


@dataclass(frozen=True)
class EncoderBinding:
    """Which encoder made a store's embeddings. Identity is the weights' hash and the
    dimension; the name (often a path) is informational, so the same weights
    installed elsewhere (another venv, another image) open the store."""

    name: str
    revision: str
    dimension: int

    def describe(self) -> str:
        return f"{self.name}@{self.revision} ({self.dimension}-d)"

    @classmethod
    def parse(cls, stored: str) -> "EncoderBinding | None":
        """From the ledger's meta value: JSON, or the older 'name@revision (D-d)' text."""
        try:
            data = json.loads(stored)
            return cls(str(data["name"]), str(data["revision"]), int(data["dimension"]))
        except (ValueError, KeyError, TypeError):
            pass
        match = re.fullmatch(r"(.*)@(\S+) \((\d+)-d\)", stored)
        return cls(match[1], match[2], int(match[3])) if match else None


def _chunk(row: tuple) -> Chunk:
    return Chunk(*row)


class Ledger:
    """SQLite access. Writes go through one connection under the caller's write lock;
    reads use one connection per thread (WAL lets them run beside a writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._migrate()
        self._writer.commit()
        if self.get_meta("namespace_counts") is None:
            self._count_namespaces()

    def _migrate(self) -> None:
        """Columns added since a ledger was made: documents.expires_at and ttl_seconds (0.2)."""
        columns = {row[1] for row in self._writer.execute("PRAGMA table_info(documents)")}
        for name in ("expires_at", "ttl_seconds"):
            if name not in columns:
                self._writer.execute(f"ALTER TABLE documents ADD COLUMN {name} REAL")
        self._writer.executescript(_EXPIRY_INDEXES)

    def _count_namespaces(self) -> None:
        """Fill namespace_counts from the tables (a ledger from before it existed)."""
        w = self._writer
        w.execute("BEGIN IMMEDIATE")
        w.execute("DELETE FROM namespace_counts")
        w.execute(
            "INSERT INTO namespace_counts (name, documents, chunks) SELECT n.name, "
            "(SELECT COUNT(*) FROM documents d WHERE d.namespace = n.name), "
            "(SELECT COUNT(*) FROM chunks c WHERE c.namespace = n.name) FROM namespaces n"
        )
        w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('namespace_counts', '1')")
        w.execute("COMMIT")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def close(self) -> None:
        self._writer.close()

    # --- meta -----------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def bind_encoder(self, encoder: EncoderBinding) -> None:
        """Record which encoder made the stored embeddings; refuse another one.

        Vectors of two models must never share an index. An empty ledger takes the
        new encoder; a ledger with chunks keeps its own and raises ValueError when the
        weights' hash or the dimension differ. The same weights under another name
        (path) are the same encoder: the stored name is updated."""
        raw = self.get_meta("encoder")
        stored = EncoderBinding.parse(raw) if raw is not None else None
        if stored is not None and (stored.revision, stored.dimension) == (encoder.revision, encoder.dimension):
            if stored.name == encoder.name:
                return
        elif raw is not None:
            chunks = self._reader.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            if chunks:
                what = stored.describe() if stored else raw
                raise ValueError(
                    f"the store at {self.path.parent} holds {chunks} chunks embedded by {what}, "
                    f"not by the configured encoder {encoder.describe()}; use a new store.path "
                    "(and re-ingest) or configure the encoder the store was built with"
                )
        value = json.dumps({"name": encoder.name, "revision": encoder.revision,
                            "dimension": encoder.dimension})
        self._writer.execute(
            "INSERT INTO meta (key, value) VALUES ('encoder', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (value,),
        )

    # --- transactions ---------------------------------------------------------

    def transaction(self) -> "Transaction":
        return Transaction(self._writer)

    # --- reads ----------------------------------------------------------------

    def namespaces(self) -> list[str]:
        return [r[0] for r in self._reader.execute("SELECT name FROM namespaces ORDER BY name")]

    def has_namespace(self, name: str) -> bool:
        row = self._reader.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone()
        return row is not None

    def document(self, namespace: str, doc_id: str, now: float | None = None) -> StoredDocument | None:
        """The stored document; with `now`, None once it has expired by then."""
        row = self._reader.execute(
            "SELECT title, text, metadata, source_uri, source_updated_at, content_hash, "
            "first_indexed_at, last_verified_at, expires_at, ttl_seconds FROM documents "
            "WHERE namespace = ? AND doc_id = ?",
            (namespace, doc_id),
        ).fetchone()
        if row is None:
            return None
        title, text, metadata, uri, updated, content_hash, first, last, expires_at, ttl = row
        if now is not None and expires_at is not None and expires_at <= now:
            return None
        doc = Document(namespace, doc_id, text, title, json.loads(metadata), updated, uri, expires_at, ttl)
        return StoredDocument(doc, content_hash, first, last)

    def documents_meta(self, namespace: str, doc_ids: Iterable[str]) -> dict[str, DocumentMeta]:
        """doc_id -> what a hit carries of its document."""
        ids = list(dict.fromkeys(doc_ids))
        out: dict[str, DocumentMeta] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for doc_id, title, metadata, uri, expires_at, ttl in self._reader.execute(
                f"SELECT doc_id, title, metadata, source_uri, expires_at, ttl_seconds FROM documents "
                f"WHERE namespace = ? AND doc_id IN ({marks})",
                (namespace, *part),
            ):
                out[doc_id] = DocumentMeta(title, json.loads(metadata), uri, expires_at, ttl)
        return out

    def doc_chunk_ids(self, namespace: str, doc_id: str) -> dict[str, int]:
        """chunk_id -> key of a document's current chunks."""
        return dict(
            self._reader.execute(
                "SELECT chunk_id, key FROM chunks WHERE namespace = ? AND doc_id = ?",
                (namespace, doc_id),
            )
        )

    def doc_chunks(self, namespace: str, doc_id: str) -> list[Chunk]:
        rows = self._reader.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE namespace = ? AND doc_id = ? "
            "ORDER BY ordinal",
            (namespace, doc_id),
        )
        return [_chunk(r) for r in rows]

    def chunk(self, chunk_id: str, now: float) -> Chunk | None:
        """The chunk, unless its document has expired by `now`."""
        columns = ", ".join(f"c.{name.strip()}" for name in _CHUNK_COLUMNS.split(","))
        row = self._reader.execute(
            f"SELECT {columns} FROM chunks c JOIN documents d ON d.namespace = c.namespace "
            f"AND d.doc_id = c.doc_id WHERE c.chunk_id = ? AND {_LIVE}", (chunk_id, now)
        ).fetchone()
        return _chunk(row) if row else None

    def next_expiry(self, namespace: str) -> float | None:
        """The earliest expires_at in the namespace (an index seek), None if nothing expires."""
        return self._reader.execute(
            "SELECT MIN(expires_at) FROM documents WHERE namespace = ? AND expires_at IS NOT NULL",
            (namespace,)).fetchone()[0]

    def expired(self, now: float, limit: int) -> list[tuple[str, str]]:
        return [(ns, doc_id) for ns, doc_id in self._reader.execute(
            "SELECT namespace, doc_id FROM documents WHERE expires_at IS NOT NULL AND expires_at <= ? "
            "ORDER BY expires_at LIMIT ?", (now, limit))]

    def chunks_by_key(self, keys: Sequence[int]) -> dict[int, Chunk]:
        out: dict[int, Chunk] = {}
        keys = [int(k) for k in keys]
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self._reader.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE key IN ({marks})", part
            ):
                out[row[0]] = _chunk(row)
        return out

    def iter_index_rows(self, namespace: str, batch: int = 4096) -> Iterator[tuple]:
        """(keys int64[], titles, texts, embeddings float32[n, d]) batches for rebuilding indexes."""
        cursor = self._reader.execute(
            "SELECT c.key, d.title, c.text, c.embedding FROM chunks c JOIN documents d "
            "ON d.namespace = c.namespace AND d.doc_id = c.doc_id WHERE c.namespace = ? ORDER BY c.key",
            (namespace,),
        )
        while rows := cursor.fetchmany(batch):
            keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
            yield keys, [r[1] for r in rows], [r[2] for r in rows], vectors

    def chunk_keys(self, namespace: str) -> np.ndarray:
        """The namespace's chunk keys, ascending."""
        rows = self._reader.execute(
            "SELECT key FROM chunks WHERE namespace = ? ORDER BY key", (namespace,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def allowed_keys(self, namespace: str, where: SearchFilter) -> np.ndarray:
        """Keys of the namespace's chunks whose document matches every filter clause
        (key equals one of the values) and whose source is at least that recent."""
        conditions = ["c.namespace = ?"]
        params: list = [namespace]
        for key, values in where.clauses:
            marks = ",".join("?" * len(values))
            if key in ("doc_id", "source_uri"):
                column = "c.doc_id" if key == "doc_id" else "d.source_uri"
                conditions.append(f"{column} IN ({marks})")
                params.extend(values)
            else:
                conditions.append(
                    "c.doc_id IN (SELECT doc_id FROM doc_metadata WHERE namespace = ? AND key = ? "
                    f"AND value IN ({marks}))"
                )
                params.extend([namespace, key, *values])
        if where.min_source_updated_at is not None:
            conditions.append("c.source_updated_at >= ?")
            params.append(where.min_source_updated_at)
        if where.visible_at is not None:
            conditions.append(_LIVE)
            params.append(where.visible_at)
        if where.indexed_by is not None:
            conditions.append("c.first_indexed_at <= ?")
            params.append(where.indexed_by)
        sql = (
            "SELECT c.key FROM chunks c JOIN documents d "
            "ON d.namespace = c.namespace AND d.doc_id = c.doc_id WHERE " + " AND ".join(conditions)
        )
        return np.fromiter((r[0] for r in self._reader.execute(sql, params)), dtype=np.int64)

    def namespace_stats(self, namespace: str) -> tuple[int, int, float | None]:
        """(documents, chunks, oldest source_updated_at): a row read and an index seek."""
        row = self._reader.execute(
            "SELECT documents, chunks FROM namespace_counts WHERE name = ?", (namespace,)
        ).fetchone()
        docs, chunks = row if row else (0, 0)
        oldest = self._reader.execute(
            "SELECT MIN(source_updated_at) FROM chunks WHERE namespace = ?", (namespace,)
        ).fetchone()[0]
        return docs, chunks, oldest


class Transaction:
    """One write transaction. Use as a context manager; it commits on success,
    bumps the generation, and rolls back on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.generation = 0

    def __enter__(self) -> "Transaction":
        self._conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._conn.execute("ROLLBACK")
            return
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        self.generation = int(row[0]) + 1 if row else 1
        self.set_meta("generation", str(self.generation))
        self._conn.execute("COMMIT")

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def ensure_namespace(self, name: str, now: float) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO namespaces (name, created_at) VALUES (?, ?)", (name, now)
        )
        self._conn.execute(
            "INSERT OR IGNORE INTO namespace_counts (name, documents, chunks) VALUES (?, 0, 0)", (name,)
        )

    def _count(self, namespace: str, documents: int = 0, chunks: int = 0) -> None:
        if documents or chunks:
            self._conn.execute(
                "UPDATE namespace_counts SET documents = documents + ?, chunks = chunks + ? "
                "WHERE name = ?", (documents, chunks, namespace))

    def upsert_document(
        self, doc: Document, source_updated_at: float, content_hash: str,
        first_indexed_at: float, now: float,
    ) -> None:
        exists = self._conn.execute(
            "SELECT 1 FROM documents WHERE namespace = ? AND doc_id = ?", (doc.namespace, doc.doc_id)
        ).fetchone()
        if exists is None:
            self._count(doc.namespace, documents=1)
        self._conn.execute(
            "INSERT INTO documents (namespace, doc_id, title, text, metadata, source_uri, "
            "source_updated_at, content_hash, first_indexed_at, last_verified_at, expires_at, ttl_seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(namespace, doc_id) DO UPDATE SET "
            "title = excluded.title, text = excluded.text, metadata = excluded.metadata, "
            "source_uri = excluded.source_uri, source_updated_at = excluded.source_updated_at, "
            "content_hash = excluded.content_hash, last_verified_at = excluded.last_verified_at, "
            "expires_at = excluded.expires_at, ttl_seconds = excluded.ttl_seconds",
            (
                doc.namespace, doc.doc_id, doc.title, doc.text,
                json.dumps(dict(doc.metadata), sort_keys=True), doc.source_uri,
                source_updated_at, content_hash, first_indexed_at, now, doc.expires_at, doc.ttl_seconds,
            ),
        )
        self._conn.execute(
            "DELETE FROM doc_metadata WHERE namespace = ? AND doc_id = ?",
            (doc.namespace, doc.doc_id),
        )
        self._conn.executemany(
            "INSERT INTO doc_metadata (namespace, doc_id, key, value) VALUES (?, ?, ?, ?)",
            [(doc.namespace, doc.doc_id, k, v) for k, v in doc.metadata.items()],
        )

    def delete_document(self, namespace: str, doc_id: str) -> None:
        cursor = self._conn.execute(
            "DELETE FROM documents WHERE namespace = ? AND doc_id = ?", (namespace, doc_id)
        )
        self._count(namespace, documents=-cursor.rowcount)
        self._conn.execute(
            "DELETE FROM doc_metadata WHERE namespace = ? AND doc_id = ?", (namespace, doc_id)
        )

    def extend_expiry(self, namespace: str, doc_id: str, expires_at: float, now: float) -> bool:
        return self._conn.execute(
            "UPDATE documents SET expires_at = ? WHERE namespace = ? AND doc_id = ? "
            "AND expires_at IS NOT NULL AND expires_at > ?", (expires_at, namespace, doc_id, now)).rowcount > 0

    def delete_namespace(self, namespace: str, keep: bool) -> tuple[int, int]:
        """Delete the namespace's documents and chunks (and with `keep` false the namespace):
        (documents, chunks) deleted."""
        docs = self._conn.execute("DELETE FROM documents WHERE namespace = ?", (namespace,)).rowcount
        chunks = self._conn.execute("DELETE FROM chunks WHERE namespace = ?", (namespace,)).rowcount
        self._conn.execute("DELETE FROM doc_metadata WHERE namespace = ?", (namespace,))
        if keep:
            self._conn.execute("UPDATE namespace_counts SET documents = 0, chunks = 0 WHERE name = ?",
                               (namespace,))
        else:
            self._conn.execute("DELETE FROM namespace_counts WHERE name = ?", (namespace,))
            self._conn.execute("DELETE FROM namespaces WHERE name = ?", (namespace,))
        return docs, chunks

    def delete_chunks(self, namespace: str, keys: Sequence[int]) -> None:
        """Delete these chunks of `namespace` (keys of other namespaces are left alone)."""
        deleted = 0
        for k in keys:
            deleted += self._conn.execute(
                "DELETE FROM chunks WHERE key = ? AND namespace = ?", (int(k), namespace)).rowcount
        self._count(namespace, chunks=-deleted)

    def insert_chunks(
        self, namespace: str, doc_id: str, chunks: Sequence[NewChunk],
        source_updated_at: float, now: float,
    ) -> list[int]:
        keys = []
        for c in chunks:
            cursor = self._conn.execute(
                "INSERT INTO chunks (chunk_id, namespace, doc_id, ordinal, text, start_char, "
                "end_char, token_count, source_updated_at, first_indexed_at, last_verified_at, "
                "embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.chunk_id, namespace, doc_id, c.ordinal, c.text, c.start_char, c.end_char,
                    c.token_count, source_updated_at, now, now,
                    np.ascontiguousarray(c.embedding, dtype=np.float32).tobytes(),
                ),
            )
            if cursor.lastrowid is None:
                raise RuntimeError("SQLite returned no row id for an inserted chunk")
            keys.append(cursor.lastrowid)
        self._count(namespace, chunks=len(keys))
        return keys

    def refresh_chunks(
        self, rows: Sequence[tuple[int, int, int, int]], source_updated_at: float, now: float
    ) -> None:
        """Unchanged chunks: (key, ordinal, start_char, end_char) may have moved;
        confirm them (last_verified_at) and carry the document's source time."""
        self._conn.executemany(
            "UPDATE chunks SET ordinal = ?, start_char = ?, end_char = ?, "
            "source_updated_at = ?, last_verified_at = ? WHERE key = ?",
            [(o, s, e, source_updated_at, now, k) for k, o, s, e in rows],
        )


