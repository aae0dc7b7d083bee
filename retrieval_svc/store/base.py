"""The store interface: what the pipeline, the ingestor and the servicers may ask of a store.

Two backends implement it: the embedded store (`retrieval_svc.store.engine`: a SQLite
ledger plus in-process FAISS and BM25 indexes, one process per folder) and the Milvus
store (`retrieval_svc.store.milvus`: everything in Milvus, nothing in the process, so
any number of replicas serve one Milvus). `tests/retrieval_svc/store/` runs one
conformance suite on both.

The contract:
- **Atomic document versions.** `StoreWriter.put_document` replaces a document's chunk
  set; a reader sees the whole old set or the whole new one, never a mix, and a
  document's hits in one search all come from one version.
- **Read your writes.** Once `writer()`'s block returns, every later reader, on any
  replica, sees the change.
- **Filters are values.** A `SearchFilter` (clauses and a time bound) is translated by
  each backend (SQL, a Milvus boolean expression); callers never pass key lists.
- **Expired documents are absent.** From its `expires_at` on, a document is left out of
  every read (search, document, chunk) before any sweep deletes it.
- **Counts without scans**: `stats()` reads kept counters (embedded) or asks the
  backend to count (Milvus); it never moves keys to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ContextManager, Protocol, Sequence

import numpy as np

from retrieval_svc.domain import Candidate, Chunk, Document


@dataclass(frozen=True)
class SearchFilter:
    """Which chunks a search may return: those whose document matches every clause
    (a clause `(key, values)` matches when the document's `key` is one of `values`;
    `doc_id` and `source_uri` are document fields, other keys are metadata), whose
    source time is at least `min_source_updated_at`, whose document has not expired by
    `visible_at` and that were first indexed at or before `indexed_by` (as_of).

    A store may skip the `visible_at` condition where no document of the namespace
    expires by then (the common case costs no filter)."""

    clauses: tuple[tuple[str, tuple[str, ...]], ...] = ()
    min_source_updated_at: float | None = None
    visible_at: float | None = None
    indexed_by: float | None = None

    def __bool__(self) -> bool:
        return (bool(self.clauses) or self.min_source_updated_at is not None
                or self.visible_at is not None or self.indexed_by is not None)

    @classmethod
    def of(cls, clauses: Sequence[tuple[str, Sequence[str]]],
           min_source_updated_at: float | None = None, *, visible_at: float | None = None,
           indexed_by: float | None = None) -> "SearchFilter":
        return cls(tuple((k, tuple(v)) for k, v in clauses), min_source_updated_at, visible_at, indexed_by)

    def without_expiry(self) -> "SearchFilter":
        return SearchFilter(self.clauses, self.min_source_updated_at, None, self.indexed_by)


NO_FILTER = SearchFilter()


@dataclass(frozen=True)
class StoredDocument:
    document: Document
    content_hash: str
    first_indexed_at: float
    last_verified_at: float

    @property
    def expires_at(self) -> float | None:
        return self.document.expires_at


def expired(expires_at: float | None, now: float) -> bool:
    """Whether a document with this expiry is gone at `now` (from that instant on)."""
    return expires_at is not None and expires_at <= now


@dataclass(frozen=True)
class NewChunk:
    """One chunk of a document version. `embedding` is None for a chunk the store
    already holds under this chunk_id (its stored embedding is kept)."""

    chunk_id: str
    ordinal: int
    text: str
    start_char: int
    end_char: int
    token_count: int
    embedding: np.ndarray | None


@dataclass(frozen=True)
class PutResult:
    """What `put_document` did: chunks added, kept (same chunk_id) and removed, and the
    content hash the document had before (None: it is new)."""

    added: int
    kept: int
    removed: int
    previous_content_hash: str | None


@dataclass(frozen=True)
class StoreStats:
    namespace: str
    documents: int
    chunks: int
    dense_entries: int
    lexical_entries: int
    dense_missing: int
    lexical_missing: int
    oldest_source_updated_at: float | None


@dataclass(frozen=True)
class DocumentMeta:
    """What a hit carries of its document."""

    title: str
    metadata: dict[str, str]
    source_uri: str
    expires_at: float | None = None
    ttl_seconds: float | None = None


class StoreReader(Protocol):
    """One consistent view for one search (see the module docstring)."""

    generation: int

    def dense(self, namespace: str, vector: np.ndarray, k: int,
              where: SearchFilter = NO_FILTER) -> list[Candidate]:
        """Top-k chunks by inner product with the unit `vector`, best first."""

    def lexical(self, namespace: str, query: str, k: int,
                where: SearchFilter = NO_FILTER) -> list[Candidate]:
        """Top-k chunks by BM25 over the indexed text, best first."""

    def hydrate(self, namespace: str, keys: Sequence[int]
                ) -> tuple[dict[int, Chunk], dict[str, DocumentMeta]]:
        """The chunks of these keys that belong to their document's current version,
        and their documents. Keys of replaced or deleted versions are left out."""


class StoreWriter(Protocol):
    """Writes of one commit. The embedded store holds its write lock for the block;
    Milvus has no multi-row transactions, so each document is swapped on its own."""

    def chunk_ids(self, namespace: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
        """Chunk ids of each document's current version; documents that do not exist
        are left out. Milvus reads them for all the documents at once and keeps what
        `put_document` needs of them for this block."""

    def put_document(self, doc: Document, content_hash: str, source_updated_at: float,
                     chunks: Sequence[NewChunk], now: float) -> PutResult:
        """Make `chunks` the document's chunk set, atomically for readers."""

    def delete_document(self, namespace: str, doc_id: str, *, expired_by: float | None = None) -> int | None:
        """Delete the document and its chunks; the chunk count, or None if absent (with
        `expired_by`: or not expired by then, so a sweep spares a document written anew)."""

    def extend_expiry(self, namespace: str, doc_id: str, expires_at: float) -> bool:
        """Move a live document's expiry to `expires_at` (a refreshing read); False when the
        document is absent or already expired (an expired document stays expired)."""

    def delete_namespace(self, namespace: str, *, only_if_empty: bool = False) -> tuple[int, int] | None:
        """Delete the namespace with its documents and chunks: (documents, chunks) deleted,
        or None when it does not exist (or, `only_if_empty`, still holds documents). The
        default namespace is emptied and keeps existing."""


class DocumentStore(Protocol):
    """A store backend (see the module docstring)."""

    @property
    def generation(self) -> int:
        """Grows with every commit: a response's index_generation."""

    def reader(self) -> ContextManager[StoreReader]: ...

    def writer(self) -> ContextManager[StoreWriter]: ...

    def has_namespace(self, namespace: str) -> bool:
        """The default namespace always exists; others once something was ingested."""

    def document(self, namespace: str, doc_id: str) -> StoredDocument | None: ...

    def doc_chunks(self, namespace: str, doc_id: str) -> list[Chunk]:
        """The document's current chunks, by ordinal."""

    def chunk_ids(self, namespace: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
        """As StoreWriter.chunk_ids, outside a commit (to plan one)."""

    def chunk(self, chunk_id: str) -> Chunk | None: ...

    def expired(self, now: float, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (namespace, doc_id) of documents expired at `now`, for the sweep."""

    def namespaces(self) -> list[str]:
        """The namespaces written to (the default one only once it was), by name."""

    def stats(self) -> list[StoreStats]: ...

    def verify(self) -> dict[str, dict[str, int]]:
        """Per namespace, how far the search indexes are from the stored chunks
        (`*_missing`, `*_extra`); all zero when they agree."""

    # Whether other processes write to the store too (replicas over one Milvus): what a
    # process caches of it must then be read again from time to time.
    shared: bool

    def put_record(self, kind: str, name: str, value: dict) -> None:
        """Keep a JSON object (a query set, an evaluation result) where every process
        serving this store reads it; replaces the record of that kind and name."""

    def records(self, kind: str) -> dict[str, dict]:
        """Every record of a kind, by name (records that cannot be read are logged and left out)."""

    def maintain(self) -> int:
        """Background upkeep that is due (index rebuilds, garbage of crashed writes);
        how many pieces were done."""

    def snapshot_if_due(self, interval_seconds: float) -> bool: ...

    def close(self) -> None: ...
