"""`retrieval-svc`: serve, ingest, search, info, eval.

    retrieval-svc serve [--config FILE] [--port N] [--data DIR]
    retrieval-svc ingest PATH [--namespace NS] [--batch-size N] [--on-error skip|stop] [--dead-letter FILE]
                              [--allow-rejects] [--resume-from N] [--target HOST:PORT]
    retrieval-svc search "query" [--k N] [--mode hybrid|dense|bm25] [--rerank] [--json]
    retrieval-svc info
    retrieval-svc eval (--set NAME | --beir DIR [--split test]) [--ks 1,5,10] [--json OUT] [--report DIR]
    retrieval-svc keys new --id ID --role ROLE:NAMESPACE_GLOB [--role ...] | keys hash | keys check FILE

Client commands take --tls, --ca-file, --token, --cert-file/--key-file (mTLS), also from
RETRIEVAL_SVC_TLS, RETRIEVAL_SVC_CA_FILE, RETRIEVAL_SVC_TOKEN, RETRIEVAL_SVC_CERT_FILE and
RETRIEVAL_SVC_KEY_FILE (docs/security.md).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

DEFAULT_TARGET = "127.0.0.1:50051"


def _target(args) -> str:
    return args.target or os.environ.get("RETRIEVAL_SVC_TARGET") or DEFAULT_TARGET


def _connect(args, timeout: float | None = 60.0):
    """A RetrievalClient for the client flags, falling back to the RETRIEVAL_SVC_* environment
    variables (client.RetrievalClient.from_environment). ValueError for unreadable files."""
    from retrieval_svc.client import RetrievalClient

    return RetrievalClient.from_environment(
        _target(args), timeout, token=args.token, tls=args.tls or None, ca_file=args.ca_file,
        cert_file=args.cert_file, key_file=args.key_file, server_name=args.tls_server_name)


def cmd_serve(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from retrieval_svc.app import App
    from retrieval_svc.errors import StartupError
    from retrieval_svc.server import Server, preflight
    from retrieval_svc.settings import SettingsError, load_settings

    # Files the server creates (ledger, WAL, snapshots, query sets) are the owner's alone: 0600,
    # folders 0700. The store folder itself is also tightened when it is opened (Store).
    os.umask(0o077)
    try:
        settings = load_settings(args.config)
        overrides: dict[str, dict[str, Any]] = {}
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
    # A crash in native code (torch, FAISS, SQLite) prints every thread's Python stack.
    faulthandler.enable()
    app = server = None
    try:
        preflight(settings)  # keys, TLS files, the loopback rule: before the models load
        app = App(settings)
        server = Server(app).start()
    except StartupError as exc:
        if app is not None:
            app.close()
        print(f"retrieval-svc: cannot start: {exc}", file=sys.stderr)
        return 2
    log = logging.getLogger("retrieval_svc")
    store = (f"milvus {settings.milvus.uri} ({settings.milvus.collection_prefix})"
             if settings.store.backend == "milvus" else settings.store.path)
    log.info("serving retrieval.v1 on %s:%d (metrics on :%d, store %s)",
             settings.server.host, server.port, server.metrics_port, store)
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


def cmd_evaluate_scheduled(args) -> int:
    """One round of the configured evaluations over a shared store, for a Kubernetes CronJob:
    replicas then export the stored results, so it runs once, not once per replica."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from retrieval_svc.app import App
    from retrieval_svc.errors import StartupError
    from retrieval_svc.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"retrieval-svc: bad settings: {exc}", file=sys.stderr)
        return 2
    if settings.store.backend != "milvus":
        print("retrieval-svc: evaluate-scheduled needs store.backend: milvus (a store replicas share); "
              "an embedded server runs its own schedule (evaluation.schedule_seconds)", file=sys.stderr)
        return 2
    if not settings.evaluation.query_sets:
        print("retrieval-svc: no evaluation.query_sets are configured: nothing to evaluate", file=sys.stderr)
        return 2
    try:
        app = App(settings)
    except StartupError as exc:
        print(f"retrieval-svc: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        failed = app.evaluations.run_configured()
    finally:
        app.close()
    names = [s.name for s in settings.evaluation.query_sets]
    print(json.dumps({"evaluated": [n for n in names if n not in failed], "failed": failed}))
    return 1 if failed else 0


INGEST_DESCRIPTION = """\
Send a JSONL file, a BEIR folder (its corpus.jsonl) or a folder of .txt/.md files to a
server in batches, each committed atomically and acknowledged (IngestBatch). A record that
does not parse, or that the server rejects, goes to the dead-letter file and the job carries
on (--on-error skip); each row is a JSON object: source (file:line), record (0-based, what
--resume-from counts), doc_id, field, reason, message, rejected_by and the original record.
A document with a blank text but a title is content (indexed by its title), not an error.
The closing summary goes to stdout as JSON and to stderr as one line.
"""

INGEST_EXIT_CODES = """\
exit codes:
  0    every record committed (or some rejected, with --allow-rejects)
  1    the server kept failing (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED after
       --retries), or failed in a way retrying cannot help; the message names the first
       record not committed and the command that resumes there
  2    bad usage, an input that cannot be read, or --on-error stop met an invalid record
  3    records were rejected (see the dead-letter file); the rest are committed
  130  interrupted (the resume command is printed)
"""


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _default_dead_letter(path: Path) -> Path:
    """./<input name>.rejected-<UTC time>.jsonl: a new file per job, beside where it runs."""
    from datetime import datetime, timezone

    name = path.resolve().name if path.is_dir() else path.stem
    return Path.cwd() / f"{name}.rejected-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.jsonl"


def _resume_command(args, resume_from: int, dead_letter: Path | None) -> str:
    """The command line that reruns this job from record `resume_from`."""
    import shlex

    argv = ["retrieval-svc", "ingest", args.path]
    if args.namespace:
        argv += ["--namespace", args.namespace]
    if args.target:
        argv += ["--target", args.target]
    for flag, value, default in (("--batch-size", args.batch_size, 64), ("--on-error", args.on_error, "skip"),
                                 ("--retries", args.retries, 10),
                                 ("--retry-max-seconds", args.retry_max_seconds, 300.0),
                                 ("--timeout", args.timeout, 300.0)):
        if value != default:
            argv += [flag, str(value)]
    if dead_letter is not None:
        argv += ["--dead-letter", str(dead_letter)]
    if args.allow_rejects:
        argv.append("--allow-rejects")
    if args.quiet:
        argv.append("--quiet")
    return shlex.join([*argv, "--resume-from", str(resume_from)])


def cmd_ingest(args) -> int:
    from tqdm import tqdm

    from retrieval_svc.client import RetryPolicy
    from retrieval_svc.ingest_job import DeadLetterFile, IngestJob, Outcome
    from retrieval_svc.sources import SourceError, count_documents, read_records

    path = Path(args.path)
    try:
        total = count_documents(path)
        records = read_records(path, args.namespace, start=args.resume_from)
    except SourceError as exc:
        print(f"retrieval-svc ingest: {exc}", file=sys.stderr)
        return 2
    dead_letters = DeadLetterFile(Path(args.dead_letter) if args.dead_letter else _default_dead_letter(path))
    retry = RetryPolicy(retries=args.retries, max_seconds=args.retry_max_seconds)
    try:
        connection = _connect(args, timeout=args.timeout)
    except ValueError as exc:
        print(f"retrieval-svc ingest: {exc}", file=sys.stderr)
        return 2
    with connection as client, tqdm(
        total=max(0, (total or 0) - args.resume_from), unit="doc", desc="ingest", disable=args.quiet
    ) as bar:
        job = IngestJob(client, dead_letters, on_error=args.on_error, batch_size=args.batch_size, retry=retry,
                        timeout_seconds=args.timeout, progress=bar.update,
                        notify=lambda line: tqdm.write(f"retrieval-svc ingest: {line}", file=sys.stderr))
        try:
            report = job.run(records, start=args.resume_from)
        finally:
            dead_letters.close()

    s = report.summary
    written = dead_letters.path if dead_letters.rows or args.dead_letter else None
    # IngestSummary's counters by field name, as numbers; its per-record `rejected` rows are
    # in the dead-letter file.
    out: dict[str, object] = {f.name: int(getattr(s, f.name)) for f in s.DESCRIPTOR.fields if f.name != "rejected"}
    out.update(records=report.records, retries=report.retries,
               dead_letters=str(dead_letters.path) if dead_letters.rows else None,
               outcome=report.outcome.value,
               resume_from=None if report.outcome is Outcome.COMPLETED else report.next_record)
    print(json.dumps(out, indent=2))
    dead = f" (dead letters: {dead_letters.path})" if dead_letters.rows else ""
    print(f"{_count(report.records, 'document', 'documents')}: {report.documents_committed:,} committed "
          f"({s.documents_added:,} added, {s.documents_updated:,} updated, {s.documents_unchanged:,} unchanged), "
          f"{s.documents_rejected:,} rejected{dead}, {_count(s.chunks_embedded, 'chunk', 'chunks')} embedded, "
          f"{_count(report.retries, 'retry', 'retries')}", file=sys.stderr)

    if report.outcome is Outcome.COMPLETED:
        return 3 if s.documents_rejected and not args.allow_rejects else 0
    where = f" at {report.stopped_at} (record {report.next_record})" if report.stopped_at else ""
    print(f"retrieval-svc ingest: stopped{where}: {report.error}", file=sys.stderr)
    if report.outcome is Outcome.STOPPED_ON_INVALID:
        print("fix that record and resume with:\n  " + _resume_command(args, report.next_record, written)
              + f"\n(or leave it out: --resume-from {report.next_record + 1})", file=sys.stderr)
        return 2
    print("the records before it are committed; resume with:\n  "
          + _resume_command(args, report.next_record, written), file=sys.stderr)
    return {Outcome.SERVER_ERROR: 1, Outcome.INPUT_ERROR: 2}.get(report.outcome, 130)


def cmd_search(args) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

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
        with _connect(args) as client:
            resp = client.search(args.query, **fields)
    except ValueError as exc:
        print(f"retrieval-svc search: {exc}", file=sys.stderr)
        return 2
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

    try:
        with _connect(args) as client:
            info = MessageToDict(client.info())
    except ValueError as exc:
        print(f"retrieval-svc info: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"retrieval-svc info: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    # Shown to an admin of every namespace only (docs/security.md).
    if "configJson" in info:
        info["configJson"] = json.loads(info["configJson"])
    print(json.dumps(info, indent=2))
    return 0


def cmd_eval(args) -> int:
    from retrieval_svc.evaluation.cli import run_eval

    return run_eval(args, lambda timeout: _connect(args, timeout))


def cmd_keys(args) -> int:
    """Issue and check API keys (docs/security.md). No server is involved."""
    from retrieval_svc.auth import KeysFileError, hash_token, key_entry_yaml, load_keys, new_token

    if args.keys_command == "new":
        token = new_token()
        try:
            entry = key_entry_yaml(args.id, token, args.role)
        except KeysFileError as exc:
            print(f"retrieval-svc keys new: {exc}", file=sys.stderr)
            return 2
        print("token (shown once; the caller sends it, e.g. from RETRIEVAL_SVC_TOKEN):", file=sys.stderr)
        print(token)
        print("keys file entry (add it under `keys:`):", file=sys.stderr)
        print(entry, end="")
        return 0
    if args.keys_command == "hash":
        token = sys.stdin.readline().strip()
        if not token:
            print("retrieval-svc keys hash: give the token on standard input", file=sys.stderr)
            return 2
        print(hash_token(token))
        return 0
    try:
        ring = load_keys(args.file)
    except KeysFileError as exc:
        print(f"retrieval-svc keys check: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: {ring.count} keys, {len(ring.by_hash)} token hashes, "
          f"{len(ring.by_client_name)} client names")
    return 0


def _at_least(low, kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrieval-svc", description="Retrieval as a service over gRPC.")
    parser.add_argument("--log-level", default=os.environ.get("RETRIEVAL_SVC_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gRPC server (store.backend: embedded FAISS + SQLite, or Milvus)")
    p.add_argument("--config", help="settings YAML (default: $RETRIEVAL_SVC_CONFIG)")
    p.add_argument("--port", type=int, help="gRPC port (overrides server.port)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port; -1 disables")
    p.add_argument("--data", help="store folder (overrides store.path)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "evaluate-scheduled",
        help="evaluate the configured query sets once and store the results for every replica "
             "(store.backend: milvus; a Kubernetes CronJob). Exit 0 all evaluated, 1 some failed, 2 bad setup")
    p.add_argument("--config", help="settings YAML (default: $RETRIEVAL_SVC_CONFIG)")
    p.set_defaults(func=cmd_evaluate_scheduled)

    def client_args(p):
        p.add_argument("--target", help=f"server address (default $RETRIEVAL_SVC_TARGET or {DEFAULT_TARGET})")
        p.add_argument("--token", help="API key, sent as `authorization: Bearer` (default $RETRIEVAL_SVC_TOKEN; "
                                       "prefer the variable: arguments show in the process list)")
        p.add_argument("--tls", action="store_true", default=None,
                       help="speak TLS (default $RETRIEVAL_SVC_TLS; implied by --ca-file and --cert-file)")
        p.add_argument("--ca-file", help="PEM CA bundle to trust for the server's certificate "
                                         "(default $RETRIEVAL_SVC_CA_FILE, else the system's roots)")
        p.add_argument("--cert-file", help="PEM client certificate for mTLS (default $RETRIEVAL_SVC_CERT_FILE)")
        p.add_argument("--key-file", help="PEM client private key for mTLS (default $RETRIEVAL_SVC_KEY_FILE)")
        p.add_argument("--tls-server-name", help="name to check the server's certificate against, when the "
                                                 "target's host is not in it")

    p = sub.add_parser(
        "ingest", help="send a JSONL file, BEIR corpus or folder of .txt/.md to a server",
        description=INGEST_DESCRIPTION,
        epilog=INGEST_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("--namespace", default="", metavar="NS", help="override every document's namespace")
    p.add_argument("--batch-size", type=_at_least(1, int), default=64, metavar="N",
                   help="records per IngestBatch call (default 64)")
    p.add_argument("--on-error", choices=["skip", "stop"], default="skip",
                   help="an invalid record: dead-letter it and go on (skip, the default), or commit the "
                        "records before it and stop (stop, exit 2)")
    p.add_argument("--dead-letter", metavar="FILE",
                   help="append rejected records here (default: ./<input name>.rejected-<UTC time>.jsonl, "
                        "created at the first one)")
    p.add_argument("--allow-rejects", action="store_true", help="exit 0, not 3, when records were rejected")
    p.add_argument("--retries", type=_at_least(0, int), default=10, metavar="N",
                   help="retries of a batch on UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED with a "
                        "retry delay: exponential backoff with jitter, at least the server's delay (default 10)")
    p.add_argument("--retry-max-seconds", type=_at_least(0, float), default=300.0, metavar="SECONDS",
                   help="stop retrying a batch this long after its first failure (default 300)")
    p.add_argument("--timeout", type=_at_least(0.001, float), default=300.0, metavar="SECONDS",
                   help="deadline of one batch call, in seconds (default 300)")
    p.add_argument("--resume-from", type=_at_least(0, int), default=0, metavar="N",
                   help="skip the first N records (a stopped job prints the N to resume from)")
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

    p = sub.add_parser("keys", help="issue API keys and check keys files (docs/security.md)")
    keys = p.add_subparsers(dest="keys_command", required=True)
    k = keys.add_parser("new", help="print a new random token (once) and its keys-file entry (its hash)")
    k.add_argument("--id", required=True, help="key id, shown in audit lines (e.g. tenant-a-ingest)")
    k.add_argument("--role", action="append", required=True, metavar="ROLE:NAMESPACE_GLOB",
                   help="read, write or admin on namespaces matching the glob, e.g. read:tenant-a* (repeatable)")
    keys.add_parser("hash", help="read a token on standard input, print its sha256 for the keys file")
    k = keys.add_parser("check", help="load a keys file and report what it holds, or the first problem")
    k.add_argument("file")
    p.set_defaults(func=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
