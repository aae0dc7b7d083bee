"""The clients' channel retries UNAVAILABLE for the calls that are safe to repeat, and no
other failure. Against a scripted server: it fails a call as told, and counts attempts."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent import futures

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.client import (
    AsyncRetrievalClient, ResourceExhausted, RetrievalClient, Security, Unavailable,
)
from retrieval_svc.client._channel import ALL_METHODS, RETRIED_METHODS, channel_options


class Scripted(rgrpc.RetrievalServiceServicer):
    """Fails the first `failures` attempts of each RPC with `code`, then answers."""

    def __init__(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
                 retry_after: float | None = None) -> None:
        self.failures, self.code, self.retry_after = failures, code, retry_after
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()

    def _attempt(self, method: str, context) -> None:
        with self.lock:
            self.attempts[method] = self.attempts.get(method, 0) + 1
            n = self.attempts[method]
        if n <= self.failures:
            status = status_pb2.Status(code=self.code.value[0], message=f"{self.code.name} attempt {n}")
            if self.retry_after is not None:
                info = error_details_pb2.RetryInfo()
                info.retry_delay.FromNanoseconds(int(self.retry_after * 1e9))
                status.details.add().Pack(info)
            context.abort_with_status(rpc_status.to_status(status))

    def Search(self, request, context):
        self._attempt("Search", context)
        return pb.SearchResponse(request_id=request.request_id, mode=pb.SEARCH_MODE_BM25, hits=[
            pb.Hit(doc_id="d", chunk_id="c", rank=1, score=1.5, bm25=pb.StageScore(rank=1, score=1.5))])

    def IngestBatch(self, request, context):
        self._attempt("IngestBatch", context)
        return pb.IngestSummary(added_document_count=len(request.documents))

    def Ingest(self, request_iterator, context):
        documents = sum(len(r.documents) for r in request_iterator)
        self._attempt("Ingest", context)
        return pb.IngestSummary(added_document_count=documents)


@pytest.fixture
def scripted():
    servers = []

    def start(servicer: Scripted) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(4))
        rgrpc.add_RetrievalServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


def test_service_config_names_the_retried_methods():
    options = dict(channel_options(Security(), max_attempts=5))
    config = json.loads(options["grpc.service_config"])
    (method_config,) = config["methodConfig"]
    names = {(n["service"], n["method"]) for n in method_config["name"]}
    assert ("retrieval.v1.RetrievalService", "Search") in names
    assert ("retrieval.v1.RetrievalService", "IngestBatch") in names
    assert ("retrieval.v1.RetrievalService", "Ingest") not in names  # client-streaming: not retried
    assert len(names) == sum(len(methods) for _, methods in RETRIED_METHODS)
    # The protos' idempotency_level decides (tests/test_protos.py): every RPC but Ingest.
    every = {(service, method) for service, methods in ALL_METHODS for method in methods}
    assert names == every - {("retrieval.v1.RetrievalService", "Ingest")}
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert "grpc.service_config" not in dict(channel_options(Security(), max_attempts=1))


def test_unavailable_is_retried_for_reads_and_ingest_batch(scripted):
    servicer = Scripted(failures=2)
    with RetrievalClient(scripted(servicer)) as client:
        result = client.search("anything", request_id="r1")
        assert result.hits[0].lineage.bm25.rank == 1 and result.request_id == "r1"
        assert client.ingest_batch([{"doc_id": "a", "text": "x"}]).added_document_count == 1
    assert servicer.attempts == {"Search": 3, "IngestBatch": 3}


def test_retries_give_up_after_max_attempts_and_streaming_ingest_is_not_retried(scripted):
    servicer = Scripted(failures=10)
    with RetrievalClient(scripted(servicer), max_attempts=3) as client:
        with pytest.raises(Unavailable) as gone:
            client.search("anything")
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE and "attempt 3" in gone.value.message
        with pytest.raises(Unavailable):
            client.ingest([{"doc_id": "a", "text": "x"}])
    assert servicer.attempts == {"Search": 3, "Ingest": 1}


def test_resource_exhausted_is_not_retried_and_carries_the_retry_delay(scripted):
    servicer = Scripted(failures=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=1.5)
    with RetrievalClient(scripted(servicer)) as client:
        with pytest.raises(ResourceExhausted) as busy:
            client.search("anything")
    assert busy.value.retry_after_seconds == 1.5 and busy.value.code().value[0] == code_pb2.RESOURCE_EXHAUSTED
    assert servicer.attempts == {"Search": 1}


def test_async_client_retries_too(scripted):
    servicer = Scripted(failures=2)
    target = scripted(servicer)

    async def search():
        async with AsyncRetrievalClient(target) as client:
            return await client.search("anything")

    assert asyncio.run(search()).hits[0].doc_id == "d"
    assert servicer.attempts == {"Search": 3}


def test_no_server_fails_fast_with_unavailable():
    """Nothing listens: the call's retries meet a refused connection each time and give up
    within seconds, not at the deadline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RetrievalClient(f"127.0.0.1:{port}", timeout=60) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as gone:
            client.search("anything")
        assert time.monotonic() - started < 15 and gone.value.code() == grpc.StatusCode.UNAVAILABLE
