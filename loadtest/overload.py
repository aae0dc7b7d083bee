"""Overload benchmark: find the hybrid-search capacity under an SLO, offer a multiple
of it, and report how the server sheds, answers, wastes work and recovers.

    python -m loadtest.overload --beir /work/shared/data/scifact --max-docs 1000 \\
        [--data DIR] [--slo-ms 250] [--overload-factor 3] [--burst-seconds 60] [--json OUT]
    python -m loadtest.overload --target HOST:PORT --metrics URL [--ingest] ...

1. Server: by default starts ``python -m retrieval_svc.cli serve --data DIR
   --port 0 --metrics-port 0`` (127.0.0.1; stopped by its process id at the
   end), reads its ``READY grpc=HOST:PORT metrics=PORT`` line, and ingests the
   BEIR corpus (its first --max-docs documents) with ``retrieval_svc.cli
   ingest``. With --target it uses a running server instead (ingesting only with
   --ingest). Re-ingesting an unchanged corpus into a kept --data folder embeds
   nothing, so repeated runs skip the minutes of encoding.
2. Capacity: open-loop steps of --step-seconds at --start-rate, doubling while
   a step passes, then bisecting between the last pass and the first failure.
   A step passes when the p99 of its OK answers (from the intended send time)
   is within --slo-ms and at most --max-error-ratio of its requests ended other
   than OK (refusals count as errors); a generator that fell behind is noted.
   After each step the server is given time to drain (the probe of step 4).
3. Burst: --overload-factor x capacity for --burst-seconds. Reported: share
   refused (RESOURCE_EXHAUSTED/UNAVAILABLE), how fast (p50/p99, and how many
   within --at-once-ms of their intended send), p99 of the
   admitted (OK) answers, DEADLINE_EXCEEDED, the server's own counts and its
   ``retrieval_deadline_overruns_total`` delta (work finished after the
   caller's deadline; "n/a" where the server does not export it).
4. Drain: from the end of the burst's schedule, a probe sends one Search every
   1/--probe-rate s (open loop, same deadline); the drain time is from the end
   of the burst to the intended send time of the first of --probe-streak
   consecutive probes answered OK within the SLO.

Prints a markdown results table (for docs/benchmarks.md) and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest import metrics
from loadtest.capacity import CapacitySearch, DrainProbe, Step, format_steps, log, probe_drain
from loadtest.cli import add_load_args, spec_of, write_json
from loadtest.driver import Outcome, drive_search, open_channels
from loadtest.queries import RequestPlan, load_queries
from loadtest.report import REFUSAL_CODES, RunReport, codes_text, format_report, markdown_table, ms, summarize
from loadtest.run import LoadSpec, measure
from loadtest.schedule import make_schedule
from loadtest.slo import SLO

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BEIR = Path("/work/shared/data/scifact")


# --- the server -------------------------------------------------------------------------


class ServerProcess:
    """`retrieval_svc.cli serve` as a child process on 127.0.0.1, stopped by its pid."""

    def __init__(self, data: Path, log_path: Path, *, config: str | None = None,
                 env: dict[str, str] | None = None, nice: int = 0, ready_timeout_s: float = 300.0) -> None:
        self.data, self.log_path, self.config, self.nice = data, log_path, config, nice
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    "RETRIEVAL_SVC_EVALUATION__SCHEDULE_SECONDS": "0",
                    "RETRIEVAL_SVC_SERVER__HOST": "127.0.0.1",
                    "RETRIEVAL_SVC_SERVER__METRICS_HOST": "127.0.0.1", **(env or {})}
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self.target = ""
        self.metrics_url = ""

    def start(self) -> "ServerProcess":
        cmd = [sys.executable, "-m", "retrieval_svc.cli", "serve", "--data", str(self.data),
               "--port", "0", "--metrics-port", "0"]
        if self.config:
            cmd += ["--config", self.config]
        self._log = open(self.log_path, "w+")  # noqa: SIM115 (the child writes it until stop())
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
                                     preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; its log:\n{self.log_tail()}")
            for line in self.log_path.read_text().splitlines():
                if line.startswith("READY grpc="):
                    fields = dict(part.split("=", 1) for part in line.split()[1:])
                    self.target = fields["grpc"]
                    self.metrics_url = f"http://127.0.0.1:{fields['metrics']}/metrics"
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not READY within {self.ready_timeout_s:g} s; its log:\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM to our child (by pid), SIGKILL if it has not exited within 60 s."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            return self.proc.returncode
        finally:
            self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def corpus_subset(beir: Path, max_docs: int | None, workdir: Path) -> Path:
    """`beir` itself, or a folder holding the first `max_docs` documents of its corpus.jsonl."""
    if not (beir / "corpus.jsonl").exists():
        raise ValueError(f"{beir} has no corpus.jsonl (not a BEIR folder)")
    if not max_docs:
        return beir
    out = workdir / f"corpus-first-{max_docs}"
    out.mkdir(parents=True, exist_ok=True)
    kept = 0
    with open(beir / "corpus.jsonl", encoding="utf-8") as src, open(out / "corpus.jsonl", "w",
                                                                      encoding="utf-8") as dst:
        for line in src:
            if line.strip():
                dst.write(line)
                kept += 1
                if kept >= max_docs:
                    break
    return out


def ingest(corpus: Path, target: str, namespace: str, env: dict[str, str]) -> dict:
    cmd = [sys.executable, "-m", "retrieval_svc.cli", "ingest", str(corpus), "--target", target, "--quiet"]
    if namespace:
        cmd += ["--namespace", namespace]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"ingest failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout)


async def namespace_size(target: str, namespace: str) -> tuple[int, int]:
    """(documents, chunks) in `namespace`, via Info."""
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
    from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc

    async with open_channels(target) as (channel,):
        info = await rgrpc.RetrievalServiceStub(channel).Info(pb.InfoRequest(), timeout=30)
    for ns in info.namespaces:
        if ns.name == (namespace or "default"):
            return int(ns.document_count), int(ns.chunk_count)
    return 0, 0


# --- capacity ------------------------------------------------------------------------


@dataclass
class Bench:
    """The settings of one benchmark run and the request-index cursor, so every run
    continues through the query list."""

    args: argparse.Namespace
    target: str
    texts: list[str]
    metrics_url: str | None
    next_index: int = 0
    steps: list[Step] = field(default_factory=list)

    @property
    def slo_s(self) -> float:
        return self.args.slo_ms / 1000

    @property
    def drain(self) -> DrainProbe:
        a = self.args
        return DrainProbe(rate=a.probe_rate, streak=a.probe_streak, timeout_s=a.drain_timeout)

    def spec(self, rate: float, duration: float, prefix: str) -> LoadSpec:
        spec = spec_of(self.args, self.target, self.texts, rate, duration, first_index=self.next_index,
                       request_prefix=prefix)
        self.next_index += len(make_schedule(spec.arrival, rate, duration, spec.seed))
        return spec

    async def find_capacity(self) -> float:
        """The highest stepped rate that passed (`loadtest.capacity`)."""
        a = self.args
        search = CapacitySearch(self.spec, SLO(p99_ms=a.slo_ms, max_error_ratio=a.max_error_ratio),
                                step_seconds=a.step_seconds, start_rate=a.start_rate, max_rate=a.max_rate,
                                bisect_steps=a.bisect_steps, drain=self.drain, log=log, steps=self.steps)
        return await search.run()


# --- burst ----------------------------------------------------------------------------


async def burst(bench: Bench, rate: float) -> tuple[RunReport, dict, list[Outcome]]:
    """Offer `rate` for --burst-seconds; probe for the drain from the end of its schedule.
    Metrics are scraped before the burst and after the drain."""
    a = bench.args
    spec = bench.spec(rate, a.burst_seconds, "burst")
    url = bench.metrics_url
    before = await asyncio.to_thread(metrics.scrape, url) if url else None
    offsets = make_schedule(spec.arrival, spec.rate, spec.duration, spec.seed)
    plan = RequestPlan.build(list(spec.texts), spec.mix, spec.first_index)
    outcomes, drain = await asyncio.gather(
        drive_search(spec.target, offsets, plan, deadline_s=spec.deadline_s, namespace=spec.namespace,
                     k=spec.k, channels=spec.channels, request_prefix=spec.request_prefix,
                     batch_size=spec.batch_size),
        probe_drain(bench.spec(a.probe_rate, a.drain_timeout, "probe"), bench.drain, bench.slo_s,
                    start_delay_s=spec.duration))
    server = None
    if url and before is not None:
        server = metrics.server_deltas(before, await asyncio.to_thread(metrics.scrape, url))
    report = summarize(outcomes, target=spec.target, arrival=spec.arrival, rate=spec.rate,
                       duration=spec.duration, deadline_s=spec.deadline_s, mix=spec.mix.describe(),
                       interval=spec.interval, max_lateness_s=spec.max_lateness_s, server=server)
    return report, drain, outcomes


# --- results --------------------------------------------------------------------------


def machine_line() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load generator and "
            f"server on the same machine; 1-min load average at start {load:.1f}")


def results_rows(*, corpus: str, capacity: float, steps: list[Step], report: RunReport, drain: dict,
                 args, at_once: int) -> list[tuple[str, str]]:
    o = report.overall
    n = o.offered or 1
    deadline = o.codes.get("DEADLINE_EXCEEDED", 0)
    others = {c: v for c, v in o.codes.items() if c not in ("OK", "DEADLINE_EXCEEDED", *REFUSAL_CODES)}
    server = report.server or {}
    by_code = server.get("requests_by_code")
    overruns = server.get("deadline_overruns")
    rows = [
        ("corpus", corpus),
        (f"capacity ({report.mix}, OK p99 <= {args.slo_ms:g} ms, errors <= {args.max_error_ratio:.0%}, "
         f"{args.step_seconds:g} s steps)",
         (f"{capacity:g} req/s (steps: " + ", ".join(f"{s.rate:g}{'' if s.passed else ' x'}" for s in steps)
          + "; x = failed)") if steps else f"{capacity:g} req/s (given)"),
        ("burst offered", f"{report.rate:g} req/s ({args.overload_factor:g}x) for {report.duration:g} s, "
                          f"{report.arrival} arrivals, deadline {report.deadline_s * 1000:g} ms: {o.offered} requests"),
        ("achieved OK/s over the burst and its tail", f"{o.achieved_rate:.1f}"),
        ("refused (RESOURCE_EXHAUSTED + UNAVAILABLE)",
         f"{o.refused} ({o.refused / n:.1%}); p50 {ms(o.refusal_latency.p50)} ms, "
         f"p99 {ms(o.refusal_latency.p99)} ms"),
        (f"... of them at once (within {args.at_once_ms:g} ms of the intended send)",
         f"{at_once} ({at_once / n:.1%} of all requests)"),
        ("admitted and answered OK", f"{o.ok} ({o.ok / n:.1%}); p50 {ms(o.ok_latency.p50)} ms, "
                                     f"p99 {ms(o.ok_latency.p99)} ms, max {ms(o.ok_latency.max)} ms"),
        ("DEADLINE_EXCEEDED (client saw)", f"{deadline} ({deadline / n:.1%})"),
        ("other errors", codes_text(others) if others else "0"),
        ("server-counted Search codes (burst + drain probes)",
         "n/a" if by_code is None else codes_text(by_code)),
        ("server work finished after its deadline (retrieval_deadline_overruns_total)",
         "n/a" if overruns is None else str(overruns)),
        (f"drain: end of burst to first of {drain['streak']} probes ({drain['probe_rate']:g}/s) OK within SLO",
         f"not drained within {args.drain_timeout:g} s" if drain["drain_s"] is None
         else f"{drain['drain_s']:g} s"),
        ("generator send lateness p50 / p99 / max",
         f"{ms(o.lateness.p50)} / {ms(o.lateness.p99)} / {ms(o.lateness.max)} ms"
         + (" (FELL BEHIND)" if report.generator_behind else "")),
    ]
    return rows


# --- main -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.overload", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beir", type=Path, default=DEFAULT_BEIR, help=f"BEIR folder (default {DEFAULT_BEIR})")
    p.add_argument("--max-docs", type=int, help="ingest only the first N documents of corpus.jsonl")
    p.add_argument("--target", help="use this running server (HOST:PORT) instead of starting one")
    p.add_argument("--metrics", help="with --target: its Prometheus URL on 127.0.0.1")
    p.add_argument("--ingest", action="store_true", help="with --target: ingest the corpus first")
    p.add_argument("--data", type=Path, help="store folder of the started server (default: a temporary "
                   "one, removed after); keep one to skip re-encoding on the next run")
    p.add_argument("--config", help="settings YAML for the started server")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the started server, e.g. RETRIEVAL_SVC_SERVER__MAX_WORKERS=16")
    p.add_argument("--server-nice", type=int, default=0,
                   help="start the server at this nice value (e.g. 5) so that, on a small machine, the "
                        "load generator keeps its schedule while the server is saturated")
    p.add_argument("--slo-ms", type=float, default=250.0, help="OK p99 latency target (default 250)")
    p.add_argument("--max-error-ratio", type=float, default=0.01, help="non-OK share allowed (default 0.01)")
    p.add_argument("--start-rate", type=float, default=10.0)
    p.add_argument("--max-rate", type=float, default=2000.0)
    p.add_argument("--step-seconds", type=float, default=10.0)
    p.add_argument("--bisect-steps", type=int, default=3)
    p.add_argument("--capacity", type=float, help="skip the search; use this capacity (req/s)")
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="low-rate warm-up before measuring")
    p.add_argument("--overload-factor", type=float, default=3.0)
    p.add_argument("--burst-seconds", type=float, default=60.0)
    p.add_argument("--at-once-ms", type=float, default=25.0,
                   help="a refusal this fast (from the intended send) counts as 'at once' (default 25)")
    p.add_argument("--probe-rate", type=float, default=5.0, help="drain probes per second")
    p.add_argument("--probe-streak", type=int, default=3, help="consecutive probes within the SLO")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="longest drain probing, s")
    p.add_argument("--json", dest="json_out", help="write everything as JSON here")
    add_load_args(p)
    return p


async def run_bench(args, target: str, metrics_url: str | None, texts: list[str], corpus: str) -> dict:
    bench = Bench(args, target, texts, metrics_url)
    if args.warmup_seconds > 0:
        warm = await measure(bench.spec(5.0, args.warmup_seconds, "warmup"))
        log(f"warm-up: {codes_text(warm.overall.codes)}, OK p50 {ms(warm.overall.ok_latency.p50)} ms")
    if args.capacity is not None:
        capacity = args.capacity
    else:
        capacity = await bench.find_capacity()
    log(f"capacity: {capacity:g} req/s")
    if capacity <= 0:
        raise RuntimeError(f"no rate from --start-rate {args.start_rate:g} met the SLO; lower --start-rate")
    rate = round(capacity * args.overload_factor, 3)
    log(f"burst: {rate:g} req/s for {args.burst_seconds:g} s, then probing for the drain")
    report, drain, outcomes = await burst(bench, rate)
    print(format_report(report))
    at_once = sum(1 for o in outcomes if o.code in REFUSAL_CODES and o.latency <= args.at_once_ms / 1000)
    rows = results_rows(corpus=corpus, capacity=capacity, steps=bench.steps, report=report, drain=drain,
                        args=args, at_once=at_once)
    if bench.steps:
        print("\nCapacity steps:")
        print(format_steps(bench.steps))
    print("\nResults:")
    print(markdown_table(["", "value"], rows))
    return {"capacity": capacity, "steps": [s.to_dict() for s in bench.steps], "burst": report.to_dict(),
            "drain": drain, "results": dict(rows)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    machine = machine_line()
    command = " ".join([".venv/bin/python -m loadtest.overload", *map(shlex.quote, sys.argv[1:])])
    try:
        if args.metrics:
            metrics.check_local(args.metrics)
        texts = load_queries(args.queries or args.beir, args.split)
        env_extra = dict(kv.split("=", 1) for kv in args.server_env)
    except ValueError as exc:
        print(f"loadtest.overload: {exc}", file=sys.stderr)
        return 2
    log(machine)
    with tempfile.TemporaryDirectory(prefix="loadtest-overload-") as tmp:
        workdir = Path(tmp)
        server = None
        try:
            if args.target:
                target, metrics_url = args.target, args.metrics
            else:
                data = args.data or workdir / "store"
                server = ServerProcess(data, workdir / "server.log", config=args.config, env=env_extra,
                                       nice=args.server_nice).start()
                target, metrics_url = server.target, server.metrics_url
                log(f"server pid {server.pid} READY on {target}, metrics {metrics_url}")
            ingest_env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            if server is not None or args.ingest:
                corpus = corpus_subset(args.beir, args.max_docs, workdir)
                t0 = time.monotonic()
                summary = ingest(corpus, target, args.namespace, ingest_env)
                log(f"ingested {corpus} in {time.monotonic() - t0:.0f} s: {json.dumps(summary)}")
            docs, chunks = asyncio.run(namespace_size(target, args.namespace))
            corpus_text = (f"{args.beir.name}: {docs} documents / {chunks} chunks"
                           + (f" (first {args.max_docs})" if args.max_docs else ""))
            result = asyncio.run(run_bench(args, target, metrics_url, texts, corpus_text))
        except (RuntimeError, ValueError) as exc:
            print(f"loadtest.overload: {exc}", file=sys.stderr)
            if server is not None:
                print(f"server log tail:\n{server.log_tail()}", file=sys.stderr)
            return 1
        finally:
            if server is not None:
                code = server.stop()
                log(f"server pid {server.pid} stopped (exit {code})")
    result = {"date": started, "machine": machine, "command": command, "options": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **result}
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
