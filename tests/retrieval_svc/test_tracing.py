"""Call-level tracing through a real server: spans exported to an in-memory exporter, the
caller's W3C trace context sent as gRPC metadata (retrieval_svc/tracing.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import grpc
import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import evaluation_pb2_grpc as egrpc
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.app import App
from retrieval_svc.errors import StartupError
from retrieval_svc.models import CrossEncoderReranker
from retrieval_svc.server import Server
from retrieval_svc.settings import SettingsError, load_settings
from retrieval_svc.tracing import OFF, make_tracing

from server_settings import make_settings
from corpus import topic_documents

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
SEARCH = "retrieval.v1.RetrievalService/Search"


def traceparent(sampled: bool = True) -> tuple[tuple[str, str], ...]:
    return (("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN_ID}-{'01' if sampled else '00'}"),
            ("tracestate", "agent=7"))


class Served:
    def __init__(self, app: App, server: Server, exporter: InMemorySpanExporter) -> None:
        self.app, self.server, self.exporter = app, server, exporter
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.retrieval = rgrpc.RetrievalServiceStub(self.channel)
        self.evaluation = egrpc.EvaluationServiceStub(self.channel)

    def spans(self):
        """Every span ended so far (flushed from the batch processor), then forgets them."""
        assert self.app.tracing.flush(10)
        spans = self.exporter.get_finished_spans()
        self.exporter.clear()
        return spans


@pytest.fixture(scope="module")
def tiny_reranker(tiny_cross_encoder_path):
    return CrossEncoderReranker(str(tiny_cross_encoder_path), device="cpu")


@pytest.fixture
def serve(tmp_path, encoder):
    """serve(tracing={...}, reranker=None) -> Served, with the topic corpus in the default namespace."""
    running = []

    def start(reranker=None, **tracing) -> Served:
        exporter = InMemorySpanExporter()
        app = App(make_settings(tmp_path / f"store-{len(running)}", tracing=tracing),
                  encoder=encoder, reranker=reranker, span_exporter=exporter)
        app.ingestor.ingest(topic_documents())
        served = Served(app, Server(app).start(), exporter)
        running.append(served)
        return served

    yield start
    for served in running:
        served.channel.close()
        served.server.stop(0)


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


def test_search_continues_the_callers_trace_with_a_span_per_stage(serve):
    served = serve(enabled=True)
    response = served.retrieval.Search(
        pb.SearchRequest(query="bake bread in an oven", k=3, mode=pb.SEARCH_MODE_HYBRID, request_id="req-1"),
        metadata=traceparent(), timeout=30)
    spans = served.spans()
    rpc = next(s for s in spans if s.name == SEARCH)
    assert _hex(rpc.context.trace_id, 32) == TRACE_ID
    assert rpc.parent is not None and rpc.parent.is_remote and _hex(rpc.parent.span_id, 16) == CALLER_SPAN_ID
    assert rpc.context.trace_state.get("agent") == "7"
    assert rpc.kind == SpanKind.SERVER and rpc.status.status_code == StatusCode.UNSET
    a = rpc.attributes
    assert (a["rpc.system"], a["rpc.service"], a["rpc.method"], a["rpc.grpc.status_code"]) == (
        "grpc", "retrieval.v1.RetrievalService", "Search", 0)
    encoder = served.app.encoder.identity
    assert (a["retrieval.request_id"], a["retrieval.namespace"], a["retrieval.mode"], a["retrieval.fusion"]) == (
        "req-1", "default", "hybrid", "minmax")
    assert a["retrieval.encoder"] == f"{encoder.name}@{encoder.revision}" and a["retrieval.k"] == 3
    assert a["retrieval.rerank"] is False and "retrieval.reranker" not in a
    assert a["retrieval.hit_count"] == len(response.hits) == 3
    assert a["retrieval.index_generation"] == response.index_generation

    children = {s.name: s for s in spans if s.parent is not None and s.parent.span_id == rpc.context.span_id}
    assert sorted(children) == ["bm25", "dense", "encode", "fuse", "hydrate"]
    assert len(spans) == 6  # nothing else: no stray roots
    for child in children.values():
        assert child.context.trace_id == rpc.context.trace_id
        assert rpc.start_time <= child.start_time <= child.end_time <= rpc.end_time
    assert a["retrieval.dense.candidate_count"] == children["dense"].attributes["retrieval.candidate_count"]
    assert a["retrieval.bm25.candidate_count"] == children["bm25"].attributes["retrieval.candidate_count"] > 0
    assert a["retrieval.dense.candidate_count"] > 0
    assert a["retrieval.fused.candidate_count"] == children["fuse"].attributes["retrieval.candidate_count"]
    assert a["retrieval.fused.candidate_count"] >= a["retrieval.dense.candidate_count"]
    assert children["hydrate"].attributes["retrieval.chunk_count"] == 3  # k: only what is served is read
    assert children["encode"].attributes["retrieval.encoder"] == a["retrieval.encoder"]


def test_an_unsampled_caller_is_followed_and_bm25_has_no_encoder(serve):
    served = serve(enabled=True)
    served.retrieval.Search(pb.SearchRequest(query="bread"), metadata=traceparent(sampled=False), timeout=30)
    assert served.spans() == ()
    served.retrieval.Search(pb.SearchRequest(query="bread", mode=pb.SEARCH_MODE_BM25), timeout=30)
    spans = served.spans()
    rpc = next(s for s in spans if s.name == SEARCH)
    assert rpc.parent is None  # no traceparent: a trace of its own
    assert sorted(s.name for s in spans if s is not rpc) == ["bm25", "fuse", "hydrate"]
    assert "retrieval.encoder" not in rpc.attributes and "retrieval.dense.candidate_count" not in rpc.attributes
    assert rpc.attributes["retrieval.request_id"]  # the id the server made up
    # A malformed traceparent is ignored, not an error: the call starts a trace of its own.
    served.retrieval.Search(pb.SearchRequest(query="bread"), metadata=(("traceparent", "00-zz-yy-01"),), timeout=30)
    (rpc,) = [s for s in served.spans() if s.name == SEARCH]
    assert rpc.parent is None and rpc.attributes["rpc.grpc.status_code"] == 0


def test_batch_search_has_a_span_per_query_and_rerank_spans_from_the_pool(serve, tiny_reranker):
    served = serve(reranker=tiny_reranker, enabled=True)
    served.retrieval.BatchSearch(pb.BatchSearchRequest(queries=[
        pb.SearchRequest(query="telescope galaxies", request_id="a", rerank=True, rerank_top_n=4),
        pb.SearchRequest(query="interest rates", request_id="b", rerank=True, rerank_top_n=4,
                         namespace="default"),
    ]), metadata=traceparent(), timeout=60)
    spans = served.spans()
    by_id = {s.context.span_id: s for s in spans}
    rpc = next(s for s in spans if s.name == "retrieval.v1.RetrievalService/BatchSearch")
    assert _hex(rpc.context.trace_id, 32) == TRACE_ID and rpc.attributes["retrieval.query_count"] == 2
    under_rpc = sorted(s.name for s in spans if s.parent and s.parent.span_id == rpc.context.span_id)
    assert under_rpc == ["encode", "search", "search"]
    encode = next(s for s in spans if s.name == "encode")
    assert encode.attributes["retrieval.query_count"] == 2
    reranker = served.app.reranker.identity
    for request_id in ("a", "b"):
        query = next(s for s in spans if s.name == "search" and s.attributes["retrieval.request_id"] == request_id)
        assert query.attributes["retrieval.reranker"] == f"{reranker.name}@{reranker.revision}"
        assert query.attributes["retrieval.reranked.candidate_count"] == 4
        stages = sorted(s.name for s in spans if s.parent and s.parent.span_id == query.context.span_id)
        assert stages == ["bm25", "dense", "fuse", "hydrate", "rerank"]
        rerank = next(s for s in spans if s.name == "rerank" and s.parent.span_id == query.context.span_id)
        assert rerank.attributes["retrieval.candidate_count"] == 4
    # Two re-rankings ran on the re-rank pool's threads; their spans still found their queries.
    assert all(by_id[s.parent.span_id].name == "search" for s in spans if s.name == "rerank")


def test_refusals_carry_their_status_code(serve):
    served = serve(enabled=True)
    with pytest.raises(grpc.RpcError) as e:
        served.retrieval.Search(pb.SearchRequest(query="bread", namespace="nowhere"), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    (rpc,) = served.spans()
    assert rpc.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # The caller's mistake, not the server's: the span is not marked failed.
    assert rpc.status.status_code == StatusCode.UNSET


def test_evaluate_is_one_span_with_counts_not_one_per_search(serve):
    served = serve(enabled=True)
    served.evaluation.RegisterQuerySet(epb.RegisterQuerySetRequest(name="topics", queries=[
        epb.LabeledQuery(query_id=f"q{i}", text=text, judgements=[epb.Judgement(target_id=doc, relevance=1)])
        for i, (text, doc) in enumerate((("bread oven", "cooking-0"), ("galaxies", "astronomy-1"),
                                         ("sails harbour", "sailing-0")))]), timeout=30)
    served.spans()
    served.evaluation.Evaluate(epb.EvaluateRequest(query_set="topics", ks=[5]), timeout=60)
    (rpc,) = served.spans()
    assert rpc.name == "retrieval.v1.EvaluationService/Evaluate"
    a = rpc.attributes
    assert (a["retrieval.query_set"], a["retrieval.query_count"], a["retrieval.stage_count"]) == ("topics", 3, 3)
    assert a["retrieval.search_count"] == 9 and a["retrieval.namespace"] == "default"


def test_off_by_default_makes_no_spans(serve):
    served = serve()
    assert served.app.tracing is OFF and served.app.pipeline.tracing is OFF
    served.retrieval.Search(pb.SearchRequest(query="bread"), metadata=traceparent(), timeout=30)
    served.retrieval.BatchSearch(pb.BatchSearchRequest(queries=[pb.SearchRequest(query="rates")]), timeout=30)
    assert served.exporter.get_finished_spans() == ()


def test_off_does_not_import_opentelemetry():
    # A fresh interpreter: this one imported the SDK for the tests above.
    code = textwrap.dedent("""
        import sys
        import retrieval_svc.app, retrieval_svc.server
        from retrieval_svc.settings import Settings
        from retrieval_svc.tracing import make_tracing
        make_tracing(Settings().tracing)
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("tracing, fragment", [
    ({"enabled": "yes"}, "tracing.enabled: must be a valid boolean, got 'yes'"),
    ({"sample_ratio": 1.5}, "tracing.sample_ratio: must be <= 1, got 1.5"),
    ({"sample_ratio": -0.1}, "tracing.sample_ratio: must be >= 0"),
    ({"otlp_endpoint": "collector:4317"}, "tracing.otlp_endpoint: must be http://host:port"),
    ({"otlp_endpoint": "http://collector:4317/v1/traces"}, "tracing.otlp_endpoint"),
    ({"otlp_headers": {"X-Api-Key": "secret"}}, "tracing.otlp_headers.X-Api-Key: a header name must be lower-case"),
    ({"otlp_headers": ["x-api-key"]}, "tracing.otlp_headers: expected a mapping"),
    ({"service_name": " "}, "tracing.service_name: must not be empty"),
    ({"sampler": "always"}, "unknown setting tracing.sampler; known: enabled, otlp_endpoint"),
])
def test_bad_tracing_settings_name_the_key(tmp_path, tracing, fragment):
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"tracing": tracing}))
    with pytest.raises(SettingsError) as e:
        load_settings(path, environ={})
    assert fragment in str(e.value) and "secret" not in str(e.value)


def test_tracing_settings_from_the_environment_and_masked_in_json():
    s = load_settings(environ={"RETRIEVAL_SVC_TRACING__ENABLED": "true",
                               "RETRIEVAL_SVC_TRACING__OTLP_ENDPOINT": "https://collector:4317",
                               "RETRIEVAL_SVC_TRACING__OTLP_HEADERS__X-API-KEY": "secret",
                               "RETRIEVAL_SVC_TRACING__OTLP_HEADERS__X-TENANT": "4217"})
    # Names lower-cased as gRPC wants them; a number is the text it was written as.
    assert s.tracing.enabled and s.tracing.otlp_headers == {"x-api-key": "secret", "x-tenant": "4217"}
    assert "secret" not in s.to_json() and "4217" not in s.to_json()


def test_enabled_without_the_exporter_installed_stops_start_up(monkeypatch):
    settings = load_settings(environ={"RETRIEVAL_SVC_TRACING__ENABLED": "true"}).tracing
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(StartupError, match="tracing.enabled is true but .* is not installed: pip install"):
        make_tracing(settings)


def test_enabled_builds_the_otlp_exporter_without_a_collector():
    # No collector listens: start-up does not wait for one, and closing drops what it cannot send.
    settings = load_settings(environ={"RETRIEVAL_SVC_TRACING__ENABLED": "true",
                                      "RETRIEVAL_SVC_TRACING__OTLP_ENDPOINT": "http://127.0.0.1:9"}).tracing
    tracing = make_tracing(settings)
    assert tracing.enabled
    tracing.close()
