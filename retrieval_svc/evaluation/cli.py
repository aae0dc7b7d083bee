"""`retrieval-svc eval`: upload a labeled set (optional), run Evaluate over gRPC, print/write results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from retrieval_svc.client import ProtoClient

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

_STAGE_NAMES = {epb.EVAL_STAGE_DENSE: "dense", epb.EVAL_STAGE_BM25: "bm25",
                epb.EVAL_STAGE_FUSED: "fused", epb.EVAL_STAGE_RERANKED: "reranked"}
_NAME_STAGES = {v: k for k, v in _STAGE_NAMES.items()}


def query_set_to_pb(query_set, name: str, namespace: str, level: str) -> epb.RegisterQuerySetRequest:
    return epb.RegisterQuerySetRequest(
        name=name, namespace=namespace or query_set.namespace,
        level=epb.JUDGEMENT_LEVEL_CHUNK if level == "chunk" else epb.JUDGEMENT_LEVEL_DOCUMENT,
        queries=[epb.LabeledQuery(query_id=q.query_id, text=q.text,
                                  judgements=[epb.Judgement(target_id=t, relevance=r)
                                              for t, r in q.judgements.items()])
                 for q in query_set.queries],
    )


def response_to_result(resp: epb.EvaluateResponse) -> dict:
    """The EvaluateResponse as the result dict that report.py and --json use. Its keys are the
    result file's (report.py's docstring), not the API's field names: kept as they were before
    0.2.0 renamed the counts, so stored results and docs/eval/*/result.json still read."""
    per_query = [
        {"query_id": r.query_id, "stage": _STAGE_NAMES[r.stage],
         "metrics": {f"{m.metric}@{m.k}" if m.k else m.metric: m.value for m in r.metrics},
         "latency_seconds": r.latency_seconds, "retrieved": list(r.retrieved)}
        for r in resp.per_query
    ]
    stages = []
    for s in resp.stages:
        name = _STAGE_NAMES[s.stage]
        samples = [r["latency_seconds"] for r in per_query if r["stage"] == name]
        stages.append({
            "stage": name,
            "metrics": [{"metric": m.metric, "k": m.k, "value": m.value} for m in s.metrics],
            "latency": {"p50": s.latency.p50_seconds, "p90": s.latency.p90_seconds,
                        "p99": s.latency.p99_seconds, "mean": s.latency.mean_seconds,
                        "max": s.latency.max_seconds, "samples": samples},
            "staleness": {"p50": s.staleness.p50_seconds, "p90": s.staleness.p90_seconds,
                          "max": s.staleness.max_seconds},
            "mean_timings": {t.stage: t.seconds for t in s.mean_timings},
            "rerank_fallbacks": s.rerank_fallback_count,
        })
    return {
        "query_set": resp.query_set, "queries_evaluated": resp.evaluated_query_count,
        "queries_skipped": resp.skipped_query_count,
        "started_at": resp.started_at.ToNanoseconds() / 1e9,
        "duration_seconds": resp.duration_seconds, "stages": stages, "per_query": per_query,
    }


def run_eval(args, connect: Callable[[float | None], ProtoClient]) -> int:
    """`retrieval-svc eval`; `connect(timeout)` opens the client (target and security options).
    A failed call raises its grpc.RpcError, for the caller to report."""
    from retrieval_svc.evaluation.querysets import load_beir, load_trec
    from retrieval_svc.evaluation.report import format_table, write_report

    try:
        ks = [int(k) for k in args.ks.split(",") if k.strip()]
    except ValueError:
        print(f"retrieval-svc eval: --ks {args.ks!r} is not a comma-separated list of integers", file=sys.stderr)
        return 2
    stage_names = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stage_names if s not in _NAME_STAGES]
    if unknown:
        print(f"retrieval-svc eval: unknown stage {unknown[0]!r}; use dense,bm25,fused,reranked", file=sys.stderr)
        return 2
    timeout = getattr(args, "timeout", None)
    try:
        connection = connect(timeout)
    except ValueError as exc:
        print(f"retrieval-svc eval: {exc}", file=sys.stderr)
        return 2
    with connection as client:
        try:
            name = args.set
            if args.beir or args.trec:
                if args.beir:
                    qs = load_beir(Path(args.beir), split=args.split, name=args.name,
                                   namespace=args.namespace or "default")
                else:
                    qs = load_trec(Path(args.trec[0]), Path(args.trec[1]), name=args.name,
                                   namespace=args.namespace or "default")
                name = args.name or qs.name
                reply = client.register_query_set(query_set_to_pb(qs, name, args.namespace, args.level))
                print(f"registered query set {reply.name!r}: {reply.query_count} queries, "
                      f"{reply.judgement_count} judgements", file=sys.stderr)
            fusion = f"FUSION_METHOD_{args.fusion.upper()}" if args.fusion else None
            template = pb.SearchRequest(namespace=args.namespace, fusion=fusion)
            request = epb.EvaluateRequest(
                query_set=name, ks=ks, stages=[_NAME_STAGES[s] for s in stage_names],
                search_template=template, depth=args.depth,
                include_per_query=bool(args.per_query or args.report),
                export_metrics=args.export_metrics,
            )
            resp = client.evaluate(request, timeout=timeout)
        except (OSError, ValueError) as exc:
            print(f"retrieval-svc eval: {exc}", file=sys.stderr)
            return 2
    result = response_to_result(resp)
    if args.json_out != "-":
        print(format_table(result))
    if args.json_out:
        out = dict(result)
        if not args.per_query:
            out["per_query"] = []
        if args.json_out == "-":
            print(json.dumps(out, indent=2))
        else:
            Path(args.json_out).write_text(json.dumps(out, indent=2))
            print(f"wrote {args.json_out}", file=sys.stderr)
    if args.report:
        path = write_report(result, Path(args.report))
        print(f"wrote {path}", file=sys.stderr)
    return 0
