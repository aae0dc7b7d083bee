"""Recall and speed of the dense indexes (retrieval_svc.dense) on one data set.

For each index (faiss flat, hnsw, ivf with their default parameters, and the
torch exact index on the CPU) prints: build time (one add of every vector,
IVF training included), recall@10 against exact flat search, p50 / p95
latency of single-query searches (batch 1) and throughput of batch-64 searches.
Then prints single-query and batch-64 flat search at 1 vs 2 FAISS threads, the
measurement behind `configure_threads`' default of 1.

Data: by default N clustered-Gaussian unit vectors (random topic centres plus
noise, so neighbourhoods look like real embeddings' rather than uniform noise)
and Q queries drawn from the same clusters; or, with --embeddings, a cached
.npy matrix of real embeddings, whose first Q rows become the queries.

    .venv/bin/python bench/ann_recall.py [--n 100000] [--dim 384] [--queries 1000]
        [--embeddings cache.npy] [--kinds flat,hnsw,ivf,torch] [--seed 0]
    .venv/bin/python bench/ann_recall.py --kinds "hnsw:efSearch=128;ivf:nprobe=64"
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval_svc.dense import FaissIndex, configure_threads, configured_threads  # noqa: E402
from retrieval_svc.dense.faiss_index import DEFAULT_PARAMS  # noqa: E402

K = 10
BATCH = 64
LATENT_DIM = 48


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def clustered_data(n: int, n_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with a low intrinsic dimension, as sentence embeddings have.

    A Gaussian mixture in LATENT_DIM dimensions (n // 100 centres drawn from
    N(0, I), unit within-cluster noise, so clusters overlap), embedded in `dim`
    dimensions by a random orthonormal map, plus a little isotropic noise, then
    L2-normalised. Queries come from the same mixture. Median top-1 cosine is
    about 0.65, near what MiniLM gives for real queries; isotropic Gaussian
    clusters in 384 dimensions would instead be trivially separable and flatter
    every ANN index.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 1), LATENT_DIM)).astype(np.float32)
    embed = np.linalg.qr(rng.normal(size=(dim, LATENT_DIM)))[0].T.astype(np.float32)

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, dim), np.float32)
        for start in range(0, count, 20_000):
            m = min(20_000, count - start)
            latent = centres[rng.integers(len(centres), size=m)]
            latent += rng.standard_normal(size=(m, LATENT_DIM), dtype=np.float32)
            out[start : start + m] = latent @ embed + 0.05 * rng.standard_normal(
                size=(m, dim), dtype=np.float32
            )
        return unit_rows(out)

    return draw(n), draw(n_queries)


def cached_data(path: Path, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.load(path, mmap_mode="r")
    queries = unit_rows(np.asarray(matrix[:n_queries], np.float32))
    vectors = unit_rows(np.asarray(matrix[n_queries : n_queries + n], np.float32))
    return vectors, queries


def parse_spec(spec: str) -> tuple[str, dict[str, int]]:
    """ "ivf" or "ivf:nprobe=64,nlist=512" -> ("ivf", {"nprobe": 64, "nlist": 512})."""
    kind, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        name, _, value = item.partition("=")
        params[name] = int(value)
    return kind, params


def make(kind: str, dim: int, params: dict[str, int]):
    if kind == "torch":
        from retrieval_svc.dense import TorchExactIndex

        return TorchExactIndex(dim, device="cpu")
    return FaissIndex(dim, kind, **params)


def single_query_latencies(index, queries: np.ndarray) -> list[float]:
    timings = []
    for row in queries:
        started = time.perf_counter()
        index.search(row[None, :], K)
        timings.append(time.perf_counter() - started)
    return timings


def batch_throughput(index, queries: np.ndarray) -> float:
    started = time.perf_counter()
    for start in range(0, len(queries), BATCH):
        index.search(queries[start : start + BATCH], K)
    return len(queries) / (time.perf_counter() - started)


def recall_at_k(results, truth: list[set[int]]) -> float:
    return float(np.mean([len({c.key for c in row} & want) / len(want) for row, want in zip(results, truth)]))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--embeddings", type=Path, help=".npy (rows x dim) of real embeddings")
    parser.add_argument(
        "--kinds",
        default="flat,hnsw,ivf,torch",
        help="comma-separated; ';' between specs when a spec has parameters: 'hnsw;ivf:nprobe=64,nlist=512'",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.embeddings:
        vectors, queries = cached_data(args.embeddings, args.n, args.queries)
        source = f"{args.embeddings} ({len(vectors)} x {vectors.shape[1]})"
    else:
        vectors, queries = clustered_data(args.n, args.queries, args.dim, args.seed)
        source = (
            f"Gaussian mixture, {max(args.n // 100, 1)} clusters in {LATENT_DIM} latent dimensions, "
            f"{len(vectors)} x {vectors.shape[1]}"
        )
    keys = np.arange(len(vectors), dtype=np.int64)
    configure_threads(1)
    print(
        f"data: {source}; {len(queries)} queries; k={K}; "
        f"cpus={os.cpu_count()}; faiss threads={configured_threads()}"
    )

    truth_index = FaissIndex(vectors.shape[1], "flat")
    truth_index.add(keys, vectors)
    truth = [{c.key for c in row} for row in truth_index.search(queries, K)]

    header = (
        f"{'index':<6} {'params':<46} {'build s':>8} {'recall@10':>9} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'b64 q/s':>8}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    specs = args.kinds.split(";") if ";" in args.kinds or ":" in args.kinds else args.kinds.split(",")
    for spec in specs:
        kind, overrides = parse_spec(spec)
        index = make(kind, vectors.shape[1], overrides)
        started = time.perf_counter()
        index.add(keys, vectors)
        build = time.perf_counter() - started
        found = recall_at_k(index.search(queries, K), truth)
        latencies = sorted(single_query_latencies(index, queries))
        throughput = batch_throughput(index, queries)
        if kind == "torch":
            import torch

            params = f"float32 cpu, torch threads={torch.get_num_threads()}"
        else:
            shown = {**DEFAULT_PARAMS[kind], **overrides}
            params = (
                ", ".join(f"{k}={v}" for k, v in shown.items() if "fraction" not in k and v is not None)
                or "exact"
            )
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(
            f"{kind:<6} {params:<46} {build:>8.1f} {found:>9.3f} {ms(statistics.median(latencies)):>7} "
            f"{ms(p95):>7} {throughput:>8.0f}",
            flush=True,
        )
        del index

    print("\nfaiss flat, threads (configure_threads):")
    print(f"{'threads':>7} {'p50 ms':>7} {'p95 ms':>7} {'b64 q/s':>8}")
    sample = queries[: min(len(queries), 300)]
    for threads in (1, 2):
        configure_threads(threads)
        latencies = sorted(single_query_latencies(truth_index, sample))
        throughput = batch_throughput(truth_index, queries)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(
            f"{threads:>7} {ms(statistics.median(latencies)):>7} {ms(p95):>7} {throughput:>8.0f}", flush=True
        )
    configure_threads(1)


if __name__ == "__main__":
    main()
