"""`python -m loadtest`: one open-loop run against a running server, with an SLO verdict.

    python -m loadtest --target 127.0.0.1:50051 --queries /work/shared/data/scifact --split test \\
        --rate 50 --duration 30 [--arrival poisson --seed 1] [--mix dense=1,bm25=1,hybrid=2,batch=1] \\
        [--deadline-ms 1000] [--metrics http://127.0.0.1:9464/metrics] [--json OUT] [--plot OUT.png] \\
        [--slo-p99-ms 250 --slo-max-error-ratio 0.01 --slo-min-ndcg 0.6] [--find-capacity] \\
        [--ingest CORPUS --ingest-rate 20 [--ingest-batch 8] [--ingest-namespace NS]]

Quality under load: with a BEIR folder and --split, every --quality-sample-th OK
answer is scored (nDCG@10 at document level against qrels/SPLIT.tsv) and the
mean is reported per interval and overall.

SLO verdict: with any --slo-* option it prints PASS or FAIL with each
criterion's measured value and threshold, and exits 0 on PASS, 1 on FAIL
(2: usage error). Every request that did not end OK is an error, refusals
(RESOURCE_EXHAUSTED, UNAVAILABLE) included.

--find-capacity: steps of --duration s from --rate, doubling while a step meets
the SLO (up to --max-rate), then bisecting (--bisect-steps); prints the highest
rate that met it, with its verdict (FAIL when even --rate did not).

--ingest: beside the searches, for the same --duration window, IngestBatch calls of
--ingest-batch documents at --ingest-rate documents/s (open loop, from a thread of
its own, each with --ingest-deadline-ms; nothing retried). Reported per interval and
overall: documents offered vs committed per second, batch latency p50/p99 from the
intended send time, batch status codes (RESOURCE_EXHAUSTED: write admission refused
it). The SLO verdict stays about the searches and says that the ingest ran and how it
went. With --find-capacity every step runs the ingest at the same fixed rate (only the
search rate is stepped), continuing through the corpus; the drain probes between
steps run without it. A corpus that runs out is sent again with doc_ids ending in
"#pass2", "#pass3", ... (new documents, so the write load stays real).

Which namespace: the default, --namespace, makes the searches see the writes (index
growth, changing results), what a live re-index does to them. Sending the served
corpus again there is no write load at all (stored documents come back unchanged,
nothing is embedded; the report notes it), and a second copy of it under other ids
lowers nDCG@10. For the write load without touching what the searches find, give
--ingest-namespace a namespace of its own (e.g. loadtest-ingest): it still shares the
cores, the encoder and write admission with the searches.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from loadtest.capacity import CapacitySearch, DrainProbe, format_steps
from loadtest.ingest import ON_INVALID, Corpus, IngestLoad
from loadtest.metrics import check_local
from loadtest.queries import MODES, LabeledQueries, ModeMix, load_labeled
from loadtest.report import RunReport, format_report
from loadtest.run import LoadSpec, measure
from loadtest.schedule import ARRIVALS, make_schedule
from loadtest.slo import SLO, judge


def add_load_args(p: argparse.ArgumentParser) -> None:
    """Options shared with the overload benchmark: what each request looks like."""
    p.add_argument("--queries", help="BEIR folder (queries.jsonl), queries.jsonl, or a text file with "
                   "one query per line; replayed in order, wrapping around")
    p.add_argument("--split", help="BEIR only: keep the queries judged in qrels/SPLIT.tsv (and, in "
                   "python -m loadtest, measure nDCG@10 against them)")
    p.add_argument("--namespace", default="")
    p.add_argument("--k", type=int, default=10, help="hits per search (default 10)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--mode", choices=MODES, help="one kind for every request")
    group.add_argument("--mix", help="weighted request kinds, e.g. dense=1,bm25=1,hybrid=2,rerank=1,batch=1 "
                       "(default hybrid). dense/bm25/hybrid: one Search, re-ranking as the server is "
                       "configured; rerank: hybrid Search with rerank=true (needs a re-ranker on the "
                       "server, else FAILED_PRECONDITION, counted as an error); batch: one BatchSearch "
                       "of --batch-size hybrid queries, counted as one request")
    p.add_argument("--batch-size", type=int, default=8, help="queries per BatchSearch of the batch kind (default 8)")
    p.add_argument("--arrival", choices=sorted(ARRIVALS), default="constant")
    p.add_argument("--seed", type=int, default=0, help="Poisson arrivals' seed")
    p.add_argument("--deadline-ms", type=float, default=1000.0, help="deadline of every request (ms)")
    p.add_argument("--channels", type=int, default=1, help="gRPC connections to spread requests over")
    p.add_argument("--interval", type=float, default=1.0, help="report interval, s")
    p.add_argument("--max-lateness-ms", type=float, default=10.0,
                   help="send lateness p99 above which the generator counts as fallen behind")


def mix_of(args) -> ModeMix:
    return ModeMix.parse(args.mix or args.mode or "hybrid")


def spec_of(args, target: str, texts: list[str] | tuple[str, ...], rate: float, duration: float,
            **overrides) -> LoadSpec:
    fields = dict(target=target, texts=tuple(texts), rate=rate, duration=duration, mix=mix_of(args),
                  arrival=args.arrival, seed=args.seed, deadline_s=args.deadline_ms / 1000,
                  namespace=args.namespace, k=args.k, channels=args.channels, interval=args.interval,
                  max_lateness_s=args.max_lateness_ms / 1000, batch_size=args.batch_size)
    fields.update(overrides)
    return LoadSpec(**fields)


def write_json(path: str, data: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=os.environ.get("RETRIEVAL_SVC_TARGET"),
                   help="server HOST:PORT (default $RETRIEVAL_SVC_TARGET)")
    p.add_argument("--token", help="API key, sent as `authorization: Bearer` (default $RETRIEVAL_SVC_TOKEN; "
                   "prefer the variable: arguments show in the process list)")
    p.add_argument("--tls", action="store_true", default=None,
                   help="speak TLS (default $RETRIEVAL_SVC_TLS; implied by --ca-file)")
    p.add_argument("--ca-file", help="PEM CA bundle for the server's certificate (default $RETRIEVAL_SVC_CA_FILE, "
                   "else the system's roots)")
    p.add_argument("--rate", type=float, required=True,
                   help="offered requests/s (with --find-capacity: the first step's)")
    p.add_argument("--duration", type=float, required=True,
                   help="seconds of sending (with --find-capacity: of each step)")
    p.add_argument("--metrics", help="the server's Prometheus URL on 127.0.0.1, scraped before and after")
    p.add_argument("--json", dest="json_out", help="write the report (and verdict) as JSON here")
    p.add_argument("--plot", help="write a PNG here: per interval offered vs achieved rate, OK latency "
                   "p50/p95/p99, refusals, nDCG@10 (with --find-capacity: of the step at capacity)")
    p.add_argument("--quality-sample", type=int, default=10, metavar="N",
                   help="with qrels (BEIR folder and --split): score every Nth OK answer (default 10)")
    slo = p.add_argument_group("SLO (any of them turns the verdict on; exit 0 PASS, 1 FAIL)")
    slo.add_argument("--slo-p99-ms", type=float, help="p99 of OK answers, from the intended send time, <= this")
    slo.add_argument("--slo-max-error-ratio", type=float,
                     help="share of requests not ending OK (refusals included) <= this, e.g. 0.01")
    slo.add_argument("--slo-min-ndcg", type=float,
                     help="mean sampled nDCG@10 >= this (needs a BEIR folder and --split)")
    cap = p.add_argument_group("capacity search")
    cap.add_argument("--find-capacity", action="store_true",
                     help="step the rate up from --rate to the highest that meets the SLO")
    cap.add_argument("--max-rate", type=float, default=2000.0, help="highest rate tried (default 2000)")
    cap.add_argument("--bisect-steps", type=int, default=3, help="bisection steps after doubling (default 3)")
    cap.add_argument("--drain-timeout", type=float, default=30.0,
                     help="after a failed step, probe (5/s) at most this long, s, for 3 answers in a row "
                          "OK within the SLO before the next step (default 30)")
    ingest = p.add_argument_group("ingest beside the searches")
    ingest.add_argument("--ingest", metavar="PATH",
                        help="JSONL of documents, a BEIR folder (its corpus.jsonl) or a folder of text files, "
                             "read as `retrieval-svc ingest` reads them, sent beside the searches")
    ingest.add_argument("--ingest-rate", type=float, metavar="DOCS_PER_S",
                        help="documents/s offered by the ingest (fixed, also at every --find-capacity step)")
    ingest.add_argument("--ingest-batch", type=int, default=8, metavar="N",
                        help="documents per IngestBatch call (default 8)")
    ingest.add_argument("--ingest-namespace", metavar="NS",
                        help="namespace written (default: --namespace, so the searches see the writes; "
                             "a namespace of its own keeps their results unchanged)")
    ingest.add_argument("--ingest-deadline-ms", type=float, default=10000.0,
                        help="deadline of every IngestBatch call (default 10000)")
    ingest.add_argument("--ingest-on-invalid", choices=sorted(ON_INVALID), default="skip",
                        help="skip: the server commits a batch's valid documents and counts the rest "
                             "rejected (default); reject: such a batch fails whole (INVALID_ARGUMENT)")
    add_load_args(p)
    return p


def _slo_of(args) -> SLO:
    return SLO(p99_ms=args.slo_p99_ms, max_error_ratio=args.slo_max_error_ratio, min_ndcg=args.slo_min_ndcg)


def _check(args, queries: LabeledQueries, slo: SLO) -> None:
    if slo.min_ndcg is not None and queries.judgements is None:
        raise ValueError("--slo-min-ndcg needs qrels: --queries a BEIR folder with --split SPLIT")
    if args.find_capacity and slo.empty:
        raise ValueError("--find-capacity needs an SLO: --slo-p99-ms, --slo-max-error-ratio and/or --slo-min-ndcg")
    if args.quality_sample < 1:
        raise ValueError(f"--quality-sample must be >= 1, got {args.quality_sample}")
    if args.find_capacity and not args.drain_timeout > 0:
        raise ValueError(f"--drain-timeout must be > 0 s, got {args.drain_timeout}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.ingest is None and (args.ingest_rate is not None or args.ingest_namespace is not None):
        raise ValueError("--ingest-rate and --ingest-namespace need --ingest PATH")
    if args.ingest is not None and args.ingest_rate is None:
        raise ValueError("--ingest needs --ingest-rate DOCS_PER_S")


def _ingest_of(args, duration: float) -> IngestLoad | None:
    """The ingest of the first run (its batches checked to fit `duration`), or None."""
    if args.ingest is None:
        return None
    load = IngestLoad(Corpus(args.ingest), rate=args.ingest_rate, batch_size=args.ingest_batch,
                      namespace=args.namespace if args.ingest_namespace is None else args.ingest_namespace,
                      deadline_s=args.ingest_deadline_ms / 1000, on_invalid=args.ingest_on_invalid)
    load.offsets(duration)
    return load


def _set_credentials(args) -> None:
    """--token, --tls and --ca-file go where every channel of the run reads them (driver._channel)."""
    from retrieval_svc.client import ENV_CA_FILE, ENV_TLS, ENV_TOKEN

    for name, value in ((ENV_TOKEN, args.token), (ENV_TLS, "1" if args.tls else None),
                        (ENV_CA_FILE, args.ca_file)):
        if value is not None:
            os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.target:
            raise ValueError("--target (or $RETRIEVAL_SVC_TARGET) is required")
        if not args.queries:
            raise ValueError("--queries is required")
        if args.metrics:
            check_local(args.metrics)
        _set_credentials(args)
        slo = _slo_of(args)
        queries = load_labeled(args.queries, args.split)
        _check(args, queries, slo)
        quality = dict(judgements=queries.judgements, quality_every=args.quality_sample)
        ingest = _ingest_of(args, args.duration)
        if args.find_capacity:
            return asyncio.run(_find_capacity(args, queries, slo, quality, ingest))
        spec = spec_of(args, args.target, queries.texts, args.rate, args.duration, ingest=ingest, **quality)
        report = asyncio.run(measure(spec, args.metrics))
    except ValueError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    _write_plot(args, report)
    verdict = None if slo.empty else judge(report, slo)
    if args.json_out:
        write_json(args.json_out, {**report.to_dict(), "slo": None if verdict is None else verdict.to_dict()})
    if verdict is None:
        return 0
    print(verdict.format())
    return 0 if verdict.passed else 1


def _write_plot(args, report: RunReport, title: str = "") -> None:
    if args.plot:
        from loadtest.plot import write_plot

        print(f"wrote {write_plot(report, args.plot, title)}")


async def _find_capacity(args, queries: LabeledQueries, slo: SLO, quality: dict,
                         ingest: IngestLoad | None) -> int:
    next_index = 0
    next_document = 0

    def make_spec(rate: float, duration: float, prefix: str) -> LoadSpec:
        # Each run continues through the query list (and the ingest through its corpus)
        # where the last one stopped. The ingest keeps its fixed rate at every step; the
        # drain probes run without it.
        nonlocal next_index, next_document
        step_ingest = None
        if ingest is not None and prefix != "probe":
            step_ingest = dataclasses.replace(ingest, first_document=next_document)
            next_document += step_ingest.documents_in(duration)
        spec = spec_of(args, args.target, queries.texts, rate, duration, first_index=next_index,
                       request_prefix=prefix, ingest=step_ingest, **quality)
        next_index += len(make_schedule(spec.arrival, rate, duration, spec.seed))
        return spec

    search = CapacitySearch(make_spec, slo, step_seconds=args.duration, start_rate=args.rate,
                            max_rate=args.max_rate, bisect_steps=args.bisect_steps, metrics_url=args.metrics,
                            drain=DrainProbe(timeout_s=args.drain_timeout))
    capacity = await search.run()
    print(format_steps(search.steps))
    step = search.at(capacity) if capacity > 0 else search.steps[0]
    assert step is not None  # every returned capacity was a measured step
    print(format_report(step.report))
    _write_plot(args, step.report, title=f"capacity {capacity:g} req/s: step at {step.rate:g} req/s")
    passed = capacity > 0
    if passed:
        headline = f"capacity: {capacity:g} req/s, the highest stepped rate meeting the SLO ({slo.describe()})"
        if all(s.passed for s in search.steps):
            headline += f"; every step passed: at least this, raise --max-rate ({args.max_rate:g}) to look higher"
    else:
        headline = f"capacity: none; the first step, {step.rate:g} req/s, missed the SLO ({slo.describe()})"
    print(headline)
    print(f"SLO verdict: {'PASS' if passed else 'FAIL'} at {step.rate:g} req/s")
    for criterion in step.verdict.criteria:
        print(f"  {criterion.text()}")
    print(f"  judged on the searches; beside them: {step.verdict.ingest or 'no ingest'}")
    if args.json_out:
        write_json(args.json_out, {"capacity": capacity, "slo": slo.describe(),
                                   "verdict": "PASS" if passed else "FAIL", "at": step.verdict.to_dict(),
                                   "steps": [s.to_dict() for s in search.steps], "report": step.report.to_dict()})
    return 0 if passed else 1
