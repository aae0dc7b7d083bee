"""Exact vector search with a torch matmul, on CUDA when there is one.

Vectors live in one contiguous (capacity, dimension) tensor on the device, row
i holding the vector of `keys[i]`; capacity doubles as it fills, so adds are
amortised O(added). Removal moves the last rows into the holes
(swap-with-last), so rows [0, size) are always the live ones and search is one
(queries x size) matmul followed by torch.topk. `allowed` becomes a boolean row
mask; rows outside it score -inf before topk.

Storage dtype: float32 by default. `dtype="float16"` halves memory and is
faster on CUDA tensor cores, at about three decimal digits of score precision
(scores are computed in float16 and returned as float32); it is refused on the
CPU, where half-precision matmul is slow and not what this index is for.

Threads: on the CPU the matmul runs on torch's intra-op thread pool
(torch.set_num_threads), which this module leaves alone because the encoder
shares it; `configure_threads` governs FAISS only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from retrieval_svc.dense._files import read_meta, write_atomically, write_meta
from retrieval_svc.dense._inputs import (
    as_allowed,
    as_entries,
    as_k,
    as_keys,
    as_matrix,
    candidates,
    rows_mask,
)
from retrieval_svc.domain import Candidate
from retrieval_svc.errors import InvalidArgument

VECTORS_FILE = "vectors.npz"
DTYPES = {"float32": torch.float32, "float16": torch.float16}
# Upper bound on the elements of one (queries x rows) score block, so a large
# batch against a large index is scored in slices instead of one huge matrix.
MAX_SCORE_ELEMENTS = 1 << 26


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise InvalidArgument(f"torch device {device!r} is not a device name ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(
            f"device {device!r} was asked for but torch sees no CUDA device; use 'auto' or 'cpu'"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise InvalidArgument(f"torch device {device!r}: only 'cpu' and 'cuda' are supported")
    return resolved


class TorchExactIndex:
    """A VectorIndex doing exact inner-product top-k with torch (see the module docstring)."""

    backend = "torch"
    kind = "flat"

    def __init__(self, dimension: int, device: str = "auto", dtype: str = "float32") -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise InvalidArgument(f"dimension must be a positive integer, got {dimension!r}")
        if dtype not in DTYPES:
            raise InvalidArgument(f"torch index dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        self.device = _resolve_device(device)
        if dtype == "float16" and self.device.type != "cuda":
            raise InvalidArgument("dtype 'float16' is for CUDA only; use 'float32' on the CPU")
        self.dimension = dimension
        self.dtype = dtype
        self.params: dict[str, Any] = {"dtype": dtype}
        self._vectors = torch.empty((0, dimension), dtype=DTYPES[dtype], device=self.device)
        self._keys = np.empty(0, np.int64)  # row -> key, rows [0, _size) live
        self._size = 0
        self._row_of: dict[int, int] = {}  # key -> row

    def __repr__(self) -> str:
        return (
            f"TorchExactIndex(dimension={self.dimension}, device={str(self.device)!r}, "
            f"dtype={self.dtype!r}, size={self._size})"
        )

    def __len__(self) -> int:
        return self._size

    def keys(self) -> np.ndarray:
        """Every key present, in row order."""
        return self._keys[: self._size].copy()

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under `keys`; a key already present gets the new vector (in its row)."""
        keys, vectors = as_entries(keys, vectors, self.dimension)
        if len(keys) == 0:
            return
        rows = np.fromiter((self._row_of.get(key, -1) for key in keys.tolist()), np.int64, len(keys))
        new = rows < 0
        n_new = int(new.sum())
        self._reserve(self._size + n_new)
        rows[new] = np.arange(self._size, self._size + n_new)
        self._keys[rows[new]] = keys[new]
        self._row_of.update(zip(keys[new].tolist(), rows[new].tolist()))
        self._size += n_new
        rows_t = torch.from_numpy(rows).to(self.device)
        self._vectors[rows_t] = torch.from_numpy(vectors).to(self.device, DTYPES[self.dtype])

    def _reserve(self, needed: int) -> None:
        capacity = len(self._keys)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 1024)
        grown = torch.empty((capacity, self.dimension), dtype=self._vectors.dtype, device=self.device)
        grown[: self._size] = self._vectors[: self._size]
        self._vectors = grown
        self._keys = np.resize(self._keys, capacity)

    maintain_inline = True  # nothing to maintain: removal compacts at once

    def maintenance_due(self) -> bool:
        return False

    def maintenance_copy(self) -> Callable[[], "TorchExactIndex"]:
        return lambda: self

    def remove(self, keys: np.ndarray) -> int:
        """Remove these keys; return how many were present. Rows from the end fill the holes."""
        keys = np.unique(as_keys(keys))
        holes = [self._row_of.pop(key) for key in keys.tolist() if key in self._row_of]
        if not holes:
            return 0
        new_size = self._size - len(holes)
        removed = set(holes)
        # Live rows past the new end move into the holes below it; both lists have the same length.
        targets = sorted(row for row in holes if row < new_size)
        sources = [row for row in range(new_size, self._size) if row not in removed]
        if targets:
            targets_np, sources_np = np.asarray(targets), np.asarray(sources)
            self._vectors[torch.from_numpy(targets_np).to(self.device)] = self._vectors[
                torch.from_numpy(sources_np).to(self.device)
            ]
            self._keys[targets_np] = self._keys[sources_np]
            self._row_of.update(zip(self._keys[targets_np].tolist(), targets))
        self._size = new_size
        return len(holes)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[list[Candidate]]:
        """Exact top-k keys by inner product per query row, best first; `allowed` restricts to those keys."""
        queries = as_matrix(queries, self.dimension, "queries")
        k = as_k(k)
        allowed = as_allowed(allowed)
        if len(queries) == 0:
            return []
        n = self._size
        mask = None
        n_eligible = n
        if allowed is not None and n:
            selected = rows_mask(allowed, self._row_of, self._keys[:n], None)
            n_eligible = int(selected.sum())
            mask = torch.from_numpy(~selected).to(self.device)
        k = min(k, n_eligible)
        if k == 0:
            return [[] for _ in range(len(queries))]

        stored = self._vectors[:n]
        step = max(1, MAX_SCORE_ELEMENTS // n)
        scores_out, rows_out = [], []
        with torch.inference_mode():
            q_all = torch.from_numpy(queries).to(self.device, stored.dtype)
            for start in range(0, len(queries), step):
                scores = (q_all[start : start + step] @ stored.T).float()
                if mask is not None:
                    scores.masked_fill_(mask, float("-inf"))
                step_scores, step_rows = torch.topk(scores, k, dim=1, largest=True, sorted=True)
                scores_out.append(step_scores.cpu().numpy())
                rows_out.append(step_rows.cpu().numpy())
        top_scores = np.concatenate(scores_out)
        top_keys = self._keys[np.concatenate(rows_out)]
        return candidates(top_scores, top_keys)

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, float32 vectors) of every entry, to move them to another index without re-embedding."""
        return self.keys(), self._vectors[: self._size].float().cpu().numpy()

    def save(self, path: Path) -> None:
        """Write a snapshot folder at `path`: vectors.npz (keys, float32 vectors) and meta.json."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        keys, vectors = self.export()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a name
                np.savez(fh, keys=keys, vectors=vectors)

        write_atomically(folder / VECTORS_FILE, write)
        write_meta(
            folder,
            {
                "backend": self.backend,
                "kind": self.kind,
                "dimension": self.dimension,
                "params": self.params,
                "count": len(keys),
            },
        )

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> TorchExactIndex:
        """Read a folder written by `save`, onto `device`.

        A float16 index saved on a GPU machine loads as float32 onto a CPU.
        """
        folder = Path(path)
        meta = read_meta(folder)
        if meta["backend"] != cls.backend:
            raise ValueError(f"{folder} holds a {meta['backend']!r} index, not a torch one")
        params = dict(meta["params"])
        if _resolve_device(device).type != "cuda":
            params["dtype"] = "float32"
        self = cls(meta["dimension"], device=device, **params)
        with np.load(folder / VECTORS_FILE, allow_pickle=False) as data:
            keys, vectors = data["keys"], data["vectors"]
        if len(keys) != meta["count"]:
            raise ValueError(
                f"{folder}: {VECTORS_FILE} has {len(keys)} entries, meta.json says {meta['count']}"
            )
        self.add(keys, vectors)
        return self
