"""BM25 query latency: retrieval_svc.lexical.BM25Index against rank_bm25, bm25s and rank-bm25-rs.

Indexes one corpus with each implementation and times top-k queries, one at a
time. Also times an incremental add into the built index and a save/load round
trip. Prints tables; asserts nothing about time (run it, read it).

    .venv/bin/python bench/bm25_latency.py [--chunks 50000] [--queries 200] [--k 100]
    .venv/bin/python bench/bm25_latency.py --beir /work/shared/data/scifact --copies 10

Synthetic corpus (the default): deterministic, Zipfian vocabulary, chunks of
about 150 tokens, two query sets of 3-6 terms: "zipf" draws query terms with
the corpus' own term frequencies, so frequent terms with long posting lists are
common (the hard case for an inverted index; rank_bm25 costs the same for any
term); "uniform" draws terms uniformly from the corpus vocabulary, so most are
rare. `--beir DIR`: a BEIR corpus (title and text of each document), repeated
`--copies` times (SciFact x 10 = 51,830 documents), and every query of
DIR/queries.jsonl as written.

bm25s (`pip install bm25s numba`) runs its numba backend with method
"robertson" and the same k1 and b: its idf has no epsilon floor, so its
scores differ from rank_bm25's where a term is in over half the documents.
rank_bm25 scores every document for every query (about 0.3 s a query at 50k),
so it times only the first `--rank-bm25-queries` queries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import indexed_text, read_corpus

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


def read_beir(folder: Path, copies: int) -> tuple[list[str], list[str]]:
    """The corpus' documents (title, a newline, text), `copies` times over, and every query
    of queries.jsonl (judged or not)."""
    texts = [indexed_text(doc, "prepend") for doc in read_corpus(folder)]
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        queries = [json.loads(line)["text"] for line in fh if line.strip()]
    return texts * copies, queries


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
    parser.add_argument("--rank-bm25-queries", type=int, default=100,
                        help="queries rank_bm25 times (each scores every document)")
    parser.add_argument("--beir", type=Path, help="a BEIR folder instead of the synthetic corpus")
    parser.add_argument("--copies", type=int, default=10, help="with --beir: corpus repeats")
    parser.add_argument("--interleave", action="store_true",
                        help="alternate implementations query by query (for noisy machines)")
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    if args.beir:
        texts, beir_queries = read_beir(args.beir, args.copies)
        args.chunks = len(texts)
        texts += texts[: args.add]  # added again later, under new keys
        source = f"{args.beir.name} x {args.copies}"
    else:
        texts, vocabulary, cumulative, ids = make_corpus(
            args.chunks + args.add, args.vocabulary, args.zipf, rng
        )
        source = f"synthetic, zipf s={args.zipf}, seed {SEED}"
    base_texts, extra_texts = texts[: args.chunks], texts[args.chunks:]
    keys = list(range(args.chunks))
    tokenizer = make_tokenizer()
    tokenized, t_tok = timed(lambda: [tokenizer(t) for t in base_texts])
    tokens = sum(map(len, tokenized))
    print(f"corpus: {source}: {args.chunks} chunks, {tokens} tokens "
          f"({tokens / args.chunks:.0f} per chunk), "
          f"{len({t for d in tokenized for t in d})} distinct terms; tokenizing took {t_tok:.2f}s")

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
        import bm25s

        bm25s_model = bm25s.BM25(method="robertson", k1=1.5, b=0.75, backend="numba")
        _, builds["bm25s"] = timed(lambda: bm25s_model.index(tokenized, show_progress=False))

        def bm25s_search(query, model=bm25s_model):
            # An empty query is an error to bm25s: give it a term no document has.
            return model.retrieve([tokenizer(query) or ["\x00"]], k=k, show_progress=False,
                                  n_threads=1)

        searchers["bm25s"] = bm25s_search
    except ImportError:
        print("bm25s not installed; skipped")
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

    for mode in (("beir",) if args.beir else ("zipf", "uniform")):
        if args.beir:
            queries = beir_queries
        else:
            queries = make_queries(args.queries, vocabulary, cumulative, ids[: tokens], rng, mode)
        # Sanity: the same top documents and scores as rank_bm25 / -rs.
        if fast is not None:
            for q in queries[:20]:
                scores = fast.get_scores(tokenizer(q))
                hits = index.search(q, 10)
                expected = np.sort(scores)[::-1][: len(hits)]
                np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-9)
        index.search(queries[0], k)  # statistics are built lazily once per generation
        latencies(searchers, queries[:5], args.interleave)  # warm-up (and numba compiles)
        times = latencies({n: f for n, f in searchers.items() if n != "rank_bm25"}, queries,
                          args.interleave)
        if "rank_bm25" in searchers:
            times = {"rank_bm25": latencies({"rank_bm25": searchers["rank_bm25"]},
                                            queries[: args.rank_bm25_queries], False)["rank_bm25"],
                     **times}
        rows = [(name, summary(values)) for name, values in times.items()]
        base = dict(rows).get("rank_bm25")
        lengths = [len(tokenizer(q)) for q in queries]
        print(f"\nquery latency, {mode} terms, {len(queries)} queries of {min(lengths)}-"
              f"{max(lengths)} terms (mean {statistics.fmean(lengths):.1f}), top-{k}"
              f"{', interleaved' if args.interleave else ''}; rank_bm25 on the first "
              f"{len(times.get('rank_bm25', []))}:")
        print(f"{'implementation':<16}{'p50 ms':>10}{'mean ms':>10}{'p95 ms':>10}"
              f"{'p95/p50':>10}{'x p50':>10}{'x mean':>10}")
        for name, (p50, mean, p95) in rows:
            ratio = (f"{base[0] / p50:>10.0f}{base[1] / mean:>10.0f}" if base else f"{'':>20}")
            print(f"{name:<16}{p50 * 1e3:>10.3f}{mean * 1e3:>10.3f}{p95 * 1e3:>10.3f}"
                  f"{p95 / p50:>10.1f}{ratio}")

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
