"""Store: the ledger plus one dense and one lexical index per namespace.

Writes: the caller prepares chunks and embeddings outside any lock, then
`commit` takes the exclusive lock, runs one ledger transaction and applies the
same change to the indexes before releasing it. Reads (`reader()`) hold the
shared lock, so a search sees a whole commit or none of it.

Durability: the ledger commits with synchronous=FULL before an RPC answers.
Index snapshots are written in the background (`snapshot_if_due`) and on close;
at start a snapshot whose generation differs from the ledger's is discarded and
the indexes are rebuilt from the ledger's stored embeddings and texts, so a
crash loses no accepted data and a restart re-embeds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from retrieval_svc.domain import DEFAULT_NAMESPACE, indexed_text
from retrieval_svc.protocols import LexicalIndex, VectorIndex
from retrieval_svc.store.ledger import Ledger, Transaction
from retrieval_svc.store.rwlock import ReadWriteLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass
class IndexPair:
    dense: VectorIndex
    lexical: LexicalIndex


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


class Store:
    def __init__(self, path: Path, factories: IndexFactories, prepend_title: bool = False,
                 encoder: str | None = None) -> None:
        self.path = Path(path)
        self.prepend_title = prepend_title
        self.path.mkdir(parents=True, exist_ok=True)
        self._factories = factories
        self.ledger = Ledger(self.path / "ledger.sqlite3")
        if encoder is not None:
            try:
                self.ledger.bind_encoder(encoder)
            except ValueError:
                self.ledger.close()
                raise
        self._lock = ReadWriteLock()
        self._indexes: dict[str, IndexPair] = {}
        self._snapshot_lock = threading.Lock()
        self._snapshot_generation = -1
        self._last_snapshot = time.monotonic()
        self.generation = self.ledger.generation()
        self._open_indexes()

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
        if len(pair.dense) != entry["chunks"] or len(pair.lexical) != entry["chunks"]:
            log.warning("snapshot of namespace %r is incomplete; rebuilding", namespace)
            return None
        return pair

    def _rebuild(self, namespace: str) -> IndexPair:
        started = time.perf_counter()
        pair = IndexPair(self._factories.new_dense(), self._factories.new_lexical())
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
    def reader(self) -> Iterator[dict[str, IndexPair]]:
        """Shared access: the indexes by namespace, stable until the block ends."""
        with self._lock.read():
            yield self._indexes

    def has_namespace(self, namespace: str) -> bool:
        """The default namespace always exists; others once something was ingested."""
        return (namespace == DEFAULT_NAMESPACE or namespace in self._indexes
                or self.ledger.has_namespace(namespace))

    def stats(self) -> list[StoreStats]:
        out = []
        with self._lock.read():
            for namespace, pair in sorted(self._indexes.items()):
                docs, chunks, oldest = self.ledger.namespace_stats(namespace)
                ledger_keys = self.ledger.chunk_keys(namespace)
                out.append(
                    StoreStats(
                        namespace, docs, chunks, len(pair.dense), len(pair.lexical),
                        int(np.setdiff1d(ledger_keys, pair.dense.keys()).size),
                        int(np.setdiff1d(ledger_keys, pair.lexical.keys()).size),
                        oldest,
                    )
                )
        return out

    # --- writes ---------------------------------------------------------------

    @contextmanager
    def commit(self) -> Iterator["Commit"]:
        """Exclusive write: yields a Commit to record ledger rows and index changes.
        On success the ledger commits first, then the indexes are updated; if an
        index update fails, that namespace is rebuilt from the (committed) ledger."""
        with self._lock.write():
            with self.ledger.transaction() as tx:
                commit = Commit(tx, self)
                yield commit
            self.generation = tx.generation
            for namespace, change in commit.changes.items():
                self._apply(namespace, change)

    def _apply(self, namespace: str, change: IndexChange) -> None:
        pair = self._indexes.get(namespace)
        if pair is None:
            pair = self._indexes[namespace] = IndexPair(
                self._factories.new_dense(), self._factories.new_lexical()
            )
        try:
            if change.removed:
                removed = np.asarray(change.removed, dtype=np.int64)
                pair.dense.remove(removed)
                pair.lexical.remove(change.removed)
            if change.added_keys:
                pair.dense.add(
                    np.asarray(change.added_keys, dtype=np.int64), np.vstack(change.added_vectors)
                )
                pair.lexical.add(change.added_keys, change.added_texts)
        except Exception:
            log.exception("index update of namespace %r failed; rebuilding from the ledger", namespace)
            self._indexes[namespace] = self._rebuild(namespace)

    # --- snapshots ------------------------------------------------------------

    def snapshot(self) -> bool:
        """Write every namespace's indexes and then the manifest, if anything changed."""
        with self._snapshot_lock, self._lock.read():
            if self._snapshot_generation == self.generation:
                return False
            root = self._snapshot_dir()
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
        self.snapshot()
        self.ledger.close()


class Commit:
    """Ledger writes plus the index changes they imply, for one transaction."""

    def __init__(self, tx: Transaction, store: Store) -> None:
        self.tx = tx
        self.changes: dict[str, IndexChange] = {}

    def change(self, namespace: str) -> IndexChange:
        return self.changes.setdefault(namespace, IndexChange([], [], [], []))
