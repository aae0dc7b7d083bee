"""The VectorIndex implementations under test, the data they are tested on and
the brute-force reference they are checked against.

Every implementation is one `IndexFactory` in INDEX_FACTORIES; the conformance
suite (test_conformance.py) runs against each of them through the `factory`
fixture (conftest.py). To put a new backend (Milvus, say) under the same suite,
append one entry here, with marks that skip it where its server or library is
missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from retrieval_svc.dense import FaissIndex, TorchExactIndex
from retrieval_svc.domain import Candidate
from retrieval_svc.protocols import VectorIndex

DIMENSION = 32

needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
needs_faiss_gpu = [
    pytest.mark.gpu,
    pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs a GPU build of faiss and a GPU"),
]


@dataclass(frozen=True)
class IndexFactory:
    """How the suite makes, and reloads, one implementation."""

    name: str
    make: Callable[[int], VectorIndex]  # make(dimension) -> an empty index
    load: Callable[[Path], VectorIndex]  # load(path) -> what save(path) wrote
    exact: bool  # exact: must equal brute force; else recall@10 >= MIN_RECALL
    marks: list = field(default_factory=list)


# Small-data parameters: IVF trains once it holds 320 vectors (FAISS wants 39
# per list), so most tests search a trained IVF and the random-operations test
# crosses from the exact staging index to it.
HNSW_PARAMS = {"M": 16, "efConstruction": 64, "efSearch": 64}
IVF_PARAMS = {"nlist": 8, "nprobe": 3, "train_size": 320}

INDEX_FACTORIES = [
    IndexFactory("faiss-flat", lambda d: FaissIndex(d, "flat"), FaissIndex.load, exact=True),
    IndexFactory("faiss-hnsw", lambda d: FaissIndex(d, "hnsw", **HNSW_PARAMS), FaissIndex.load, exact=False),
    IndexFactory("faiss-ivf", lambda d: FaissIndex(d, "ivf", **IVF_PARAMS), FaissIndex.load, exact=False),
    # An IVF index that never holds enough to train searches its exact staging index.
    IndexFactory(
        "faiss-ivf-untrained",
        lambda d: FaissIndex(d, "ivf", nlist=64, train_size=100_000),
        FaissIndex.load,
        exact=True,
    ),
    IndexFactory(
        "torch-cpu",
        lambda d: TorchExactIndex(d, device="cpu"),
        lambda path: TorchExactIndex.load(path, device="cpu"),
        exact=True,
    ),
    IndexFactory(
        "torch-cuda",
        lambda d: TorchExactIndex(d, device="cuda"),
        lambda path: TorchExactIndex.load(path, device="cuda"),
        exact=True,
        marks=needs_cuda,
    ),
    IndexFactory(
        "faiss-flat-gpu",
        lambda d: FaissIndex(d, "flat", device="cuda"),
        lambda path: FaissIndex.load(path, device="cuda"),
        exact=True,
        marks=needs_faiss_gpu,
    ),
]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


# Fixed topic centres, so stored vectors and queries come from one distribution.
CENTRES = np.random.default_rng(7).normal(size=(50, DIMENSION))


def clustered(rng: np.random.Generator, n: int, dimension: int = DIMENSION) -> np.ndarray:
    """Unit vectors around CENTRES (topical structure, like real embeddings);
    plain random unit vectors for any other dimension."""
    if dimension != DIMENSION:
        return unit_rows(rng.normal(size=(n, dimension)))
    return unit_rows(CENTRES[rng.integers(len(CENTRES), size=n)] + 0.7 * rng.normal(size=(n, DIMENSION)))


def sparse_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct keys that are not row positions, so an index that confuses the two fails."""
    return rng.choice(10 * n + 1000, size=n, replace=False).astype(np.int64) + 5


# --- the reference ------------------------------------------------------------

MIN_RECALL = 0.9
SCORE_TOLERANCE = 1e-5


def brute_force(
    keys: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int
) -> list[list[tuple[int, float]]]:
    """Exact top-k (key, score) per query by float64 inner products, best first."""
    if len(keys) == 0:
        return [[] for _ in queries]
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(int(keys[j]), float(row[j])) for j in cols] for row, cols in zip(scores, order)]


def assert_exact(
    results: list[list[Candidate]], expected: list[list[tuple[int, float]]], keys, vectors, queries
) -> None:
    """Same length, scores within SCORE_TOLERANCE position by position, and the same keys,
    except that keys whose true scores tie (within the tolerance) may swap places."""
    assert len(results) == len(expected)
    score_of = [
        dict(zip(keys.tolist(), (q.astype(np.float64) @ vectors.astype(np.float64).T).tolist()))
        for q in queries
    ]
    for row, want, truth in zip(results, expected, score_of):
        assert len(row) == len(want), (row, want)
        assert len({c.key for c in row}) == len(row)
        for got, (want_key, want_score) in zip(row, want):
            assert abs(got.score - want_score) <= SCORE_TOLERANCE, (got, want_key, want_score)
            if got.key != want_key:
                assert abs(truth[got.key] - want_score) <= SCORE_TOLERANCE, (got, want_key, want_score)


def recall(results: list[list[Candidate]], expected: list[list[tuple[int, float]]]) -> float:
    """Mean over queries of |returned ∩ true top-k| / |true top-k|."""
    hits = [
        len({c.key for c in row} & {key for key, _ in want}) / len(want)
        for row, want in zip(results, expected)
        if want
    ]
    return float(np.mean(hits))


def assert_well_formed(results: list[list[Candidate]], k: int, eligible: set[int]) -> None:
    """Best first, distinct, eligible keys, and min(k, |eligible|) of them."""
    for row in results:
        assert len(row) == min(k, len(eligible)), (len(row), k, len(eligible))
        assert len({c.key for c in row}) == len(row)
        assert {c.key for c in row} <= eligible
        scores = [c.score for c in row]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(c.key, int) and isinstance(c.score, float) for c in row)


def check_against_reference(index, factory, keys, vectors, queries, k, allowed=None) -> None:
    """Exact factories must equal brute force; approximate ones must reach MIN_RECALL."""
    keys, vectors = np.asarray(keys), np.asarray(vectors)
    if allowed is not None:
        keep = np.isin(keys, allowed)
        keys, vectors = keys[keep], vectors[keep]
    results = index.search(queries, k, allowed)
    assert_well_formed(results, k, set(keys.tolist()))
    expected = brute_force(keys, vectors, queries, k)
    if factory.exact:
        assert_exact(results, expected, keys, vectors, queries)
    else:
        measured = recall(results, expected)
        assert measured >= MIN_RECALL, f"recall@{k} {measured:.3f} < {MIN_RECALL}"
