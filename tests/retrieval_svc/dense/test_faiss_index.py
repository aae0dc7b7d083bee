"""FaissIndex specifics the conformance suite does not see: HNSW tombstones and
rebuilds, IVF training, parameters, and the per-thread OpenMP setting."""

from __future__ import annotations

import json
import threading

import faiss
import numpy as np
import pytest
from dense_support import DIMENSION, HNSW_PARAMS, IVF_PARAMS, assert_exact, brute_force, clustered, recall

from retrieval_svc.dense import FaissIndex, configure_threads, configured_threads
from retrieval_svc.errors import InvalidArgument


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_hnsw_removal_leaves_tombstones_until_the_rebuild_fraction(rng):
    index = FaissIndex(DIMENSION, "hnsw", rebuild_fraction=0.2, **HNSW_PARAMS)
    keys, vectors = np.arange(500, dtype=np.int64), clustered(rng, 500)
    index.add(keys, vectors)
    assert index.remove(keys[:90]) == 90
    assert (index.tombstones, len(index)) == (90, 410)
    replacements = clustered(rng, 10)
    index.add(keys[100:110], replacements)  # a replacement tombstones the old row too
    assert (index.tombstones, len(index)) == (100, 410)
    assert index.remove(keys[110:113]) == 3  # 103 of 510 rows dead: past 20%, so rebuilt
    assert (index.tombstones, len(index)) == (0, 407)
    live = ~np.isin(keys, np.concatenate([keys[:90], keys[110:113]]))
    queries = clustered(rng, 20)
    results = index.search(queries, 10)
    assert all(c.key not in set(keys[:90].tolist()) | {110, 111, 112} for row in results for c in row)
    current = vectors.copy()
    current[100:110] = replacements
    assert recall(results, brute_force(keys[live], current[live], queries, 10)) >= 0.9


def test_hnsw_rebuild_reuses_stored_vectors(rng):
    index = FaissIndex(DIMENSION, "hnsw", rebuild_fraction=0.0, **HNSW_PARAMS)
    keys, vectors = np.arange(300, dtype=np.int64) * 2, clustered(rng, 300)
    index.add(keys, vectors)
    index.remove(keys[:1])  # any tombstone triggers the rebuild at fraction 0
    assert index.tombstones == 0
    exported_keys, exported = index.export()
    order = np.argsort(exported_keys)
    assert np.array_equal(exported_keys[order], keys[1:])
    assert np.array_equal(exported[order], vectors[1:])


def test_hnsw_tombstones_survive_save_and_load(rng, tmp_path):
    index = FaissIndex(DIMENSION, "hnsw", **HNSW_PARAMS)
    index.add(np.arange(200, dtype=np.int64), clustered(rng, 200))
    index.remove(np.arange(10, dtype=np.int64))
    index.save(tmp_path / "dense")
    meta = json.loads((tmp_path / "dense" / "meta.json").read_text())
    assert sorted(meta["tombstones"]) == list(range(10))
    loaded = FaissIndex.load(tmp_path / "dense")
    assert (loaded.tombstones, len(loaded)) == (10, 190)
    assert loaded.params == index.params


def test_hnsw_selective_filter_is_exact(rng):
    index = FaissIndex(DIMENSION, "hnsw", **HNSW_PARAMS)
    keys, vectors = np.arange(2000, dtype=np.int64), clustered(rng, 2000)
    index.add(keys, vectors)
    allowed = rng.choice(keys, 40, replace=False)  # 2% < exact_filter_fraction
    queries = clustered(rng, 5)
    keep = np.isin(keys, allowed)
    assert_exact(
        index.search(queries, 10, allowed),
        brute_force(keys[keep], vectors[keep], queries, 10),
        keys[keep],
        vectors[keep],
        queries,
    )


def test_ivf_searches_exactly_until_it_can_train(rng, tmp_path):
    index = FaissIndex(DIMENSION, "ivf", **IVF_PARAMS)
    keys, vectors = np.arange(400, dtype=np.int64) + 7, clustered(rng, 400)
    index.add(keys[:300], vectors[:300])
    assert not index.trained
    index.save(tmp_path / "staging")
    assert not FaissIndex.load(tmp_path / "staging").trained

    index.add(keys[300:], vectors[300:])  # reaches train_size = 320
    assert index.trained and len(index) == 400
    assert sorted(index.keys().tolist()) == keys.tolist()
    exported_keys, exported = index.export()
    order = np.argsort(exported_keys)
    assert np.array_equal(exported[order], vectors)
    index.save(tmp_path / "trained")
    loaded = FaissIndex.load(tmp_path / "trained")
    assert loaded.trained and sorted(loaded.keys().tolist()) == keys.tolist()


def test_ivf_filtered_search_probes_more_lists(rng):
    # nprobe 1 of 8 lists: an unfiltered search is approximate, but a filter to
    # one eighth of the keys scales the probe to every list.
    index = FaissIndex(DIMENSION, "ivf", nlist=8, nprobe=1, train_size=320)
    keys, vectors = np.arange(1000, dtype=np.int64), clustered(rng, 1000)
    index.add(keys, vectors)
    allowed = keys[::8]
    queries = clustered(rng, 10)
    keep = np.isin(keys, allowed)
    assert_exact(
        index.search(queries, 10, allowed),
        brute_force(keys[keep], vectors[keep], queries, 10),
        keys[keep],
        vectors[keep],
        queries,
    )


def test_key_minus_one_is_refused(rng):
    with pytest.raises(InvalidArgument, match="-1 is reserved"):
        FaissIndex(DIMENSION).add(np.array([3, -1]), clustered(rng, 2))


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("annoy", {}, "kind 'annoy' is not one of flat, hnsw, ivf"),
        ("hnsw", {"nprobe": 3}, "unknown parameter 'nprobe' for FAISS kind 'hnsw'"),
        ("flat", {"M": 3}, "unknown parameter 'M' for FAISS kind 'flat'"),
        ("hnsw", {"M": 0}, "M must be a positive integer, got 0"),
        ("hnsw", {"rebuild_fraction": 1.5}, "rebuild_fraction must be between 0 and 1"),
        ("ivf", {"nlist": 100, "train_size": 50}, "train_size 50 is below nlist 100"),
    ],
)
def test_bad_parameters_are_named(kind, params, message):
    with pytest.raises(InvalidArgument, match=message):
        FaissIndex(DIMENSION, kind, **params)


def test_gpu_device_needs_a_gpu_build():
    if faiss.get_num_gpus() > 0:
        pytest.skip("this faiss build has GPUs")
    with pytest.raises(InvalidArgument, match="sees no GPU"):
        FaissIndex(DIMENSION, "flat", device="cuda")
    with pytest.raises(InvalidArgument, match="CPU only"):
        FaissIndex(DIMENSION, "hnsw", device="cuda")


def test_configure_threads_reaches_threads_that_search(rng):
    """libgomp keeps omp_set_num_threads per OS thread: the setting must follow the searches."""
    index = FaissIndex(DIMENSION)
    index.add(np.arange(50, dtype=np.int64), clustered(rng, 50))
    seen = {}

    def search_in_a_new_thread(name):
        index.search(clustered(np.random.default_rng(0), 1), 5)
        seen[name] = faiss.omp_get_max_threads()

    before = configured_threads()
    try:
        for n in (1, 2):
            configure_threads(n)
            worker = threading.Thread(target=search_in_a_new_thread, args=(n,))
            worker.start()
            worker.join()
    finally:
        configure_threads(before)
    assert seen == {1: 1, 2: 2}


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_configure_threads_refuses_bad_values(bad):
    with pytest.raises(InvalidArgument, match="search_threads"):
        configure_threads(bad)
