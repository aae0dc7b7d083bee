"""Encoder backends: torch against ONNX Runtime (fp32, int8) on SciFact, in one interleaved run.

Each backend is the product's: app.load_encoder with encoder.backend torch or onnx (exported
on the first run into bench/.cache/onnx-cache, like a server's first start), inside its own
in-process App over its own store (bench/.cache/encoder-backends/<backend>/), default settings
otherwise (the chunker's defaults, title on every chunk). Three measurements:

1. Query encoding: the SciFact test queries one at a time on the calling thread
   (encoder.encode([query])), the backends taking turns query by query; p50 and p95.
2. Ingest: the whole corpus (5,183 documents) through each App's ingestor in batches of
   --batch documents, the backends taking turns batch by batch; passages/s is chunks embedded
   over the time inside the encoder (App embeds a batch's chunks in one call, which the encoder
   cuts into encoder.batch_size pieces), documents/s over the whole ingest call (chunking,
   BM25, the ledger commit included).
3. Dense nDCG@10 (and recall@100) over the 300 test queries by the evaluation service
   (app.evaluations, stage dense, document level), as `retrieval-svc eval` computes it.

A store that already holds the corpus is reused: nothing is ingested and the ingest figures of
the run that filled it are printed again (bench/.cache/encoder-backends/ingest.json).
--fresh drops the stores first. Prints a table; --write-doc puts it in docs/benchmarks.md.

    .venv/bin/python bench/encoder_backends.py [--backends torch,onnx,onnx-int8] [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Before torch and faiss load OpenMP (bench/inprocess_encode.py): the product's own order.
import retrieval_svc.openmp  # noqa: E402, F401
from _common import (  # noqa: E402
    CACHE, DEFAULT_DATA_ROOT, bench_settings, command_line, machine_line, percentile, read_corpus, table,
    today, write_doc_section,
)

BACKENDS = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx", "onnx_precision": "fp32"},
    "onnx-int8": {"backend": "onnx", "onnx_precision": "int8"},
}
NAMESPACE = "scifact"
FOLDER = CACHE / "encoder-backends"


class TimedEncoder:
    """Delegates to an encoder; adds up the time and the texts of passage encodes."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.identity, self.dimension = inner.identity, inner.dimension
        self.passages = 0
        self.seconds = 0.0

    def encode(self, texts, *, is_query: bool):
        if is_query:
            return self.inner.encode(texts, is_query=True)
        start = time.perf_counter()
        vectors = self.inner.encode(texts, is_query=False)
        self.seconds += time.perf_counter() - start
        self.passages += len(texts)
        return vectors


def settings_for(backend: str, device: str, corpus: str):
    return bench_settings(
        FOLDER / corpus / backend,
        encoder={"device": device, "onnx_cache_dir": str(CACHE / "onnx-cache"), **BACKENDS[backend]},
        dense={"backend": "faiss"}, search={"default_mode": "dense"},
    )


def documents(data: Path, judged: set[str], limit: int):
    """The corpus as Documents; with `limit`, the documents judged for the test queries first,
    then the others in corpus order, `limit` in all (a smaller corpus that still holds every
    relevant document: its nDCG is higher than the whole corpus's, the backends compare alike)."""
    from retrieval_svc.domain import Document

    docs = [Document(namespace=NAMESPACE, doc_id=d.doc_id, title=d.title, text=d.text)
            for d in read_corpus(data) if d.text.strip() or d.title.strip()]
    if limit:
        docs = [d for d in docs if d.doc_id in judged] + [d for d in docs if d.doc_id not in judged]
        docs = docs[:limit]
    return docs


def namespace_documents(app) -> int:
    return sum(s.documents for s in app.store.stats() if s.namespace == NAMESPACE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT / "scifact")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batch", type=int, default=64, help="documents per ingest call")
    parser.add_argument("--queries", type=int, default=0, help="query-encode samples (0: every test query)")
    parser.add_argument("--docs", type=int, default=0, help="N documents: the judged ones, then others "
                        "(a bounded run; its stores are kept apart); 0: the whole corpus")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fresh", action="store_true", help="drop the stores first")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        sys.exit(f"unknown backend(s) {unknown}; known: {', '.join(BACKENDS)}")

    from retrieval_svc.app import App, load_encoder
    from retrieval_svc.evaluation.querysets import load_beir

    machine, started = machine_line(), today()
    corpus = f"docs-{args.docs}" if args.docs else "all"
    timing_file = FOLDER / corpus / "ingest.json"
    if args.fresh:
        for backend in backends:
            shutil.rmtree(FOLDER / corpus / backend, ignore_errors=True)
        timing_file.unlink(missing_ok=True)
    (FOLDER / corpus).mkdir(parents=True, exist_ok=True)
    print("loading the encoders (an onnx backend exports on its first run) ...", flush=True)
    apps, encoders, load_seconds = {}, {}, {}
    for backend in backends:
        settings = settings_for(backend, args.device, corpus)
        start = time.perf_counter()
        encoders[backend] = TimedEncoder(load_encoder(settings))
        load_seconds[backend] = time.perf_counter() - start
        apps[backend] = App(settings, encoder=encoders[backend])
        print(f"  {backend}: {encoders[backend].identity} ({load_seconds[backend]:.1f} s)", flush=True)
    try:
        query_set = load_beir(args.data, "test", name="scifact-test", namespace=NAMESPACE)
        texts = [q.text for q in query_set.queries]
        if args.queries:
            texts = (texts * (args.queries // len(texts) + 1))[:args.queries]
        latency: dict[str, list[float]] = {b: [] for b in backends}
        for warm in texts[:5]:
            for backend in backends:
                encoders[backend].encode([warm], is_query=True)
        for text in texts:
            for backend in backends:
                start = time.perf_counter()
                encoders[backend].encode([text], is_query=True)
                latency[backend].append(time.perf_counter() - start)
        print("query encoding done", flush=True)

        judged = {doc_id for q in query_set.queries for doc_id, grade in q.judgements.items() if grade > 0}
        docs = documents(args.data, judged, args.docs)
        # Resumable: a backend's stored documents are skipped, its timing file kept per batch.
        timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
        todo = [b for b in backends if namespace_documents(apps[b]) < len(docs)]
        for backend in todo:
            timing.setdefault(backend, {"passages": 0, "encode_seconds": 0.0, "ingest_seconds": 0.0,
                                        "documents": 0, "date": started})
        for start_index in range(0, len(docs), args.batch):
            batch = docs[start_index:start_index + args.batch]
            for backend in todo:
                stored = apps[backend].store.chunk_ids(NAMESPACE, [d.doc_id for d in batch])
                fresh = [d for d in batch if not stored.get(d.doc_id)]
                if not fresh:
                    continue
                encoder = encoders[backend]
                before = (encoder.passages, encoder.seconds)
                start = time.perf_counter()
                apps[backend].ingestor.ingest(fresh)
                t = timing[backend]
                t["ingest_seconds"] += time.perf_counter() - start
                t["documents"] += len(fresh)
                t["passages"] += encoder.passages - before[0]
                t["encode_seconds"] += encoder.seconds - before[1]
            if todo:
                timing_file.write_text(json.dumps(timing, indent=2))
                print(f"  ingested {start_index + len(batch)}/{len(docs)} documents", flush=True)

        quality = {}
        for backend in backends:
            app = apps[backend]
            app.evaluations.register(query_set)
            result = app.evaluations.evaluate("scifact-test", ks=(10, 100), stages=["dense"], depth=100)
            quality[backend] = {f"{m['metric']}@{m['k']}": m["value"] for m in result["stages"][0]["metrics"]}
            print(f"  {backend}: nDCG@10 {quality[backend]['ndcg@10']:.4f}", flush=True)
    finally:
        for app in apps.values():
            app.close()

    rows = []
    base = quality.get("torch", {}).get("ndcg@10")
    for backend in backends:
        t = timing.get(backend, {})
        ndcg = quality[backend]["ndcg@10"]
        rows.append([
            backend, encoders[backend].identity.revision, f"{percentile(latency[backend], 50) * 1000:.1f}",
            f"{percentile(latency[backend], 95) * 1000:.1f}",
            f"{t['passages'] / t['encode_seconds']:.1f}" if t.get("encode_seconds") else "-",
            f"{t['documents'] / t['ingest_seconds']:.2f}" if t.get("ingest_seconds") else "-",
            f"{ndcg:.4f}", "" if base is None else f"{ndcg - base:+.4f}", f"{quality[backend]['recall@100']:.3f}",
            f"{load_seconds[backend]:.0f}",
        ])
    body = table(["backend", "revision (store binding)", "query encode p50 (ms)", "p95 (ms)",
                  "ingest passages/s (encoder)", "ingest docs/s (whole call)", "dense nDCG@10",
                  "vs torch", "recall@100", "load s"], rows)
    print(body)
    if args.write_doc:
        dates = sorted({timing[b].get("date", "?") for b in backends if b in timing})
        c = settings_for(backends[0], args.device, corpus).chunker
        chunking = f"{c.name} chunker, {c.window_tokens}/{c.overlap_tokens} {getattr(c, 'unit', '')} tokens"
        which = ("the whole corpus" if not args.docs else
                 "every document judged for a test query, then others in corpus order: a smaller corpus, so "
                 "nDCG is higher than on the whole one; the backends compare alike")
        write_doc_section("encoder-backends", f"""## Encoder backends: torch and ONNX Runtime

`{command_line()}`, {started}; {machine}. SciFact (BEIR) test: {len(texts)} single-query encodes
per backend on the calling thread, the backends taking turns; {len(docs):,} documents ({which}) ingested
through each backend's in-process App in batches of {args.batch}, taking turns (ingest figures
from the run of {', '.join(dates)}); dense nDCG@10 by the evaluation service (document level,
default settings: {chunking}, title on every chunk, FAISS flat). ONNX exports are made by
retrieval_svc/onnx_encoder.py on the first start ("load s" includes it where the cache was
empty); int8 is onnxruntime's dynamic quantisation, per channel. The revision column is what a
store binds to: torch and onnx (fp32) share it, int8 has its own.

{body}
""")


if __name__ == "__main__":
    main()
