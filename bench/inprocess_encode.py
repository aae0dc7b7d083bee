"""Query encoding in-process, on the caller's own thread: OpenMP's wait policy before and after
retrieval_svc.openmp (issue 10).

Each variant runs in a fresh process (libgomp reads OMP_WAIT_POLICY once, when it loads), with
OMP_WAIT_POLICY removed from its environment:

- ``before``: faiss and then torch are imported before retrieval_svc, the order the package
  used to load them in (settings -> dense -> faiss, later the encoder -> torch), so both
  OpenMP runtimes start with libgomp's default spin-waiting: the package as it was.
- ``after``: retrieval_svc is imported first, as usual, and sets OMP_WAIT_POLICY=PASSIVE.
- ``spin 10k``: as ``after``, but GOMP_SPINCOUNT=10000 in the environment, which the package
  keeps (and then sets no policy): idle workers spin about 10,000 polls, not 300,000, then sleep.
- ``torch first``: the caller imported torch before retrieval_svc (the package warns; one
  OpenMP runtime, the default spin-waiting).

In each: the product's encoder (app.load_encoder) and a FAISS flat index of --vectors random
vectors (retrieval_svc.dense, dense.search_threads 1); single-query encodes on the calling
thread, each followed by a FAISS search as the pipeline does ("encode, caller's thread"), then
App's in-process pipeline over a small synthetic namespace: pipeline.search on the calling
thread, hybrid, its encode stage ("pipeline encode") and total. Rounds interleave the
variants. Prints a table; asserts nothing.

    .venv/bin/python bench/inprocess_encode.py [--rounds 3] [--queries 40] [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, percentile, table, today, write_doc_section  # noqa: E402

VARIANTS = ("before", "after", "spin 10k", "torch first")
# Environment of a variant's process, on top of the caller's without OMP_WAIT_POLICY.
VARIANT_ENVIRONMENT = {"spin 10k": {"GOMP_SPINCOUNT": "10000"}}
WORDS = ("protein cell gene expression tumour growth receptor signal pathway mouse model drug dose "
         "trial patient risk cohort blood pressure insulin glucose vaccine virus immune response").split()


def _query(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8)) + f" in study {i}"


def child(variant: str, queries: int, vectors: int) -> dict:
    import warnings

    if variant == "before":
        import faiss  # noqa: F401
        import torch  # noqa: F401
    elif variant == "torch first":
        import torch  # noqa: F401
    warnings.simplefilter("ignore", RuntimeWarning)  # the warning the last two get, said in the doc

    import numpy as np

    from _common import bench_settings
    from retrieval_svc.app import App, load_encoder
    from retrieval_svc.dense import configure_threads, make_vector_index
    from retrieval_svc.domain import Document
    from retrieval_svc.pipeline import SearchOptions

    policy = os.environ.get("OMP_WAIT_POLICY", "(unset)")
    if variant in ("before", "torch first"):
        policy = "unset when the runtime loaded"
    elif variant == "spin 10k":
        policy = "unset, GOMP_SPINCOUNT=10000"
    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(Path(folder) / "store", encoder={"device": "cpu"}, dense={"backend": "faiss"})
        encoder = load_encoder(settings)
        configure_threads(settings.dense.search_threads)
        index = make_vector_index("faiss", "flat", encoder.dimension, "cpu")
        rng = np.random.default_rng(0)
        rows = rng.standard_normal((vectors, encoder.dimension)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        index.add(np.arange(vectors, dtype=np.int64), rows)
        direct = []
        for i in range(queries + 3):
            start = time.perf_counter()
            vector = encoder.encode([_query(i)], is_query=True)
            elapsed = time.perf_counter() - start
            index.search(vector, 10)
            if i >= 3:  # warm-up
                direct.append(elapsed)

        app = App(settings, encoder=encoder)
        try:
            docs = [Document(namespace="bench", doc_id=f"d{i}", title=f"note {i}",
                             text=" ".join(_query(i * 5 + j) for j in range(6))) for i in range(40)]
            app.ingestor.ingest(docs)
            encode_stage, total = [], []
            for i in range(queries + 3):
                result = app.pipeline.search(SearchOptions(query=_query(1000 + i), namespace="bench"))
                if i >= 3:
                    encode_stage.append(result.timings["encode"])
                    total.append(result.timings["total"])
        finally:
            app.close()
    import torch

    return {"variant": variant, "policy": policy, "torch_threads": torch.get_num_threads(),
            "direct": direct, "encode_stage": encode_stage, "total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--vectors", type=int, default=20_000)
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.queries, args.vectors)))
        return

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = today()
    load_before = os.getloadavg()[0]
    samples: dict[str, dict[str, list[float]]] = {v: {"direct": [], "encode_stage": [], "total": []}
                                                  for v in VARIANTS}
    policy: dict[str, str] = {}
    rounds: dict[str, list[str]] = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds):
        for variant in VARIANTS:
            ran = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--queries", str(args.queries),
                 "--vectors", str(args.vectors)],
                capture_output=True, text=True, env={**env, **VARIANT_ENVIRONMENT.get(variant, {})},
                timeout=900)
            if ran.returncode != 0:
                sys.exit(f"{variant}: child failed\n{ran.stderr[-3000:]}")
            out = json.loads(ran.stdout.strip().splitlines()[-1])
            policy[variant] = f"{out['policy']}, torch {out['torch_threads']} threads"
            for key in samples[variant]:
                samples[variant][key].extend(out[key])
            rounds[variant].append(f"{percentile(out['direct'], 50) * 1000:.0f}/"
                                  f"{percentile(out['encode_stage'], 50) * 1000:.0f}")
            print(f"round {round_ + 1} {variant}: encode p50 {percentile(out['direct'], 50) * 1000:.1f} ms, "
                  f"pipeline encode p50 {percentile(out['encode_stage'], 50) * 1000:.1f} ms", flush=True)
    load_after = os.getloadavg()[0]

    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1000:.1f}"

    rows = [(v, policy[v], ms(s["direct"], 50), ms(s["direct"], 95), ms(s["encode_stage"], 50),
             ms(s["encode_stage"], 95), ms(s["total"], 50)) for v, s in samples.items()]
    body = table(["variant", "OMP_WAIT_POLICY", "encode p50 (ms), caller's thread", "p95",
                  "pipeline encode p50 (ms)", "p95", "pipeline total p50 (ms)"], rows)
    print(body)
    cores = os.cpu_count()
    if args.write_doc:
        write_doc_section("inprocess-encode", f"""## In-process query encoding and OpenMP's wait policy

`{command_line()}`, {started}; {cores} cores, CPU only; 1-min load average {load_before:.1f} at
the start, {load_after:.1f} at the end (the cores are shared with other test runs). {args.rounds}
interleaved rounds of {args.queries} single-query encodes per variant, each variant in a fresh
process; a FAISS flat index of {args.vectors:,} vectors searched after each encode; then App's
in-process pipeline (hybrid search, 40 small documents). See retrieval_svc/openmp.py.

{body}

p50 per round, caller's thread / pipeline encode (ms): {"; ".join(f"{v}: {', '.join(r)}" for v, r in rounds.items())}.
With the cores busy with other work, libgomp's spinning workers hold them: the caller's-thread
encode is the case issue 10 reported. The pipeline encodes on App's batcher thread; there the
rounds move with the machine's load more than with the policy. "torch first": faiss then uses
torch's OpenMP runtime, so dense.search_threads (1) also leaves torch one thread in the calling
thread, and one thread does not spin.
""")


if __name__ == "__main__":
    main()
