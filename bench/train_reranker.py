"""Learned re-ranking, measured the way a user runs it (docs/benchmarks.md, "Learned re-ranking").

Split mode (SciFact: train and test splits), all through the product's CLI:
1. serve the store (`retrieval-svc serve`, default settings; ingest the corpus first with
   `retrieval-svc ingest` when the store is empty),
2. `retrieval-svc train-reranker --beir DATA --split train --install` (extra flags after `--`),
3. restart the server with reranker.model = the models folder,
4. `retrieval-svc eval --beir DATA --split test --stages fused,reranked`: nDCG@10 by stage
   through Evaluate, and the model identity a search names.

Cross-validation mode (`--folds K`, for Cranfield, which has one split): the test queries'
heads are mined once through the typed client, then each fold's learned-fusion scorer is
fitted on the other folds (retrieval_svc.train_reranker.fit_scorer) and scores its own
queries; the table gives out-of-fold nDCG@10 against fused on the same queries.

    .venv/bin/python bench/train_reranker.py --dataset scifact --store /tmp/rr-scifact/data
    .venv/bin/python bench/train_reranker.py --dataset scifact --store DIR -- --stage both --max-minutes 20
    .venv/bin/python bench/train_reranker.py --dataset cranfield --store DIR --folds 5
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CLI, DEFAULT_DATA_ROOT, machine_line, serve_cli, table, today  # noqa: E402


def _settings(folder: Path, store: Path, **sections) -> Path:
    settings = {"server": {"port": 0, "metrics_port": -1}, "evaluation": {"schedule_seconds": 0},
                "store": {"path": str(store)}, **sections}
    path = folder / f"settings-{len(list(folder.glob('settings-*')))}.yaml"
    path.write_text(json.dumps(settings))
    return path


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)  # by its pid
    proc.wait(timeout=120)


def _ensure_ingested(target: str, data: Path, folder: Path) -> float:
    listed = subprocess.run([*CLI, "namespaces", "--json", "--target", target], check=True,
                            capture_output=True, text=True).stdout
    if any(n["document_count"] for n in json.loads(listed)):
        return 0.0
    t = time.perf_counter()
    subprocess.run([*CLI, "ingest", str(data), "--target", target, "--quiet", "--allow-rejects",
                    "--dead-letter", str(folder / "rejected.jsonl")], check=True)
    return time.perf_counter() - t


def _ingest_note(seconds: float) -> str:
    return f"; ingest {seconds:.0f} s" if seconds else ""


def split_mode(args, data: Path, folder: Path) -> str:
    models = folder / "models"
    proc, target = serve_cli(_settings(folder, args.store), folder / "server-train.log")
    try:
        ingest_seconds = _ensure_ingested(target, data, folder)
        t = time.perf_counter()
        run = subprocess.run([*CLI, "train-reranker", "--beir", str(data), "--split", args.train_split,
                              "--install", "--models-dir", str(models), "--json", "--target", target,
                              "--timeout", "600", *args.train_args], stdout=subprocess.PIPE, text=True)
        train_wall = time.perf_counter() - t
    finally:
        _stop(proc)
    summary = json.loads(run.stdout)
    (folder / "train-summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    rows = []
    if run.returncode == 0:
        proc, target = serve_cli(_settings(folder, args.store, reranker={"model": str(models)}),
                                 folder / "server-eval.log")
        try:
            t = time.perf_counter()
            subprocess.run([*CLI, "eval", "--beir", str(data), "--split", args.test_split, "--ks", "10,100",
                            "--stages", "fused,reranked", "--json", str(folder / "eval.json"),
                            "--target", target, "--timeout", "3600"], check=True, stdout=subprocess.DEVNULL)
            eval_seconds = time.perf_counter() - t
            hit = subprocess.run([*CLI, "search", "test", "--rerank", "--k", "1", "--json", "--target", target],
                                 check=True, capture_output=True, text=True).stdout
        finally:
            _stop(proc)
        result = json.loads((folder / "eval.json").read_text())
        for stage in result["stages"]:
            values = {f'{m["metric"]}@{m["k"]}': m["value"] for m in stage["metrics"]}
            rows.append([stage["stage"], values["ndcg@10"], values["recall@10"], values["recall@100"],
                         1000 * stage["latency"]["p50"]])
        models_named = [f'{m["name"]}@{m["revision"]}' for m in json.loads(hit)["models"] if m["role"] == "reranker"]
    s = summary
    lines = [f"- measured {today()}; machine: {machine_line()}",
             f"- training: `retrieval-svc train-reranker --beir {data} --split {args.train_split} --install "
             f"{' '.join(args.train_args)}` against the served store; exit {run.returncode}; wall "
             f"{train_wall:.0f} s (mining {s['mining_seconds']} s){_ingest_note(ingest_seconds)}",
             f"- held-out gate ({s['heldout_queries']} of {s['queries']} {args.train_split} queries, seed 0, "
             f"heads of {s['top_n']}): fused {s['heldout_fused']:.4f}, "
             + ", ".join(f"{name} {r['heldout']:.4f}" for name, r in s["stages"].items())
             + f"; chosen {s['chosen']} ({s['gain']:+.4f}); installed: {s.get('installed_name', 'no')}"]
    if "cross_encoder_training" in s:
        c = s["cross_encoder_training"]
        lines.append(f"- cross-encoder: {c['steps']} steps, {c['pairs']} pairs in {c['seconds']:.0f} s "
                     f"({c['pairs_per_second']:.2f} pairs/s, {c['torch_threads']} threads, {c['device']}); "
                     f"scoring {c['scored_pairs']} held-out pairs {c['scoring_seconds']:.0f} s; alone on the "
                     f"held-out heads {s['stages']['cross-encoder'].get('heldout_logits_alone', float('nan')):.4f}")
    if rows:
        fused = next(r[1] for r in rows if r[0] == "fused")
        reranked = next(r[1] for r in rows if r[0] == "reranked")
        lines += [f"- {args.test_split} split through Evaluate ({eval_seconds:.0f} s), reranker "
                  f"{', '.join(models_named)}: reranked - fused nDCG@10 = {reranked - fused:+.4f}", "",
                  table(["stage", "nDCG@10", "recall@10", "recall@100", "p50 ms/query"], rows)]
    return "\n".join(lines)


def cv_mode(args, data: Path, folder: Path) -> str:
    import numpy as np

    from retrieval_svc.client import RetrievalClient
    from retrieval_svc.evaluation.querysets import load_beir
    from retrieval_svc.learned_rerank import head_features
    from retrieval_svc.train_reranker import fit_scorer, mean_metric, mine, scorer_orders

    query_set = load_beir(data, split=args.test_split)
    proc, target = serve_cli(_settings(folder, args.store), folder / "server-cv.log")
    try:
        ingest_seconds = _ensure_ingested(target, data, folder)
        with RetrievalClient(target, timeout=600) as client:
            t = time.perf_counter()
            mined = mine(client, query_set, query_set.namespace, args.top_n)
            mining_seconds = time.perf_counter() - t
    finally:
        _stop(proc)
    index = list(range(len(mined)))
    random.Random(0).shuffle(index)
    rows, fused_all, learned_all = [], [], []
    t = time.perf_counter()
    for fold in range(args.folds):
        test = index[fold::args.folds]
        train = [i for i in index if i not in set(test)]
        scorer = fit_scorer([head_features([c.view for c in mined[i].head]) for i in train],
                            [mined[i].gains() for i in train])
        queries = [mined[i] for i in test]
        orders = scorer_orders(scorer, [head_features([c.view for c in q.head]) for q in queries])
        fused, learned = mean_metric(queries), mean_metric(queries, orders)
        fused_all += [q.metric(range(len(q.head))) for q in queries]
        learned_all += [q.metric(o) for q, o in zip(queries, orders)]
        rows.append([f"fold {fold + 1}", len(test), fused, learned, learned - fused])
    fit_seconds = time.perf_counter() - t
    rows.append(["all (out of fold)", len(mined), float(np.mean(fused_all)), float(np.mean(learned_all)),
                 float(np.mean(learned_all) - np.mean(fused_all))])
    better = sum(b > a for a, b in zip(fused_all, learned_all))
    worse = sum(b < a for a, b in zip(fused_all, learned_all))
    return "\n".join([
        f"- measured {today()}; machine: {machine_line()}",
        f"- {args.folds}-fold cross-validation over the {len(mined)} judged {args.test_split} queries (seed 0): "
        f"heads of {args.top_n} hybrid candidates mined through the typed client in {mining_seconds:.0f} s"
        f"{_ingest_note(ingest_seconds)}; "
        f"learned fusion (linear, ListNet) fitted {args.folds} times in {fit_seconds:.1f} s",
        f"- per query: learned better on {better}, worse on {worse}, equal on {len(mined) - better - worse}", "",
        table(["fold", "queries", "fused nDCG@10", "learned fusion nDCG@10", "gain"], rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["scifact", "cranfield"], required=True)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--store", type=Path, required=True, help="store folder (ingested into when empty)")
    parser.add_argument("--work", type=Path, help="folder for settings, logs, models (default /tmp/rr-<dataset>-work)")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--folds", type=int, default=0, help="cross-validation over the test split instead")
    parser.add_argument("--top-n", type=int, default=50, help="head size in cross-validation mode")
    parser.add_argument("train_args", nargs="*", help="after --: more train-reranker flags")
    args = parser.parse_args()
    machine_line()
    data = args.data_root / args.dataset
    folder = args.work or Path(f"/tmp/rr-{args.dataset}-work")
    folder.mkdir(parents=True, exist_ok=True)
    body = cv_mode(args, data, folder) if args.folds else split_mode(args, data, folder)
    print(body)
    (folder / "section.md").write_text(body + "\n")


if __name__ == "__main__":
    main()
