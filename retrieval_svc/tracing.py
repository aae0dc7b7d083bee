"""OpenTelemetry spans for each RPC and each search stage (span names and attributes:
docs/metrics.md, "Tracing").

Off by default (`tracing.enabled: false`): `OFF` answers every call with one shared span that
does nothing; opentelemetry is not imported and no tracer provider exists, so the request path
pays a few method calls per search (bench/tracing_overhead.py measures it).

On, each App has its own TracerProvider rather than the process-wide one, so several servers in
one process (tests, benchmarks) keep their spans apart, as each Telemetry keeps its own
Prometheus registry. The caller's trace continues into the service: its W3C trace context
(`traceparent`, `tracestate` gRPC metadata) is read by opentelemetry's propagator (W3C trace
context and baggage unless OTEL_PROPAGATORS says otherwise) and becomes the RPC span's parent.
Spans go to an OTLP/gRPC collector through a BatchSpanProcessor: ending a span queues it, and a
background thread exports; a collector that is down costs log lines, not latency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ContextManager, Iterable, Mapping, Protocol

from retrieval_svc.errors import StartupError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from retrieval_svc.settings import TracingSettings

AttributeValue = str | bool | int | float
Metadata = Iterable[tuple[str, str | bytes]]

# gRPC's canonical status codes, for the rpc.grpc.status_code attribute.
_GRPC_CODES = {name: number for number, name in enumerate((
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"))}
# The codes that mark a server span as failed (OpenTelemetry's semantic conventions for gRPC):
# the others are the caller's mistakes or choices, and the server did its job.
_SERVER_ERRORS = frozenset(("UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
                            "DATA_LOSS"))


class Span(Protocol):
    """The part of opentelemetry's Span the service uses."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None: ...

    def is_recording(self) -> bool: ...

    def end(self) -> None: ...


class _NoSpan:
    """A span that records nothing; also its own context manager, so `with OFF.stage(...)` costs
    two method calls."""

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def end(self) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


class Tracing:
    """Tracing switched off: no spans. Every method returns at once with NO_SPAN."""

    enabled = False

    def rpc(self, service: str, method: str, metadata: Metadata | None) -> ContextManager[Span]:
        """The span of one RPC, current while the handler runs: a child of the trace context in
        the call's `metadata` (traceparent), or a new trace's root."""
        return NO_SPAN

    def finish_rpc(self, span: Span, code: str) -> None:
        """Record the RPC's gRPC status code (a name: "OK", "INVALID_ARGUMENT", ...)."""

    def current(self) -> Span:
        """The span current in this thread (the RPC's, in a handler)."""
        return NO_SPAN

    def start(self, name: str, parent: Span | None = None) -> Span:
        """A span under `parent` (default: the current span) that the caller ends."""
        return NO_SPAN

    def stage(self, name: str, parent: Span | None = None) -> ContextManager[Span]:
        """A span around a block, under `parent` (default: the current span); explicit parents
        let threads that do not share the handler's context (the re-rank pool) nest theirs."""
        return NO_SPAN

    def flush(self, timeout_seconds: float = 30.0) -> bool:
        """Export every ended span now; False when it did not finish in time."""
        return True

    def close(self) -> None:
        """Export what is queued and stop."""


OFF = Tracing()


class OpenTelemetryTracing(Tracing):
    """Spans through an opentelemetry-sdk TracerProvider of its own, exported by `exporter`
    (default: OTLP/gRPC to tracing.otlp_endpoint) in batches. Sampling is parent-based: a caller's
    sampled flag is followed, and traces that start here are kept at tracing.sample_ratio."""

    enabled = True

    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None,
                 service_version: str = "") -> None:
        try:
            from opentelemetry import propagate, trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.status import Status, StatusCode

            if exporter is None:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint or None,
                                            headers=dict(settings.otlp_headers) or None)
        except ImportError as exc:
            raise StartupError(
                f"tracing.enabled is true but {exc.name or 'opentelemetry'} is not installed: pip install "
                "opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc, or set tracing.enabled: false"
            ) from None
        self._trace = trace
        self._propagate = propagate
        self._status, self._error = Status, StatusCode.ERROR
        resource = Resource.create({"service.name": settings.service_name, "service.version": service_version})
        self.provider = TracerProvider(resource=resource,
                                       sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("retrieval_svc", service_version)
        self._server = trace.SpanKind.SERVER

    def rpc(self, service: str, method: str, metadata: Metadata | None) -> ContextManager[Span]:
        # Binary (-bin) metadata cannot hold trace context; the propagator reads text values.
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        return self._tracer.start_as_current_span(
            f"{service}/{method}", context=self._propagate.extract(carrier), kind=self._server,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
            # The status code says how the call ended; the abort that carries it is no exception
            # of the server's.
            record_exception=False, set_status_on_exception=False)

    def finish_rpc(self, span: Span, code: str) -> None:
        span.set_attribute("rpc.grpc.status_code", _GRPC_CODES.get(code, _GRPC_CODES["UNKNOWN"]))
        if code in _SERVER_ERRORS:
            span.set_status(self._status(self._error, code))  # type: ignore[attr-defined]

    def current(self) -> Span:
        return self._trace.get_current_span()

    def _context(self, parent: Span | None):
        return None if parent is None else self._trace.set_span_in_context(parent)  # type: ignore[arg-type]

    def start(self, name: str, parent: Span | None = None) -> Span:
        return self._tracer.start_span(name, context=self._context(parent))

    def stage(self, name: str, parent: Span | None = None) -> ContextManager[Span]:
        return self._tracer.start_as_current_span(name, context=self._context(parent))

    def flush(self, timeout_seconds: float = 30.0) -> bool:
        return self.provider.force_flush(int(timeout_seconds * 1000))

    def close(self) -> None:
        self.provider.shutdown()


def make_tracing(settings: TracingSettings, exporter: SpanExporter | None = None,
                 service_version: str = "") -> Tracing:
    """OFF unless tracing.enabled; `exporter` replaces the OTLP exporter (tests, benchmarks)."""
    if not settings.enabled:
        return OFF
    return OpenTelemetryTracing(settings, exporter, service_version)
