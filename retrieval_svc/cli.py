"""`retrieval-svc`: serve, ingest, search, info, eval.

    retrieval-svc serve [--config FILE] [--port N] [--data DIR]
    retrieval-svc ingest PATH [--namespace NS] [--batch-size N] [--target HOST:PORT]
    retrieval-svc search "query" [--k N] [--mode hybrid|dense|bm25] [--rerank] [--json]
    retrieval-svc info
    retrieval-svc eval (--set NAME | --beir DIR [--split test]) [--ks 1,5,10] [--json OUT] [--report DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

DEFAULT_TARGET = "127.0.0.1:50051"


def _target(args) -> str:
    return args.target or os.environ.get("RETRIEVAL_SVC_TARGET") or DEFAULT_TARGET


def cmd_serve(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from retrieval_svc.app import App
    from retrieval_svc.server import Server
    from retrieval_svc.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
        overrides = {}
        if args.port is not None:
            overrides.setdefault("server", {})["port"] = args.port
        if args.metrics_port is not None:
            overrides.setdefault("server", {})["metrics_port"] = args.metrics_port
        if args.data:
            overrides.setdefault("store", {})["path"] = args.data
        if overrides:
            settings = settings.replace(**overrides)
    except SettingsError as exc:
        print(f"retrieval-svc: bad settings: {exc}", file=sys.stderr)
        return 2
    app = App(settings)
    server = Server(app).start()
    log = logging.getLogger("retrieval_svc")
    log.info("serving retrieval.v1 on %s:%d (metrics on :%d, store %s)",
             settings.server.host, server.port, server.metrics_port, settings.store.path)
    print(f"READY grpc={settings.server.host}:{server.port} metrics={server.metrics_port}", flush=True)
    stopped = threading.Event()

    def stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    server.stop()
    return 0


def cmd_ingest(args) -> int:
    import grpc
    from tqdm import tqdm

    from retrieval_svc.client import RetrievalClient
    from retrieval_svc.sources import SourceError, count_documents, read_documents

    path = Path(args.path)
    source_errors: list[SourceError] = []

    def guarded(docs):
        # A bad record ends the stream cleanly: what came before it is committed.
        try:
            yield from docs
        except SourceError as exc:
            source_errors.append(exc)

    try:
        docs = read_documents(path, args.namespace)
        total = count_documents(path)
        with RetrievalClient(_target(args), timeout=None) as client, tqdm(
            total=total, unit="doc", desc="ingest", disable=args.quiet
        ) as bar:
            summary = client.ingest(guarded(docs), batch_size=args.batch_size, on_batch=bar.update)
    except SourceError as exc:
        print(f"retrieval-svc ingest: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"retrieval-svc ingest: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if source_errors:
        committed = summary.documents_added + summary.documents_updated + summary.documents_unchanged
        print(f"retrieval-svc ingest: {source_errors[0]}; the {committed} documents before it "
              "were ingested", file=sys.stderr)
        return 2
    from google.protobuf.json_format import MessageToDict

    print(json.dumps(MessageToDict(summary, always_print_fields_with_no_presence=True), indent=2))
    return 0


def cmd_search(args) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
    from retrieval_svc.client import RetrievalClient

    fields = {"namespace": args.namespace, "k": args.k,
              "mode": pb.SearchMode.Value(f"SEARCH_MODE_{args.mode.upper()}")}
    if args.rerank is not None:
        fields["rerank"] = args.rerank
    if args.fusion:
        fields["fusion"] = pb.FusionMethod.Value(f"FUSION_METHOD_{args.fusion.upper()}")
    if args.filter:
        clauses = []
        for spec in args.filter:
            key, _, values = spec.partition("=")
            clauses.append(pb.FilterClause(key=key, any_of=values.split("|") if values else []))
        fields["filters"] = clauses
    try:
        with RetrievalClient(_target(args)) as client:
            resp = client.search(args.query, **fields)
    except grpc.RpcError as exc:
        print(f"retrieval-svc search: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(MessageToDict(resp), indent=2))
        return 0
    timings = " ".join(f"{t.stage}={t.seconds * 1000:.1f}ms" for t in resp.timings)
    print(f"request {resp.request_id}  generation {resp.index_generation}  {timings}")
    for h in resp.hits:
        lineage = []
        for name in ("dense", "bm25", "fused", "rerank"):
            if h.HasField(name):
                s = getattr(h, name)
                lineage.append(f"{name}#{s.rank}={s.score:.3f}")
        text = " ".join(h.text.split())
        print(f"{h.rank:>3}. {h.score:8.4f}  {h.doc_id} [{h.start_char}:{h.end_char}]  {' '.join(lineage)}")
        print(f"      {text[:160]}{'…' if len(text) > 160 else ''}")
    return 0


def cmd_info(args) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from retrieval_svc.client import RetrievalClient

    try:
        with RetrievalClient(_target(args)) as client:
            info = MessageToDict(client.info())
    except grpc.RpcError as exc:
        print(f"retrieval-svc info: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    info["configJson"] = json.loads(info.get("configJson", "{}"))
    print(json.dumps(info, indent=2))
    return 0


def cmd_eval(args) -> int:
    from retrieval_svc.evaluation.cli import run_eval

    return run_eval(args, _target(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrieval-svc", description="Retrieval as a service over gRPC.")
    parser.add_argument("--log-level", default=os.environ.get("RETRIEVAL_SVC_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gRPC server (embedded FAISS + SQLite store)")
    p.add_argument("--config", help="settings YAML (default: $RETRIEVAL_SVC_CONFIG)")
    p.add_argument("--port", type=int, help="gRPC port (overrides server.port)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port; -1 disables")
    p.add_argument("--data", help="store folder (overrides store.path)")
    p.set_defaults(func=cmd_serve)

    def client_args(p):
        p.add_argument("--target", help=f"server address (default $RETRIEVAL_SVC_TARGET or {DEFAULT_TARGET})")

    p = sub.add_parser("ingest", help="send a JSONL file, BEIR corpus or folder of .txt/.md to a server")
    p.add_argument("path")
    p.add_argument("--namespace", default="", help="override every document's namespace")
    p.add_argument("--batch-size", type=int, default=64, help="documents per stream message")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    client_args(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="search a running server")
    p.add_argument("query")
    p.add_argument("--namespace", default="")
    p.add_argument("--k", type=int, default=0)
    p.add_argument("--mode", choices=["hybrid", "dense", "bm25", "unspecified"], default="unspecified")
    p.add_argument("--fusion", choices=["rrf", "minmax", "zscore"])
    p.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--filter", action="append", help="KEY=V1|V2 metadata filter (repeatable)")
    p.add_argument("--json", action="store_true")
    client_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="models, namespaces, index sizes, config")
    client_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="evaluate a labeled query set through the server")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--set", help="a query set registered on the server (or configured)")
    group.add_argument("--beir", help="BEIR folder: upload its queries/qrels as a set, then evaluate")
    group.add_argument("--trec", nargs=2, metavar=("QUERIES", "QRELS"), help="TREC queries + qrels files")
    p.add_argument("--name", help="set name when uploading (default: folder name)")
    p.add_argument("--split", default="test")
    p.add_argument("--namespace", default="")
    p.add_argument("--level", choices=["document", "chunk"], default="document")
    p.add_argument("--ks", default="1,5,10", help="comma-separated cut-offs")
    p.add_argument("--stages", default="", help="comma-separated: dense,bm25,fused,reranked (default all)")
    p.add_argument("--depth", type=int, default=0, help="hits per query (default max(ks, 100))")
    p.add_argument("--fusion", choices=["rrf", "minmax", "zscore"])
    p.add_argument("--json", dest="json_out", help="write the full result as JSON here")
    p.add_argument("--report", help="write report.md and PNG plots into this folder")
    p.add_argument("--per-query", action="store_true", help="include per-query rows in the JSON")
    p.add_argument("--export-metrics", action="store_true", help="update the server's quality gauges")
    client_args(p)
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
