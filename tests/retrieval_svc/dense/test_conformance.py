"""The VectorIndex contract, run against every implementation in INDEX_FACTORIES.

Exact implementations must return what numpy brute force returns (keys, and
scores within 1e-5); approximate ones must reach recall@10 >= 0.9 against it.
"""

from __future__ import annotations

import numpy as np
import pytest
from dense_support import (
    DIMENSION,
    assert_exact,
    assert_well_formed,
    brute_force,
    check_against_reference,
    clustered,
    sparse_keys,
)

from retrieval_svc.errors import InvalidArgument

N = 1000
K = 10


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture
def data(rng):
    """(keys, vectors, queries): N clustered vectors under sparse keys, 25 queries."""
    return sparse_keys(rng, N), clustered(rng, N), clustered(rng, 25)


@pytest.fixture
def filled(factory, data):
    keys, vectors, _ = data
    index = factory.make(DIMENSION)
    index.add(keys, vectors)
    return index


def test_empty_index(factory, rng):
    index = factory.make(DIMENSION)
    queries = clustered(rng, 3)
    assert len(index) == 0
    assert index.keys().dtype == np.int64 and index.keys().size == 0
    assert index.search(queries, K) == [[], [], []]
    assert index.search(queries, K, allowed=np.array([1, 2], np.int64)) == [[], [], []]
    assert index.remove(np.array([1, 2, 3], np.int64)) == 0


def test_add_then_search_matches_brute_force(factory, filled, data):
    keys, vectors, queries = data
    assert len(filled) == N
    assert sorted(filled.keys().tolist()) == sorted(keys.tolist())
    check_against_reference(filled, factory, keys, vectors, queries, K)


def test_a_stored_vector_finds_itself_first(filled, data):
    keys, vectors, _ = data
    results = filled.search(vectors[:20], 1)
    assert [row[0].key for row in results] == keys[:20].tolist()
    assert all(abs(row[0].score - 1.0) < 1e-5 for row in results)


def test_k_larger_than_the_index_returns_everything(factory, rng):
    keys, vectors, queries = sparse_keys(rng, 7), clustered(rng, 7), clustered(rng, 4)
    index = factory.make(DIMENSION)
    index.add(keys, vectors)
    results = index.search(queries, 50)
    assert_well_formed(results, 50, set(keys.tolist()))
    assert_exact(results, brute_force(keys, vectors, queries, 50), keys, vectors, queries)


def test_a_large_k_still_returns_k_results(factory, filled, data):
    """Even where an approximate index looks at only part of the data (IVF's probed
    lists, HNSW's candidate list), k results come back when k keys are present."""
    keys, vectors, queries = data
    check_against_reference(filled, factory, keys, vectors, queries[:3], 600)


def test_k_zero_and_no_queries(filled, data):
    _, _, queries = data
    assert filled.search(queries[:2], 0) == [[], []]
    assert filled.search(np.empty((0, DIMENSION), np.float32), K) == []


def test_remove_returns_how_many_were_present(factory, filled, data, rng):
    keys, vectors, queries = data
    # A tenth first (HNSW keeps these as tombstones), then enough to force its rebuild.
    removed = np.empty(0, np.int64)
    for fraction in (0.1, 0.3):
        doomed = rng.choice(np.setdiff1d(keys, removed), size=int(fraction * N), replace=False)
        absent = np.array([-5, 10**12], np.int64)
        asked = np.concatenate(
            [doomed, doomed[:5], absent]
        )  # repeats and absent keys count once / not at all
        assert filled.remove(asked) == len(doomed)
        removed = np.concatenate([removed, doomed])
        keep = ~np.isin(keys, removed)
        assert len(filled) == int(keep.sum())
        assert sorted(filled.keys().tolist()) == sorted(keys[keep].tolist())
        check_against_reference(filled, factory, keys[keep], vectors[keep], queries, K)
    assert filled.remove(doomed) == 0


def test_export_returns_every_live_entry(factory, filled, data, rng):
    keys, vectors, _ = data
    current = dict(zip(keys.tolist(), vectors))
    replacements = clustered(rng, 20)
    filled.add(keys[:20], replacements)  # export has the new vectors of replaced keys
    current.update(zip(keys[:20].tolist(), replacements))
    filled.remove(keys[20:60])
    for key in keys[20:60].tolist():
        del current[key]
    exported_keys, exported_vectors = filled.export()
    assert exported_keys.dtype == np.int64 and exported_vectors.dtype == np.float32
    assert sorted(exported_keys.tolist()) == sorted(current)
    expected = np.stack([current[key] for key in exported_keys.tolist()])
    np.testing.assert_allclose(exported_vectors, expected, atol=1e-3)


def test_remove_everything_then_add_again(factory, filled, data):
    keys, vectors, queries = data
    assert filled.remove(keys) == N
    assert len(filled) == 0 and filled.keys().size == 0
    assert filled.search(queries, K) == [[] for _ in queries]
    filled.add(keys[:50], vectors[:50])
    assert len(filled) == 50
    check_against_reference(filled, factory, keys[:50], vectors[:50], queries, K)


def test_adding_an_existing_key_replaces_its_vector(factory, filled, data, rng):
    keys, vectors, queries = data
    replaced = keys[:30]
    new_vectors = clustered(rng, 30)
    filled.add(replaced, new_vectors)
    assert len(filled) == N
    assert sorted(filled.keys().tolist()) == sorted(keys.tolist())
    hits = filled.search(new_vectors, 1)
    assert [row[0].key for row in hits] == replaced.tolist()
    # The old vectors no longer score 1 under their keys.
    old = filled.search(vectors[:30], 1)
    assert not any(row[0].key == key and row[0].score > 0.999 for row, key in zip(old, replaced.tolist()))
    current = vectors.copy()
    current[:30] = new_vectors
    check_against_reference(filled, factory, keys, current, queries, K)


def test_a_batch_naming_a_key_twice_keeps_the_later_vector(factory, rng):
    index = factory.make(DIMENSION)
    vectors = clustered(rng, 3)
    index.add(np.array([7, 8, 7], np.int64), vectors)
    assert len(index) == 2
    assert index.search(vectors[2:3], 1)[0][0].key == 7
    assert abs(index.search(vectors[2:3], 1)[0][0].score - 1.0) < 1e-5
    assert index.search(vectors[0:1], 2)[0][0].score < 0.999


def test_allowed_restricts_results(factory, filled, data, rng):
    keys, vectors, queries = data
    allowed = np.concatenate([rng.choice(keys, size=N // 3, replace=False), [10**12, 3]])  # plus absent keys
    check_against_reference(filled, factory, keys, vectors, queries, K, allowed=allowed)


def test_selective_allowed_returns_exactly_the_allowed_keys(factory, filled, data, rng):
    keys, vectors, queries = data
    allowed = rng.choice(keys, size=6, replace=False)
    results = filled.search(queries, K, allowed=allowed)
    # With fewer allowed keys than k, every implementation, approximate or not, returns all of them.
    assert all(sorted(c.key for c in row) == sorted(allowed.tolist()) for row in results)
    keep = np.isin(keys, allowed)
    assert_exact(
        results, brute_force(keys[keep], vectors[keep], queries, K), keys[keep], vectors[keep], queries
    )


def test_allowed_with_nothing_present_returns_nothing(filled, data):
    _, _, queries = data
    assert filled.search(queries[:2], K, allowed=np.array([], np.int64)) == [[], []]
    assert filled.search(queries[:2], K, allowed=np.array([10**12], np.int64)) == [[], []]


def test_save_and_load_round_trip(factory, filled, data, rng, tmp_path):
    keys, vectors, queries = data
    filled.remove(keys[:50])  # 5%: HNSW saves these as tombstones
    filled.add(keys[50:60], clustered(rng, 10))
    before = filled.search(queries, K)
    allowed = keys[100:400]
    before_allowed = filled.search(queries, K, allowed=allowed)

    filled.save(tmp_path / "dense")
    loaded = factory.load(tmp_path / "dense")

    assert len(loaded) == len(filled) == N - 50
    assert sorted(loaded.keys().tolist()) == sorted(filled.keys().tolist())
    for got, want in (
        (loaded.search(queries, K), before),
        (loaded.search(queries, K, allowed=allowed), before_allowed),
    ):
        assert [[c.key for c in row] for row in got] == [[c.key for c in row] for row in want]
        assert np.allclose(
            [[c.score for c in row] for row in got], [[c.score for c in row] for row in want], atol=1e-6
        )
    # The loaded index is a working index, not a read-only copy.
    assert loaded.remove(keys[60:70]) == 10
    loaded.add(keys[:5], vectors[:5])
    assert len(loaded) == N - 50 - 10 + 5
    assert [row[0].key for row in loaded.search(vectors[:5], 1)] == keys[:5].tolist()


def test_save_twice_to_the_same_place_overwrites(factory, rng, tmp_path):
    index = factory.make(DIMENSION)
    index.add(np.arange(10, dtype=np.int64), clustered(rng, 10))
    index.save(tmp_path / "dense")
    index.remove(np.arange(5, dtype=np.int64))
    index.save(tmp_path / "dense")
    assert sorted(factory.load(tmp_path / "dense").keys().tolist()) == [5, 6, 7, 8, 9]
    assert not [p for p in (tmp_path / "dense").iterdir() if p.name.endswith(".tmp")]


def test_random_operations_agree_with_a_model(factory, rng):
    """Interleaved adds (some replacing), removes (some absent) and searches against a dict."""
    index = factory.make(DIMENSION)
    model: dict[int, np.ndarray] = {}
    universe = np.arange(600, dtype=np.int64) * 3 + 1
    for step in range(40):
        action = rng.choice(["add", "add", "remove", "search"])
        if action == "add":
            keys = rng.choice(universe, size=int(rng.integers(1, 120)), replace=False)
            vectors = clustered(rng, len(keys))
            index.add(keys, vectors)
            model.update(zip(keys.tolist(), vectors))
        elif action == "remove":
            keys = rng.choice(universe, size=int(rng.integers(1, 80)), replace=False)
            present = sum(key in model for key in keys.tolist())
            assert index.remove(keys) == present
            for key in keys.tolist():
                model.pop(key, None)
        assert len(index) == len(model), step
        assert sorted(index.keys().tolist()) == sorted(model), step
        live_keys = np.fromiter(model, np.int64, len(model))
        live_vectors = np.stack(list(model.values())) if model else np.empty((0, DIMENSION), np.float32)
        queries = clustered(rng, 3)
        allowed = rng.choice(universe, size=150, replace=False) if step % 2 else None
        results = index.search(queries, K, allowed)
        eligible = (
            set(live_keys.tolist()) if allowed is None else set(live_keys.tolist()) & set(allowed.tolist())
        )
        assert_well_formed(results, K, eligible)
        if factory.exact:
            keep = np.ones(len(live_keys), bool) if allowed is None else np.isin(live_keys, allowed)
            expected = brute_force(live_keys[keep], live_vectors[keep], queries, K)
            assert_exact(results, expected, live_keys[keep], live_vectors[keep], queries)


def test_bad_input_is_refused_with_invalid_argument(factory, rng):
    index = factory.make(DIMENSION)
    with pytest.raises(InvalidArgument, match="shape"):
        index.add(np.arange(3, dtype=np.int64), clustered(rng, 3, dimension=DIMENSION + 1))
    with pytest.raises(InvalidArgument, match="3 keys but 2 vectors"):
        index.add(np.arange(3, dtype=np.int64), clustered(rng, 2))
    with pytest.raises(InvalidArgument, match="integers"):
        index.add(np.array([0.5, 1.5]), clustered(rng, 2))
    index.add(np.arange(3, dtype=np.int64), clustered(rng, 3))
    with pytest.raises(InvalidArgument, match="queries"):
        index.search(clustered(rng, 1, dimension=DIMENSION - 1), K)
    with pytest.raises(InvalidArgument, match="k must be"):
        index.search(clustered(rng, 1), -1)
    assert len(index) == 3
