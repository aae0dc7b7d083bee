"""The open-loop driver: send request i at its scheduled offset, whatever is outstanding.

Latency is counted from the *intended* send time (start + offset_i), not from
the moment the request actually left, so a generator that fell behind, or an
event loop busy with answers, cannot hide queueing; how late each request
actually left (`lateness`) is recorded apart so a report can say when the
generator, not the server, was the bottleneck.

`run_open_loop` knows nothing about gRPC: it paces calls of an async
``call(i) -> status code name``. `SearchCaller` is that call for
RetrievalService.Search (and BatchSearch) over grpc.aio, with a deadline on
every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Sequence

import grpc

from loadtest.queries import RequestPlan
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.client import Security

CLIENT_CANCELLED = "CLIENT_CANCELLED"  # still outstanding when the run's wait ran out


@dataclass(frozen=True)
class Outcome:
    """One request. Times are seconds from the start of the run."""

    index: int
    mode: str
    intended: float
    sent: float
    done: float
    code: str

    @property
    def latency(self) -> float:
        """From the intended send time to the answer (what a user arriving on schedule saw)."""
        return self.done - self.intended

    @property
    def lateness(self) -> float:
        """How late the generator sent it (actual - intended send time)."""
        return self.sent - self.intended

    @property
    def service_time(self) -> float:
        return self.done - self.sent


async def run_open_loop(
    offsets: Sequence[float],
    call: Callable[[int], Awaitable[str]],
    *,
    label: Callable[[int], str] = lambda i: "",
    wait_after_s: float | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    start: float | None = None,
    on_start: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[Outcome]:
    """Call `call(i)` at start + offsets[i] for every i, without waiting for earlier calls.

    When the pacer is behind it sends at once (no skipping: the offered count is
    what the schedule says). After the last send it waits up to `wait_after_s`
    (None: for ever) for outstanding calls, then cancels the rest, recorded as
    CLIENT_CANCELLED. `on_outcome` sees each outcome as it completes; `stop()`,
    asked before each send, ends the schedule early (a probe that has its answer).
    `start` is the clock reading of offset 0 (None: now); `on_start(start)` is told it
    before the first send, so a second pacer (the ingest beside the searches, on its
    own thread) can keep to the same time line. `clock` and `sleep` are injectable for
    tests (fake time).
    """
    start = clock() if start is None else start
    if on_start is not None:
        on_start(start)
    outcomes: list[Outcome | None] = [None] * len(offsets)

    async def one(i: int, intended: float) -> None:
        sent = clock() - start
        try:
            code = await call(i)
        except asyncio.CancelledError:
            code = CLIENT_CANCELLED
        except Exception as exc:  # a bug in the caller must not stop the schedule
            code = f"CLIENT_{type(exc).__name__}"
        outcomes[i] = outcome = Outcome(i, label(i), intended, sent, clock() - start, code)
        if on_outcome is not None:
            on_outcome(outcome)

    tasks = []
    for i, offset in enumerate(offsets):
        delay = offset - (clock() - start)
        if delay > 0:
            await sleep(delay)
        if stop():
            break
        tasks.append(asyncio.ensure_future(one(i, offset)))
        # Let the new task reach its send before pacing on (and let answers in).
        await asyncio.sleep(0)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=wait_after_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks)
    return [o for o in outcomes if o is not None]


# --- gRPC ------------------------------------------------------------------------------

_MODES = {"dense": pb.SEARCH_MODE_DENSE, "bm25": pb.SEARCH_MODE_BM25, "hybrid": pb.SEARCH_MODE_HYBRID,
          "rerank": pb.SEARCH_MODE_HYBRID, "batch": pb.SEARCH_MODE_HYBRID}

# (position of the query in the plan's texts, doc_ids of its hits in rank order), one per query.
Answered = list[tuple[int, list[str]]]


@contextlib.asynccontextmanager
async def open_channels(target: str, count: int = 1, connect_timeout_s: float = 5.0, *,
                        own_connection: bool = False) -> AsyncIterator[list[grpc.aio.Channel]]:
    """`count` grpc.aio channels to `target`, each on its own HTTP/2 connection, connected
    before the first request (so that request's latency holds no TCP/HTTP/2 set-up). A
    server that is not there is not an error here: its requests come back UNAVAILABLE.
    `own_connection`: a single channel still gets a connection no other channel of this
    process shares (the ingest's, whose large messages must not queue ahead of searches)."""
    if count < 1:
        raise ValueError(f"channels must be >= 1, got {count}")
    # Channels with equal arguments share one connection through the global
    # subchannel pool; a local pool per channel gives each its own.
    options = [("grpc.use_local_subchannel_pool", 1)] if count > 1 or own_connection else []
    channels = [_channel(target, options) for _ in range(count)]
    try:
        try:
            await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), connect_timeout_s)
        except TimeoutError:
            pass
        yield channels
    finally:
        for channel in channels:
            await channel.close()


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):
    """The API key on every call (the channel's callers pass no metadata of their own)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        metadata = tuple(client_call_details.metadata or ()) + self._metadata
        return await continuation(client_call_details._replace(metadata=metadata), request)


def _channel(target: str, options: list) -> grpc.aio.Channel:
    """A channel with the API key and TLS of the client's RETRIEVAL_SVC_* variables
    (Security.from_environment; `python -m loadtest --token/--tls/--ca-file` set them)."""
    security = Security.from_environment()
    interceptors = [_Bearer(security.metadata())] if security.token else None
    credentials = security.credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


class SearchCaller:
    """call(i) -> status code name of request i of `plan`, with a deadline: one Search for
    dense/bm25/hybrid/rerank, one BatchSearch of `batch_size` queries for batch.

    `on_ok(i, answered)` sees the hits of every OK answer (quality sampling)."""

    def __init__(self, channels: Sequence[grpc.aio.Channel], plan: RequestPlan, *, deadline_s: float,
                 namespace: str = "", k: int = 10, request_prefix: str = "loadtest", batch_size: int = 8,
                 on_ok: Callable[[int, Answered], None] | None = None) -> None:
        if not deadline_s > 0:
            raise ValueError(f"deadline must be > 0 s, got {deadline_s}")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self._stubs = [rgrpc.RetrievalServiceStub(c) for c in channels]
        self.plan = plan
        self.deadline_s = deadline_s
        self.namespace = namespace
        self.k = k
        self.request_prefix = request_prefix
        self.batch_size = batch_size
        self.on_ok = on_ok

    def mode_of(self, i: int) -> str:
        return self.plan.mode(i)

    def _request(self, query_index: int, mode: str, request_id: str) -> pb.SearchRequest:
        request = pb.SearchRequest(query=self.plan.texts[query_index], namespace=self.namespace, k=self.k,
                                   mode=_MODES[mode], request_id=request_id)
        if mode == "rerank":
            request.rerank = True
        return request

    async def __call__(self, i: int) -> str:
        mode = self.plan.mode(i)
        stub = self._stubs[i % len(self._stubs)]
        request_id = f"{self.request_prefix}-{i}"
        try:
            if mode == "batch":
                indices = [self.plan.query_index(i, m) for m in range(self.batch_size)]
                batch = pb.BatchSearchRequest(queries=[self._request(q, mode, f"{request_id}-{m}")
                                                       for m, q in enumerate(indices)])
                results = list((await stub.BatchSearch(batch, timeout=self.deadline_s)).results)
            else:
                indices = [self.plan.query_index(i)]
                results = [await stub.Search(self._request(indices[0], mode, request_id), timeout=self.deadline_s)]
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        if self.on_ok is not None:
            self.on_ok(i, [(q, [hit.doc_id for hit in r.hits]) for q, r in zip(indices, results)])
        return "OK"


async def drive_search(target: str, offsets: Sequence[float], plan: RequestPlan, *, deadline_s: float,
                       namespace: str = "", k: int = 10, channels: int = 1,
                       request_prefix: str = "loadtest", batch_size: int = 8,
                       on_ok: Callable[[int, Answered], None] | None = None,
                       on_start: Callable[[float], None] | None = None) -> list[Outcome]:
    """Open-loop Search load against `target`; every call ends by its deadline, so the
    run ends at most deadline + 5 s after the last send. `on_start(start)`: as in
    `run_open_loop`, once the channels are connected."""
    async with open_channels(target, channels) as chans:
        caller = SearchCaller(chans, plan, deadline_s=deadline_s, namespace=namespace, k=k,
                              request_prefix=request_prefix, batch_size=batch_size, on_ok=on_ok)
        return await run_open_loop(offsets, caller, label=caller.mode_of, wait_after_s=deadline_s + 5.0,
                                   on_start=on_start)
