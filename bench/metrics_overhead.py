"""Overhead of Prometheus metrics collection on search latency, through gRPC.

The same server answers every query twice, once with its real Telemetry and once
with a no-op stand-in (every counter/histogram call does nothing), alternating
query by query so that machine load drifts hit both sides alike. Prints p50/p95
and mean latency for each side and the ratio.

    .venv/bin/python bench/metrics_overhead.py [--queries 400] [--mode hybrid] [--write-doc]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bench_settings, command_line, machine_line, percentile, running_service, table, today,
    write_doc_section,
)

WORDS = ("river mountain signal garden copper window lantern harbor velvet engine pepper marble "
         "thunder ribbon castle meadow silver orbit canvas puzzle glacier comet violin harvest "
         "anchor beacon cedar delta ember falcon granite horizon island jasmine kettle lagoon").split()


class _Noop:
    """Accepts every prometheus_client call a Telemetry metric gets, and does nothing."""

    def labels(self, *args, **kwargs):
        return self

    def inc(self, *args, **kwargs):
        pass

    def observe(self, *args, **kwargs):
        pass

    def set(self, *args, **kwargs):
        pass


class NullTelemetry:
    def __getattr__(self, name):
        return _Noop()

    def observe_stages(self, *args):
        pass

    def observe_served(self, *args):
        pass

    def observe_ingest(self, *args):
        pass

    def set_quality(self, *args):
        pass


def synthetic_docs(n: int, seed: int = 0):
    from retrieval_svc.domain import Document

    rng = random.Random(seed)
    now = time.time()
    for i in range(n):
        text = " ".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
            for _ in range(rng.randint(4, 10)))
        yield Document("", f"doc-{i}", text, metadata={"group": str(i % 5)},
                       source_updated_at=now - rng.uniform(0, 90 * 86400))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="hybrid")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()

    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb

    mode = pb.SearchMode.Value(f"SEARCH_MODE_{args.mode.upper()}")
    rng = random.Random(1)
    queries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "store", server={"metrics_port": 0})
        with running_service(settings) as (server, client):
            client.ingest(synthetic_docs(args.docs), batch_size=64)
            app = server.app
            real, null = app.telemetry, NullTelemetry()
            for q in queries[:20]:  # warm-up
                client.search(q, k=10, mode=mode)
            timings = {"on": [], "off": []}
            for i, q in enumerate(queries):
                order = ("on", "off") if i % 2 == 0 else ("off", "on")
                for side in order:
                    telemetry = real if side == "on" else null
                    app.telemetry = app.pipeline.telemetry = telemetry
                    started = time.perf_counter()
                    client.search(q, k=10, mode=mode)
                    timings[side].append(time.perf_counter() - started)
            app.telemetry = app.pipeline.telemetry = real

    rows = []
    for side in ("on", "off"):
        values = timings[side]
        rows.append([f"metrics {side}", len(values), percentile(values, 50) * 1000,
                     percentile(values, 95) * 1000, statistics.fmean(values) * 1000])
    ratio_p50 = percentile(timings["on"], 50) / percentile(timings["off"], 50)
    ratio_mean = statistics.fmean(timings["on"]) / statistics.fmean(timings["off"])
    out = table(["side", "queries", "p50 ms", "p95 ms", "mean ms"], rows)
    summary = f"ratio on/off: p50 {ratio_p50:.3f}, mean {ratio_mean:.3f}"
    print(out)
    print(summary)
    if args.write_doc:
        write_doc_section("metrics-overhead", "\n".join([
            "## Metrics collection overhead",
            "",
            f"{today()}, {machine_line()}. `{command_line()}`. {args.docs} synthetic documents, "
            f"{args.queries} {args.mode} searches through gRPC (k=10), each run once with the real "
            "Telemetry and once with a no-op stand-in, alternating query by query.",
            "",
            out,
            "",
            summary + ".",
        ]))


if __name__ == "__main__":
    main()
