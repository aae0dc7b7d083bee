"""`python -m loadtest`: one open-loop Search run against a running server.

    python -m loadtest --target 127.0.0.1:50051 --queries /work/shared/data/scifact --split test \\
        --rate 50 --duration 30 [--arrival poisson --seed 1] [--mix dense=1,bm25=1,hybrid=2] \\
        [--deadline-ms 1000] [--metrics http://127.0.0.1:9464/metrics] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from loadtest.metrics import check_local
from loadtest.queries import ModeMix, load_queries
from loadtest.run import LoadSpec, measure
from loadtest.schedule import ARRIVALS


def add_load_args(p: argparse.ArgumentParser) -> None:
    """Options shared with the overload benchmark: what each request looks like."""
    p.add_argument("--queries", help="BEIR folder (queries.jsonl), queries.jsonl, or a text file with "
                   "one query per line; replayed in order, wrapping around")
    p.add_argument("--split", help="BEIR only: keep the queries judged in qrels/SPLIT.tsv")
    p.add_argument("--namespace", default="")
    p.add_argument("--k", type=int, default=10, help="hits per search (default 10)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--mode", choices=["dense", "bm25", "hybrid"], help="one mode for every request")
    group.add_argument("--mix", help="weighted modes, e.g. dense=1,bm25=1,hybrid=2 (default hybrid)")
    p.add_argument("--arrival", choices=sorted(ARRIVALS), default="constant")
    p.add_argument("--seed", type=int, default=0, help="Poisson arrivals' seed")
    p.add_argument("--deadline-ms", type=float, default=1000.0, help="deadline of every request (ms)")
    p.add_argument("--channels", type=int, default=1, help="gRPC connections to spread requests over")
    p.add_argument("--interval", type=float, default=1.0, help="report interval, s")
    p.add_argument("--max-lateness-ms", type=float, default=10.0,
                   help="send lateness p99 above which the generator counts as fallen behind")


def mix_of(args) -> ModeMix:
    return ModeMix.parse(args.mix or args.mode or "hybrid")


def spec_of(args, target: str, texts: list[str], rate: float, duration: float, **overrides) -> LoadSpec:
    fields = dict(target=target, texts=tuple(texts), rate=rate, duration=duration, mix=mix_of(args),
                  arrival=args.arrival, seed=args.seed, deadline_s=args.deadline_ms / 1000,
                  namespace=args.namespace, k=args.k, channels=args.channels, interval=args.interval,
                  max_lateness_s=args.max_lateness_ms / 1000)
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
    p.add_argument("--rate", type=float, required=True, help="offered requests/s")
    p.add_argument("--duration", type=float, required=True, help="seconds of sending")
    p.add_argument("--metrics", help="the server's Prometheus URL on 127.0.0.1, scraped before and after")
    p.add_argument("--json", dest="json_out", help="write the report as JSON here")
    add_load_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.target:
            raise ValueError("--target (or $RETRIEVAL_SVC_TARGET) is required")
        if not args.queries:
            raise ValueError("--queries is required")
        if args.metrics:
            check_local(args.metrics)
        texts = load_queries(args.queries, args.split)
        spec = spec_of(args, args.target, texts, args.rate, args.duration)
        report = asyncio.run(measure(spec, args.metrics))
    except ValueError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    from loadtest.report import format_report

    print(format_report(report))
    if args.json_out:
        write_json(args.json_out, report.to_dict())
    return 0
