"""make_vector_index / load_vector_index: backend resolution and snapshot conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dense_support import DIMENSION, clustered

import retrieval_svc.dense as dense
from retrieval_svc.dense import (
    FaissIndex,
    TorchExactIndex,
    load_vector_index,
    make_vector_index,
    resolve_backend,
)
from retrieval_svc.errors import InvalidArgument


@pytest.fixture
def rng():
    return np.random.default_rng(3)


@pytest.fixture
def gpus(monkeypatch):
    """gpus(faiss=bool, torch=bool): pretend which libraries see a GPU."""

    def set_gpus(faiss: bool, torch: bool) -> None:
        monkeypatch.setattr(dense, "_faiss_has_gpu", lambda: faiss)
        monkeypatch.setattr(dense, "_torch_has_cuda", lambda: torch)

    return set_gpus


@pytest.mark.parametrize(
    "faiss_gpu, torch_cuda, backend, kind, device, expected",
    [
        (True, True, "auto", "flat", "auto", ("faiss", "cuda")),
        (False, True, "auto", "flat", "auto", ("torch", "cuda")),
        (False, False, "auto", "flat", "auto", ("faiss", "cpu")),
        (True, True, "auto", "flat", "cpu", ("faiss", "cpu")),
        (True, True, "auto", "hnsw", "auto", ("faiss", "cpu")),
        (False, True, "auto", "ivf", "cuda", ("faiss", "cpu")),
        (False, True, "faiss", "flat", "cuda", ("faiss", "cpu")),
        (True, False, "faiss", "flat", "auto", ("faiss", "cuda")),
        (False, False, "torch", "flat", "cpu", ("torch", "cpu")),
        (False, True, "torch", "flat", "auto", ("torch", "auto")),
    ],
)
def test_resolve_backend(gpus, faiss_gpu, torch_cuda, backend, kind, device, expected):
    gpus(faiss=faiss_gpu, torch=torch_cuda)
    assert resolve_backend(backend, kind, device) == expected


@pytest.mark.parametrize(
    "backend, kind, device, message",
    [
        ("milvus", "flat", "auto", "dense backend 'milvus' is not one of auto, faiss, torch"),
        ("auto", "lsh", "auto", "kind 'lsh' is not one of flat, hnsw, ivf"),
        ("torch", "hnsw", "auto", "torch backend is exact only"),
        ("auto", "flat", "tpu", "device 'tpu' is not one of"),
        ("auto", "flat", "cuda", "neither faiss nor torch sees a GPU"),
    ],
)
def test_resolve_backend_names_the_bad_value(gpus, backend, kind, device, message):
    gpus(faiss=False, torch=False)
    with pytest.raises(InvalidArgument, match=message):
        resolve_backend(backend, kind, device)


def test_make_vector_index_builds_what_was_resolved(gpus):
    gpus(faiss=False, torch=False)
    flat = make_vector_index("auto", "flat", DIMENSION, "auto")
    assert isinstance(flat, FaissIndex) and (flat.kind, flat.device) == ("flat", "cpu")
    hnsw = make_vector_index("faiss", "hnsw", DIMENSION, "auto", M=8)
    assert isinstance(hnsw, FaissIndex) and hnsw.params["M"] == 8
    exact = make_vector_index("torch", "flat", DIMENSION, "cpu")
    assert isinstance(exact, TorchExactIndex) and exact.device.type == "cpu"
    with pytest.raises(InvalidArgument, match="unknown parameter 'M' for the torch backend"):
        make_vector_index("torch", "flat", DIMENSION, "cpu", M=8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_auto_on_a_machine_without_gpus_is_faiss_on_the_cpu():
    index = make_vector_index("auto", "flat", DIMENSION, "auto")
    assert isinstance(index, FaissIndex) and index.device == "cpu"


def _filled(index, rng):
    keys, vectors = np.arange(400, dtype=np.int64) * 5, clustered(rng, 400)
    index.add(keys, vectors)
    index.remove(keys[:20])
    return index


def _same_results(a, b, queries):
    for x, y in zip(a.search(queries, 10), b.search(queries, 10)):
        assert [c.key for c in x] == [c.key for c in y]
        assert np.allclose([c.score for c in x], [c.score for c in y], atol=1e-5)


def test_load_keeps_the_saved_backend_kind_and_parameters(rng, tmp_path):
    saved = _filled(FaissIndex(DIMENSION, "hnsw", M=8, efSearch=40), rng)
    saved.save(tmp_path / "dense")
    loaded = load_vector_index(tmp_path / "dense", backend="auto", device="cpu")
    assert isinstance(loaded, FaissIndex) and loaded.kind == "hnsw" and loaded.params == saved.params
    assert loaded.tombstones == saved.tombstones == 20
    _same_results(saved, loaded, clustered(rng, 5))


@pytest.mark.parametrize(
    "make_saved, backend, kind, expected_type, expected_kind",
    [
        (lambda: FaissIndex(DIMENSION), "torch", None, TorchExactIndex, "flat"),
        (lambda: TorchExactIndex(DIMENSION, device="cpu"), "faiss", None, FaissIndex, "flat"),
        (lambda: FaissIndex(DIMENSION), "faiss", "hnsw", FaissIndex, "hnsw"),
        (lambda: FaissIndex(DIMENSION, "hnsw"), "auto", "flat", FaissIndex, "flat"),
    ],
)
def test_load_moves_entries_into_another_backend_or_kind(
    rng, tmp_path, make_saved, backend, kind, expected_type, expected_kind
):
    saved = _filled(make_saved(), rng)
    saved.save(tmp_path / "dense")
    loaded = load_vector_index(tmp_path / "dense", backend=backend, device="cpu", kind=kind)
    assert isinstance(loaded, expected_type) and loaded.kind == expected_kind
    assert sorted(loaded.keys().tolist()) == sorted(saved.keys().tolist())
    _same_results(saved, loaded, clustered(rng, 5))


def test_load_with_changed_parameters_rebuilds(rng, tmp_path):
    _filled(FaissIndex(DIMENSION, "hnsw", M=8), rng).save(tmp_path / "dense")
    loaded = load_vector_index(tmp_path / "dense", backend="faiss", device="cpu", M=12)
    assert loaded.params["M"] == 12 and loaded.tombstones == 0 and len(loaded) == 380


def test_load_refuses_what_is_not_a_snapshot(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved vector index"):
        load_vector_index(tmp_path / "nothing")
    FaissIndex(DIMENSION).save(tmp_path / "dense")
    meta = json.loads((tmp_path / "dense" / "meta.json").read_text())
    (tmp_path / "dense" / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        load_vector_index(tmp_path / "dense")
