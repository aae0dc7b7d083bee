"""BM25 query latency: rank_bm25 vs rank-bm25-rs vs retrieval_svc.lexical.BM25Index.

Builds a deterministic synthetic corpus (Zipfian vocabulary, chunks of about
150 tokens), indexes it with each implementation and times top-k queries of
3-6 terms. Also times an incremental add into the built index and a save/load
round trip. Prints tables; asserts nothing about time (run it, read it).

    .venv/bin/python bench/bm25_latency.py [--chunks 50000] [--queries 200] [--k 100]

Two query sets: "zipf" draws query terms with the corpus' own term
frequencies, so frequent terms with long posting lists are common (the hard
case for an inverted index; rank_bm25 costs the same for any term); "uniform"
draws terms uniformly from the corpus vocabulary, so most are rare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval_svc.lexical import BM25Index, make_tokenizer

SEED = 20240611
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]


def make_vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES, size=rng.integers(1, 5)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def make_corpus(chunks: int, vocabulary_size: int, zipf_s: float, rng: np.random.Generator):
    vocabulary = np.array(make_vocabulary(vocabulary_size, rng), dtype=object)
    weights = 1.0 / np.arange(1, vocabulary_size + 1) ** zipf_s
    cumulative = np.cumsum(weights / weights.sum())
    lengths = rng.integers(100, 201, size=chunks)  # mean 150 tokens
    ids = np.searchsorted(cumulative, rng.random(int(lengths.sum())))
    ids = np.minimum(ids, vocabulary_size - 1)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(vocabulary[ids[s:e]]) for s, e in zip(bounds[:-1], bounds[1:])]
    return texts, vocabulary, cumulative, ids


def make_queries(count, vocabulary, cumulative, corpus_ids, rng, mode):
    present = np.unique(corpus_ids)
    queries = []
    for _ in range(count):
        size = int(rng.integers(3, 7))
        if mode == "zipf":
            picks = np.minimum(np.searchsorted(cumulative, rng.random(size)), len(vocabulary) - 1)
        else:
            picks = rng.choice(present, size=size)
        queries.append(" ".join(vocabulary[picks]))
    return queries


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def latencies(searchers: dict, queries: list[str], interleave: bool) -> dict[str, list[float]]:
    """Seconds per query for each implementation. By default each runs all the
    queries in a block (its steady state, caches warm with its own data); with
    `interleave` they take turns query by query, so that load from other
    processes falls on all alike, but each starts with caches the previous one
    (often rank_bm25, hundreds of MB) has filled."""
    out: dict[str, list[float]] = {name: [] for name in searchers}
    order = ([(q, name) for q in queries for name in searchers] if interleave
             else [(q, name) for name in searchers for q in queries])
    for q, name in order:
        search = searchers[name]
        start = time.perf_counter()
        search(q)
        out[name].append(time.perf_counter() - start)
    return out


def summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return statistics.median(values), statistics.fmean(values), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--vocabulary", type=int, default=100_000)
    parser.add_argument("--zipf", type=float, default=1.07)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--add", type=int, default=1_000, help="chunks for the incremental add")
    parser.add_argument("--skip-rank-bm25", action="store_true")
    parser.add_argument("--interleave", action="store_true",
                        help="alternate implementations query by query (for noisy machines)")
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    texts, vocabulary, cumulative, ids = make_corpus(
        args.chunks + args.add, args.vocabulary, args.zipf, rng
    )
    base_texts, extra_texts = texts[: args.chunks], texts[args.chunks:]
    keys = list(range(args.chunks))
    tokenizer = make_tokenizer()
    tokenized, t_tok = timed(lambda: [tokenizer(t) for t in base_texts])
    tokens = sum(map(len, tokenized))
    print(f"corpus: {args.chunks} chunks, {tokens} tokens ({tokens / args.chunks:.0f} per chunk), "
          f"{len({t for d in tokenized for t in d})} distinct terms; zipf s={args.zipf}; "
          f"seed {SEED}; tokenizing took {t_tok:.2f}s")

    builds: dict[str, float] = {}
    searchers = {}
    fast = None  # rank_bm25_rs.BM25Okapi, when installed
    k = args.k
    if not args.skip_rank_bm25:
        from rank_bm25 import BM25Okapi

        reference, builds["rank_bm25"] = timed(BM25Okapi, tokenized)

        def rank_bm25_search(query, model=reference):
            scores = model.get_scores(tokenizer(query))
            return np.argsort(scores)[::-1][:k]

        searchers["rank_bm25"] = rank_bm25_search
    try:
        import rank_bm25_rs

        fast, builds["rank-bm25-rs"] = timed(rank_bm25_rs.BM25Okapi, tokenized)

        def rs_search(query, model=fast):
            scores = model.get_scores(tokenizer(query))
            return np.argsort(scores)[::-1][:k]

        searchers["rank-bm25-rs"] = rs_search
    except ImportError:
        print("rank-bm25-rs not installed; skipped")

    index = BM25Index(tokenizer)
    _, builds["BM25Index"] = timed(index.add, keys, base_texts)
    searchers["BM25Index"] = lambda query: index.search(query, k)
    print("\nbuild (s): " + ", ".join(f"{name} {secs:.2f}" for name, secs in builds.items())
          + "  (rank_bm25 and -rs get pre-tokenized text; BM25Index's time includes tokenizing)")

    for mode in ("zipf", "uniform"):
        queries = make_queries(args.queries, vocabulary, cumulative, ids[: tokens], rng, mode)
        # Sanity: the same top documents and scores as rank_bm25 / -rs.
        if fast is not None:
            for q in queries[:20]:
                scores = fast.get_scores(tokenizer(q))
                hits = index.search(q, 10)
                expected = np.sort(scores)[::-1][: len(hits)]
                np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-9)
        index.search(queries[0], k)  # statistics are built lazily once per generation
        latencies(searchers, queries[:5], args.interleave)  # warm-up
        rows = [(name, summary(times))
                for name, times in latencies(searchers, queries, args.interleave).items()]
        base = dict(rows).get("rank_bm25")
        print(f"\nquery latency, {mode} terms, {len(queries)} queries of 3-6 terms, top-{k}"
              f"{', interleaved' if args.interleave else ''}:")
        print(f"{'implementation':<16}{'p50 ms':>10}{'mean ms':>10}{'p95 ms':>10}"
              f"{'x p50':>10}{'x mean':>10}")
        for name, (p50, mean, p95) in rows:
            ratio = (f"{base[0] / p50:>10.0f}{base[1] / mean:>10.0f}" if base else f"{'':>20}")
            print(f"{name:<16}{p50 * 1e3:>10.3f}{mean * 1e3:>10.3f}{p95 * 1e3:>10.3f}{ratio}")

    extra_keys = list(range(args.chunks, args.chunks + len(extra_texts)))
    _, t_add = timed(index.add, extra_keys, extra_texts)
    _, t_first = timed(index.search, "first query after a write", k)
    _, t_remove = timed(index.remove, extra_keys)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bm25"
        _, t_save = timed(index.save, path)
        size = os.path.getsize(path)
        loaded, t_load = timed(BM25Index.load, path, tokenizer)
    assert len(loaded) == len(index)
    print(f"\nBM25Index writes and persistence ({args.chunks} chunks):")
    print(f"  add {len(extra_texts)} chunks (tokenizing included): {t_add * 1e3:.1f} ms")
    print(f"  first search after that write (rebuilds norms and idf floor): {t_first * 1e3:.2f} ms")
    print(f"  remove {len(extra_keys)} chunks: {t_remove * 1e3:.1f} ms")
    print(f"  save: {t_save * 1e3:.0f} ms ({size / 2**20:.1f} MiB); load: {t_load * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
