"""The typed clients send the caller's W3C trace context: a call made while an OpenTelemetry
span is current yields server spans in that span's trace, under it
(retrieval_svc/client/_trace.py; the server's side: tests/retrieval_svc/test_tracing.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from retrieval_svc.app import App
from retrieval_svc.client import AsyncRetrievalClient, RetrievalClient
from retrieval_svc.client._trace import trace_metadata
from retrieval_svc.server import Server

from corpus import topic_documents  # on sys.path via tests/retrieval_svc/conftest.py
from server_settings import make_settings

SEARCH = "retrieval.v1.RetrievalService/Search"
INFO = "retrieval.v1.RetrievalService/Info"


@pytest.fixture
def traced(tmp_path, encoder):
    """A server with tracing on and its spans in memory: (target, spans) where spans() returns
    the spans ended so far and forgets them."""
    exporter = InMemorySpanExporter()
    app = App(make_settings(tmp_path / "store", tracing={"enabled": True}), encoder=encoder,
              span_exporter=exporter)
    app.ingestor.ingest(topic_documents())
    server = Server(app).start()

    def spans():
        assert app.tracing.flush(10)
        ended = exporter.get_finished_spans()
        exporter.clear()
        return ended

    yield f"127.0.0.1:{server.port}", spans
    server.stop(0)


@pytest.fixture
def tracer():
    # The caller's own provider, not the process-wide one: what makes a span current is the
    # context, which the client reads whatever provider made the span.
    return TracerProvider().get_tracer("agent")


def _under(span, parent) -> bool:
    return (span.context.trace_id == parent.get_span_context().trace_id and span.parent is not None
            and span.parent.is_remote and span.parent.span_id == parent.get_span_context().span_id)


def test_calls_inside_a_span_continue_its_trace_and_calls_outside_start_their_own(traced, tracer):
    target, spans = traced
    with RetrievalClient(target) as client:
        with tracer.start_as_current_span("agent-step") as step:
            client.search("bake bread in an oven", k=2, mode="hybrid")
            client.info()
        traced_spans = spans()
        client.search("bread", k=1)
        untraced = spans()

    search = next(s for s in traced_spans if s.name == SEARCH)
    info = next(s for s in traced_spans if s.name == INFO)
    assert search.kind == SpanKind.SERVER and _under(search, step) and _under(info, step)
    stages = [s for s in traced_spans if s.parent is not None and s.parent.span_id == search.context.span_id]
    assert {s.name for s in stages} == {"encode", "dense", "bm25", "fuse", "hydrate"}
    assert all(s.context.trace_id == step.get_span_context().trace_id for s in stages)

    (alone,) = [s for s in untraced if s.name == SEARCH]
    assert alone.parent is None and alone.context.trace_id != step.get_span_context().trace_id


def test_the_async_client_sends_the_current_span_of_its_task(traced, tracer):
    target, spans = traced

    async def main():
        async with AsyncRetrievalClient(target) as client:
            with tracer.start_as_current_span("async-agent-step") as step:
                await client.search("bake bread in an oven", k=2)
            return step

    step = asyncio.run(main())
    (search,) = [s for s in spans() if s.name == SEARCH]
    assert _under(search, step)


def test_no_span_no_metadata_and_without_opentelemetry_nothing_is_imported(tracer):
    assert trace_metadata() == ()  # opentelemetry is loaded here, but no span is current
    with tracer.start_as_current_span("step") as step:
        (traceparent,) = [value for key, value in trace_metadata() if key == "traceparent"]
    context = step.get_span_context()
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")  # then the flags
    probe = ("import sys; from retrieval_svc.client._trace import trace_metadata; "
             "print(trace_metadata(), any(m.startswith('opentelemetry') for m in sys.modules))")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.split() == ["()", "False"], ran.stdout + ran.stderr
