"""Search latency and throughput through the gRPC API, per mode, concurrency and batching setting.

    .venv/bin/python bench/latency.py [--queries 200] [--write-doc]

Corpus: the Cranfield store that bench/quality.py builds (its default config,
which follows the service defaults). The script copies its ledger into
bench/.cache/latency-store-<hash> (indexes are
rebuilt from the stored embeddings, nothing is embedded) so it never shares a
store folder with a running quality benchmark. Without that store it ingests
Cranfield itself (about 5 minutes of encoding on 2 busy cores).

Measured, client side (perf_counter around each RPC), k = 10:

1. Latency p50/p95 and throughput per mode -- dense, bm25, hybrid (the
   service's default fusion), hybrid + rerank (tiny UNTRAINED cross-encoder,
   rerank_top_n 50, the service's default 2 s re-rank budget) -- at
   concurrency 1 and 16 (client
   threads sharing one channel; a grpc channel is thread-safe and multiplexes
   calls over one HTTP/2 connection), `--queries` searches per cell (the
   Cranfield queries, cycled). Dynamic batching at the service default
   (encoder.batch_size 64, max_wait_ms 2).
2. Throughput at concurrency 16 for dense and hybrid with the encoder's dynamic
   batcher (a) on: batch 64, max_wait_ms 2 (default); (b) batch 64,
   max_wait_ms 0: no waiting, but requests that queued while the model was busy
   still share the next call (see retrieval_svc/batching.py: the worker takes
   everything queued up to max_batch_size as soon as the oldest deadline is
   due); (c) off: encoder.batch_size 1 (max_wait_ms 0), the only setting where
   every query gets its own model call. The re-ranker's batcher is unchanged.
3. BatchSearch of 64 queries vs 64 sequential Search calls (one client thread),
   per mode, median of `--repeats` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

NAMESPACE = "cranfield"
MODES = ("dense", "bm25", "hybrid", "hybrid+rerank")
RERANK_TOP_N = 50


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=common.DEFAULT_DATA_ROOT)
    p.add_argument("--queries", type=int, default=200, help="searches per (mode, concurrency) cell")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch-queries", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="rounds of BatchSearch vs sequential Search")
    p.add_argument("--title", default=None, choices=["auto", "prepend", "separate"],
                   help="which bench/quality.py Cranfield store to use: title handling (default: quality.py's)")
    p.add_argument("--window", type=int, default=None, help="... chunker window (default: the service's)")
    p.add_argument("--overlap", type=int, default=None, help="... chunker overlap (default: the service's)")
    p.add_argument("--write-doc", action="store_true", help="replace this script's section of docs/benchmarks.md")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- store ------------------------------------------------------------------------


def prepare_store(args) -> tuple[Path, str, object]:
    """(store folder, where it came from, base Settings matching how it was built)."""
    import quality

    argv = ["--dataset", "cranfield", "--data-root", str(args.data_root)]
    for flag, value in (("--title", args.title), ("--window", args.window), ("--overlap", args.overlap)):
        if value is not None:
            argv += [flag, str(value)]
    qargs = quality.parse_args(argv)
    config = quality.store_config(qargs)
    source = common.CACHE / f"store-cranfield-{common.config_hash(config)}"
    target = common.CACHE / f"latency-store-{common.config_hash(config)}"
    origin = f"copy of `{source.relative_to(common.REPO)}` ({quality.config_label(qargs)})"
    settings = quality.service_settings(target, qargs, {}, None)
    if (target / "ledger.sqlite3").exists():
        return target, origin, settings
    if not (source / "bench-ingested.json").exists():
        log("no finished Cranfield store from bench/quality.py: ingesting Cranfield (slow) ...")
        docs, _ = quality.documents(qargs)
        with common.running_service(quality.service_settings(source, qargs, {}, None)) as (_, client):
            quality.ensure_ingested(client, docs, NAMESPACE, source)
    common.copy_ledger(source, target)
    return target, origin, settings


def query_texts(args) -> list[str]:
    from retrieval_svc.evaluation.querysets import load_beir

    return [q.text for q in load_beir(args.data_root / "cranfield", namespace=NAMESPACE).queries]


# --- requests ---------------------------------------------------------------------


def request(text: str, mode: str):
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

    modes = {"dense": pb.SEARCH_MODE_DENSE, "bm25": pb.SEARCH_MODE_BM25,
             "hybrid": pb.SEARCH_MODE_HYBRID, "hybrid+rerank": pb.SEARCH_MODE_HYBRID}
    # Fusion left unset: the service's configured default.
    r = pb.SearchRequest(query=text, namespace=NAMESPACE, k=10, mode=modes[mode],
                         rerank=(mode == "hybrid+rerank"))
    if mode == "hybrid+rerank":
        r.rerank_top_n = RERANK_TOP_N
    return r


def run_cell(client, texts: list[str], mode: str, concurrency: int, count: int) -> dict:
    """`count` searches of `mode` from `concurrency` threads; client-side latencies."""
    requests = [request(texts[i % len(texts)], mode) for i in range(count)]
    stub = client.retrieval
    lock = threading.Lock()
    latencies: list[float] = []
    server_totals: list[float] = []
    encode: list[float] = []
    fallbacks = [0]

    def one(req) -> None:
        t = time.perf_counter()
        resp = stub.Search(req, timeout=120)
        elapsed = time.perf_counter() - t
        timings = {s.stage: s.seconds for s in resp.timings}
        with lock:
            latencies.append(elapsed)
            server_totals.append(timings.get("total", 0.0))
            if "encode" in timings:
                encode.append(timings["encode"])
            fallbacks[0] += resp.rerank_fallback

    started = time.perf_counter()
    if concurrency == 1:
        for req in requests:
            one(req)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, requests))
    wall = time.perf_counter() - started
    return {
        "mode": mode, "concurrency": concurrency, "n": count,
        "p50_ms": common.percentile(latencies, 50) * 1000, "p95_ms": common.percentile(latencies, 95) * 1000,
        "qps": count / wall, "server_total_p50_ms": common.percentile(server_totals, 50) * 1000,
        "encode_p50_ms": common.percentile(encode, 50) * 1000 if encode else float("nan"),
        "fallbacks": fallbacks[0],
    }


def warm_up(client, texts: list[str]) -> None:
    for mode in MODES:
        for text in texts[:3]:
            client.retrieval.Search(request(text, mode), timeout=120)


def batch_vs_sequential(client, texts: list[str], mode: str, size: int, repeats: int) -> dict:
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

    requests = [request(texts[i % len(texts)], mode) for i in range(size)]
    batch_s, seq_s, fallbacks = [], [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        resp = client.retrieval.BatchSearch(pb.BatchSearchRequest(queries=requests), timeout=300)
        batch_s.append(time.perf_counter() - t)
        fallbacks += sum(r.rerank_fallback for r in resp.results)
        t = time.perf_counter()
        for r in requests:
            client.retrieval.Search(r, timeout=120)
        seq_s.append(time.perf_counter() - t)
    return {"mode": mode, "size": size, "batch_s": statistics.median(batch_s),
            "sequential_s": statistics.median(seq_s), "batch_fallbacks": fallbacks}


# --- the run ----------------------------------------------------------------------


BATCHING = {
    "on: batch 64, max_wait 2 ms (default)": {"batch_size": 64, "max_wait_ms": 2.0},
    "batch 64, max_wait 0 ms": {"batch_size": 64, "max_wait_ms": 0.0},
    "off: batch 1, max_wait 0 ms": {"batch_size": 1, "max_wait_ms": 0.0},
}


def run(args) -> dict:
    common.machine_line()  # as of the start
    store, origin, base = prepare_store(args)
    texts = query_texts(args)
    reranker = common.tiny_cross_encoder()
    result = {"date": common.today(), "machine": common.machine_line(), "command": common.command_line(),
              "store": f"`{store.relative_to(common.REPO)}` ({origin})", "cells": [], "batching": [],
              "batch_search": [], "args": vars(args) | {"data_root": str(args.data_root)}}
    for label, encoder in BATCHING.items():
        settings = base.replace(encoder=encoder, reranker={"model": str(reranker), "device": "cpu"})
        with common.running_service(settings) as (_, client):
            if not result.get("corpus"):
                documents, chunks = common.namespace_counts(client, NAMESPACE)
                probe = client.retrieval.Search(request(texts[0], "hybrid"), timeout=120)
                fusion = {1: "rrf", 2: "minmax", 3: "zscore"}.get(probe.fusion, "?")
                result["corpus"] = {"documents": documents, "chunks": chunks, "fusion": fusion}
            warm_up(client, texts)
            if label.startswith("on:"):
                for concurrency in (1, args.concurrency):
                    for mode in MODES:
                        cell = run_cell(client, texts, mode, concurrency, args.queries)
                        result["cells"].append(cell)
                        log(f"{mode:14s} c={concurrency:<3d} p50 {cell['p50_ms']:7.1f} ms  "
                            f"p95 {cell['p95_ms']:7.1f} ms  {cell['qps']:6.1f} q/s  "
                            f"fallbacks {cell['fallbacks']}")
                for mode in MODES:
                    row = batch_vs_sequential(client, texts, mode, args.batch_queries, args.repeats)
                    result["batch_search"].append(row)
                    log(f"BatchSearch {mode}: {row['batch_s']:.2f} s vs sequential {row['sequential_s']:.2f} s")
                for cell in result["cells"]:
                    if cell["concurrency"] == args.concurrency and cell["mode"] in ("dense", "hybrid"):
                        result["batching"].append({**cell, "setting": label})
            else:
                for mode in ("dense", "hybrid"):
                    cell = run_cell(client, texts, mode, args.concurrency, args.queries)
                    result["batching"].append({**cell, "setting": label})
                    log(f"[{label}] {mode} c={args.concurrency}: {cell['qps']:.1f} q/s, "
                        f"p50 {cell['p50_ms']:.1f} ms")
    return result


def report(r: dict) -> str:
    a = r["args"]
    cells = common.table(
        ["mode", "concurrency", "searches", "p50 ms", "p95 ms", "queries/s", "server total p50 ms",
         "encode p50 ms", "rerank fallbacks"],
        [[c["mode"], c["concurrency"], c["n"], f"{c['p50_ms']:.1f}", f"{c['p95_ms']:.1f}", f"{c['qps']:.1f}",
          f"{c['server_total_p50_ms']:.1f}",
          "-" if c["encode_p50_ms"] != c["encode_p50_ms"] else f"{c['encode_p50_ms']:.1f}",
          c["fallbacks"]] for c in r["cells"]])
    batching = common.table(
        ["encoder batching", "mode", "concurrency", "queries/s", "p50 ms", "p95 ms", "encode p50 ms"],
        [[b["setting"], b["mode"], b["concurrency"], f"{b['qps']:.1f}", f"{b['p50_ms']:.1f}",
          f"{b['p95_ms']:.1f}", f"{b['encode_p50_ms']:.1f}"] for b in r["batching"]])
    batch = common.table(
        ["mode", "queries", "one BatchSearch s", "sequential Search s", "speed-up", "BatchSearch fallbacks"],
        [[b["mode"], b["size"], f"{b['batch_s']:.2f}", f"{b['sequential_s']:.2f}",
          f"{b['sequential_s'] / b['batch_s']:.2f}x", b["batch_fallbacks"]] for b in r["batch_search"]])
    corpus = r.get("corpus", {})
    return "\n".join([
        "## Search latency and throughput",
        "",
        f"- date: {r['date']}; machine: {r['machine']}",
        f"- command: `{r['command']}`",
        f"- corpus: Cranfield, {corpus.get('documents')} documents / {corpus.get('chunks')} chunks, store "
        f"{r['store']}; FAISS flat (CPU), BM25, hybrid fusion = the service default ({corpus.get('fusion')}); "
        f"k = 10; queries: the 225 Cranfield test queries, cycled",
        f"- client-side latency (one RPC, perf_counter), {a['queries']} searches per cell; concurrency = "
        f"client threads sharing one channel; re-rank = tiny UNTRAINED cross-encoder (2 layers, width 32) over "
        f"the top {RERANK_TOP_N} fused chunks with the default 2 s budget (fallbacks = searches that ran past "
        f"it and returned the fused order)",
        "",
        "Per mode, encoder dynamic batching at the default (batch 64, max_wait 2 ms):",
        "",
        cells,
        "",
        f"Encoder dynamic batching at concurrency {a['concurrency']} (reranker batcher unchanged):",
        "",
        batching,
        "",
        f"BatchSearch of {a['batch_queries']} queries vs {a['batch_queries']} sequential Search calls "
        f"(median of {a['repeats']} rounds):",
        "",
        batch,
    ])


def main(argv=None) -> None:
    args = parse_args(argv)
    result = run(args)
    text = report(result)
    print()
    print(text)
    if args.write_doc:
        common.write_doc_section("latency", text)


if __name__ == "__main__":
    main()
