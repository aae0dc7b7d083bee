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
import sys
from pathlib import Path

from _common import cli_ingest_and_eval

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("embedded", "milvus")


def run_backend(backend: str, data: Path, cache: Path) -> dict:
    settings: dict = {}
    if backend == "milvus":
        settings["store"] = {"backend": "milvus"}
        settings["milvus"] = {"uri": "{folder}/milvus.db"}
    return {"backend": backend, **cli_ingest_and_eval(settings, data, cache / f"parity-{data.name}-{backend}")}


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
