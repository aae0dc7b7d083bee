"""Store: the ledger plus one dense and one lexical index per namespace.

Writes: the caller prepares chunks and embeddings outside any lock, then
`commit` takes the exclusive lock, runs one ledger transaction and applies the
same change to the indexes before releasing it. Reads (`reader()`) hold the
shared lock, so a search sees a whole commit or none of it.

Durability: the ledger commits with synchronous=FULL before an RPC answers.
Index snapshots are written in the background (`snapshot_if_due`) and on close;
at start a snapshot is used only when its generation equals the ledger's and its
keys equal the ledger's chunk keys, else the indexes are rebuilt from the
ledger's stored embeddings and texts, so a crash loses no accepted data and a
restart re-embeds nothing.

One process owns a store folder: `Store` takes an exclusive lock on
`<path>/LOCK` (flock; released by the kernel when the process dies) and refuses
to open a folder another process holds, because two writers' indexes diverge.

Index maintenance (an HNSW rebuild, the first IVF training, BM25 compaction) is
not done inside a commit: `maintain()` copies the index under the shared lock,
builds the replacement with no lock held, then replays the commits made
meanwhile and swaps it in under the exclusive lock, so searches never wait for
a build and writers wait only for the copy.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from retrieval_svc.domain import DEFAULT_NAMESPACE, Candidate, Chunk, Document, indexed_text
from retrieval_svc.errors import StartupError, Unavailable
from retrieval_svc.protocols import LexicalIndex, VectorIndex
from retrieval_svc.store.base import (
    NO_FILTER, DocumentMeta, NewChunk, PutResult, SearchFilter, StoredDocument, StoreStats, expired,
)
from retrieval_svc.store.ledger import EncoderBinding, Ledger, Transaction
from retrieval_svc.store.rwlock import ReadWriteLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass
class IndexPair:
    dense: VectorIndex
    lexical: LexicalIndex


@dataclass(frozen=True)
class IndexFactories:
    """How to make, save and load a namespace's indexes."""

    new_dense: Callable[[], VectorIndex]
    new_lexical: Callable[[], LexicalIndex]
    load_dense: Callable[[Path], VectorIndex]
    load_lexical: Callable[[Path], LexicalIndex]


@dataclass
class IndexChange:
    """What a commit did to one namespace's indexes."""

    removed: list[int]
    added_keys: list[int]
    added_texts: list[str]
    added_vectors: list[np.ndarray]


def _lock_folder(path: Path) -> int:
    """Hold an exclusive flock on path/LOCK for the life of the process; StartupError if taken."""
    lock_path = path / "LOCK"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
        os.close(fd)
        raise StartupError(
            f"the store {path} is in use by process {holder} (it holds {lock_path}); two servers "
            "must not share a store: stop that one or give this one another store.path"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _owner_only(path: Path) -> None:
    """Make the store folder and what is in it the owner's alone (folders 0700, files 0600):
    the ledger holds every tenant's documents. `serve` also sets umask 077, so files made
    later are created that way; this catches a store written before, or by another tool."""
    for folder, dirs, files in os.walk(path):
        for name, mode in [("", 0o700), *((d, 0o700) for d in dirs), *((f, 0o600) for f in files)]:
            target = os.path.join(folder, name) if name else folder
            try:
                st = os.lstat(target)
                if not os.path.islink(target) and st.st_mode & 0o077:
                    os.chmod(target, mode)
            except OSError as exc:
                log.warning("cannot make %s private to its owner: %s", target, exc.strerror or exc)


class Store:
    def __init__(self, path: Path, factories: IndexFactories, prepend_title: bool = False,
                 encoder: EncoderBinding | None = None) -> None:
        self.path = Path(path)
        self.prepend_title = prepend_title
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(self.path)
        self._lock_fd: int | None = _lock_folder(self.path)
        self._factories = factories
        try:
            self.ledger = Ledger(self.path / "ledger.sqlite3")
            if encoder is not None:
                try:
                    self.ledger.bind_encoder(encoder)
                except ValueError as exc:
                    self.ledger.close()
                    raise StartupError(str(exc)) from None
        except BaseException:
            self._unlock()
            raise
        self._lock = ReadWriteLock()
        self._indexes: dict[str, IndexPair] = {}
        self._snapshot_lock = threading.Lock()
        self._maintenance_lock = threading.Lock()
        # (namespace, "dense" | "lexical") -> commits applied while that index is rebuilt beside.
        self._replay: dict[tuple[str, str], list[IndexChange]] = {}
        self._snapshot_generation = -1
        self._last_snapshot = time.monotonic()
        self._closed = False
        self.generation = self.ledger.generation()
        # (generation, namespace -> its earliest expiry): see next_expiry.
        self._next_expiry: tuple[int, dict[str, float | None]] = (-1, {})
        self._open_indexes()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # --- start-up -------------------------------------------------------------

    def _snapshot_dir(self) -> Path:
        return self.path / "indexes"

    def _open_indexes(self) -> None:
        manifest_path = self._snapshot_dir() / MANIFEST
        manifest = {}
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                log.warning("index manifest unreadable; rebuilding indexes from the ledger")
        current = manifest.get("generation") == self.generation
        for namespace in self.ledger.namespaces():
            pair = None
            if current and namespace in manifest.get("namespaces", {}):
                pair = self._load_snapshot(namespace, manifest["namespaces"][namespace])
            if pair is None:
                pair = self._rebuild(namespace)
            self._indexes[namespace] = pair
        self._snapshot_generation = self.generation if current else -1

    def _load_snapshot(self, namespace: str, entry: dict) -> IndexPair | None:
        folder = self._snapshot_dir() / entry["folder"]
        try:
            pair = IndexPair(
                self._factories.load_dense(folder / "dense"),
                self._factories.load_lexical(folder / "bm25"),
            )
        except Exception:  # a damaged snapshot is never fatal: the ledger has everything
            log.exception("snapshot of namespace %r unreadable; rebuilding from the ledger", namespace)
            return None
        # The manifest's count is not enough: a snapshot written by another process
        # over the same ledger can have the right count and generation but other keys.
        ledger_keys = self.ledger.chunk_keys(namespace)
        for name, index in (("dense", pair.dense), ("bm25", pair.lexical)):
            if not np.array_equal(np.sort(index.keys()), ledger_keys):
                log.warning("the %s snapshot of namespace %r does not hold the ledger's chunks "
                            "(%d entries, ledger %d); rebuilding from the ledger",
                            name, namespace, len(index), len(ledger_keys))
                return None
        return pair

    def _rebuild(self, namespace: str) -> IndexPair:
        started = time.perf_counter()
        pair = self._new_pair()
        count = 0
        for keys, titles, texts, vectors in self.ledger.iter_index_rows(namespace):
            pair.dense.add(keys, vectors)
            pair.lexical.add(
                keys.tolist(),
                [indexed_text(title, text, self.prepend_title) for title, text in zip(titles, texts)],
            )
            count += len(keys)
        log.info(
            "rebuilt indexes of namespace %r from the ledger: %d chunks in %.2fs",
            namespace, count, time.perf_counter() - started,
        )
        return pair

    # --- reads ----------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator["EmbeddedReader"]:
        """Shared access: the indexes stay as they are until the block ends."""
        with self._lock.read():
            self._check_open()
            yield EmbeddedReader(self)

    @contextmanager
    def index_pairs(self) -> Iterator[dict[str, IndexPair]]:
        """Shared access to the indexes by namespace (tests and tools)."""
        with self._lock.read():
            self._check_open()
            yield self._indexes

    def document(self, namespace: str, doc_id: str) -> StoredDocument | None:
        return self.ledger.document(namespace, doc_id, time.time())

    def doc_chunks(self, namespace: str, doc_id: str) -> list[Chunk]:
        if self.ledger.document(namespace, doc_id, time.time()) is None:
            return []  # absent or expired
        return self.ledger.doc_chunks(namespace, doc_id)

    def chunk_ids(self, namespace: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
        return _chunk_ids(self.ledger, namespace, doc_ids)

    def chunk(self, chunk_id: str) -> Chunk | None:
        return self.ledger.chunk(chunk_id, time.time())

    def expired(self, now: float, limit: int) -> list[tuple[str, str]]:
        return self.ledger.expired(now, limit)

    def namespaces(self) -> list[str]:
        return self.ledger.namespaces()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down; retry on another replica or after restart",
                              retry_after_seconds=1.0)

    def has_namespace(self, namespace: str) -> bool:
        """The default namespace always exists; others once something was ingested."""
        return (namespace == DEFAULT_NAMESPACE or namespace in self._indexes
                or self.ledger.has_namespace(namespace))

    def stats(self) -> list[StoreStats]:
        """Counts per namespace, O(namespaces): the ledger keeps its counts in a table
        and the indexes know their sizes. `*_missing` is ledger chunks minus index
        entries; `verify()` compares the keys themselves."""
        out = []
        with self._lock.read():
            for namespace, pair in sorted(self._indexes.items()):
                docs, chunks, oldest = self.ledger.namespace_stats(namespace)
                dense, lexical = len(pair.dense), len(pair.lexical)
                out.append(StoreStats(namespace, docs, chunks, dense, lexical,
                                      max(0, chunks - dense), max(0, chunks - lexical), oldest))
        return out

    def verify(self) -> dict[str, dict[str, int]]:
        """Per namespace and index, how many ledger chunk keys the index lacks
        ("dense_missing") and how many keys it has that the ledger does not
        ("dense_extra"); all zero when the indexes match the ledger. O(chunks)."""
        out = {}
        with self._lock.read():
            for namespace, pair in sorted(self._indexes.items()):
                ledger_keys = self.ledger.chunk_keys(namespace)
                row = {}
                for name, index in (("dense", pair.dense), ("bm25", pair.lexical)):
                    keys = index.keys()
                    row[f"{name}_missing"] = int(np.setdiff1d(ledger_keys, keys).size)
                    row[f"{name}_extra"] = int(np.setdiff1d(keys, ledger_keys).size)
                out[namespace] = row
        return out

    def next_expiry(self, namespace: str) -> float | None:
        """The namespace's earliest expiry (None: nothing in it expires), read from the
        ledger once per generation. Every commit starts a generation, and within one,
        expiries only pass: the value stays true until the next commit."""
        generation, cache = self._next_expiry
        if generation != self.generation:
            cache = {}
            self._next_expiry = (self.generation, cache)
        if namespace not in cache:
            cache[namespace] = self.ledger.next_expiry(namespace)
        return cache[namespace]

    # --- writes ---------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator["EmbeddedWriter"]:
        """Exclusive write: one ledger transaction for the block, whose index changes
        are applied when it commits. The ledger commits first, then the indexes are
        updated; if an index update fails, that namespace is rebuilt from the
        (committed) ledger."""
        with self._lock.write():
            self._check_open()
            with self.ledger.transaction() as tx:
                writer = EmbeddedWriter(tx, self)
                yield writer
            self.generation = tx.generation
            for namespace in writer.dropped:
                self._indexes.pop(namespace, None)
            for namespace, change in writer.changes.items():
                if namespace not in writer.dropped:
                    self._apply(namespace, change)

    def _new_pair(self) -> IndexPair:
        return IndexPair(self._factories.new_dense(), self._factories.new_lexical())

    def _apply(self, namespace: str, change: IndexChange) -> None:
        pair = self._indexes.get(namespace)
        if pair is None:
            pair = self._indexes[namespace] = self._new_pair()
        try:
            _apply_dense(pair.dense, change)
            _apply_lexical(pair.lexical, change)
        except Exception:
            log.exception("index update of namespace %r failed; rebuilding from the ledger", namespace)
            self._indexes[namespace] = self._rebuild(namespace)
        for (replay_namespace, _side), changes in self._replay.items():
            if replay_namespace == namespace:
                changes.append(change)

    # --- records --------------------------------------------------------------

    shared = False  # one process owns the folder (the LOCK)

    def put_record(self, kind: str, name: str, value: dict) -> None:
        """<store>/<kind>/<name>.json, replaced atomically."""
        folder = self.path / kind
        folder.mkdir(mode=0o700, exist_ok=True)
        tmp = folder / f".{name}.json.tmp"
        tmp.write_text(json.dumps(value))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        tmp.replace(folder / f"{name}.json")

    def records(self, kind: str) -> dict[str, dict]:
        out = {}
        folder = self.path / kind
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                log.error("record %s unreadable: %s", path, exc)
        return out

    # --- maintenance ----------------------------------------------------------

    def maintain(self) -> int:
        """Run the index maintenance that is due (see the module docstring); returns
        how many indexes were replaced. Called from a background thread."""
        replaced = 0
        with self._maintenance_lock:
            with self._lock.read():
                due = [(namespace, side, getattr(pair, side)) for namespace, pair in self._indexes.items()
                       for side in ("dense", "lexical") if getattr(pair, side).maintenance_due()]
            for namespace, side, index in due:
                if self._closed:
                    break
                replaced += self._maintain_one(namespace, side, index)
        return replaced

    def _maintain_one(self, namespace: str, side: str, index: VectorIndex | LexicalIndex) -> int:
        started = time.perf_counter()
        with self._lock.read():
            pair = self._indexes.get(namespace)
            if pair is None or getattr(pair, side) is not index:
                return 0
            build = index.maintenance_copy()
            # Commits wait for the read lock to be released, so none is missed or replayed twice.
            self._replay[(namespace, side)] = []
        try:
            replacement = build()
        except Exception:
            log.exception("maintenance of the %s index of namespace %r failed; keeping the current one",
                          side, namespace)
            with self._lock.write():
                self._replay.pop((namespace, side), None)
            return 0
        built = time.perf_counter() - started
        with self._lock.write():
            changes = self._replay.pop((namespace, side), [])
            pair = self._indexes.get(namespace)
            if pair is None or getattr(pair, side) is not index:
                return 0  # replaced meanwhile (a failed update rebuilt the namespace)
            apply = _apply_dense if side == "dense" else _apply_lexical
            for change in changes:
                apply(replacement, change)
            setattr(pair, side, replacement)
        log.info("maintained the %s index of namespace %r beside the live one: built in %.2fs, "
                 "%d commits replayed, swapped in %.3fs", side, namespace, built, len(changes),
                 time.perf_counter() - started - built)
        return 1

    # --- snapshots ------------------------------------------------------------

    def snapshot(self) -> bool:
        """Write every namespace's indexes and then the manifest, if anything changed."""
        with self._snapshot_lock, self._lock.read():
            if self._snapshot_generation == self.generation:
                return False
            root = self._snapshot_dir()
            root.mkdir(parents=True, exist_ok=True)  # a store with no namespace yet has none
            staging = root / f"g{self.generation}"
            if staging.exists():
                shutil.rmtree(staging)
            entries = {}
            for i, (namespace, pair) in enumerate(sorted(self._indexes.items())):
                folder = staging / f"ns{i}"
                folder.mkdir(parents=True)
                pair.dense.save(folder / "dense")
                pair.lexical.save(folder / "bm25")
                entries[namespace] = {"folder": f"g{self.generation}/ns{i}", "chunks": len(pair.dense)}
            manifest = {"generation": self.generation, "namespaces": entries, "written_at": time.time()}
            tmp = root / (MANIFEST + ".tmp")
            tmp.write_text(json.dumps(manifest))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, root / MANIFEST)
            for old in root.glob("g*"):
                if old.is_dir() and old.name != staging.name:
                    shutil.rmtree(old, ignore_errors=True)
            self._snapshot_generation = self.generation
            self._last_snapshot = time.monotonic()
            return True

    def snapshot_if_due(self, interval_seconds: float) -> bool:
        if time.monotonic() - self._last_snapshot < interval_seconds:
            return False
        return self.snapshot()

    def close(self) -> None:
        """Snapshot the indexes, close the ledger and release the folder. Waits for
        readers and writers in flight (the exclusive lock); idempotent."""
        if self._closed:
            return
        try:
            self.snapshot()
        except Exception:
            log.exception("final index snapshot failed; the ledger has every chunk and the "
                          "indexes are rebuilt from it at the next start")
        with self._lock.write():
            self._closed = True
            self.ledger.close()
            self._unlock()


def _apply_dense(index: VectorIndex, change: IndexChange) -> None:
    if change.removed:
        index.remove(np.asarray(change.removed, dtype=np.int64))
    if change.added_keys:
        index.add(np.asarray(change.added_keys, dtype=np.int64), np.vstack(change.added_vectors))


def _apply_lexical(index: LexicalIndex, change: IndexChange) -> None:
    if change.removed:
        index.remove(change.removed)
    if change.added_keys:
        index.add(change.added_keys, change.added_texts)


def _chunk_ids(ledger: Ledger, namespace: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
    out = {}
    for doc_id in doc_ids:
        ids = ledger.doc_chunk_ids(namespace, doc_id)
        if ids:
            out[doc_id] = set(ids)
    return out


class EmbeddedReader:
    """A search's view of the embedded store, under the store's shared lock."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._indexes = store._indexes
        self.generation = store.generation
        self._allowed: dict[tuple[str, SearchFilter], np.ndarray] = {}

    def _allowed_keys(self, namespace: str, where: SearchFilter) -> np.ndarray | None:
        if where.visible_at is not None:
            # Most namespaces hold nothing that expires: their searches need no filter.
            next_expiry = self._store.next_expiry(namespace)
            if next_expiry is None or next_expiry > where.visible_at:
                where = where.without_expiry()
        if not where:
            return None
        cached = self._allowed.get((namespace, where))
        if cached is None:
            cached = self._allowed[(namespace, where)] = self._store.ledger.allowed_keys(namespace, where)
        return cached

    def dense(self, namespace: str, vector: np.ndarray, k: int,
              where: SearchFilter = NO_FILTER) -> list[Candidate]:
        pair = self._indexes.get(namespace)
        if pair is None:
            return []
        return pair.dense.search(vector[None, :], k, self._allowed_keys(namespace, where))[0]

    def lexical(self, namespace: str, query: str, k: int,
                where: SearchFilter = NO_FILTER) -> list[Candidate]:
        pair = self._indexes.get(namespace)
        if pair is None:
            return []
        return pair.lexical.search(query, k, self._allowed_keys(namespace, where))

    def hydrate(self, namespace: str, keys: Sequence[int]
                ) -> tuple[dict[int, Chunk], dict[str, DocumentMeta]]:
        # Under the shared lock the ledger and the indexes agree: every key is current.
        chunks = self._store.ledger.chunks_by_key(keys)
        docs = self._store.ledger.documents_meta(namespace, [c.doc_id for c in chunks.values()])
        return chunks, docs


class EmbeddedWriter:
    """Ledger writes of one transaction plus the index changes they imply."""

    def __init__(self, tx: Transaction, store: Store) -> None:
        self.tx = tx
        self._ledger = store.ledger
        self._prepend_title = store.prepend_title
        self.changes: dict[str, IndexChange] = {}
        self.dropped: set[str] = set()  # namespaces deleted: their indexes go

    def _change(self, namespace: str) -> IndexChange:
        return self.changes.setdefault(namespace, IndexChange([], [], [], []))

    def chunk_ids(self, namespace: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
        return _chunk_ids(self._ledger, namespace, doc_ids)

    def put_document(self, doc: Document, content_hash: str, source_updated_at: float,
                     chunks: Sequence[NewChunk], now: float) -> PutResult:
        tx, ns = self.tx, doc.namespace
        existing = self._ledger.doc_chunk_ids(ns, doc.doc_id)
        stored = self._ledger.document(ns, doc.doc_id)
        new_ids = {c.chunk_id for c in chunks}
        removed = [key for chunk_id, key in existing.items() if chunk_id not in new_ids]
        kept = [c for c in chunks if c.chunk_id in existing]
        added = [c for c in chunks if c.chunk_id not in existing]
        if any(c.embedding is None for c in added):
            raise ValueError(f"chunks new to document {doc.doc_id!r} need their embeddings")
        tx.ensure_namespace(ns, now)
        tx.delete_chunks(ns, removed)
        tx.refresh_chunks([(existing[c.chunk_id], c.ordinal, c.start_char, c.end_char) for c in kept],
                          source_updated_at, now)
        keys = tx.insert_chunks(ns, doc.doc_id, added, source_updated_at, now)
        tx.upsert_document(doc, source_updated_at, content_hash,
                           stored.first_indexed_at if stored else now, now)
        change = self._change(ns)
        change.removed.extend(removed)
        change.added_keys.extend(keys)
        change.added_texts.extend(indexed_text(doc.title, c.text, self._prepend_title) for c in added)
        change.added_vectors.extend(c.embedding for c in added)  # type: ignore[misc]
        previous = stored.content_hash if stored is not None and not expired(stored.expires_at, now) else None
        return PutResult(len(added), len(kept), len(removed), previous)

    def delete_document(self, namespace: str, doc_id: str, *, expired_by: float | None = None) -> int | None:
        stored = self._ledger.document(namespace, doc_id)
        if stored is None or (expired_by is not None and not expired(stored.expires_at, expired_by)):
            return None
        keys = list(self._ledger.doc_chunk_ids(namespace, doc_id).values())
        self.tx.delete_chunks(namespace, keys)
        self.tx.delete_document(namespace, doc_id)
        self._change(namespace).removed.extend(keys)
        return len(keys)

    def extend_expiry(self, namespace: str, doc_id: str, expires_at: float) -> bool:
        return self.tx.extend_expiry(namespace, doc_id, expires_at, time.time())

    def delete_namespace(self, namespace: str, *, only_if_empty: bool = False) -> tuple[int, int] | None:
        if namespace != DEFAULT_NAMESPACE and not self._ledger.has_namespace(namespace):
            return None
        if only_if_empty and self._ledger.namespace_stats(namespace)[0]:
            return None
        keep = namespace == DEFAULT_NAMESPACE
        keys = self._ledger.chunk_keys(namespace).tolist() if keep else []
        deleted = self.tx.delete_namespace(namespace, keep)
        if keep:
            self._change(namespace).removed.extend(keys)
        else:
            self.dropped.add(namespace)
        return deleted
