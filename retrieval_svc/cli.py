"""`retrieval-svc`: serve, ingest, search, get, delete, namespaces, info, eval, keys.

    retrieval-svc serve [--config FILE] [--port N] [--data DIR]
    retrieval-svc ingest PATH [--namespace NS] [--batch-size N] [--on-error skip|stop] [--dead-letter FILE]
                              [--allow-rejects] [--resume-from N] [--target HOST:PORT]
    retrieval-svc search "query" [--k N] [--mode dense|bm25|hybrid] [--filter KEY=V1|V2] [--rerank] [--json]
    retrieval-svc get DOC_ID [--namespace NS] [--chunks] | get --chunk CHUNK_ID
    retrieval-svc delete DOC_ID... [--namespace NS]
    retrieval-svc namespaces | info
    retrieval-svc eval (--set NAME | --beir DIR [--split test]) [--ks 1,5,10] [--json [FILE]] [--report DIR]
    retrieval-svc keys new --id ID --role ROLE:NAMESPACE_GLOB [--role ...] | keys hash | keys check FILE
    retrieval-svc train-reranker (--beir DIR [--split train] | --trec QUERIES QRELS) [--stage fusion|both]
                                 [--models-dir DIR] [--install] [--min-gain X] [--target HOST:PORT]

Client commands take --target, --tls, --ca-file, --token, --cert-file/--key-file (mTLS), also from
RETRIEVAL_SVC_TARGET, RETRIEVAL_SVC_TLS, RETRIEVAL_SVC_CA_FILE, RETRIEVAL_SVC_TOKEN,
RETRIEVAL_SVC_CERT_FILE and RETRIEVAL_SVC_KEY_FILE (docs/security.md), and --json: the result as
JSON on stdout, snake_case keys named as the API's fields (added_document_count, document_count;
eval's are its report file's), numbers as numbers, instants as ISO 8601 UTC strings. They need
only the client's dependencies (`pip install retrieval-svc`); serve, evaluate-scheduled and keys
need the server's (`pip install "retrieval-svc[server]"`).
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import grpc

    from retrieval_svc.client import RetrievalClient, RetrievalError

DEFAULT_TARGET = "127.0.0.1:50051"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_DENIED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130

EXIT_CODES = """\
exit codes (ingest has its own: retrieval-svc ingest --help):
  0    done
  1    the server failed the call (INTERNAL, UNKNOWN, ...)
  2    bad usage or input: a flag, a file, a missing dependency, or a request the server
       refused as invalid (INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS, a limit)
  3    not found (NOT_FOUND: no such namespace, document, chunk or query set)
  4    unavailable: no server answered, it was at capacity, or the deadline passed
       (UNAVAILABLE, RESOURCE_EXHAUSTED with a retry delay, DEADLINE_EXCEEDED)
  5    not allowed (UNAUTHENTICATED, PERMISSION_DENIED)
  130  interrupted
"""

SERVER_EXTRA = "retrieval-svc[server]"
# Module -> distribution, of what the server needs beyond the client (pyproject.toml, the
# `server` extra); checked before a server command imports anything.
SERVER_MODULES = {
    "torch": "torch", "sentence_transformers": "sentence-transformers", "faiss": "faiss-cpu",
    "numpy": "numpy", "pydantic_settings": "pydantic-settings", "yaml": "pyyaml",
    "prometheus_client": "prometheus-client", "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection", "Stemmer": "PyStemmer",
}
KEYS_MODULES = {"yaml": "pyyaml", "pydantic_settings": "pydantic-settings"}


def _missing_dependencies(command: str, modules: dict[str, str]) -> int | None:
    """Exit 2 with a message naming what to install when a module of `modules` is missing."""
    missing = [dist for module, dist in modules.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    print(f"retrieval-svc {command}: needs the server's dependencies, and {', '.join(missing)} "
          f"{'is' if len(missing) == 1 else 'are'} not installed; install them with\n"
          f"  pip install \"{SERVER_EXTRA}\"\n"
          "(on a CPU machine, install torch's CPU build first: README, \"Installing on a GPU machine\" "
          "says how for CUDA). The client commands (ingest, search, get, delete, namespaces, info, eval) "
          "work without them.", file=sys.stderr)
    return EXIT_USAGE


def _target(args) -> str:
    return args.target or os.environ.get("RETRIEVAL_SVC_TARGET") or DEFAULT_TARGET


def _security(args) -> dict[str, Any]:
    return {"token": args.token, "tls": args.tls or None, "ca_file": args.ca_file, "cert_file": args.cert_file,
            "key_file": args.key_file, "server_name": args.tls_server_name}


def _connect(args, timeout: float | None = 60.0):
    """A ProtoClient (protobuf in and out) for the client flags, falling back to the
    RETRIEVAL_SVC_* environment variables. ValueError for unreadable files."""
    from retrieval_svc.client import ProtoClient

    return ProtoClient.from_environment(_target(args), timeout, **_security(args))


def _client(args) -> "RetrievalClient":
    """A RetrievalClient (typed results) for the client flags, as _connect; `--timeout`, when
    given, is the deadline of its calls."""
    from retrieval_svc.client import RetrievalClient

    timeouts = {} if getattr(args, "timeout", None) is None else {"timeout": args.timeout}
    return RetrievalClient.from_environment(_target(args), **_security(args), **timeouts)


def _rpc_failure(command: str, exc: "grpc.RpcError", target: str) -> int:
    """Print a failed call the way a person can act on it; the exit code of its class."""
    import grpc

    from retrieval_svc.client import from_rpc_error

    error: RetrievalError = from_rpc_error(exc)
    code = error.code()
    prefix = f"retrieval-svc {command}"
    if code == grpc.StatusCode.UNAVAILABLE:
        print(f"{prefix}: no server answers at {target} ({error.message}).\n"
              "Start one with `retrieval-svc serve`, or point --target HOST:PORT (or RETRIEVAL_SVC_TARGET) "
              "at a running one; a TLS server also needs --tls or --ca-file.", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"{prefix}: {code.name}: {error.message}", file=sys.stderr)
    for violation in error.field_violations:
        print(f"  {violation.field}: {violation.description}", file=sys.stderr)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        print("give an API key in RETRIEVAL_SVC_TOKEN (or --token); docs/security.md", file=sys.stderr)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        print("the call's deadline passed; give it longer with --timeout SECONDS", file=sys.stderr)
    if code == grpc.StatusCode.NOT_FOUND:
        return EXIT_NOT_FOUND
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return EXIT_UNAVAILABLE
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return EXIT_UNAVAILABLE if error.retry_after_seconds is not None else EXIT_USAGE
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return EXIT_DENIED
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE):
        return EXIT_USAGE
    return EXIT_FAILED


def _with_client(args, command: str, run: Callable[["RetrievalClient"], int]) -> int:
    """run(client) for a client command, its failures turned into a message and an exit code."""
    import grpc

    try:
        with _client(args) as client:
            return run(client)
    except (ValueError, TypeError) as exc:
        print(f"retrieval-svc {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except grpc.RpcError as exc:
        return _rpc_failure(command, exc, _target(args))


def _json_default(value: object) -> object:
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _print_json(value: object) -> None:
    """A client result (dataclasses, mappings, sequences) as JSON: the dataclasses' snake_case
    field names, ints as numbers, datetimes as ISO 8601 UTC strings."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif isinstance(value, (list, tuple)):
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
                 for v in value]
    print(json.dumps(value, indent=2, default=_json_default))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def cmd_serve(args) -> int:
    missing = _missing_dependencies("serve", SERVER_MODULES)
    if missing is not None:
        return missing
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
    missing = _missing_dependencies("evaluate-scheduled", SERVER_MODULES)
    if missing is not None:
        return missing
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


class _Progress:
    """The progress bar where tqdm is not installed (a client-only install): none; notes go
    to stderr."""

    def __init__(self, **_: object) -> None:
        pass

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    @staticmethod
    def write(line: str, file=None) -> None:
        print(line, file=file or sys.stderr)


def cmd_ingest(args) -> int:
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = _Progress  # type: ignore[assignment,misc]

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
    print(f"{_count(report.records, 'document', 'documents')}: {report.committed_document_count:,} committed "
          f"({s.added_document_count:,} added, {s.updated_document_count:,} updated, "
          f"{s.unchanged_document_count:,} unchanged), {s.rejected_document_count:,} rejected{dead}, "
          f"{_count(s.embedded_chunk_count, 'chunk', 'chunks')} embedded, "
          f"{_count(report.retries, 'retry', 'retries')}", file=sys.stderr)

    if report.outcome is Outcome.COMPLETED:
        return 3 if s.rejected_document_count and not args.allow_rejects else 0
    where = f" at {report.stopped_at} (record {report.next_record})" if report.stopped_at else ""
    print(f"retrieval-svc ingest: stopped{where}: {report.error}", file=sys.stderr)
    if report.outcome is Outcome.STOPPED_ON_INVALID:
        print("fix that record and resume with:\n  " + _resume_command(args, report.next_record, written)
              + f"\n(or leave it out: --resume-from {report.next_record + 1})", file=sys.stderr)
        return 2
    if report.error.startswith("UNAVAILABLE") and not report.records:
        print(f"no server answers at {_target(args)}? Start one with `retrieval-svc serve`, or point --target "
              "HOST:PORT (or RETRIEVAL_SVC_TARGET) at a running one.", file=sys.stderr)
    print("the records before it are committed; resume with:\n  "
          + _resume_command(args, report.next_record, written), file=sys.stderr)
    return {Outcome.SERVER_ERROR: 1, Outcome.INPUT_ERROR: 2}.get(report.outcome, 130)


def _filters(specs: list[str] | None) -> dict[str, list[str]]:
    """--filter KEY=V1|V2 flags as a filters mapping; ValueError for a malformed one."""
    filters: dict[str, list[str]] = {}
    for spec in specs or ():
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--filter {spec!r}: give KEY=VALUE, or KEY=V1|V2 for any of several values")
        if key in filters:
            raise ValueError(f"--filter {key} is given twice; give its values once: {key}=V1|V2")
        filters[key] = values.split("|")
    return filters


def cmd_search(args) -> int:
    from retrieval_svc.client import SearchOptions

    options: SearchOptions = {"namespace": args.namespace}
    if args.k is not None:
        options["k"] = args.k
    if args.mode:
        options["mode"] = args.mode
    if args.fusion:
        options["fusion"] = args.fusion
    if args.rerank is not None:
        options["rerank"] = args.rerank
    try:
        if args.filter:
            options["filters"] = _filters(args.filter)
    except ValueError as exc:
        print(f"retrieval-svc search: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def run(client: RetrievalClient) -> int:
        result = client.search(args.query, **options)
        if args.json:
            _print_json(result)
            return EXIT_OK
        timings = " ".join(f"{stage}={seconds * 1000:.1f}ms" for stage, seconds in result.timings.items())
        print(f"request {result.request_id}  generation {result.index_generation}  {timings}")
        if not result.hits:
            print("no hits")
        for h in result.hits:
            lineage = [f"{name}#{stage.rank}={stage.score:.3f}"
                       for name in ("dense", "bm25", "fused", "rerank")
                       if (stage := getattr(h.lineage, name)) is not None]
            text = " ".join(h.text.split())
            print(f"{h.rank:>3}. {h.score:8.4f}  {h.doc_id} [{h.start_char}:{h.end_char}]  {' '.join(lineage)}")
            print(f"      {text[:160]}{'…' if len(text) > 160 else ''}")
        return EXIT_OK

    return _with_client(args, "search", run)


def _when(value) -> str:
    return "-" if value is None else _json_default(value)  # type: ignore[return-value]


def cmd_get(args) -> int:
    if bool(args.doc_id) == bool(args.chunk):
        print("retrieval-svc get: give a DOC_ID, or --chunk CHUNK_ID", file=sys.stderr)
        return EXIT_USAGE

    def run(client: RetrievalClient) -> int:
        if args.chunk:
            chunk = client.get_chunk(args.chunk)
            if args.json:
                _print_json(chunk)
                return EXIT_OK
            print(f"chunk {chunk.chunk_id}: {chunk.namespace}/{chunk.doc_id} #{chunk.ordinal} "
                  f"[{chunk.start_char}:{chunk.end_char}], {_count(chunk.token_count, 'token', 'tokens')}")
            print(f"source updated {_when(chunk.source_updated_at)}, first indexed {_when(chunk.first_indexed_at)}, "
                  f"last verified {_when(chunk.last_verified_at)}")
            print(chunk.text)
            return EXIT_OK
        doc = client.get_document(args.doc_id, namespace=args.namespace, include_chunks=args.chunks)
        if args.json:
            _print_json(doc)
            return EXIT_OK
        title = f"  {doc.title!r}" if doc.title else ""
        print(f"{doc.namespace}/{doc.doc_id}{title}: {_count(doc.chunk_count, 'chunk', 'chunks')}, "
              f"content sha256 {doc.content_hash[:16]}")
        if doc.source_uri:
            print(f"source {doc.source_uri}")
        print(f"source updated {_when(doc.source_updated_at)}, first indexed {_when(doc.first_indexed_at)}, "
              f"last verified {_when(doc.last_verified_at)}")
        if doc.metadata:
            print("metadata " + " ".join(f"{k}={v}" for k, v in sorted(doc.metadata.items())))
        print()
        print(doc.text)
        for chunk in doc.chunks:
            text = " ".join(chunk.text.split())
            print(f"  #{chunk.ordinal} [{chunk.start_char}:{chunk.end_char}] {chunk.chunk_id}  "
                  f"{text[:100]}{'…' if len(text) > 100 else ''}")
        return EXIT_OK

    return _with_client(args, "get", run)


def cmd_delete(args) -> int:
    if bool(args.doc_ids) == args.all:
        print("retrieval-svc delete: name documents (DOC_ID ...) or --all with --namespace, not both",
              file=sys.stderr)
        return EXIT_USAGE
    if args.all and not args.namespace:
        print('retrieval-svc delete --all: name the namespace (--namespace NS; "default" empties the '
              "default one)", file=sys.stderr)
        return EXIT_USAGE

    def run(client: RetrievalClient) -> int:
        if args.all:
            summary = client.delete_namespace(args.namespace)
            if args.json:
                _print_json(summary)
            else:
                print(f"namespace {args.namespace} deleted: "
                      f"{_count(summary.deleted_document_count, 'document', 'documents')} "
                      f"({_count(summary.removed_chunk_count, 'chunk', 'chunks')}); "
                      f"index generation {summary.index_generation}")
            return EXIT_OK
        summary = client.delete(args.doc_ids, namespace=args.namespace)
        if args.json:
            _print_json(summary)
            return EXIT_OK
        missing = f"; not found: {', '.join(summary.not_found)}" if summary.not_found else ""
        print(f"{_count(summary.deleted_document_count, 'document', 'documents')} deleted "
              f"({_count(summary.removed_chunk_count, 'chunk', 'chunks')} removed) from {args.namespace or 'default'}"
              f"{missing}; index generation {summary.index_generation}")
        return EXIT_OK

    return _with_client(args, "delete", run)


def cmd_namespaces(args) -> int:
    def run(client: RetrievalClient) -> int:
        namespaces = client.list_namespaces(args.prefix)
        if args.json:
            _print_json(list(namespaces))
            return EXIT_OK
        width = max([len("namespace"), *(len(n.name) for n in namespaces)])
        print(f"{'namespace':<{width}}  {'documents':>10}  {'chunks':>10}  oldest chunk")
        for n in namespaces:
            print(f"{n.name:<{width}}  {n.document_count:>10,}  {n.chunk_count:>10,}  "
                  f"{_age(n.oldest_chunk_age_seconds) if n.chunk_count else '-'}")
        return EXIT_OK

    return _with_client(args, "namespaces", run)


def cmd_info(args) -> int:
    def run(client: RetrievalClient) -> int:
        info = client.info()
        if args.json:
            _print_json(info)
            return EXIT_OK
        print(f"retrieval-svc {info.version} at {_target(args)}: index generation {info.index_generation}, "
              f"dense index {info.dense_index}")
        for m in info.models:
            dimension = f", {m.dimension} dimensions" if m.dimension else ""
            print(f"{m.role}: {m.name} (weights {m.revision}{dimension}) on {m.device}")
        documents = sum(n.document_count for n in info.namespaces)
        chunks = sum(n.chunk_count for n in info.namespaces)
        print(f"{_count(len(info.namespaces), 'namespace', 'namespaces')}, "
              f"{_count(documents, 'document', 'documents')}, {_count(chunks, 'chunk', 'chunks')} "
              "(retrieval-svc namespaces); limits and configuration: --json")
        return EXIT_OK

    return _with_client(args, "info", run)


def cmd_eval(args) -> int:
    import grpc

    from retrieval_svc.evaluation.cli import run_eval

    if args.report:
        missing = _missing_dependencies("eval --report", {"matplotlib": "matplotlib"})
        if missing is not None:
            return missing
    try:
        return run_eval(args, lambda timeout: _connect(args, timeout))
    except grpc.RpcError as exc:
        return _rpc_failure("eval", exc, _target(args))


def cmd_train_reranker(args) -> int:
    """Learn re-ranking from a labeled set through a running server; install it only when it
    beats the fused ranking on held-out queries (retrieval_svc.train_reranker)."""
    missing = _missing_dependencies("train-reranker", SERVER_MODULES)
    if missing is not None:
        return missing
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from retrieval_svc.train_reranker import run_training

    if not 0 < args.heldout_fraction < 1:
        print(f"retrieval-svc train-reranker: --heldout-fraction must be in (0, 1), got {args.heldout_fraction}",
              file=sys.stderr)
        return EXIT_USAGE
    return _with_client(args, "train-reranker", lambda client: run_training(args, client))


def cmd_keys(args) -> int:
    """Issue and check API keys (docs/security.md). No server is involved."""
    missing = _missing_dependencies("keys", KEYS_MODULES)
    if missing is not None:
        return missing
    from retrieval_svc.auth import KeysFileError, hash_token, key_entry_yaml, load_keys, new_token

    if args.keys_command == "new":
        token = new_token()
        try:
            entry = key_entry_yaml(args.id, token, args.role)
        except KeysFileError as exc:
            print(f"retrieval-svc keys new: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({"id": args.id, "token": token, "keys_file_entry": entry}, indent=2))
            return 0
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
        print(json.dumps({"sha256": hash_token(token)}) if args.json else hash_token(token))
        return 0
    try:
        ring = load_keys(args.file)
    except KeysFileError as exc:
        print(f"retrieval-svc keys check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"file": args.file, "key_count": ring.count, "token_hash_count": len(ring.by_hash),
                          "client_name_count": len(ring.by_client_name)}, indent=2))
        return 0
    print(f"{args.file}: {ring.count} keys, {len(ring.by_hash)} token hashes, "
          f"{len(ring.by_client_name)} client names")
    return 0


TRAIN_RERANKER_DESCRIPTION = """\
Learn re-ranking from a labeled query set through a running server, and install it only when
it beats the server's fused ranking on held-out queries. Candidates are the server's own hybrid
results (its re-rank head); a seeded --heldout-fraction of the queries is held out. Stage
"fusion" fits a scorer over each candidate's dense, BM25 and fused scores and ranks; "both"
also fine-tunes a cross-encoder on hard negatives from those candidates and adds its logit to
the features. The best stage is installed when its held-out nDCG@10 gain over fused exceeds
--min-gain: a versioned folder reranker-v<N>-<revision> under --models-dir and a CURRENT file
naming it. Serve it with reranker.model set to the models folder (and search.rerank: true),
after a restart; responses then name it (reranker-v<N>-<kind>) in their model identities.
"""


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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="retrieval-svc", description="Retrieval as a service over gRPC.", epilog=EXIT_CODES, formatter_class=raw)
    log_level = {"type": str.upper, "choices": LOG_LEVELS, "metavar": "LEVEL",
                 "help": f"log level: {', '.join(LOG_LEVELS)} (default $RETRIEVAL_SVC_LOG_LEVEL or INFO)"}
    parser.add_argument("--log-level", default=os.environ.get("RETRIEVAL_SVC_LOG_LEVEL", "INFO").upper(),
                        **log_level)  # type: ignore[arg-type]
    # Every command takes --log-level after its name too; SUPPRESS keeps the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, **log_level)  # type: ignore[arg-type]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("epilog", EXIT_CODES)
        return sub.add_parser(name, help=help, description=kwargs.pop("description", help[:1].upper() + help[1:]),
                              parents=[common], formatter_class=raw, **kwargs)

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true",
                       help="the result as JSON on stdout (snake_case keys, numbers as numbers, ISO 8601 UTC times)")

    def client_args(p: argparse.ArgumentParser, timeout: bool = True) -> None:
        p.add_argument("--target", metavar="HOST:PORT",
                       help=f"server address (default $RETRIEVAL_SVC_TARGET or {DEFAULT_TARGET})")
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
        if timeout:
            p.add_argument("--timeout", type=_at_least(0.001, float), metavar="SECONDS",
                           help="deadline of the call (default 30; eval 600)")

    p = command("serve", "run the gRPC server (store.backend: embedded FAISS + SQLite, or Milvus)",
                epilog="exit codes: 0 stopped by SIGTERM or SIGINT; 2 bad settings, a missing server "
                       "dependency, or the server cannot start")
    p.add_argument("--config", help="settings YAML (default: $RETRIEVAL_SVC_CONFIG)")
    p.add_argument("--port", type=int, help="gRPC port (overrides server.port)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port; -1 disables")
    p.add_argument("--data", help="store folder (overrides store.path)")
    p.set_defaults(func=cmd_serve)

    p = command("evaluate-scheduled",
                "evaluate the configured query sets once and store the results for every replica "
                "(store.backend: milvus; a Kubernetes CronJob)",
                epilog="exit codes: 0 all evaluated; 1 some failed; 2 bad setup or a missing server dependency")
    p.add_argument("--config", help="settings YAML (default: $RETRIEVAL_SVC_CONFIG)")
    p.set_defaults(func=cmd_evaluate_scheduled)

    p = command("ingest", "send a JSONL file, BEIR corpus or folder of .txt/.md to a server",
                description=INGEST_DESCRIPTION, epilog=INGEST_EXIT_CODES)
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
    p.add_argument("--json", action="store_true",
                   help="the summary as JSON on stdout: always so for ingest, whose one-line summary goes to "
                        "stderr")
    client_args(p, timeout=False)
    p.set_defaults(func=cmd_ingest)

    p = command("search", "search a running server")
    p.add_argument("query")
    p.add_argument("--namespace", default="", metavar="NS", help="namespace to search (default: default)")
    p.add_argument("--k", type=_at_least(1, int), metavar="N", help="number of hits (default: the server's)")
    p.add_argument("--mode", choices=["dense", "bm25", "hybrid"],
                   help="retrievers to use (default: the server's search.default_mode)")
    p.add_argument("--fusion", choices=["rrf", "minmax", "zscore"],
                   help="how a hybrid search fuses (default: the server's search.fusion)")
    p.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                   help="re-rank with the cross-encoder (default: the server's search.rerank)")
    p.add_argument("--filter", action="append", metavar="KEY=V1|V2",
                   help="keep chunks whose document's metadata KEY is one of the values (repeatable, AND-ed); "
                        "KEY doc_id or source_uri filters on those")
    json_flag(p)
    client_args(p)
    p.set_defaults(func=cmd_search)

    p = command("get", "show a document (and its chunks) or one chunk")
    p.add_argument("doc_id", nargs="?", metavar="DOC_ID", help="the document to show")
    p.add_argument("--namespace", default="", metavar="NS", help="the document's namespace (default: default)")
    p.add_argument("--chunks", action="store_true", help="list the document's chunks too")
    p.add_argument("--chunk", metavar="CHUNK_ID", help="show this chunk instead of a document")
    json_flag(p)
    client_args(p)
    p.set_defaults(func=cmd_get)

    p = command("delete", "delete documents and their chunks from every index, or a whole namespace")
    p.add_argument("doc_ids", nargs="*", metavar="DOC_ID")
    p.add_argument("--namespace", default="", metavar="NS", help="the documents' namespace (default: default)")
    p.add_argument("--all", action="store_true",
                   help="delete the namespace --namespace names, with every document in it")
    json_flag(p)
    client_args(p)
    p.set_defaults(func=cmd_delete)

    p = command("namespaces", "list the namespaces (the key's own, with API keys) and their counts")
    p.add_argument("--prefix", default="", help="only namespaces whose name starts with this")
    json_flag(p)
    client_args(p)
    p.set_defaults(func=cmd_namespaces)

    p = command("info", "models, index generation, counts; with --json also limits and configuration")
    json_flag(p)
    client_args(p)
    p.set_defaults(func=cmd_info)

    p = command("eval", "evaluate a labeled query set through the server")
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
    p.add_argument("--json", dest="json_out", nargs="?", const="-", metavar="FILE",
                   help="the full result as JSON: on stdout (instead of the table), or written to FILE")
    p.add_argument("--report", help="write report.md and PNG plots into this folder (needs matplotlib)")
    p.add_argument("--per-query", action="store_true", help="include per-query rows in the JSON")
    p.add_argument("--export-metrics", action="store_true", help="update the server's quality gauges")
    client_args(p)
    p.set_defaults(func=cmd_eval, timeout=600.0)

    p = command("train-reranker", "learn re-ranking from a labeled set; install it only if it beats fused",
                description=TRAIN_RERANKER_DESCRIPTION,
                epilog="exit codes: 0 installed (without --install: would be); 1 no stage beats the fused "
                       "ranking on the held-out queries by more than --min-gain: nothing installed; 2 bad "
                       "usage or input; 3, 4, 5 as the client commands")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--beir", help="BEIR folder (queries.jsonl, qrels/<split>.tsv)")
    group.add_argument("--trec", nargs=2, metavar=("QUERIES", "QRELS"), help="TREC queries + qrels files")
    p.add_argument("--split", default="train", help="BEIR split to learn from (default train)")
    p.add_argument("--namespace", default="", help="namespace the judgements refer to (default: default)")
    p.add_argument("--level", choices=["document", "chunk"], default="document")
    p.add_argument("--stage", choices=["fusion", "cross-encoder", "both"], default="fusion",
                   help="fusion: learned fusion of the per-retriever scores and ranks (seconds); both: also "
                        "fine-tune a cross-encoder whose logits join the features (slow on a CPU); "
                        "cross-encoder: that stage only (default fusion)")
    p.add_argument("--base-model", help="cross-encoder to start from: a CrossEncoder or bi-encoder folder or "
                                        "hub name (default: the packaged MiniLM with a fresh one-logit head)")
    p.add_argument("--steps", type=_at_least(0, int), default=1000, help="cross-encoder steps (default 1000)")
    p.add_argument("--max-minutes", type=_at_least(0, float), default=0,
                   help="stop the cross-encoder's training after this long (default: no limit)")
    p.add_argument("--batch-queries", type=_at_least(1, int), default=2,
                   help="queries per step, each with one relevant and --negatives candidates (default 2)")
    p.add_argument("--negatives", type=_at_least(1, int), default=7,
                   help="hard negatives per query: non-relevant candidates the service ranked highest (default 7)")
    p.add_argument("--max-length", type=_at_least(8, int), default=256, help="tokens per pair (default 256)")
    p.add_argument("--batch-size", type=_at_least(1, int), default=32, help="pairs per scoring batch (default 32)")
    p.add_argument("--learning-rate", type=_at_least(0, float), default=3e-5)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--hidden", type=_at_least(0, int), default=0,
                   help="tanh units of the scorer's hidden layer; 0 = linear (default 0)")
    p.add_argument("--top-n", type=_at_least(1, int), default=0,
                   help="candidates per query: the head the server re-ranks (default: its search.rerank_top_n "
                        "when Info shows the configuration, else 50)")
    p.add_argument("--heldout-fraction", type=float, default=0.2, help="queries held out for the gate (default 0.2)")
    p.add_argument("--folds", type=_at_least(2, int), default=5,
                   help="cross-validation folds over the held-out queries for the cross-encoder stage (default 5)")
    p.add_argument("--min-gain", type=float, default=0.0,
                   help="install only when held-out nDCG@10 beats fused by more than this (default 0)")
    p.add_argument("--models-dir", default="models/rerankers",
                   help="where versions are installed, with CURRENT naming the one in force "
                        "(default models/rerankers)")
    p.add_argument("--install", action="store_true", help="install the model when it passes the gate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    json_flag(p)
    client_args(p)
    p.set_defaults(func=cmd_train_reranker, timeout=120.0)

    p = command("keys", "issue API keys and check keys files (docs/security.md)",
                epilog="exit codes: 0 done; 2 bad input, or a missing server dependency")
    keys = p.add_subparsers(dest="keys_command", required=True)
    k = keys.add_parser("new", parents=[common],
                        help="print a new random token (once) and its keys-file entry (its hash)")
    k.add_argument("--id", required=True, help="key id, shown in audit lines (e.g. tenant-a-ingest)")
    k.add_argument("--role", action="append", required=True, metavar="ROLE:NAMESPACE_GLOB",
                   help="read, write or admin on namespaces matching the glob, e.g. read:tenant-a* (repeatable)")
    json_flag(k)
    k = keys.add_parser("hash", parents=[common],
                        help="read a token on standard input, print its sha256 for the keys file")
    json_flag(k)
    k = keys.add_parser("check", parents=[common],
                        help="load a keys file and report what it holds, or the first problem")
    k.add_argument("file")
    json_flag(k)
    p.set_defaults(func=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("retrieval-svc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
