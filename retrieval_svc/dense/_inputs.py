"""Checks and conversions shared by the vector index implementations.

Every public index method converts its arguments here, so each implementation
sees int64 key arrays and C-contiguous float32 matrices of the right width, and
a caller's mistake becomes an InvalidArgument that names the bad value.
"""

from __future__ import annotations

import numpy as np

from retrieval_svc.domain import Candidate
from retrieval_svc.errors import InvalidArgument


def as_keys(keys: np.ndarray, what: str = "keys") -> np.ndarray:
    """A 1-D int64 array (a copy only when `keys` is not one already)."""
    array = np.asarray(keys)
    if array.ndim != 1:
        raise InvalidArgument(f"{what} must be a 1-D array of int64 keys, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InvalidArgument(f"{what} must be integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def as_matrix(vectors: np.ndarray, dimension: int, what: str = "vectors") -> np.ndarray:
    """A C-contiguous float32 (n, dimension) matrix; one 1-D vector becomes one row."""
    array = np.asarray(vectors)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dimension:
        raise InvalidArgument(
            f"{what} must have shape (n, {dimension}) for this index, got {np.asarray(vectors).shape}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def as_entries(keys: np.ndarray, vectors: np.ndarray, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked (keys, vectors) for `add`, with repeated keys reduced to their last row.

    A batch that names a key twice means "the later vector wins", the same as
    two consecutive adds would.
    """
    keys = as_keys(keys)
    vectors = as_matrix(vectors, dimension)
    if len(keys) != len(vectors):
        raise InvalidArgument(f"got {len(keys)} keys but {len(vectors)} vectors")
    if len(np.unique(keys)) == len(keys):
        return keys, vectors
    # np.unique keeps the first occurrence; on the reversed keys that is the last one.
    _, first_in_reversed = np.unique(keys[::-1], return_index=True)
    last = np.sort(len(keys) - 1 - first_in_reversed)
    return keys[last], np.ascontiguousarray(vectors[last])


def as_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidArgument(f"k must be a non-negative integer, got {k!r}")
    return int(k)


def as_allowed(allowed: np.ndarray | None) -> np.ndarray | None:
    """None (no restriction) or the distinct allowed keys as int64."""
    if allowed is None:
        return None
    return np.unique(as_keys(allowed, "allowed"))


def candidates(scores: np.ndarray, labels: np.ndarray) -> list[list[Candidate]]:
    """Rows of (score, key) pairs, already best first, to Candidates; label -1 is padding."""
    out = []
    for row_scores, row_labels in zip(scores.tolist(), labels.tolist()):
        out.append([Candidate(key, score) for key, score in zip(row_labels, row_scores) if key != -1])
    return out


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's k largest scores, largest first."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.empty((len(scores), 0), np.int64), np.empty((len(scores), 0), np.float32)
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def rows_mask(
    allowed: np.ndarray, row_of: dict[int, int], row_keys: np.ndarray, live: np.ndarray | None
) -> np.ndarray:
    """Boolean mask over rows: live and holding an allowed key.

    A short `allowed` list is looked up key by key, a long one with one
    vectorised np.isin over every row, whichever touches less.
    """
    if len(allowed) * 8 < len(row_keys):
        mask = np.zeros(len(row_keys), bool)
        mask[[row_of[key] for key in allowed.tolist() if key in row_of]] = True
        return mask
    mask = np.isin(row_keys, allowed)
    return mask & live if live is not None else mask
