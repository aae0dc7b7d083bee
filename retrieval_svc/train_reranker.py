"""`retrieval-svc train-reranker`: learn re-ranking from the user's own labeled queries, and
install the result only when it beats the fused ranking on held-out queries.

The flow, as a user runs it against a running server (everything goes through the typed
client, so the candidates are exactly what the service's hybrid search returns):

1. Mine: each labeled query of the training split is searched in hybrid mode without
   re-ranking; its first `top_n` hits (the head the server would re-rank,
   search.rerank_top_n) keep their text and lineage (dense, BM25 and fused rank and score).
   A candidate's label is its document's judgement (its chunk's, for a chunk-level set).
2. Split: a seeded `heldout_fraction` of the queries is held out; the rest are the fit queries.
3. Stage "fusion" (learned fusion): a scorer over each candidate's features
   (retrieval_svc.learned_rerank.FUSION_FEATURES) is fitted on the fit queries with a
   listwise loss (ListNet top-one: softmax cross-entropy against the gains 2^rel - 1
   normalised per query; Cao et al., ICML 2007), then scored on the held-out queries.
4. Stage "cross-encoder" (`--stage cross-encoder` or `both`): a CrossEncoder, by default the
   packaged MiniLM bi-encoder's weights with a fresh one-logit head, is fine-tuned on the fit
   queries with localized contrastive estimation (one relevant candidate against
   `negatives` hard negatives, the non-relevant candidates the service itself ranked
   highest, softmax cross-entropy; Gao, Dai & Callan, ECIR 2021). Its logits on the held-out
   heads join the fusion features; that scorer is fitted and measured by k-fold
   cross-validation over the held-out queries (the cross-encoder never saw them, and no
   held-out figure comes from a scorer fitted on that query), then refitted on all of them.
5. Gate: held-out nDCG@10 of the fused order against each stage's order, through the
   evaluation metrics code (dedupe by document, trec_eval's nDCG). The best stage is
   installed only when its gain over fused exceeds `min_gain` (default 0): a versioned
   folder under the models folder and a CURRENT record naming it
   (retrieval_svc.learned_rerank); a server whose reranker.model names the models folder
   serves it after a restart, and names it in every response's model identities.

Why these defaults: on a CPU a MiniLM cross-encoder trains at a few pairs per second and
scores about ten per second, so fine-tuning it on a few hundred queries costs tens of
minutes and still ranks worse than the fused list on its own (docs/benchmarks.md, "Learned
re-ranking"). The fusion stage costs seconds and is the default; the cross-encoder stage
is there for a GPU or a longer run, and enters the installed model only as features whose
weight the held-out queries decide.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

# Before torch loads its OpenMP runtime: sets OMP_WAIT_POLICY (see the module).
import retrieval_svc.openmp  # noqa: F401
from retrieval_svc.domain import StageScore
from retrieval_svc.evaluation.metrics import dedupe_by_document, evaluate_query
from retrieval_svc.evaluation.querysets import LabeledQuery, QuerySet
from retrieval_svc.learned_rerank import (
    CROSS_ENCODER_DIR, CROSS_ENCODER_FEATURES, CURRENT, FUSION_FEATURES, MANIFEST, MANIFEST_FORMAT,
    HeadCandidate, folder_revision, head_features, score_features,
)

if TYPE_CHECKING:
    from retrieval_svc.client import RetrievalClient

METRIC = "ndcg@10"
STAGES = ("fusion", "cross-encoder", "both")
EXIT_INSTALLED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class MinedCandidate:
    """One candidate of a query's head, as the service's hybrid search returned it."""

    chunk_id: str
    doc_id: str
    text: str
    view: HeadCandidate
    relevance: int


@dataclass
class MinedQuery:
    query: LabeledQuery
    head: list[MinedCandidate]
    ranked_level: str = "document"

    def gains(self) -> np.ndarray:
        return np.array([2.0 ** max(c.relevance, 0) - 1.0 for c in self.head])

    def metric(self, order: Sequence[int]) -> float:
        """nDCG@10 of the head in `order` (indices into head), as Evaluate computes it."""
        if self.ranked_level == "chunk":
            ranked = [self.head[i].chunk_id for i in order]
        else:
            ranked = dedupe_by_document([self.head[i].doc_id for i in order])
        return evaluate_query(ranked, self.query.judgements, [METRIC])[METRIC]


def mine(client: "RetrievalClient", query_set: QuerySet, namespace: str, top_n: int,
         batch: int = 64, progress: bool = True) -> list[MinedQuery]:
    """Search every judged query (hybrid, no re-ranking, k = top_n) and keep its head."""
    from tqdm import tqdm

    queries = [q for q in query_set.queries if any(r > 0 for r in q.judgements.values())]
    mined: list[MinedQuery] = []
    with tqdm(total=len(queries), desc="mining candidates", unit="query", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(queries), batch):
            part = queries[start:start + batch]
            results = client.batch_search([q.text for q in part], namespace=namespace, k=top_n,
                                          mode="hybrid", rerank=False)
            for q, result in zip(part, results):
                head = []
                for hit in result.hits:
                    target = hit.chunk_id if query_set.level == "chunk" else hit.doc_id
                    view = HeadCandidate(hit.lineage.fused.score if hit.lineage.fused else hit.score,
                                         _stage(hit.lineage.dense), _stage(hit.lineage.bm25))
                    head.append(MinedCandidate(hit.chunk_id, hit.doc_id, hit.text, view,
                                               int(q.judgements.get(target, 0))))
                mined.append(MinedQuery(q, head, query_set.level))
            bar.update(len(part))
    return mined


def _stage(view) -> StageScore | None:
    return StageScore(view.rank, view.score) if view is not None else None


def split_queries(mined: Sequence[MinedQuery], heldout_fraction: float,
                  seed: int) -> tuple[list[MinedQuery], list[MinedQuery]]:
    """(fit, held-out): a seeded shuffle, at least one query on each side."""
    order = list(range(len(mined)))
    random.Random(seed).shuffle(order)
    held = min(len(mined) - 1, max(1, round(heldout_fraction * len(mined))))
    heldout = sorted(order[:held])
    fit = sorted(order[held:])
    return [mined[i] for i in fit], [mined[i] for i in heldout]


# --- the scorer ----------------------------------------------------------------------


def fit_scorer(features: Sequence[np.ndarray], gains: Sequence[np.ndarray], hidden: int = 0,
               steps: int = 400, l2: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """Fit the scorer (linear, or `hidden` tanh units then linear) by the ListNet top-one
    loss over each query's head; queries without a relevant candidate teach nothing and are
    left out. Returns the scorer as learned_rerank.score_features reads it."""
    import torch

    width = features[0].shape[1] if features else 0
    stacked = np.concatenate(list(features)) if features else np.zeros((0, width))
    mean = stacked.mean(axis=0) if len(stacked) else np.zeros(width)
    std = stacked.std(axis=0) if len(stacked) else np.ones(width)
    std = np.where(std > 1e-9, std, 1.0)
    useful = [(f, g) for f, g in zip(features, gains) if len(g) and g.sum() > 0]
    generator = torch.Generator().manual_seed(seed)
    if hidden:
        first = torch.nn.Linear(width, hidden)
        model: torch.nn.Module = torch.nn.Sequential(first, torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    else:
        model = torch.nn.Sequential(torch.nn.Linear(width, 1))
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    if useful:
        n = max(len(g) for _, g in useful)
        x = torch.zeros((len(useful), n, width), dtype=torch.float64)
        target = torch.zeros((len(useful), n), dtype=torch.float64)
        mask = torch.zeros((len(useful), n), dtype=torch.bool)
        for i, (f, g) in enumerate(useful):
            x[i, :len(g)] = torch.from_numpy((f - mean) / std)
            target[i, :len(g)] = torch.from_numpy(g / g.sum())
            mask[i, :len(g)] = True
        model = model.double()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05 if not hidden else 0.01)
        weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        for _ in range(steps):
            optimizer.zero_grad()
            scores = model(x).squeeze(-1).masked_fill(~mask, -1e9)
            loss = -(target * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()
            loss = loss + l2 * sum((w ** 2).sum() for w in weights)
            loss.backward()
            optimizer.step()
    layers = [{"weight": m.weight.detach().double().tolist(), "bias": m.bias.detach().double().tolist()}
              for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return {"mean": mean.tolist(), "std": std.tolist(), "layers": layers}


def scorer_orders(scorer: dict[str, Any], features: Sequence[np.ndarray]) -> list[list[int]]:
    """Each head's indices sorted by the scorer (best first; ties keep the fused order)."""
    orders = []
    for f in features:
        orders.append(_descending(score_features(scorer, f) if len(f) else np.zeros(0)))
    return orders


def mean_metric(queries: Sequence[MinedQuery], orders: Sequence[Sequence[int]] | None = None) -> float:
    """Mean nDCG@10 over `queries` in `orders` (None: the fused order)."""
    if not queries:
        return 0.0
    if orders is None:
        orders = [range(len(q.head)) for q in queries]
    return float(np.mean([q.metric(order) for q, order in zip(queries, orders)]))


def _descending(scores: np.ndarray) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def cross_validated_orders(features: Sequence[np.ndarray], gains: Sequence[np.ndarray], folds: int,
                           hidden: int, seed: int) -> list[list[int]]:
    """Out-of-fold orders: each query ranked by a scorer fitted on the other folds."""
    index = list(range(len(features)))
    random.Random(seed).shuffle(index)
    folds = max(2, min(folds, len(index)))
    orders: list[list[int]] = [[] for _ in index]
    for fold in range(folds):
        test = index[fold::folds]
        train = [i for i in index if i not in set(test)]
        scorer = fit_scorer([features[i] for i in train], [gains[i] for i in train], hidden, seed=seed)
        for i, order in zip(test, scorer_orders(scorer, [features[i] for i in test])):
            orders[i] = order
    return orders


# --- the cross-encoder ---------------------------------------------------------------


@dataclass
class TrainingCost:
    seconds: float = 0.0
    steps: int = 0
    pairs: int = 0
    scoring_seconds: float = 0.0
    scored_pairs: int = 0
    stopped_by_time: bool = False
    threads: int = field(default_factory=lambda: _torch_threads())

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds else 0.0


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def train_cross_encoder(base_model: str, queries: Sequence[MinedQuery], *, steps: int, batch_queries: int,
                        negatives: int, max_length: int, max_passage_chars: int, learning_rate: float,
                        max_seconds: float | None, device: str, seed: int, progress: bool = True):
    """Fine-tune a one-logit CrossEncoder by localized contrastive estimation; returns
    (model, TrainingCost). A base without a one-logit head (a bi-encoder such as the packaged
    MiniLM) gets a fresh, randomly initialised head."""
    import torch
    from sentence_transformers import CrossEncoder
    from tqdm import tqdm

    from retrieval_svc.models import resolve_device

    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = CrossEncoder(base_model, num_labels=1, max_length=max_length, device=resolve_device(device))
    groups = []
    for q in queries:
        relevant = [c for c in q.head if c.relevance > 0]
        hard = [c for c in q.head if c.relevance <= 0]
        if relevant and hard:
            groups.append((q.query.text, relevant, hard))
    cost = TrainingCost()
    if not groups or steps <= 0:
        return model, cost
    network = model.model
    network.train()
    head_names = {name for name, _ in network.named_parameters() if name.startswith("classifier")}
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in network.named_parameters() if n not in head_names], "lr": learning_rate},
        # A fresh head starts far from anything useful: it learns faster than the encoder.
        {"params": [p for n, p in network.named_parameters() if n in head_names], "lr": learning_rate * 30},
    ], weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    started = time.perf_counter()
    order: list[int] = []
    with tqdm(total=steps, desc="fine-tuning cross-encoder", unit="step", disable=not progress,
              file=sys.stderr) as bar:
        for _ in range(steps):
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                cost.stopped_by_time = True
                break
            pairs: list[tuple[str, str]] = []
            sizes: list[int] = []
            for _ in range(batch_queries):
                if not order:
                    order = list(range(len(groups)))
                    rng.shuffle(order)
                text, relevant, hard = groups[order.pop()]
                # The hardest negatives are those the service ranked highest: sample from the top.
                chosen = hard[: max(negatives * 2, negatives)]
                chosen = rng.sample(chosen, min(negatives, len(chosen)))
                group = [rng.choice(relevant), *chosen]
                pairs.extend((text, c.text[:max_passage_chars]) for c in group)
                sizes.append(len(group))
            inputs = model.tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True,
                                     truncation="longest_first", max_length=max_length, return_tensors="pt")
            inputs = {k: v.to(model.device) for k, v in inputs.items()}
            logits = network(**inputs).logits.view(-1)
            loss = logits.new_zeros(())
            offset = 0
            for size in sizes:
                loss = loss - torch.log_softmax(logits[offset:offset + size], dim=0)[0]
                offset += size
            loss = loss / len(sizes)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            cost.steps += 1
            cost.pairs += len(pairs)
            cost.seconds = time.perf_counter() - started
            bar.set_postfix(loss=f"{loss.item():.3f}", pairs_per_s=f"{cost.pairs_per_second:.1f}")
            bar.update(1)
    network.eval()
    return model, cost


def cross_encoder_logits(model, queries: Sequence[MinedQuery], max_passage_chars: int, batch_size: int,
                         cost: TrainingCost, progress: bool = True) -> list[np.ndarray]:
    """The model's raw logits for each query's head (as the served reranker computes them)."""
    import torch
    from tqdm import tqdm

    started = time.perf_counter()
    out = []
    with tqdm(total=sum(len(q.head) for q in queries), desc="scoring held-out heads", unit="pair",
              disable=not progress, file=sys.stderr) as bar:
        for q in queries:
            pairs = [(q.query.text, c.text[:max_passage_chars]) for c in q.head]
            if not pairs:
                out.append(np.zeros(0))
                continue
            scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False,
                                   convert_to_numpy=True, activation_fn=torch.nn.Identity())
            out.append(np.asarray(scores, dtype=np.float64).reshape(len(pairs)))
            bar.update(len(pairs))
    cost.scoring_seconds += time.perf_counter() - started
    cost.scored_pairs += sum(len(q.head) for q in queries)
    return out


# --- install ---------------------------------------------------------------------------


def _next_version(models_dir: Path) -> int:
    versions = [0]
    for p in models_dir.glob("reranker-v*-*"):
        number = p.name[len("reranker-v"):].split("-", 1)[0]
        if number.isdigit():
            versions.append(int(number))
    return max(versions) + 1


def install(models_dir: Path, manifest: dict[str, Any], cross_encoder=None) -> Path:
    """Write the model into <models_dir>/reranker-v<N>-<revision> and make it CURRENT
    (written to a temporary file and renamed, so a reader sees the old or the new name)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    version = _next_version(models_dir)
    kind = manifest["kind"]
    manifest = {**manifest, "version": version, "name": f"reranker-v{version}-{kind}"}
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models_dir))
    try:
        if cross_encoder is not None:
            cross_encoder.save_pretrained(str(staging / CROSS_ENCODER_DIR))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        folder = models_dir / f"reranker-v{version}-{folder_revision(staging)[:8]}"
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pending = models_dir / f".{CURRENT}.{uuid.uuid4().hex}"
    pending.write_text(folder.name + "\n")
    os.replace(pending, models_dir / CURRENT)
    return folder


# --- the command ---------------------------------------------------------------------


def _server_config(client: "RetrievalClient") -> dict[str, Any]:
    try:
        return dict(client.info().config or {})
    except Exception:  # Info's configuration is for admins only; the defaults then apply
        return {}


def run_training(args, client: "RetrievalClient", out: Callable[[str], None] = print) -> int:
    """The command, over a connected client; returns the exit code (0 installed or, without
    --install, would be; 1 refused by the gate; 2 an unreadable query set)."""
    from retrieval_svc.evaluation.querysets import load_beir, load_trec

    progress = not args.quiet
    try:
        if args.beir:
            query_set = load_beir(Path(args.beir), split=args.split, namespace=args.namespace or "default",
                                  level=args.level)
            source = f"{args.beir} (split {args.split})"
        else:
            query_set = load_trec(Path(args.trec[0]), Path(args.trec[1]),
                                  namespace=args.namespace or "default", level=args.level)
            source = f"{args.trec[0]} + {args.trec[1]}"
    except (OSError, ValueError) as exc:
        print(f"retrieval-svc train-reranker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = _server_config(client)
    top_n = args.top_n or int(config.get("search", {}).get("rerank_top_n", 50))
    max_chars = int(config.get("reranker", {}).get("max_passage_chars", 2000))
    fusion = config.get("search", {}).get("fusion", "the server's")
    started = time.perf_counter()
    mined = mine(client, query_set, query_set.namespace, top_n, progress=progress)
    mining_seconds = time.perf_counter() - started
    fit, heldout = split_queries(mined, args.heldout_fraction, args.seed)
    fused_heldout = mean_metric(heldout)
    results: dict[str, dict[str, Any]] = {}

    # Stage 1: learned fusion, fitted on the fit queries, measured on the held-out ones.
    t = time.perf_counter()
    fusion_scorer = fit_scorer([head_features([c.view for c in q.head]) for q in fit],
                               [q.gains() for q in fit], args.hidden, seed=args.seed)
    held_features = [head_features([c.view for c in q.head]) for q in heldout]
    results["fusion"] = {"heldout": mean_metric(heldout, scorer_orders(fusion_scorer, held_features)),
                         "seconds": time.perf_counter() - t, "scorer": fusion_scorer, "cross_encoder": None}

    cost = None
    if args.stage in ("cross-encoder", "both"):
        from retrieval_svc.models import default_model_path

        base = args.base_model or default_model_path()
        t = time.perf_counter()
        model, cost = train_cross_encoder(
            base, fit, steps=args.steps, batch_queries=args.batch_queries, negatives=args.negatives,
            max_length=args.max_length, max_passage_chars=max_chars, learning_rate=args.learning_rate,
            max_seconds=args.max_minutes * 60 if args.max_minutes else None, device=args.device,
            seed=args.seed, progress=progress)
        logits = cross_encoder_logits(model, heldout, max_chars, args.batch_size, cost, progress)
        with_ce = [head_features([c.view for c in q.head], lg) for q, lg in zip(heldout, logits)]
        gains = [q.gains() for q in heldout]
        orders = cross_validated_orders(with_ce, gains, args.folds, args.hidden, args.seed)
        # The cross-encoder alone (its logits as the order), for the record.
        alone = [_descending(lg) for lg in logits]
        results["cross-encoder"] = {
            "heldout": mean_metric(heldout, orders), "heldout_logits_alone": mean_metric(heldout, alone),
            "seconds": time.perf_counter() - t,
            "scorer": fit_scorer(with_ce, gains, args.hidden, seed=args.seed), "cross_encoder": model,
            "base_model": base,
        }
        if args.stage == "cross-encoder":
            del results["fusion"]
    best_stage = max(results, key=lambda s: results[s]["heldout"])
    best = results[best_stage]
    gain = best["heldout"] - fused_heldout
    passed = gain > args.min_gain
    summary: dict[str, Any] = {
        "query_set": source, "level": query_set.level, "namespace": query_set.namespace,
        "queries": len(mined), "fit_queries": len(fit), "heldout_queries": len(heldout), "top_n": top_n,
        "server_fusion": fusion, "mining_seconds": round(mining_seconds, 1),
        "heldout_fused": round(fused_heldout, 4),
        "stages": {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                          if k in ("heldout", "heldout_logits_alone", "seconds", "base_model")}
                   for name, r in results.items()},
        "chosen": best_stage, "gain": round(gain, 4), "min_gain": args.min_gain, "passed": passed,
    }
    if cost is not None:
        summary["cross_encoder_training"] = {
            "seconds": round(cost.seconds, 1), "steps": cost.steps, "pairs": cost.pairs,
            "pairs_per_second": round(cost.pairs_per_second, 2), "stopped_by_time": cost.stopped_by_time,
            "scoring_seconds": round(cost.scoring_seconds, 1), "scored_pairs": cost.scored_pairs,
            "torch_threads": cost.threads, "device": str(results["cross-encoder"]["cross_encoder"].device),
        }
    installed = None
    if passed and args.install:
        kind = "fusion" if best["cross_encoder"] is None else "fusion+cross-encoder"
        features = list(FUSION_FEATURES) + (list(CROSS_ENCODER_FEATURES) if best["cross_encoder"] else [])
        manifest = {
            "format": MANIFEST_FORMAT, "kind": kind, "features": features, "scorer": best["scorer"],
            "cross_encoder": best["cross_encoder"] is not None,
            "trained": {k: summary[k] for k in ("query_set", "level", "namespace", "fit_queries",
                                                "heldout_queries", "top_n", "server_fusion")}
            | {"base_model": best.get("base_model"), "seed": args.seed,
               "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "heldout": {"metric": METRIC, "fused": summary["heldout_fused"],
                        "reranked": round(best["heldout"], 4), "gain": summary["gain"], "min_gain": args.min_gain},
        }
        if cost is not None and best["cross_encoder"] is not None:
            manifest["trained"]["cross_encoder_training"] = summary["cross_encoder_training"]
        installed = install(Path(args.models_dir), manifest, best["cross_encoder"])
        summary["installed"] = str(installed)
        summary["installed_name"] = json.loads((installed / MANIFEST).read_text())["name"]
    if args.json:
        out(json.dumps(summary, indent=2))
    else:
        out(_format_summary(summary, args))
    return EXIT_INSTALLED if passed else EXIT_REFUSED


def _format_summary(s: dict[str, Any], args) -> str:
    lines = [f"training set {s['query_set']}: {s['queries']} judged queries, {s['fit_queries']} fit, "
             f"{s['heldout_queries']} held out (seed {args.seed}); heads of {s['top_n']} hybrid candidates "
             f"(fusion {s['server_fusion']}), mined in {s['mining_seconds']:.1f} s",
             "", f"held-out {METRIC}:", f"  {'fused':<23} {s['heldout_fused']:.4f}"]
    for name, r in s["stages"].items():
        label = "learned fusion" if name == "fusion" else "fusion + cross-encoder"
        lines.append(f"  {label:<23} {r['heldout']:.4f}  ({r['heldout'] - s['heldout_fused']:+.4f})")
        if "heldout_logits_alone" in r:
            lines.append(f"  {'cross-encoder alone':<23} {r['heldout_logits_alone']:.4f}  "
                         f"({r['heldout_logits_alone'] - s['heldout_fused']:+.4f})")
    if "cross_encoder_training" in s:
        c = s["cross_encoder_training"]
        lines.append(f"cross-encoder: {c['steps']} steps, {c['pairs']} pairs in {c['seconds']:.0f} s "
                     f"({c['pairs_per_second']:.2f} pairs/s on {c['device']}, {c['torch_threads']} threads"
                     f"{', stopped by --max-minutes' if c['stopped_by_time'] else ''}); scoring "
                     f"{c['scored_pairs']} held-out pairs took {c['scoring_seconds']:.0f} s")
    verdict = (f"{s['chosen']} beats fused by {s['gain']:+.4f} (> {s['min_gain']:+.4f})" if s["passed"]
               else f"no stage beats fused by more than {s['min_gain']:+.4f} (best: {s['chosen']}, "
                    f"{s['gain']:+.4f}): nothing installed")
    lines += ["", verdict]
    if s.get("installed"):
        lines += [f"installed {s['installed_name']} in {s['installed']} (CURRENT in {args.models_dir})",
                  f"serve it: reranker.model: {Path(args.models_dir).resolve()} and search.rerank: true "
                  "(or --rerank per search), then restart the server"]
    elif s["passed"]:
        lines.append("not installed: run again with --install")
    return "\n".join(lines)


__all__ = [
    "MinedCandidate", "MinedQuery", "cross_validated_orders", "fit_scorer", "install", "mean_metric",
    "mine", "run_training", "scorer_orders", "split_queries", "train_cross_encoder",
]
