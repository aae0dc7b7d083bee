"""Per-call cost of the typed client (RetrievalClient) over the raw generated stub, on Search.

One server holds a synthetic corpus. Each query goes through the generated
RetrievalServiceStub on a plain channel (a protobuf request in, the SearchResponse out),
through RetrievalClient.search (mode as a string, a SearchResult of frozen dataclasses out,
the retry policy on its channel) and through a RetrievalClient with max_attempts=1 (no retry
policy, to tell what that costs), in an order that rotates query by query. BM25 mode keeps
the server's share small, so the client's share shows; hybrid is what applications mostly
send. A last table times the client's own work alone (building the request and converting a
k=10 response), without the network.

    .venv/bin/python bench/client_overhead.py [--queries 400] [--docs 300] [--write-doc]
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
    bench_settings, command_line, machine_line, percentile, running_service, table, today, write_doc_section,
)
from metrics_overhead import WORDS, synthetic_docs  # noqa: E402

SIDES = ("stub", "typed, no retries", "typed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    machine_line()

    import grpc

    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
    from retrieval_svc.client import RetrievalClient
    from retrieval_svc.client._convert import search_request, search_result_from_pb

    rng = random.Random(1)
    queries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(args.queries)]
    modes = {"bm25": pb.SEARCH_MODE_BM25, "hybrid": pb.SEARCH_MODE_HYBRID}
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as tmp, running_service(bench_settings(Path(tmp) / "store")) as (server, proto):
        proto.ingest(list(synthetic_docs(args.docs)), batch_size=64)
        target = f"127.0.0.1:{server.port}"
        channel = grpc.insecure_channel(target)
        stub = rgrpc.RetrievalServiceStub(channel)
        typed = RetrievalClient(target, timeout=600)
        typed_once = RetrievalClient(target, timeout=600, max_attempts=1)
        try:
            for mode, mode_pb in modes.items():
                calls = {
                    "stub": lambda q, m=mode_pb: stub.Search(pb.SearchRequest(query=q, k=10, mode=m), timeout=600),
                    "typed, no retries": lambda q, m=mode: typed_once.search(q, k=10, mode=m),
                    "typed": lambda q, m=mode: typed.search(q, k=10, mode=m),
                }
                for q in queries[:30]:  # warm-up: connections, caches
                    for side in SIDES:
                        calls[side](q)
                timings: dict[str, list[float]] = {side: [] for side in SIDES}
                for i, q in enumerate(queries):
                    for side in SIDES[i % 3:] + SIDES[:i % 3]:
                        started = time.perf_counter()
                        calls[side](q)
                        timings[side].append(time.perf_counter() - started)
                base_p50, base_mean = percentile(timings["stub"], 50), statistics.fmean(timings["stub"])
                for side in SIDES:
                    values = timings[side]
                    p50, mean = percentile(values, 50), statistics.fmean(values)
                    rows.append([mode, side, len(values), p50 * 1000, percentile(values, 95) * 1000, mean * 1000,
                                 p50 / base_p50, mean / base_mean])
                ratios[mode] = percentile(timings["typed"], 50) / base_p50

            response = stub.Search(pb.SearchRequest(query=queries[0], k=10, mode=pb.SEARCH_MODE_HYBRID), timeout=600)
            n = 2000
            started = time.perf_counter()
            for _ in range(n):
                search_request(queries[0], {"k": 10, "mode": "hybrid", "filters": {"topic": ["a", "b"]}})
            build_us = (time.perf_counter() - started) / n * 1e6
            started = time.perf_counter()
            for _ in range(n):
                search_result_from_pb(response)
            convert_us = (time.perf_counter() - started) / n * 1e6
        finally:
            typed.close()
            typed_once.close()
            channel.close()

    out = table(["mode", "client", "queries", "p50 ms", "p95 ms", "mean ms", "p50 / stub", "mean / stub"], rows)
    work = table(["client-side work (no network)", "µs per call"],
                 [["build a SearchRequest (k, mode, 2 filter values)", build_us],
                  [f"convert a SearchResponse of {len(response.hits)} hits to a SearchResult", convert_us]])
    print(out)
    print()
    print(work)
    if args.write_doc:
        write_doc_section("client-overhead", "\n".join([
            "## Typed client overhead",
            "",
            f"{today()}, {machine_line()}. `{command_line()}`. {args.docs} synthetic documents, "
            f"{args.queries} searches per mode (k=10) through the generated stub and through "
            "RetrievalClient (with and without its retry policy), in an order rotating query by query, "
            "against one local server.",
            "",
            out,
            "",
            work,
        ]))
    print("\n" + ", ".join(f"{mode}: typed/stub p50 {ratio:.3f}x" for mode, ratio in ratios.items()))


if __name__ == "__main__":
    main()
