"""Quality parity of the Milvus store with the embedded store, through the product's CLI.

    .venv/bin/python bench/milvus_parity.py [--dataset scifact] [--json FILE]

For each backend (embedded; Milvus Lite, store.backend: milvus) with otherwise default
settings: start `retrieval-svc serve` on 127.0.0.1, `retrieval-svc ingest` the BEIR corpus,
`retrieval-svc eval --beir` its test split (stages dense, bm25, fused; ks 10 and 100),
stop the server (SIGTERM, by pid). Prints nDCG@10 and recall@100 per stage for both and the
difference; the issue's bar is hybrid (fused) nDCG@10 within 0.01.
Stores live under bench/.cache/parity-<dataset>-<backend> and are made fresh each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "retrieval_svc.cli"]
BACKENDS = ("embedded", "milvus")


def serve(settings: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with open(log, "w") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([*CLI, "serve", "--config", str(settings)], stdout=subprocess.PIPE,
                                stderr=err, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            return proc, line.split()[1].split("=", 1)[1]
    raise RuntimeError(f"the server exited with {proc.wait()}; see {log}")


def run_backend(backend: str, data: Path, cache: Path) -> dict:
    folder = cache / f"parity-{data.name}-{backend}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    settings = {"server": {"port": 0, "metrics_port": -1}, "evaluation": {"schedule_seconds": 0}}
    if backend == "embedded":
        settings["store"] = {"path": str(folder / "store")}
    else:
        settings["store"] = {"backend": "milvus"}
        settings["milvus"] = {"uri": str(folder / "milvus.db")}
    (folder / "settings.yaml").write_text(json.dumps(settings))
    proc, target = serve(folder / "settings.yaml", folder / "server.log")
    try:
        t = time.perf_counter()
        subprocess.run([*CLI, "ingest", str(data), "--target", target, "--quiet",
                        "--dead-letter", str(folder / "rejected.jsonl")], check=True)
        ingest_seconds = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([*CLI, "eval", "--beir", str(data), "--ks", "10,100", "--stages", "dense,bm25,fused",
                        "--json", str(folder / "eval.json"), "--target", target],
                       check=True, stdout=subprocess.DEVNULL)
        eval_seconds = time.perf_counter() - t
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    result = json.loads((folder / "eval.json").read_text())
    stages = {}
    for stage in result["stages"]:
        values = {f'{m["metric"]}@{m["k"]}': m["value"] for m in stage["metrics"]}
        stages[stage["stage"]] = {"ndcg@10": values["ndcg@10"], "recall@100": values["recall@100"],
                                  "mean_latency_ms": 1000 * stage["latency"]["mean"]}
    return {"backend": backend, "ingest_seconds": ingest_seconds, "eval_seconds": eval_seconds,
            "queries": result["queries_evaluated"], "stages": stages}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="scifact")
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    data = args.data_root / args.dataset
    results = [run_backend(b, data, ROOT / "bench" / ".cache") for b in BACKENDS]
    embedded, milvus = results
    print(f"{args.dataset}: {embedded['queries']} queries; ingest {embedded['ingest_seconds']:.0f}s embedded, "
          f"{milvus['ingest_seconds']:.0f}s Milvus Lite")
    print("| stage | nDCG@10 embedded | nDCG@10 Milvus | diff | recall@100 embedded | recall@100 Milvus "
          "| mean ms embedded | mean ms Milvus |")
    print("|---|---|---|---|---|---|---|---|")
    for stage in ("dense", "bm25", "fused"):
        e, m = embedded["stages"][stage], milvus["stages"][stage]
        print(f"| {stage} | {e['ndcg@10']:.3f} | {m['ndcg@10']:.3f} | {m['ndcg@10'] - e['ndcg@10']:+.3f} "
              f"| {e['recall@100']:.3f} | {m['recall@100']:.3f} | {e['mean_latency_ms']:.1f} "
              f"| {m['mean_latency_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    diff = abs(milvus["stages"]["fused"]["ndcg@10"] - embedded["stages"]["fused"]["ndcg@10"])
    print(f"hybrid nDCG@10 difference {diff:.4f}: {'within' if diff <= 0.01 else 'NOT within'} 0.01")
    return 0 if diff <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
