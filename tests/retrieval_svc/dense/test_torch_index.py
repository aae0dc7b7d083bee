"""TorchExactIndex specifics: swap-with-last compaction, dtype and device handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dense_support import DIMENSION, assert_exact, brute_force, clustered

from retrieval_svc.dense import TorchExactIndex
from retrieval_svc.errors import InvalidArgument


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def test_removal_moves_the_last_rows_into_the_holes(rng):
    index = TorchExactIndex(DIMENSION, device="cpu")
    vectors = clustered(rng, 10)
    index.add(np.arange(10, dtype=np.int64), vectors)
    assert index.remove(np.array([2, 9, 5, 42])) == 3
    # Rows 7..9 were the tail: 9 is gone, 7 fills hole 2 and 8 fills hole 5.
    assert index.keys().tolist() == [0, 1, 7, 3, 4, 8, 6]
    for key in index.keys().tolist():
        hit = index.search(vectors[key], 1)[0][0]
        assert hit.key == key and abs(hit.score - 1.0) < 1e-5


def test_growth_keeps_every_vector(rng):
    index = TorchExactIndex(DIMENSION, device="cpu")
    keys, vectors = np.arange(3000, dtype=np.int64), clustered(rng, 3000)
    for start in range(0, 3000, 700):  # crosses the 1024 and 2048 capacities
        index.add(keys[start : start + 700], vectors[start : start + 700])
    exported_keys, exported = index.export()
    assert np.array_equal(exported_keys, keys) and np.array_equal(exported, vectors)


def test_large_batches_are_scored_in_slices(rng, monkeypatch):
    monkeypatch.setattr("retrieval_svc.dense.torch_index.MAX_SCORE_ELEMENTS", 1000)
    index = TorchExactIndex(DIMENSION, device="cpu")
    keys, vectors, queries = np.arange(400, dtype=np.int64), clustered(rng, 400), clustered(rng, 9)
    index.add(keys, vectors)
    assert_exact(index.search(queries, 5), brute_force(keys, vectors, queries, 5), keys, vectors, queries)


def test_float16_is_refused_on_the_cpu():
    with pytest.raises(InvalidArgument, match="float16"):
        TorchExactIndex(DIMENSION, device="cpu", dtype="float16")
    with pytest.raises(InvalidArgument, match="dtype 'float64'"):
        TorchExactIndex(DIMENSION, device="cpu", dtype="float64")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(InvalidArgument, match="no CUDA device"):
        TorchExactIndex(DIMENSION, device="cuda")
    assert TorchExactIndex(DIMENSION, device="auto").device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_float16_on_cuda_is_close_to_float32(rng, tmp_path):
    keys, vectors, queries = np.arange(2000, dtype=np.int64), clustered(rng, 2000), clustered(rng, 10)
    half = TorchExactIndex(DIMENSION, device="cuda", dtype="float16")
    half.add(keys, vectors)
    expected = brute_force(keys, vectors, queries, 10)
    results = half.search(queries, 10)
    assert [row[0].key for row in results] == [row[0][0] for row in expected]
    assert np.allclose(
        [[c.score for c in row] for row in results], [[s for _, s in row] for row in expected], atol=2e-3
    )
    half.save(tmp_path / "dense")
    assert TorchExactIndex.load(tmp_path / "dense", device="cpu").dtype == "float32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(rng):
    keys, vectors, queries = np.arange(5000, dtype=np.int64) * 3, clustered(rng, 5000), clustered(rng, 64)
    allowed = keys[::3]
    cpu, gpu = TorchExactIndex(DIMENSION, device="cpu"), TorchExactIndex(DIMENSION, device="cuda")
    for index in (cpu, gpu):
        index.add(keys, vectors)
        index.remove(keys[:100])
    for a, b in zip(cpu.search(queries, 20, allowed), gpu.search(queries, 20, allowed)):
        assert [c.key for c in a] == [c.key for c in b]
        assert np.allclose([c.score for c in a], [c.score for c in b], atol=1e-5)
