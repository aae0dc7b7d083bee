"""Seeded, bounded fuzzing of every RPC the server answers (`retrieval-svc serve` on 127.0.0.1).

Three kinds of requests, round-robin over every method of every service the
server lists through reflection (so a new RPC is fuzzed without a change here):

  (a) well-typed messages with hostile values, built from the request
      descriptors (tests/retrieval_svc/hostile.py): first one pass that gives
      each field, anywhere in each request, a few extreme values; then seeded
      random messages until the count or time budget is spent;
  (b) raw random or mutated wire bytes sent with an identity serializer;
  (c) client-streaming Ingest calls mixing good and bad messages.

Asserted: no response is INTERNAL or UNKNOWN (or another code that only a
server fault produces); at most a few calls run into the deadline; the server
is still running and afterwards answers health SERVING; a namespace the fuzzer
never names is untouched (documents, content hashes, search results in every
mode); every namespace's indexes agree with the ledger; a stream's messages
before its first bad one were committed (the Ingest contract); and the server
exits cleanly within SHUTDOWN_GRACE_SECONDS of SIGTERM. Bounded by count and
time (FUZZ_SECONDS); FUZZ_SEED=<n> explores other inputs.
"""

from __future__ import annotations

import collections
import os
import random
import re
import time

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client import ProtoClient
from retrieval_svc.domain import Document

from corpus import TOPICS, topic_documents  # on sys.path via this folder's conftest
from hostile import (DEEP_REPEATED, DOUBLES, HOSTILE_TIMESTAMPS, TIMESTAMP, HostileMessages, describe,
                     entry_fields, is_map, message_class, raw_payload)
from served import ServedProcess

SEED = int(os.environ.get("FUZZ_SEED", "20240611"))  # another seed explores other inputs
FUZZ_SECONDS = 38.0  # the random phase stops here (the systematic pass runs first, inside it)
MAX_REQUESTS = 6000
CALL_DEADLINE_SECONDS = 10.0
MAX_DEADLINE_HITS = 3
SHUTDOWN_GRACE_SECONDS = 10.0
CLIENT_MESSAGE_BYTES = 128 * 1024 * 1024
MAX_GENERATED_BYTES = 24 * 1024 * 1024  # generated requests stay under the server's 64 MiB limit

SEEDED = "seeded"  # the fuzzer never names it
STREAMED = "fuzzstream"  # good documents of kind (c) streams go here, and only those
EVAL_SET = "fuzzset"  # registered before fuzzing; evaluated but never re-registered
PROTECTED = {SEEDED, STREAMED, EVAL_SET}

# Server faults: any of these is a defect. Everything else (INVALID_ARGUMENT,
# NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNAVAILABLE, ...) is an answer.
# UNIMPLEMENTED too: every method the server lists through reflection must be answered
# (the server implements health's List, which grpcio's HealthServicer leaves out).
FAULT_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS,
               grpc.StatusCode.CANCELLED, grpc.StatusCode.UNIMPLEMENTED}
MODES = {"dense": pb.SEARCH_MODE_DENSE, "bm25": pb.SEARCH_MODE_BM25, "hybrid": pb.SEARCH_MODE_HYBRID}


def _seeded_documents() -> list[Document]:
    docs = []
    for i in range(20):
        topic, sentence = list(TOPICS.items())[i % len(TOPICS)]
        marker = f"seedmark{i:02d}"
        text = (f"{sentence} The {marker} ledger entry number {i} concerns {topic} and "
                f"was written for the integrity check of record {marker}.")
        docs.append(Document(SEEDED, f"seed-{i:02d}", text, title=f"{topic} seed {i}",
                             metadata={"topic": topic, "slot": str(i)},
                             source_updated_at=1_700_000_000.0 + i * 3600))
    return docs


def _served_methods(channel) -> list:
    """Method descriptors of every service the server lists through reflection, plus
    every service of the retrieval.v1 files (so a service the server forgot shows up)."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=CALL_DEADLINE_SECONDS))
    names = {s.name for s in response.list_services_response.service}
    declared = {s.full_name for f in (pb.DESCRIPTOR, epb.DESCRIPTOR) for s in f.services_by_name.values()}
    assert declared <= names, f"server does not list {sorted(declared - names)}"
    pool = descriptor_pool.Default()
    methods = []
    for name in sorted(names | declared):
        methods.extend(pool.FindServiceByName(name).methods)
    return methods


def _path(method) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


class Outcomes:
    """Codes seen, by method and kind, with every fault kept for the report."""

    def __init__(self) -> None:
        self.codes: collections.Counter = collections.Counter()
        self.kinds: collections.Counter = collections.Counter()
        self.methods: collections.Counter = collections.Counter()
        self.faults: list[tuple[str, str, str, str]] = []
        self.deadline_hits: list[tuple[str, float, str]] = []
        self.slowest: list[tuple[float, str, str]] = []
        self.seconds: collections.Counter = collections.Counter()
        self.skipped = 0  # generated requests over MAX_GENERATED_BYTES, not sent

    def record(self, method: str, kind: str, code: grpc.StatusCode, details: str, seconds: float,
               shown: str) -> None:
        self.codes[code.name] += 1
        self.kinds[kind] += 1
        self.methods[method] += 1
        self.seconds[method.rsplit("/", 1)[1]] += seconds
        if code in FAULT_CODES:
            self.faults.append((method, code.name, details, shown))
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.deadline_hits.append((method, seconds, shown))
        self.slowest = sorted(self.slowest + [(seconds, method, shown)], reverse=True)[:5]

    def fault_report(self) -> str:
        """One entry per distinct (method, code, details with numbers masked), with examples."""
        groups: dict[tuple, list] = {}
        for method, code, details, shown in self.faults:
            key = (method, code, re.sub(r"\d+", "N", details)[:160])
            groups.setdefault(key, []).append((details, shown))
        lines = [f"{len(self.faults)} responses with a server-fault status, {len(groups)} distinct:"]
        for (method, code, _), examples in sorted(groups.items()):
            lines.append(f"- {method} -> {code} ×{len(examples)}: {examples[0][0][:300]}")
            for _, shown in examples[:3]:
                lines.append(f"    input: {shown}")
        return "\n".join(lines)

    def summary(self) -> str:
        return (f"fuzz: {sum(self.kinds.values())} calls by kind {dict(sorted(self.kinds.items()))} "
                f"({self.skipped} oversize skipped); "
                f"codes {dict(self.codes.most_common())}; methods {len(self.methods)}; "
                f"deadline hits {len(self.deadline_hits)}; seconds by method "
                + ", ".join(f"{m} {s:.1f}" for m, s in self.seconds.most_common(4)))


class Caller:
    """Sends wire bytes to any method (identity serializers) and records the outcome."""

    def __init__(self, channel, outcomes: Outcomes) -> None:
        self.channel = channel
        self.outcomes = outcomes

    def call(self, method, payloads: list[bytes], kind: str, shown: str) -> tuple[grpc.StatusCode, str]:
        path = _path(method)
        started = time.monotonic()
        code, details = grpc.StatusCode.OK, ""
        try:
            if method.client_streaming and method.server_streaming:
                list(self.channel.stream_stream(path)(iter(payloads), timeout=CALL_DEADLINE_SECONDS))
            elif method.client_streaming:
                self.channel.stream_unary(path)(iter(payloads), timeout=CALL_DEADLINE_SECONDS)
            elif method.server_streaming:
                # Health/Watch streams until the caller leaves: the first answer is enough.
                responses = self.channel.unary_stream(path)(payloads[0], timeout=CALL_DEADLINE_SECONDS)
                try:
                    next(responses, None)
                finally:
                    responses.cancel()
            else:
                self.channel.unary_unary(path)(payloads[0], timeout=CALL_DEADLINE_SECONDS)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        self.outcomes.record(path, kind, code, details, time.monotonic() - started, shown)
        return code, details


def _safe(data: bytes) -> bool:
    """False for a request that names a namespace the fuzzer must leave alone."""
    return SEEDED.encode() not in data and STREAMED.encode() not in data


def _typed(caller: Caller, method, msg, kind: str) -> None:
    data = msg.SerializeToString()
    assert _safe(data), f"generator named a protected name: {describe(msg)}"
    if len(data) > MAX_GENERATED_BYTES and kind != "named":
        caller.outcomes.skipped += 1
        return
    caller.call(method, [data], kind, describe(msg))


def _systematic_cases(gen: HostileMessages, descriptor):
    """Each field path of the request set to a few extreme values on a plausible base."""
    for path in gen.field_paths(descriptor):
        field = path[-1]
        sub = field.message_type
        setters = []
        if is_map(field):
            setters.append(lambda c, f: gen.fill_many_keys(c, f))
            if field.message_type.fields_by_name["value"].message_type is None:
                setters.append(lambda c, f: c.__setitem__(*_bad_entry(f)))
        elif field.is_repeated:
            setters += [lambda c, f: gen.fill_deep(c, f, hostile=False), lambda c, f: gen.fill_uniform(c, f)]
        elif sub is not None and sub.full_name == TIMESTAMP:
            setters += [lambda m, f, s=s, n=n: getattr(m, f.name).CopyFrom(
                message_class(f.message_type)(seconds=s, nanos=n)) for s, n in HOSTILE_TIMESTAMPS]
        elif sub is not None:
            setters.append(lambda m, f: getattr(m, f.name).SetInParent())
        elif field.type in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
            setters += [lambda m, f, v=v: setattr(m, f.name, v) for v in DOUBLES[:3] + (-1.0,)]
        elif field.type == field.TYPE_ENUM:
            setters += [lambda m, f, v=v: setattr(m, f.name, v) for v in (99, -1)]
        elif field.type in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32):
            setters += [lambda m, f, v=v: setattr(m, f.name, v) for v in (-1, 2**31 - 1)]
        elif field.type in (field.TYPE_INT64, field.TYPE_SINT64, field.TYPE_SFIXED64):
            setters += [lambda m, f, v=v: setattr(m, f.name, v) for v in (-1, 2**63 - 1, -(2**63))]
        elif field.type == field.TYPE_STRING:
            setters += [lambda m, f, v=v: setattr(m, f.name, v) for v in ("", " \t\n", "a" * 129, "x" * 100_001)]
        elif field.type == field.TYPE_BOOL:
            setters.append(lambda m, f: setattr(m, f.name, True))
        for setter in setters:
            msg = gen.plausible(descriptor)
            target = msg
            for step in path[:-1]:
                if step.is_repeated:
                    container = getattr(target, step.name)
                    target = container[0] if len(container) else container.add()
                else:
                    target = getattr(target, step.name)
            target.ClearField(field.name)
            if is_map(field) or field.is_repeated:
                setter(getattr(target, field.name), field)
            else:
                setter(target, field)
            yield msg


def _bad_entry(field):
    key_field, value_field = entry_fields(field)
    key = "" if key_field.type == key_field.TYPE_STRING else -1
    value = "v" if value_field.type == value_field.TYPE_STRING else 0
    return key, value


def _named_cases(gen: HostileMessages):
    """The inputs the hardening issue names, always sent whatever the seed."""
    rs = pb.DESCRIPTOR.services_by_name["RetrievalService"].methods_by_name
    ingest_batch, search = rs["IngestBatch"], rs["Search"]
    filters = [pb.FilterClause(key="topic", any_of=["cooking", "astronomy"])] * DEEP_REPEATED
    yield search, pb.SearchRequest(query="bread dough oven", namespace="fuzz", filters=filters)
    yield rs["BatchSearch"], pb.BatchSearchRequest(
        queries=[pb.SearchRequest(query="galaxies", namespace="fuzz", filters=filters)])
    yield search, pb.SearchRequest(query="bread", namespace="fuzz", filters=[
        pb.FilterClause(key="doc_id", any_of=[f"d{i}" for i in range(100_000)])])
    for seconds, nanos in HOSTILE_TIMESTAMPS:
        doc = pb.Document(namespace="fuzz", doc_id=f"ts-{seconds}-{nanos}", text="A dated note about harbours.")
        doc.source_updated_at.seconds, doc.source_updated_at.nanos = seconds, nanos
        yield ingest_batch, pb.IngestRequest(documents=[doc])
        # Whatever was accepted must read back (a stored instant that no longer fits a Timestamp would not).
        yield rs["GetDocument"], pb.GetDocumentRequest(namespace="fuzz", doc_id=doc.doc_id, include_chunks=True)
    yield search, pb.SearchRequest(query="dated note about harbours", namespace="fuzz", k=50)
    yield ingest_batch, pb.IngestRequest(documents=[pb.Document(
        namespace="fuzz", doc_id="many-keys", text="Metadata heavy note.",
        metadata={f"k{i}": "v" for i in range(100_000)})])
    yield ingest_batch, pb.IngestRequest(documents=[pb.Document(
        namespace="fuzz", doc_id="huge-title", text="A short text under a very long title.",
        title="t" * 10_000_000)])
    yield ingest_batch, pb.IngestRequest(documents=[pb.Document(
        namespace="fuzz", doc_id="over-limit", text="x", title="y" * (65 * 1024 * 1024))])
    for value in (float("nan"), float("inf"), float("-inf")):
        yield search, pb.SearchRequest(query="bread", namespace="fuzz", max_age_seconds=value, rrf_k=value,
                                       recency=pb.RecencyDecay(half_life_seconds=value, weight=0.5))
    yield search, pb.SearchRequest(query="bread", namespace="fuzz", mode=99, fusion=-1, k=2**31 - 1)


def _search_ids(client, query: str, mode: int, **fields) -> list[str]:
    try:
        return [h.doc_id for h in client.search(query, namespace=SEEDED, mode=mode, **fields).hits]
    except grpc.RpcError as exc:
        return [f"<{exc.code().name}: {exc.details()}>"]


def _seeded_snapshot(client, docs) -> dict:
    """What must survive the fuzzing: hashes, and ranked results in every mode."""
    state = {"hashes": {}, "rankings": {}}
    for doc in docs:
        state["hashes"][doc.doc_id] = client.get_document(SEEDED, doc.doc_id).content_hash
    for query in ("bread oven crust", "interest rates and inflation", "seedmark07 ledger entry"):
        for name, mode in MODES.items():
            state["rankings"][(query, name)] = _search_ids(client, query, mode, k=10)
    return state


def _check_seeded(client, docs, before: dict) -> list[str]:
    problems = []
    for doc in docs:
        try:
            got = client.get_document(SEEDED, doc.doc_id).content_hash
        except grpc.RpcError as exc:
            problems.append(f"seeded {doc.doc_id}: GetDocument {exc.code().name} {exc.details()}")
            continue
        if got != before["hashes"][doc.doc_id]:
            problems.append(f"seeded {doc.doc_id}: content_hash {got} != {before['hashes'][doc.doc_id]}")
        for name, mode in MODES.items():
            ids = _search_ids(client, doc.text, mode, k=3,
                              filters=[pb.FilterClause(key="doc_id", any_of=[doc.doc_id])])
            if not ids or set(ids) != {doc.doc_id}:
                problems.append(f"seeded {doc.doc_id}: {name} search with its own text and filter "
                                f"doc_id={doc.doc_id} returned {ids}")
    for (query, name), ranking in before["rankings"].items():
        now = _search_ids(client, query, MODES[name], k=10)
        if now != ranking:
            problems.append(f"seeded ranking for {query!r} ({name}) changed: {ranking} -> {now}")
    return problems


def _check_indexes(client) -> list[str]:
    problems = []
    for ns in client.info().namespaces:
        if not ns.chunk_count == ns.dense_vector_count == ns.bm25_chunk_count:
            problems.append(f"namespace {ns.name!r}: ledger chunks {ns.chunk_count} != dense {ns.dense_vector_count} "
                            f"or bm25 {ns.bm25_chunk_count}")
        if ns.name == SEEDED and ns.document_count != len(_seeded_documents()):
            problems.append(f"namespace {SEEDED!r} has {ns.document_count} documents, not {len(_seeded_documents())}")
    return problems


class Streams:
    """Kind (c): client-streaming Ingest calls mixing good and bad messages."""

    def __init__(self, rng: random.Random, gen: HostileMessages, caller: Caller) -> None:
        self.rng, self.gen, self.caller = rng, gen, caller
        self.count = 0
        self.expected: list[tuple[str, str, str]] = []  # (doc_id, stream description, status)

    def run(self, method) -> None:
        rng = self.rng
        self.count += 1
        payloads, shown, first_bad = [], [], None
        good_ids: list[list[str]] = []
        for m in range(rng.randint(1, 6)):
            roll = rng.random()
            if roll < 0.5:
                ids = [f"s{self.count}-{m}-{j}" for j in range(rng.randint(1, 3))]
                topic, sentence = rng.choice(list(TOPICS.items()))
                msg = pb.IngestRequest(documents=[
                    pb.Document(namespace=STREAMED, doc_id=i, text=f"{sentence} Stream note {i}.",
                                metadata={"topic": topic}) for i in ids])
                payloads.append(msg.SerializeToString())
                shown.append(f"good{ids}")
                good_ids.append(ids)
                continue
            first_bad = len(payloads) if first_bad is None else first_bad
            if roll < 0.8:
                make = self.gen.perturbed if rng.random() < 0.5 else self.gen.random
                msg = make(method.input_type)
                data = msg.SerializeToString()
                shown.append(describe(msg, 200))
            else:
                data, how = raw_payload(rng, method.input_type, b"")
                shown.append(f"raw[{how}] {describe(data)}")
            if not _safe(data) or len(data) > MAX_GENERATED_BYTES:
                data = b""
            payloads.append(data)
            good_ids.append([])
        description = f"stream {self.count}: " + " | ".join(shown)
        code, _ = self.caller.call(method, payloads, "stream", description[:600])
        # The contract: each message is committed before the next is read, so on OK
        # every good message is in, and on INVALID_ARGUMENT every one before the first bad.
        if code == grpc.StatusCode.OK:
            committed = good_ids
        elif code == grpc.StatusCode.INVALID_ARGUMENT and first_bad is not None:
            committed = good_ids[:first_bad]
        else:
            committed = []
        for ids in committed:
            self.expected.extend((i, description[:300], code.name) for i in ids)

    def check(self, client) -> list[str]:
        problems = []
        for doc_id, description, status in self.expected:
            try:
                client.get_document(STREAMED, doc_id)
            except grpc.RpcError as exc:
                problems.append(f"{doc_id} of an acknowledged message is missing ({exc.code().name}) after a "
                                f"stream that ended {status}: {description}")
        return problems


def test_fuzz_every_rpc(tmp_path):
    started = time.monotonic()
    # A child process, so that a crash shows and teardown need not wait for work
    # the server keeps doing for callers whose deadline has passed.
    server = ServedProcess(tmp_path / "store", tmp_path / "server.log")
    client = ProtoClient(server.target, timeout=30)
    channel = grpc.insecure_channel(server.target, options=[
        ("grpc.max_receive_message_length", CLIENT_MESSAGE_BYTES),
        ("grpc.max_send_message_length", CLIENT_MESSAGE_BYTES)])
    try:
        _run(server, client, channel, started)
    finally:
        channel.close()
        client.close()
        server.kill()


def _run(server: ServedProcess, client: ProtoClient, channel, started: float) -> None:
    seeded = _seeded_documents()
    client.ingest(seeded, batch_size=7)
    client.ingest(topic_documents("fuzz"), batch_size=12)
    client.ingest(topic_documents(""), batch_size=12)
    before = _seeded_snapshot(client, seeded)
    chunk_ids = [c.chunk_id for d in ("cooking-0", "astronomy-1")
                 for c in client.get_document("fuzz", d, include_chunks=True).chunks]
    client.register_query_set(epb.RegisterQuerySetRequest(name=EVAL_SET, namespace="fuzz", queries=[
        epb.LabeledQuery(query_id=f"q{i}", text=text, judgements=[epb.Judgement(target_id=f"{topic}-0", relevance=1)])
        for i, (topic, text) in enumerate(list(TOPICS.items())[:3])]))

    rng = random.Random(SEED)
    gen = HostileMessages(rng, forbidden=PROTECTED, plausible={
        "namespace": ["", "default", "fuzz", "fuzz-absent"],
        "doc_id": ["cooking-0", "astronomy-1", "fuzz-new", "absent-doc"],
        "doc_ids": ["cooking-1", "fuzz-new", "absent-doc"],
        "chunk_id": chunk_ids + ["absent-chunk"],
        "query": list(TOPICS.values()) + ["bread", "galaxies"],
        "text": list(TOPICS.values()),
        "title": ["A title", ""],
        "key": ["topic", "doc_id", "source_uri", "parity"],
        "any_of": ["cooking", "astronomy", "0", "cooking-0"],
        "value": ["cooking", "1"],
        "name": ["fuzz-reg-a", "fuzz-reg-b"],
        "query_set": [EVAL_SET, "absent-set"],
        "query_id": ["q1", "q2"],
        "target_id": ["cooking-0", "astronomy-1"],
        "relevance": [0, 1, 2],
        "k": [1, 3, 10], "ks": [1, 5, 10], "depth": [10, 20],
        "dense_candidates": [0, 10, 50], "bm25_candidates": [0, 10, 50], "rerank_top_n": [0, 10],
        "rrf_k": [60.0], "dense_weight": [0.5, 1.0], "bm25_weight": [0.5, 1.0],
        "max_age_seconds": [0.0, 1e9], "half_life_seconds": [86400.0], "weight": [0.0, 0.5],
        "rerank": [False], "source_uri": ["file:///tmp/a.txt"], "request_id": ["r-1"],
        "service": ["", "retrieval.v1.RetrievalService", "retrieval.v1.EvaluationService", "absent.Service"],
        "file_by_filename": ["retrieval/v1/retrieval.proto", "grpc/health/v1/health.proto", "absent.proto"],
        "file_containing_symbol": ["retrieval.v1.RetrievalService", "retrieval.v1.Document", "absent.Symbol"],
        "containing_type": ["retrieval.v1.Document"], "all_extension_numbers_of_type": ["retrieval.v1.Document"],
        "list_services": [""], "host": [""],
    })
    outcomes = Outcomes()
    caller = Caller(channel, outcomes)
    methods = _served_methods(channel)
    streams = Streams(rng, gen, caller)
    fuzz_started = time.monotonic()

    phases = {}
    for method, msg in _named_cases(gen):
        _typed(caller, method, msg, "named")
    for method in methods:  # malformed bytes: a bad tag, invalid UTF-8 in field 1, a short field 1
        for junk in (b"\xff\xff\xff", b"\x0a\x02\xff\xfe", b"\x0a\x05abc"):
            caller.call(method, [junk], "named", describe(junk))
    phases["named"] = time.monotonic() - fuzz_started
    for method in methods:
        for msg in _systematic_cases(gen, method.input_type):
            _typed(caller, method, msg, "systematic")
    phases["systematic"] = time.monotonic() - fuzz_started - phases["named"]

    i = 0
    while i < MAX_REQUESTS and time.monotonic() - fuzz_started < FUZZ_SECONDS:
        method = methods[i % len(methods)]
        i += 1
        roll = rng.random()
        if method.client_streaming and not method.server_streaming and roll < 0.35:
            streams.run(method)
        elif roll < 0.6:
            msg = gen.perturbed(method.input_type) if rng.random() < 0.5 else gen.random(method.input_type)
            _typed(caller, method, msg, "typed")
        else:
            data, how = raw_payload(rng, method.input_type, gen.plausible(method.input_type).SerializeToString())
            if _safe(data):
                caller.call(method, [data], "raw", f"raw[{how}] {describe(data)}")

    fuzz_seconds = time.monotonic() - fuzz_started
    if not server.alive():
        raise AssertionError(f"the server died while fuzzing ({outcomes.summary()}):\n{server.log_tail()}\n"
                             + (outcomes.fault_report() if outcomes.faults else ""))
    problems = []
    try:
        health = health_pb2.HealthCheckResponse
        status = client.channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health.FromString)(health_pb2.HealthCheckRequest(), timeout=CALL_DEADLINE_SECONDS)
        if status.status != health.SERVING:
            problems.append(f"health after fuzzing: {health.ServingStatus.Name(status.status)}")
    except grpc.RpcError as exc:
        problems.append(f"health after fuzzing: {exc.code().name} {exc.details()}")
    problems += _check_seeded(client, seeded, before)
    problems += _check_indexes(client)
    problems += streams.check(client)
    stop_started = time.monotonic()
    if server.stop(grace=SHUTDOWN_GRACE_SECONDS) is None:
        problems.append(f"the server did not exit within {SHUTDOWN_GRACE_SECONDS:.0f}s of SIGTERM after "
                        f"fuzzing (killed); its threads:\n{server.stacks()[-4000:]}")
    elif server.proc.returncode != 0:
        problems.append(f"the server exited with {server.proc.returncode} on SIGTERM after fuzzing")
    stop_seconds = time.monotonic() - stop_started
    phase_times = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())
    slowest = ", ".join(f"{m} {s:.1f}s" for s, m, _ in outcomes.slowest[:3])
    print(f"{outcomes.summary()}; streams {streams.count}; fuzzing {fuzz_seconds:.1f}s ({phase_times}), "
          f"stop {stop_seconds:.1f}s, test {time.monotonic() - started:.1f}s; slowest {slowest}")

    for method, seconds, shown in outcomes.deadline_hits:
        print(f"deadline hit: {method} after {seconds:.1f}s: {shown}")

    report = []
    if outcomes.faults:
        report.append(outcomes.fault_report())
    if len(outcomes.deadline_hits) > MAX_DEADLINE_HITS:
        report.append(f"{len(outcomes.deadline_hits)} calls ran into the {CALL_DEADLINE_SECONDS:.0f}s deadline "
                      f"(at most {MAX_DEADLINE_HITS} tolerated):")
        report += [f"- {m} after {s:.1f}s: {shown}" for m, s, shown in outcomes.deadline_hits[:20]]
    if problems:
        report.append("after fuzzing:\n" + "\n".join(f"- {p}" for p in problems))
    assert not report, f"seed {SEED}; {outcomes.summary()}\n" + "\n".join(report)
