"""Cost of authentication and TLS on Search latency, through gRPC.

Three servers hold the same synthetic corpus: open (plaintext, no keys: the embedded
default), keys (API keys checked on every call, plaintext) and keys+TLS (API keys over
TLS). Each query goes to all three, in an order that rotates query by query, so machine
load drifts hit every side alike. Prints p50/p95/mean latency per side and the ratios to
the open server.

    .venv/bin/python bench/auth_overhead.py [--queries 300] [--docs 300] [--mode hybrid] [--write-doc]

Needs the `cryptography` package (the dev extra) for the throw-away certificates.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "retrieval_svc"))

from _common import (  # noqa: E402
    bench_settings, command_line, machine_line, percentile, table, today, write_doc_section,
)
from metrics_overhead import WORDS, synthetic_docs  # noqa: E402

SIDES = ("open", "keys", "keys+TLS")


@contextlib.contextmanager
def _server(settings, encoder, **client_options):
    from retrieval_svc.app import App
    from retrieval_svc.client import ProtoClient
    from retrieval_svc.server import Server

    server = Server(App(settings, encoder=encoder)).start()
    client = ProtoClient(f"127.0.0.1:{server.port}", timeout=600, **client_options)
    try:
        client.wait_ready(60)
        yield client
    finally:
        client.close()
        server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="hybrid")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    machine_line()

    import yaml
    from pki import CertificateAuthority

    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
    from retrieval_svc.app import load_encoder
    from retrieval_svc.auth import hash_token, new_token

    mode = pb.SearchMode.Value(f"SEARCH_MODE_{args.mode.upper()}")
    rng = random.Random(1)
    queries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(args.queries)]
    docs = list(synthetic_docs(args.docs))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        ca = CertificateAuthority()
        ca_file = ca.write(folder / "ca.crt")
        cert_file, key_file = ca.server_cert().write(folder, "server")
        token = new_token()
        keys_file = folder / "keys.yaml"
        keys_file.write_text(yaml.safe_dump({"keys": [
            {"id": f"other-{i}", "sha256": hash_token(new_token()), "roles": [f"admin:tenant-{i}"]}
            for i in range(20)] + [{"id": "bench", "sha256": hash_token(token), "roles": ["admin:default"]}]}))
        auth = {"keys_file": str(keys_file)}
        tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
        settings = {
            "open": (bench_settings(folder / "open"), {}),
            "keys": (bench_settings(folder / "keys", auth=auth), {"token": token}),
            "keys+TLS": (bench_settings(folder / "tls", auth=auth, tls=tls),
                         {"token": token, "ca_file": str(ca_file)}),
        }
        encoder = load_encoder(settings["open"][0])
        clients = {side: stack.enter_context(_server(settings[side][0], encoder, **settings[side][1]))
                   for side in SIDES}
        for side in SIDES:
            clients[side].ingest(docs, batch_size=64)
        for q in queries[:20]:  # warm-up: connections, TLS sessions, caches
            for side in SIDES:
                clients[side].search(q, k=10, mode=mode)
        timings: dict[str, list[float]] = {side: [] for side in SIDES}
        for i, q in enumerate(queries):
            for side in SIDES[i % 3:] + SIDES[:i % 3]:
                started = time.perf_counter()
                clients[side].search(q, k=10, mode=mode)
                timings[side].append(time.perf_counter() - started)

    base_p50, base_mean = percentile(timings["open"], 50), statistics.fmean(timings["open"])
    rows = []
    for side in SIDES:
        values = timings[side]
        p50, mean = percentile(values, 50), statistics.fmean(values)
        rows.append([side, len(values), p50 * 1000, percentile(values, 95) * 1000, mean * 1000,
                     p50 / base_p50, mean / base_mean])
    out = table(["server", "queries", "p50 ms", "p95 ms", "mean ms", "p50 / open", "mean / open"], rows)
    print(out)
    if args.write_doc:
        write_doc_section("auth-overhead", "\n".join([
            "## Authentication and TLS overhead",
            "",
            f"{today()}, {machine_line()}. `{command_line()}`. {args.docs} synthetic documents, "
            f"{args.queries} {args.mode} searches through gRPC (k=10) against three servers with the same "
            "corpus (open; API keys; API keys over TLS, 21 keys in the file), in an order rotating query "
            "by query.",
            "",
            out,
        ]))


if __name__ == "__main__":
    main()
