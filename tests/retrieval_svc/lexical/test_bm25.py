"""BM25Index: parity with rank_bm25.BM25Okapi, incremental updates, filters, persistence."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from retrieval_svc.lexical import BM25Index, make_tokenizer
from retrieval_svc.lexical import bm25 as bm25_module

RTOL, ATOL = 1e-9, 1e-12


def whitespace_tokens(text: str) -> list[str]:
    return text.split()


def build(keys, docs, **params) -> BM25Index:
    """An index over pre-tokenized docs (lists of tokens), one add call."""
    index = BM25Index(whitespace_tokens, **params)
    index.add(list(keys), [" ".join(d) for d in docs])
    return index


def reference_scores(keys, docs, query, **params) -> dict[int, float]:
    scores = BM25Okapi([list(d) for d in docs], **params).get_scores(list(query))
    return dict(zip(keys, scores.tolist()))


def assert_matches_reference(index, keys, docs, query, **params):
    """Scores of every document equal rank_bm25's; the ranking is by score, then key."""
    expected = reference_scores(keys, docs, query, **params)
    hits = index.search(" ".join(query), k=len(keys) + 1)
    got = {c.key: c.score for c in hits}
    assert len(got) == len(hits)
    assert set(got) <= set(expected)
    keys_order = list(expected)
    np.testing.assert_allclose(
        [got.get(k, 0.0) for k in keys_order], [expected[k] for k in keys_order],
        rtol=RTOL, atol=ATOL,
    )
    # Every document with a (not vanishingly small) non-zero reference score is returned.
    assert {k for k, s in expected.items() if abs(s) > ATOL} <= set(got)
    assert all(c.score != 0 for c in hits)
    assert [(c.key, c.score) for c in hits] == sorted(
        ((c.key, c.score) for c in hits), key=lambda pair: (-pair[1], pair[0])
    )
    return expected, got


def assert_consistent(index: BM25Index) -> None:
    """The internal bookkeeping agrees with what a recount from the postings gives."""
    vocabulary = len(index._term_ids)
    assert list(index._term_ids.values()) == list(range(vocabulary))  # ids in dict order
    alive = index._row_alive[: index._rows]
    assert int(alive.sum()) == len(index)
    assert index._total_len == int(index._row_len[: index._rows][alive].sum())
    for term in range(vocabulary):
        size = int(index._size[term])
        rows = index._postings[term][0, :size]
        assert np.all(np.diff(rows) > 0)  # ascending, distinct
        live = int(alive[rows].sum())
        assert (index._df[term], index._dead[term]) == (live, size - live)


# --- parity on fixed corpora ------------------------------------------------------

SENTENCES = [
    "The quick brown fox jumps over the lazy dog",
    "The dog barks at the mailman and the mailman runs",
    "A fox is a small omnivorous mammal of the dog family",
    "The lazy cat sleeps all day in the sun",
    "Retrieval with BM25 ranks the documents by term frequency",
    "The brown bear and the brown fox are not related",
    "Dogs and cats, cats and dogs: the eternal debate",
    "",
    "The the the the",
]


@pytest.mark.parity
def test_parity_on_sentences_with_a_term_in_most_documents():
    tokenize = make_tokenizer()
    docs = [tokenize(s) for s in SENTENCES]
    keys = [10 * i + 3 for i in range(len(docs))]
    index = BM25Index(tokenize)
    index.add(keys, SENTENCES)
    reference = BM25Okapi(docs)
    # "the" is in 8 of 9 documents: its raw idf is negative and the epsilon floor applies.
    assert math.log(9 - 8 + 0.5) - math.log(8 + 0.5) < 0
    assert reference.idf["the"] == pytest.approx(0.25 * reference.average_idf)
    for query in ["the", "the dog", "fox fox brown", "the lazy the dog", "unseen words",
                  "BM25 retrieval", "cats dogs the"]:
        expected, got = assert_matches_reference(index, keys, docs, tokenize(query))
        if "the" not in tokenize(query):
            # No floored term: bit-identical to rank_bm25.
            assert got == {k: s for k, s in expected.items() if s != 0}


@pytest.mark.parity
def test_parity_on_a_zipfian_corpus_is_bit_identical_without_floored_terms():
    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(300)]
    weights = 1.0 / np.arange(1, 301) ** 1.1
    weights /= weights.sum()
    docs = [list(rng.choice(vocabulary, size=rng.integers(5, 60), p=weights))
            for _ in range(400)]
    keys = rng.permutation(10_000)[:400].tolist()
    index = build(keys, docs)
    reference = BM25Okapi(docs)
    floored = {t for t in reference.idf if sum(t in d for d in docs) > 200}
    assert floored  # the corpus does exercise the floor
    checked_exact = 0
    for _ in range(60):
        query = list(rng.choice(vocabulary, size=rng.integers(1, 7), p=weights))
        query.append("oov")
        expected, got = assert_matches_reference(index, keys, docs, query)
        if not floored & set(query):
            assert got == {k: s for k, s in expected.items() if s != 0}
            checked_exact += 1
    assert checked_exact > 5


@pytest.mark.parity
def test_parity_with_other_parameters():
    docs = [d.split() for d in ["a b c", "a a b", "c d e f", "a", "b b b b e", "f g"]]
    keys = list(range(len(docs)))
    for params in [{"k1": 0.9, "b": 0.4, "epsilon": 0.1}, {"k1": 2.0, "b": 0.0, "epsilon": 0.5},
                   {"k1": 1.2, "b": 1.0}]:
        index = build(keys, docs, **params)
        for query in (["a"], ["a", "b", "a"], ["e", "f", "g", "b"]):
            assert_matches_reference(index, keys, docs, query, **params)


# --- parity on random corpora (hypothesis) --------------------------------------------

# A tiny vocabulary, so that many terms are in more than half the documents.
VOCABULARY = ["ab", "cd", "ef", "gh", "ij", "kl"]
documents = st.lists(st.lists(st.sampled_from(VOCABULARY), max_size=10), min_size=1, max_size=25)
queries = st.lists(st.sampled_from(VOCABULARY + ["zz"]), min_size=1, max_size=7)
parameters = st.fixed_dictionaries({
    # rank_bm25 divides 0 by 0 (NaN for documents without the term) when
    # k1 = 0, or b = 1 with an empty document; those settings are left out.
    "k1": st.floats(0.05, 3.0),
    "b": st.floats(0.0, 0.95),
    "epsilon": st.floats(0.0, 1.0),
})
HYPOTHESIS = settings(max_examples=120, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parity
@HYPOTHESIS
@given(docs=documents, query_list=st.lists(queries, min_size=1, max_size=4), params=parameters)
def test_parity_random(docs, query_list, params):
    if not any(docs):
        docs[0] = ["ab"]  # rank_bm25 cannot index a corpus without a single token
    keys = [3 * i - 20 for i in range(len(docs))]
    index = build(keys, docs, **params)
    for query in query_list:
        assert_matches_reference(index, keys, docs, query, **params)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.integers(0, 30), unique=True, max_size=6),
                  st.lists(st.lists(st.sampled_from(VOCABULARY), max_size=8),
                           min_size=6, max_size=6)),
        st.tuples(st.just("remove"), st.lists(st.integers(0, 35), max_size=6), st.just([])),
    ),
    max_size=12,
)


@pytest.mark.parity
@HYPOTHESIS
@given(ops=operations, query=queries)
def test_any_sequence_of_writes_scores_like_a_fresh_index(ops, query):
    index = BM25Index(whitespace_tokens)
    current: dict[int, list[str]] = {}
    saved_threshold = bm25_module._MIN_COMPACTION
    bm25_module._MIN_COMPACTION = 2  # so that whole-index compaction happens too
    try:
        for op, keys, texts in ops:
            if op == "add":
                index.add(keys, [" ".join(t) for t in texts[: len(keys)]])
                current.update(zip(keys, texts))
            else:
                present = {k for k in keys if k in current}
                assert index.remove(keys) == len(present)
                for k in present:
                    del current[k]
    finally:
        bm25_module._MIN_COMPACTION = saved_threshold
    assert_consistent(index)
    keys = sorted(current)
    assert len(index) == len(keys)
    assert index.keys().tolist() == keys
    fresh = build(keys, [current[k] for k in keys])
    text = " ".join(query)
    assert index.search(text, 50) == fresh.search(text, 50)  # bit-identical
    if any(current.values()):
        assert_matches_reference(index, keys, [current[k] for k in keys], query)


# --- incremental updates -------------------------------------------------------------

def random_corpus(seed: int, count: int, vocabulary_size: int = 80):
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocabulary_size + 1)
    weights /= weights.sum()
    vocabulary = [f"t{i}" for i in range(vocabulary_size)]
    return [list(rng.choice(vocabulary, size=rng.integers(0, 30), p=weights))
            for _ in range(count)]


QUERIES = [["t0"], ["t1", "t5", "t1"], ["t3", "t40", "t79", "nope"], ["t0", "t2", "t9", "t17"]]


@pytest.mark.parity
def test_batches_removals_and_readds_equal_a_fresh_build():
    docs = random_corpus(1, 300)
    replacement = random_corpus(2, 300)
    index = BM25Index(whitespace_tokens)
    for start in range(0, 200, 40):
        index.add(range(start, start + 40), [" ".join(d) for d in docs[start:start + 40]])
    assert index.remove(range(0, 200, 3)) == 67
    index.add(range(200, 300), [" ".join(d) for d in docs[200:300]])
    # Re-add some removed keys, and replace some present ones (upsert).
    index.add(range(0, 60, 3), [" ".join(replacement[k]) for k in range(0, 60, 3)])
    index.add([1, 2, 250], [" ".join(replacement[k]) for k in (1, 2, 250)])
    assert_consistent(index)
    final = {k: docs[k] for k in range(300) if k % 3 or k >= 200}
    final.update({k: replacement[k] for k in list(range(0, 60, 3)) + [1, 2, 250]})
    keys = sorted(final)
    assert len(index) == len(keys) and index.keys().tolist() == keys
    fresh = build(keys, [final[k] for k in keys])
    for query in QUERIES:
        assert index.search(" ".join(query), 400) == fresh.search(" ".join(query), 400)
        assert_matches_reference(index, keys, [final[k] for k in keys], query)


def test_compaction_keeps_scores(monkeypatch):
    monkeypatch.setattr(bm25_module, "_MIN_COMPACTION", 4)
    docs = random_corpus(3, 200)
    index = BM25Index(whitespace_tokens)
    index.add(range(200), [" ".join(d) for d in docs])
    index.remove(range(0, 150))  # more dead rows than live ones: renumbers everything
    assert index._rows == 50 and index._dead_rows == 0
    assert_consistent(index)
    keys = list(range(150, 200))
    fresh = build(keys, docs[150:])
    for query in QUERIES:
        assert index.search(" ".join(query), 100) == fresh.search(" ".join(query), 100)
    index.add([7], ["t0 t1 t1"])
    assert [c.key for c in index.search("t1", 100)][:1] == [7]


def test_mostly_dead_postings_are_compacted_per_term():
    index = BM25Index(whitespace_tokens)
    index.add(range(10), ["common rare"] * 5 + ["common"] * 5)
    index.remove(range(4))  # "rare": 4 of 5 postings dead -> compacted
    term = index._term_ids["rare"]
    assert index._dead[term] == 0 and index._size[term] == index._df[term] == 1
    common = index._term_ids["common"]
    assert index._dead[common] == 4 and index._df[common] == 6  # not yet worth it
    assert np.array_equal(index._size, index._df + index._dead)


def test_remove_counts_only_present_keys():
    index = BM25Index()
    index.add([1, 2, 3, 4, 5, 6], ["a b", "b c", "c d", "e", "f", "g"])
    assert index.remove([]) == 0
    assert index.remove([99, -5]) == 0
    assert index.remove(np.array([2, 2, 99], dtype=np.int64)) == 1
    assert index.remove([2]) == 0
    with pytest.raises(TypeError):
        index.remove([1, "3"])
    assert len(index) == 5 and index.keys().tolist() == [1, 3, 4, 5, 6]
    assert [c.key for c in index.search("b c", 10)] == [1, 3]


def test_add_rejects_bad_batches_without_changing_the_index():
    index = BM25Index()
    index.add([1], ["hello world"])
    with pytest.raises(ValueError, match="key 5 appears more than once"):
        index.add([5, 6, 5], ["a", "b", "c"])
    with pytest.raises(ValueError, match="2 keys but 1 texts"):
        index.add([5, 6], ["a"])
    with pytest.raises(ValueError, match="int64"):
        index.add([2**63], ["a"])
    with pytest.raises(TypeError):
        index.add([1.5], ["a"])
    assert index.keys().tolist() == [1]


def test_re_adding_a_key_replaces_its_text():
    index = BM25Index()
    index.add(range(1, 7), ["apple banana", "cherry", "date", "elder", "fig", "grape"])
    index.add([1], ["cherry cherry"])
    assert len(index) == 6
    assert index.search("apple", 10) == []
    assert [c.key for c in index.search("cherry", 10)] == [1, 2]  # tf 2 beats tf 1


# --- search behaviour -----------------------------------------------------------------

def test_ties_break_by_key_and_k_cuts_through_them():
    index = BM25Index()
    index.add([9, 4, 7, 1, 5], ["x y", "x y", "x y", "z", "x y"])
    hits = index.search("x", 3)
    assert [c.key for c in hits] == [4, 5, 7]
    assert len({c.score for c in hits}) == 1


def test_only_matching_documents_are_returned():
    index = BM25Index()
    index.add(range(6), ["alpha", "beta", "gamma", "delta", "alpha beta", "epsilon"])
    assert {c.key for c in index.search("alpha beta zeta", 10)} == {0, 1, 4}
    assert index.search("zeta", 10) == []
    assert index.search("   ", 10) == []
    assert index.search("alpha", 0) == []
    with pytest.raises(ValueError, match="k must be"):
        index.search("alpha", -1)


def test_empty_index_and_empty_documents():
    index = BM25Index()
    assert index.search("anything", 5) == [] and len(index) == 0
    assert index.keys().dtype == np.int64 and index.keys().size == 0
    index.add([1, 2], ["", "!!"])  # documents without a single token
    assert len(index) == 2 and index.search("anything", 5) == []


def test_allowed_restricts_results_but_not_statistics():
    docs = random_corpus(4, 120)
    keys = list(range(1000, 1120))
    index = build(keys, docs)
    query = "t1 t4 t7"
    everything = index.search(query, 200)
    allowed = np.array([1003, 1010, 1011, 1050, 1119, 5, 99999], dtype=np.int64)
    filtered = index.search(query, 200, allowed=allowed)
    assert len(filtered) >= 3
    assert filtered == [c for c in everything if c.key in set(allowed.tolist())]
    assert index.search(query, 2, allowed=allowed) == filtered[:2]
    assert index.search(query, 10, allowed=np.array([], dtype=np.int64)) == []
    assert index.search(query, 10, allowed=np.array([424242])) == []
    assert index.search(query, 200, allowed=np.array(keys)) == everything
    index.remove([1010])
    assert 1010 not in {c.key for c in index.search(query, 200, allowed=allowed)}
    with pytest.raises(ValueError, match="integer keys"):
        index.search(query, 10, allowed=np.array([1.5]))


def test_concurrent_searches_agree():
    docs = random_corpus(5, 300)
    index = build(range(300), docs)
    index.add([1000], ["t0 t1"])  # a fresh generation: the caches are built lazily
    barrier = threading.Barrier(6)
    results: list[list] = []

    def run():
        barrier.wait()
        results.append([index.search(" ".join(q), 20, allowed=np.arange(0, 2000, 2))
                        for q in QUERIES])

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r == results[0] for r in results)
    assert results[0] == [index.search(" ".join(q), 20, allowed=np.arange(0, 2000, 2))
                          for q in QUERIES]


# --- persistence ------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    tokenizer = make_tokenizer(stopwords=True, stemmer="porter")
    docs = [" ".join(d) for d in random_corpus(6, 150)] + ["Running runners ran", "Straße"]
    keys = list(range(-3, 149))
    index = BM25Index(tokenizer, k1=1.2, b=0.6, epsilon=0.3)
    index.add(keys, docs)
    index.remove(range(0, 40))  # dead rows and postings are dropped on save
    path = tmp_path / "bm25"  # no extension: the file is written exactly there
    index.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm25"]

    loaded = BM25Index.load(path, tokenizer)
    assert (loaded.k1, loaded.b, loaded.epsilon) == (1.2, 0.6, 0.3)
    assert len(loaded) == len(index) and np.array_equal(loaded.keys(), index.keys())
    for query in [" ".join(q) for q in QUERIES] + ["run", "strasse t0"]:
        assert loaded.search(query, 200) == index.search(query, 200)
    # The loaded index keeps working incrementally.
    for ix in (index, loaded):
        ix.remove([45, 46, -3])
        ix.add([500, 45], ["t0 t3 t3", "t9"])
    for query in [" ".join(q) for q in QUERIES]:
        assert loaded.search(query, 200) == index.search(query, 200)
    assert_consistent(loaded)
    assert BM25Index.load(path).tokenizer == tokenizer  # the saved spec by default


def test_load_refuses_another_tokenizer_and_foreign_files(tmp_path):
    index = BM25Index(make_tokenizer(stemmer="porter"))
    index.add([1], ["hello"])
    index.save(tmp_path / "bm25")
    with pytest.raises(ValueError, match="built with tokenizer"):
        BM25Index.load(tmp_path / "bm25", make_tokenizer())
    np.savez(tmp_path / "other.npz", meta=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="format"):
        BM25Index.load(tmp_path / "other.npz")


def test_save_load_empty_index(tmp_path):
    index = BM25Index()
    index.save(tmp_path / "empty")
    loaded = BM25Index.load(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.search("x", 3) == []
    loaded.add([1], ["x"])
    assert [c.key for c in loaded.search("x", 3)] == [1]


def test_rejects_bad_parameters():
    for params, name in [({"k1": -1}, "k1"), ({"b": 1.5}, "b"), ({"epsilon": math.nan}, "epsilon")]:
        with pytest.raises(ValueError, match=name):
            BM25Index(**params)


def test_load_takes_configured_parameters_and_scores_like_a_fresh_index(tmp_path):
    texts = ["the cat sat on the mat", "a dog sat", "cats and dogs and mats", "mat mat mat cat"]
    texts += [f"filler words number {i} about nothing in particular" for i in range(12)]
    saved = BM25Index(make_tokenizer(), k1=1.5, b=0.75, epsilon=0.25)
    saved.add(list(range(len(texts))), texts)
    saved.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25", make_tokenizer(), k1=0.9, b=0.4, epsilon=0.1)
    fresh = BM25Index(make_tokenizer(), k1=0.9, b=0.4, epsilon=0.1)
    fresh.add(list(range(len(texts))), texts)
    assert (loaded.k1, loaded.b, loaded.epsilon) == (0.9, 0.4, 0.1)
    assert loaded.search("cat mat", 4) == fresh.search("cat mat", 4)
    assert loaded.search("cat mat", 4) != saved.search("cat mat", 4)
    kept = BM25Index.load(tmp_path / "bm25", make_tokenizer())
    assert (kept.k1, kept.b, kept.epsilon) == (1.5, 0.75, 0.25)


# --- the compiled top-k selection -------------------------------------------------


def reference_top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows with a non-zero score at least the k-th best non-zero score, ascending."""
    rows = np.flatnonzero(scores)
    if rows.size > k:
        bar = np.sort(scores[rows])[::-1][k - 1]
        rows = rows[scores[rows] >= bar]
    return rows


@HYPOTHESIS
@given(
    size=st.integers(1, 3000),
    k=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
    levels=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
    negative=st.booleans(),
)
def test_top_rows_keeps_the_top_k_and_their_ties(size, k, density, levels, seed, negative):
    # Few distinct levels make ties common; sizes over 64 k take the sampling path.
    rng = np.random.default_rng(seed)
    values = rng.integers(1, levels + 1, size=size).astype(np.float64)
    if negative:
        values -= levels / 2 + 0.25  # some negative, none zero
    scores = np.where(rng.random(size) < density, values, 0.0)
    got = bm25_module._kernels.top_rows(scores, k)
    np.testing.assert_array_equal(got, reference_top_rows(scores, k))


def test_top_k_of_a_large_index_matches_rank_bm25_with_small_k():
    # 3,000 documents and k <= 10: the selection samples (n > 64 k) instead of
    # reading every score; the top k must still be rank_bm25's, ties included.
    rng = np.random.default_rng(11)
    vocabulary = [f"w{i}" for i in range(200)]
    weights = 1.0 / np.arange(1, 201) ** 1.05
    weights /= weights.sum()
    docs = [list(rng.choice(vocabulary, size=rng.integers(3, 30), p=weights)) for _ in range(1500)]
    docs += docs  # every document twice: ties at every rank
    keys = list(range(len(docs)))
    index = build(keys, docs)
    reference = BM25Okapi(docs)
    for _ in range(40):
        query = list(rng.choice(vocabulary, size=rng.integers(1, 6), p=weights))
        scores = reference.get_scores(query)
        for k in (1, 3, 10):
            hits = index.search(" ".join(query), k)
            expected = sorted(
                ((key, s) for key, s in zip(keys, scores.tolist()) if s != 0),
                key=lambda pair: (-pair[1], pair[0]),
            )[:k]
            assert [c.key for c in hits] == [key for key, _ in expected]
            np.testing.assert_allclose([c.score for c in hits], [s for _, s in expected],
                                       rtol=RTOL, atol=ATOL)
