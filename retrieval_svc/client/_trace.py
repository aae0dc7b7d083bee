"""The caller's W3C trace context as call metadata, so that an application's trace continues
into the server: its RPC and stage spans become children of the span current at the call
(the server reads `traceparent` and `tracestate`: retrieval_svc/tracing.py).

opentelemetry is optional for the client (`pip install retrieval-svc` does not bring it) and
never imported by it up front: a span can only be current where the application has imported
opentelemetry itself, so until `opentelemetry.context` is in sys.modules a call costs one
dictionary lookup here and sends nothing more.
"""

from __future__ import annotations

import sys


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """The current context as gRPC metadata, written by opentelemetry's global propagator (W3C
    trace context and baggage unless OTEL_PROPAGATORS says otherwise); empty without
    opentelemetry or without a current span."""
    if "opentelemetry.context" not in sys.modules:
        return ()
    try:
        from opentelemetry import propagate
    except ImportError:  # opentelemetry-api without its propagators: nothing to send
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    # gRPC metadata keys are lowercase; W3C's already are, other propagators' (B3) need not be.
    return tuple((key.lower(), value) for key, value in carrier.items())
