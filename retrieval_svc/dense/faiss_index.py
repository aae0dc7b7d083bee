"""FAISS vector indexes over int64 keys with inner-product scores.

Vectors are L2-normalised float32, so the inner product is the cosine
similarity. Three kinds, chosen by `FaissIndex(dimension, kind=...)`:

flat
    `IndexIDMap2(IndexFlatIP)`: exact. `allowed` is passed as
    `faiss.SearchParameters(sel=IDSelectorBatch(allowed))`; IndexIDMap2
    translates the selector to its outer ids (our keys), so the filter is exact
    too. With `device="cuda"` (a faiss build with GPUs) unfiltered searches run
    on a copy of the flat storage made by `faiss.index_cpu_to_all_gpus`, made
    again lazily after a write.
hnsw
    `IndexHNSWFlat(dimension, M, METRIC_INNER_PRODUCT)`. HNSW cannot remove
    vectors, so a removed (or replaced) key is a tombstone: its graph node stays,
    for navigation, and searches skip it through an `IDSelectorBitmap` of live
    rows handed to the graph search in `SearchParametersHNSW`, so no over-fetch
    is needed and k results come back whenever k live vectors exist. When
    tombstones exceed `rebuild_fraction` of the graph, the graph is rebuilt from
    the live vectors, read back from the HNSW's own flat storage (that storage is
    the kept key->vector data: a rebuild re-embeds nothing). Graph search with a
    selective filter loses recall (most visited nodes are filtered out), so when
    `allowed` leaves fewer than `exact_filter_fraction` of the graph's rows
    eligible the search is exact over just those rows; any query for which the
    graph search still returns fewer than k results is also answered exactly.
ivf
    `IndexIVFFlat` (inner product, `nlist` lists, `nprobe` probed) with a
    hash-table direct map, so removal is O(removed) and stored vectors can be
    read back. Training needs data: until the index holds `train_size` vectors
    (default 39 * nlist, FAISS's own minimum for a k-means it trusts) they sit in
    an exact IndexIDMap2(IndexFlatIP) and every search is exact; the add that
    reaches `train_size` trains the coarse quantizer on everything held so far
    and moves it into the IVF index. Should removals later shrink it below
    `train_size` again, searches scan every list, so they stay exact there too.
    It is never retrained: a corpus whose
    distribution drifts far from the first `train_size` vectors wants a rebuild.
    With `allowed`, `nprobe` is scaled by ntotal / len(allowed) (capped at
    nlist) so a selective filter still finds about as many candidates as an
    unfiltered search does. A query whose probed lists hold fewer than k
    (allowed) vectors is searched again over every list, so, as for the other
    kinds, fewer than k results means fewer than k keys are present (and allowed).

Adding a key that is present replaces its vector (remove, then add); a batch
that names a key twice keeps the later vector. Key -1 is refused: FAISS uses it
to mark "no result".

Threads: see `configure_threads`.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np

from retrieval_svc.dense._files import read_meta, write_atomically, write_meta
from retrieval_svc.dense._inputs import (
    as_allowed,
    as_entries,
    as_k,
    as_keys,
    as_matrix,
    candidates,
    rows_mask,
    top_k_rows,
)
from retrieval_svc.domain import Candidate
from retrieval_svc.errors import InvalidArgument

KINDS = ("flat", "hnsw", "ivf")

# Defaults per kind; a parameter not named here is refused.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "flat": {},
    "hnsw": {
        "M": 32,  # graph degree: memory and build time grow with it, so does recall
        "efConstruction": 80,  # candidate list while inserting
        "efSearch": 64,  # candidate list while searching (raised to k when k is larger)
        "rebuild_fraction": 0.2,  # rebuild when tombstones exceed this share of the graph
        "exact_filter_fraction": 0.05,  # exact search when `allowed` leaves fewer rows than this share
    },
    "ivf": {
        "nlist": 1024,  # inverted lists (k-means centroids)
        "nprobe": 16,  # lists scanned per query
        "train_size": None,  # vectors needed before training; None = 39 * nlist
    },
}

INDEX_FILE = "index.faiss"
LABELS_FILE = "labels.npy"
GPU_MAX_K = 2048  # faiss GPU k-selection limit; larger k searches on the CPU copy

# ---------------------------------------------------------------------------
# Threads

_search_threads = 1
_threads_generation = 0
_thread_state = threading.local()


def configure_threads(n: int = 1) -> None:
    """Set how many OpenMP threads one FAISS call may use (default 1).

    Why 1: a single-query FAISS search parallelises badly. With several OpenMP
    threads the per-query fork/join and spin-waiting cost more than the work they
    split, so on a machine with few cores single-query latency gets worse, not
    better (bench/ann_recall.py prints flat search at 1 vs 2 threads), and
    concurrent requests, which FAISS already serves in parallel because it
    releases the GIL, would fight over the same cores. Raise it for bulk,
    batched workloads on a big machine.

    Why it is applied per thread: FAISS's wheels use libgomp, where
    omp_set_num_threads only sets the calling thread's value, so calling it once
    at start-up from the main thread would leave every gRPC worker thread on
    the default (all cores). This function records `n` and applies it to the
    calling thread; every FaissIndex call applies it to its own thread the first
    time that thread runs (a thread-local check, not a system call, afterwards).
    Adds, IVF training and HNSW rebuilds run under the same setting.
    """
    global _search_threads, _threads_generation
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"search_threads must be a positive integer, got {n!r}")
    _search_threads = n
    _threads_generation += 1
    _use_configured_threads()


def configured_threads() -> int:
    """The value last given to `configure_threads` (1 when it was never called)."""
    return _search_threads


def _use_configured_threads() -> None:
    if getattr(_thread_state, "generation", None) != _threads_generation:
        faiss.omp_set_num_threads(_search_threads)
        _thread_state.generation = _threads_generation


# ---------------------------------------------------------------------------
# Per-kind storage. Each takes checked arrays; FaissIndex does the checking.

Result = tuple[np.ndarray, np.ndarray]  # (scores, keys), shape (n_queries, k), keys -1 = none


def _is_gpu(device: str) -> bool:
    return device == "gpu" or device.startswith("cuda")


class _FlatStore:
    """Exact inner-product search: IndexIDMap2 over IndexFlatIP."""

    def __init__(self, dimension: int, device: str = "cpu", index: Any = None) -> None:
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self.on_gpu = _is_gpu(device)
        self._gpu_lock = threading.Lock()
        self._gpu: tuple[Any, np.ndarray] | None = None  # (GPU flat index, row -> key)

    def __len__(self) -> int:
        return self.index.ntotal

    def keys(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(vectors, keys)
        self._gpu = None

    def remove(self, keys: np.ndarray) -> int:
        if self.index.ntotal == 0:
            return 0
        removed = self.index.remove_ids(faiss.IDSelectorBatch(keys))
        if removed:
            self._gpu = None
        return int(removed)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> Result:
        if allowed is not None:
            selector = faiss.IDSelectorBatch(allowed)
            return self.index.search(queries, k, params=faiss.SearchParameters(sel=selector))
        if self.on_gpu and k <= GPU_MAX_K:
            gpu_index, row_keys = self._gpu_copy()
            scores, rows = gpu_index.search(queries, k)
            return scores, np.where(rows >= 0, row_keys[np.maximum(rows, 0)], -1)
        return self.index.search(queries, k)

    def _gpu_copy(self) -> tuple[Any, np.ndarray]:
        # Made lazily under a lock: writes only mark it stale, and concurrent
        # readers must not each copy the storage to the GPU.
        with self._gpu_lock:
            if self._gpu is None:
                flat = faiss.downcast_index(self.index.index)
                self._gpu = (faiss.index_cpu_to_all_gpus(flat), self.keys().copy())
            return self._gpu

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.index.ntotal
        if n == 0:
            return np.empty(0, np.int64), np.empty((0, self.index.d), np.float32)
        return self.keys().copy(), self.index.index.reconstruct_n(0, n)

    def state(self) -> dict[str, Any]:
        return {}


class _HnswStore:
    """HNSW graph with tombstones for removed keys (see the module docstring)."""

    def __init__(self, dimension: int, params: dict[str, Any]) -> None:
        self.dimension = dimension
        self.params = params
        self.index = self._new_graph()
        self.labels = np.empty(0, np.int64)  # graph row -> key (capacity grows by doubling)
        self.alive = np.empty(0, bool)  # graph row -> still live
        self.slot_of: dict[int, int] = {}  # live key -> graph row
        self.alive_bits: np.ndarray | None = None  # packed `alive`; None while nothing is dead

    def _new_graph(self) -> Any:
        index = faiss.IndexHNSWFlat(self.dimension, self.params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.params["efConstruction"]
        index.hnsw.efSearch = self.params["efSearch"]
        return index

    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def tombstones(self) -> int:
        return self.index.ntotal - len(self.slot_of)

    def keys(self) -> np.ndarray:
        return np.fromiter(self.slot_of, dtype=np.int64, count=len(self.slot_of))

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        start, n = self.index.ntotal, len(keys)
        self.index.add(vectors)
        if start + n > len(self.labels):
            capacity = max(start + n, 2 * len(self.labels), 1024)
            self.labels = np.resize(self.labels, capacity)
            self.alive = np.resize(self.alive, capacity)
        self.labels[start : start + n] = keys
        self.alive[start : start + n] = True
        self.slot_of.update(zip(keys.tolist(), range(start, start + n)))
        self._refresh_bits()

    def remove(self, keys: np.ndarray) -> int:
        rows = [self.slot_of.pop(key) for key in keys.tolist() if key in self.slot_of]
        if not rows:
            return 0
        self.alive[rows] = False
        self._refresh_bits()
        return len(rows)

    def maintenance_due(self) -> bool:
        return self.tombstones > self.params["rebuild_fraction"] * self.index.ntotal

    def _refresh_bits(self) -> None:
        n = self.index.ntotal
        self.alive_bits = None if self.tombstones == 0 else np.packbits(self.alive[:n], bitorder="little")

    def rebuild(self) -> None:
        """A new graph over the live rows only; the vectors come from the old graph's storage."""
        live_rows = np.flatnonzero(self.alive[: self.index.ntotal])
        graph = self._new_graph()
        for start in range(0, len(live_rows), 65536):
            graph.add(self.index.reconstruct_batch(live_rows[start : start + 65536]))
        self.index = graph
        self.labels = self.labels[live_rows].copy()
        self.alive = np.ones(len(live_rows), bool)
        self.slot_of = dict(zip(self.labels.tolist(), range(len(live_rows))))
        self.alive_bits = None

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> Result:
        n = self.index.ntotal
        if allowed is None:
            eligible, bits, n_eligible = None, self.alive_bits, len(self.slot_of)
        else:
            eligible = rows_mask(allowed, self.slot_of, self.labels[:n], self.alive[:n])
            n_eligible = int(np.count_nonzero(eligible))
            bits = np.packbits(eligible, bitorder="little")
        if n_eligible == 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        k = min(k, n_eligible)
        if eligible is not None and n_eligible < self.params["exact_filter_fraction"] * n:
            scores, rows = self._exact_rows(queries, k, np.flatnonzero(eligible))
            return scores, self.labels[rows]

        params = faiss.SearchParametersHNSW(efSearch=max(self.params["efSearch"], k))
        if bits is not None:
            selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
            params.sel = selector
        scores, rows = self.index.search(queries, k, params=params)
        short = (rows < 0).any(axis=1)
        if short.any():
            # The graph search ran out of live neighbours; answer those queries exactly.
            rows_eligible = np.flatnonzero(eligible if eligible is not None else self.alive[:n])
            scores[short], rows[short] = self._exact_rows(queries[short], k, rows_eligible)
        return scores, np.where(rows >= 0, self.labels[np.maximum(rows, 0)], -1)

    def _exact_rows(self, queries: np.ndarray, k: int, rows: np.ndarray) -> Result:
        vectors = self.index.reconstruct_batch(rows)
        columns, scores = top_k_rows(queries @ vectors.T, k)
        return scores, rows[columns]

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        live_rows = np.flatnonzero(self.alive[: self.index.ntotal])
        if len(live_rows) == 0:
            return np.empty(0, np.int64), np.empty((0, self.dimension), np.float32)
        return self.labels[live_rows].copy(), self.index.reconstruct_batch(live_rows)

    def state(self) -> dict[str, Any]:
        return {"tombstones": np.flatnonzero(~self.alive[: self.index.ntotal]).tolist()}

    def save_extra(self, folder: Path) -> None:
        labels = self.labels[: self.index.ntotal]
        write_atomically(folder / LABELS_FILE, lambda tmp: _save_npy(tmp, labels))

    def restore(self, index: Any, labels: np.ndarray, tombstones: list[int]) -> None:
        if len(labels) != index.ntotal:
            raise ValueError(f"{LABELS_FILE} has {len(labels)} rows but the graph has {index.ntotal}")
        index.hnsw.efSearch = self.params["efSearch"]
        index.hnsw.efConstruction = self.params["efConstruction"]
        self.index = index
        self.labels = labels.astype(np.int64, copy=True)
        self.alive = np.ones(len(labels), bool)
        self.alive[np.asarray(tombstones, dtype=np.int64)] = False
        live_rows = np.flatnonzero(self.alive)
        self.slot_of = dict(zip(self.labels[live_rows].tolist(), live_rows.tolist()))
        self._refresh_bits()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


class _IvfStore:
    """IVF-Flat with an exact flat staging index until there is enough data to train."""

    def __init__(self, dimension: int, params: dict[str, Any]) -> None:
        self.dimension = dimension
        self.params = params
        self.train_size = params["train_size"] or 39 * params["nlist"]
        self.staging: _FlatStore | None = _FlatStore(dimension)
        self.index: Any = None  # the IndexIVFFlat once trained

    @property
    def trained(self) -> bool:
        return self.staging is None

    def __len__(self) -> int:
        return len(self.staging) if self.staging is not None else self.index.ntotal

    def keys(self) -> np.ndarray:
        if self.staging is not None:
            return self.staging.keys()
        lists = self.index.invlists
        parts = [np.empty(0, np.int64)]
        for list_no in range(self.index.nlist):
            size = lists.list_size(list_no)
            if size:
                ids = lists.get_ids(list_no)
                parts.append(faiss.rev_swig_ptr(ids, size).copy())
                lists.release_ids(list_no, ids)
        return np.concatenate(parts)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if self.staging is None:
            self.index.add_with_ids(vectors, keys)
            return
        self.staging.add(keys, vectors)

    def maintenance_due(self) -> bool:
        """Still staging, and holding enough vectors to train."""
        return self.staging is not None and len(self.staging) >= self.train_size

    def maintain(self) -> None:
        if self.staging is not None:
            self._train(*self.staging.export())

    def _train(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        quantizer = faiss.IndexFlatIP(self.dimension)
        index = faiss.IndexIVFFlat(
            quantizer, self.dimension, self.params["nlist"], faiss.METRIC_INNER_PRODUCT
        )
        index.train(vectors)
        # A hash-table direct map makes remove_ids O(removed) and lets export() read vectors back.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.add_with_ids(vectors, keys)
        index.nprobe = self.params["nprobe"]
        self.index, self.staging = index, None

    def remove(self, keys: np.ndarray) -> int:
        if self.staging is not None:
            return self.staging.remove(keys)
        if self.index.ntotal == 0:
            return 0
        return int(self.index.remove_ids(keys))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> Result:
        if self.staging is not None:
            return self.staging.search(queries, k, allowed)
        nlist, nprobe = self.params["nlist"], self.params["nprobe"]
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
        if self.index.ntotal < self.train_size:
            # Shrunk below the training size since: scanning every list is as cheap
            # as the staging index's exact search was, and is exact too.
            nprobe = nlist
        elif allowed is not None:
            # About nprobe/nlist of the allowed keys sit in the probed lists; probe more
            # lists as the filter gets more selective so that stays near an unfiltered search's.
            nprobe = min(nlist, max(nprobe, math.ceil(nprobe * self.index.ntotal / max(len(allowed), 1))))
        scores, keys = self.index.search(
            queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
        )
        short = (keys < 0).any(axis=1)
        if short.any() and nprobe < nlist:
            # The probed lists held fewer than k (allowed) vectors; scan every list for those queries.
            params = faiss.SearchParametersIVF(nprobe=nlist, sel=selector)
            scores[short], keys[short] = self.index.search(
                np.ascontiguousarray(queries[short]), k, params=params
            )
        return scores, keys

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        if self.staging is not None:
            return self.staging.export()
        keys = self.keys()
        if len(keys) == 0:
            return keys, np.empty((0, self.dimension), np.float32)
        return keys, self.index.reconstruct_batch(keys)

    def state(self) -> dict[str, Any]:
        return {"trained": self.trained}

    def restore(self, index: Any, trained: bool) -> None:
        if trained:
            if not isinstance(index, faiss.IndexIVFFlat):
                raise ValueError(f"expected an IndexIVFFlat, found {type(index).__name__}")
            if index.direct_map.type != faiss.DirectMap.Hashtable:
                index.set_direct_map_type(faiss.DirectMap.Hashtable)
            index.nprobe = self.params["nprobe"]
            self.index, self.staging = index, None
        else:
            self.staging = _FlatStore(self.dimension, index=_as_idmap2(index))


def _as_idmap2(index: Any) -> Any:
    if not isinstance(index, faiss.IndexIDMap2):
        raise ValueError(f"expected an IndexIDMap2, found {type(index).__name__}")
    return index


# ---------------------------------------------------------------------------


def _checked_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    if kind not in KINDS:
        raise InvalidArgument(f"FAISS index kind {kind!r} is not one of {', '.join(KINDS)}")
    defaults = DEFAULT_PARAMS[kind]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        known = ", ".join(defaults) or "none"
        raise InvalidArgument(f"unknown parameter {unknown[0]!r} for FAISS kind {kind!r} (known: {known})")
    merged = {**defaults, **params}
    for name, value in merged.items():
        if name in ("rebuild_fraction", "exact_filter_fraction"):
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InvalidArgument(f"{kind} parameter {name} must be between 0 and 1, got {value!r}")
        elif name == "train_size" and value is None:
            continue
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{kind} parameter {name} must be a positive integer, got {value!r}")
    if kind == "ivf" and merged["train_size"] is not None and merged["train_size"] < merged["nlist"]:
        raise InvalidArgument(
            f"ivf train_size {merged['train_size']} is below nlist {merged['nlist']}: "
            "k-means needs at least one training vector per list"
        )
    return merged


class FaissIndex:
    """A VectorIndex over FAISS: exact "flat", or approximate "hnsw" / "ivf".

    `params` by kind (defaults in DEFAULT_PARAMS): hnsw M, efConstruction,
    efSearch, rebuild_fraction, exact_filter_fraction; ivf nlist, nprobe,
    train_size. `device` is "cpu", or "cuda" for flat search on every GPU a
    GPU build of faiss sees (see the module docstring).
    """

    backend = "faiss"

    def __init__(self, dimension: int, kind: str = "flat", *, device: str = "cpu", **params: Any) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise InvalidArgument(f"dimension must be a positive integer, got {dimension!r}")
        self.params = _checked_params(kind, params)
        if device != "cpu" and not _is_gpu(device):
            raise InvalidArgument(f"FAISS device {device!r} is neither 'cpu' nor 'cuda'")
        if _is_gpu(device):
            if kind != "flat":
                raise InvalidArgument(f"FAISS {kind!r} runs on the CPU only; use device 'cpu' or kind 'flat'")
            if faiss.get_num_gpus() == 0:
                raise InvalidArgument(f"device {device!r} was asked for but this faiss build sees no GPU")
        self.dimension = dimension
        self.kind = kind
        self.device = "cuda" if _is_gpu(device) else "cpu"
        if kind == "flat":
            self._store: Any = _FlatStore(dimension, self.device)
        elif kind == "hnsw":
            self._store = _HnswStore(dimension, self.params)
        else:
            self._store = _IvfStore(dimension, self.params)

    def __repr__(self) -> str:
        return (
            f"FaissIndex(kind={self.kind!r}, dimension={self.dimension}, "
            f"device={self.device!r}, size={len(self)})"
        )

    def __len__(self) -> int:
        return len(self._store)

    def keys(self) -> np.ndarray:
        """Every key present, in no particular order."""
        return self._store.keys()

    @property
    def tombstones(self) -> int:
        """HNSW graph rows whose key was removed or replaced (0 for the other kinds)."""
        return self._store.tombstones if self.kind == "hnsw" else 0

    @property
    def trained(self) -> bool:
        """False only for an IVF index still searching exactly because it holds too little to train."""
        return self._store.trained if self.kind == "ivf" else True

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under `keys`; a key already present gets the new vector."""
        keys, vectors = as_entries(keys, vectors, self.dimension)
        if len(keys) == 0:
            return
        if (keys == -1).any():
            raise InvalidArgument("key -1 is reserved (FAISS's 'no result' marker); use another key")
        _use_configured_threads()
        self._store.remove(keys)
        self._store.add(keys, vectors)
        self._maintain_inline()

    def remove(self, keys: np.ndarray) -> int:
        """Remove these keys; return how many were present."""
        keys = np.unique(as_keys(keys))
        if len(keys) == 0 or len(self) == 0:
            return 0
        _use_configured_threads()
        removed = self._store.remove(keys)
        self._maintain_inline()
        return removed

    # --- maintenance: an HNSW rebuild past rebuild_fraction tombstones, the first IVF training.
    # Inline (inside add/remove) by default; a Store turns that off and runs it beside the
    # live index instead (maintenance_copy), so searches never wait for a build.

    maintain_inline = True

    def maintenance_due(self) -> bool:
        return self.kind != "flat" and self._store.maintenance_due()

    def _maintain_inline(self) -> None:
        if self.maintain_inline and self.maintenance_due():
            if self.kind == "hnsw":
                self._store.rebuild()
            else:
                self._store.maintain()

    def maintenance_copy(self) -> Callable[[], "FaissIndex"]:
        """Copy the live entries now (cheap); the returned function builds the
        maintained replacement from the copy (slow; needs no lock)."""
        keys, vectors = self.export()
        dimension, kind, device, params = self.dimension, self.kind, self.device, dict(self.params)

        def build() -> FaissIndex:
            fresh = FaissIndex(dimension, kind, device=device, **params)
            fresh.add(keys, vectors)  # inline here: an IVF copy trains, an HNSW copy has no tombstones
            fresh.maintain_inline = False
            return fresh

        return build

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[list[Candidate]]:
        """Top-k keys by inner product per query row, best first.

        Fewer than k come back when fewer than k keys are present (and allowed).
        `allowed`, when given, restricts results to those keys.
        """
        queries = as_matrix(queries, self.dimension, "queries")
        k = as_k(k)
        allowed = as_allowed(allowed)
        if len(queries) == 0:
            return []
        if k == 0 or len(self) == 0 or (allowed is not None and len(allowed) == 0):
            return [[] for _ in range(len(queries))]
        _use_configured_threads()
        scores, keys = self._store.search(queries, min(k, len(self)), allowed)
        return candidates(scores, keys)

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, vectors) of every live entry, to move them to another index without re-embedding."""
        return self._store.export()

    def save(self, path: Path) -> None:
        """Write a snapshot folder at `path` (see retrieval_svc.dense._files)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        index = self._store.index if self.kind != "ivf" or self.trained else self._store.staging.index
        write_atomically(folder / INDEX_FILE, lambda tmp: faiss.write_index(index, str(tmp)))
        if self.kind == "hnsw":
            self._store.save_extra(folder)
        write_meta(
            folder,
            {
                "backend": self.backend,
                "kind": self.kind,
                "dimension": self.dimension,
                "params": self.params,
                "count": len(self),
                **self._store.state(),
            },
        )

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> FaissIndex:
        """Read a folder written by `save`."""
        folder = Path(path)
        meta = read_meta(folder)
        if meta["backend"] != cls.backend:
            raise ValueError(f"{folder} holds a {meta['backend']!r} index, not a FAISS one")
        self = cls(meta["dimension"], meta["kind"], device=device, **meta["params"])
        # read_index returns the concrete class already, as the object that owns the
        # C++ index: keep that one (a faiss.downcast_index proxy would not own it,
        # and would dangle once the owner is collected).
        index = faiss.read_index(str(folder / INDEX_FILE))
        if self.kind == "flat":
            self._store = _FlatStore(self.dimension, self.device, index=_as_idmap2(index))
        elif self.kind == "hnsw":
            if not isinstance(index, faiss.IndexHNSWFlat):
                raise ValueError(f"expected an IndexHNSWFlat, found {type(index).__name__}")
            labels = np.load(folder / LABELS_FILE, allow_pickle=False)
            self._store.restore(index, labels, meta["tombstones"])
        else:
            self._store.restore(index, meta["trained"])
        if index.d != self.dimension or len(self) != meta["count"]:
            raise ValueError(
                f"{folder}: index has dimension {index.d} and {len(self)} entries, "
                f"meta.json says {self.dimension} and {meta['count']}"
            )
        return self
