"""What every client's channel shares: where it connects, how it authenticates (docs/security.md),
its message limits and its retry policy."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Self

import grpc
from google.protobuf import descriptor_pb2

from retrieval_svc.api.retrieval.v1 import evaluation_pb2, retrieval_pb2
from retrieval_svc.api.retrieval.v1 import evaluation_pb2_grpc as egrpc
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.client._calls import Plans, Timeouts
from retrieval_svc.client._trace import trace_metadata
from retrieval_svc.client.errors import Unavailable

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# gRPC's channel waits up to 120 s between reconnection attempts by default and fails calls
# fast meanwhile, so a job retrying through a server restart could miss the server for
# minutes after it is back. 5 s keeps the client's own backoff in charge.
MAX_RECONNECT_BACKOFF_MS = 5000

# Environment variables the CLI and `from_environment` read.
ENV_TARGET = "RETRIEVAL_SVC_TARGET"
ENV_TOKEN = "RETRIEVAL_SVC_TOKEN"
ENV_TLS = "RETRIEVAL_SVC_TLS"
ENV_CA_FILE = "RETRIEVAL_SVC_CA_FILE"
ENV_CERT_FILE = "RETRIEVAL_SVC_CERT_FILE"
ENV_KEY_FILE = "RETRIEVAL_SVC_KEY_FILE"

RETRIEVAL_SERVICE = "retrieval.v1.RetrievalService"
EVALUATION_SERVICE = "retrieval.v1.EvaluationService"


def _methods(file: Any) -> tuple[str, tuple[str, ...]]:
    (service,) = file.DESCRIPTOR.services_by_name.values()
    return service.full_name, tuple(method.name for method in service.methods)


def _retried(file: Any) -> tuple[str, tuple[str, ...]]:
    (service,) = file.DESCRIPTOR.services_by_name.values()
    unknown = descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN
    return service.full_name, tuple(method.name for method in service.methods
                                    if method.GetOptions().idempotency_level != unknown)


# Every RPC of the API, from the protos (an RPC added there is callable by name at once).
ALL_METHODS = (_methods(retrieval_pb2), _methods(evaluation_pb2))
# Calls the channel retries on UNAVAILABLE: exactly those the protos mark safe to repeat,
# `idempotency_level` NO_SIDE_EFFECTS (Info, GetChunk, ListQuerySets, ...) or IDEMPOTENT
# (Search, IngestBatch, DeleteDocuments, ...), so the retries and the API's promise cannot
# disagree. A repeated write leaves the same state: IngestBatch re-sent embeds nothing for
# documents already committed, DeleteDocuments re-sent finds them gone; only the summary of a
# retried call counts what the retry did (documents "unchanged" rather than "added", doc_ids
# "not_found" rather than deleted) when the first attempt committed and its reply was lost.
# Client-streaming Ingest is marked neither and not retried: its messages commit one by one,
# and the status of a failed stream says how many documents were committed, so the caller
# resends the rest. RESOURCE_EXHAUSTED is not retried here either: gRPC's retry ignores the
# server's RetryInfo delay, so the error carries it to the caller (retry_after_seconds).
RETRIED_METHODS = (_retried(retrieval_pb2), _retried(evaluation_pb2))
# A request larger than this is sent once: gRPC keeps each attempt's messages in a buffer
# to replay them, 256 KiB by default, too small for an ingest batch.
RETRY_BUFFER_BYTES = 16 * 1024 * 1024


def service_config(max_attempts: int) -> str:
    """The gRPC service config (JSON) with a retryPolicy for RETRIED_METHODS: up to
    `max_attempts` attempts (gRPC caps it at 5), the n-th retry after a random delay in
    [0, min(5 s, 0.2 s * 2^(n-1))] (gRPC's A6 retry design)."""
    if max_attempts <= 1:
        return json.dumps({})
    return json.dumps({"methodConfig": [{
        "name": [{"service": service, "method": method}
                 for service, methods in RETRIED_METHODS for method in methods],
        "retryPolicy": {"maxAttempts": max_attempts, "initialBackoff": "0.2s", "maxBackoff": "5s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }]})


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class Security:
    """How a client authenticates (docs/security.md): `token` is sent as
    `authorization: Bearer <token>`; `tls` (implied by `ca_file` and `cert_file`) speaks TLS,
    trusting `ca_file` (PEM) or the system's roots; `cert_file` and `key_file` are the client
    certificate for mTLS; `server_name` overrides the name checked against the server's
    certificate (for a target given as an IP address the certificate does not list)."""

    token: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs both cert_file and key_file")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Security":
        """RETRIEVAL_SVC_TOKEN, RETRIEVAL_SVC_TLS (1/true/yes/on), RETRIEVAL_SVC_CA_FILE,
        RETRIEVAL_SVC_CERT_FILE and RETRIEVAL_SVC_KEY_FILE, each replaced by an `overrides`
        keyword (token, tls, ca_file, ...) that is not None."""
        env = os.environ if environ is None else environ
        options: dict[str, Any] = {
            "token": env.get(ENV_TOKEN) or None,
            "tls": env.get(ENV_TLS, "").strip().lower() in ("1", "true", "yes", "on"),
            "ca_file": env.get(ENV_CA_FILE) or None,
            "cert_file": env.get(ENV_CERT_FILE) or None,
            "key_file": env.get(ENV_KEY_FILE) or None,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**options)

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.ca_file or self.cert_file)

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for plaintext. ValueError for a file it cannot read."""
        if not self.uses_tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "CA file") if self.ca_file else None,
            private_key=_read(self.key_file, "client key file") if self.key_file else None,
            certificate_chain=_read(self.cert_file, "client certificate file") if self.cert_file else None,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata: the token, sent as call metadata rather than call credentials so
        that it also reaches a plaintext loopback server."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def channel_options(security: Security, max_attempts: int = 1) -> list[tuple[str, int | str]]:
    """Channel arguments: message limits, reconnect backoff, the TLS name override and, for
    `max_attempts` > 1, the retry policy."""
    if not 1 <= max_attempts <= 5:
        raise ValueError(f"max_attempts must be 1 (no retries) to 5 (gRPC's cap), got {max_attempts}")
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    if security.uses_tls and security.server_name:
        options.append(("grpc.ssl_target_name_override", security.server_name))
    if max_attempts > 1:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", service_config(max_attempts)),
                    ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES)]
    return options


def security_from_environment(environ: Mapping[str, str] | None, options: dict[str, Any]) -> dict[str, Any]:
    """The security keywords of a client constructor, from the environment (Security.from_environment)
    with those in `options` that are not None; removes them from `options`."""
    given = {name: options.pop(name) for name in list(options) if name in Security.__dataclass_fields__}
    security = Security.from_environment(environ, **given)
    return {name: getattr(security, name) for name in Security.__dataclass_fields__}


def no_server(target: str, waited_seconds: float) -> Unavailable:
    """The error for a channel that did not connect in time."""
    return Unavailable(grpc.StatusCode.UNAVAILABLE, f"no server answered at {target} within {waited_seconds:g} s")


def open_channel(channels: Any, target: str, security: Security, max_attempts: int) -> Any:
    """A channel to `target` from `channels`, the grpc module or grpc.aio (their
    secure_channel and insecure_channel take the same arguments)."""
    options = channel_options(security, max_attempts)
    credentials = security.credentials()
    if credentials is None:
        return channels.insecure_channel(target, options=options)
    return channels.secure_channel(target, credentials, options=options)


def stub_methods(channel: Any) -> dict[str, Any]:
    """Every RPC of the API on `channel`, by method name ("Search", "Evaluate", ...)."""
    stubs = (rgrpc.RetrievalServiceStub(channel), egrpc.EvaluationServiceStub(channel))
    return {method: getattr(stub, method) for stub, (_, methods) in zip(stubs, ALL_METHODS) for method in methods}


class ClientCore:
    """What RetrievalClient and AsyncRetrievalClient share: the constructor (target, deadlines,
    security, retries) and `from_environment`. `_channels` is the grpc module or grpc.aio."""

    _channels: ClassVar[Any]

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float | None = 30.0,
                 ingest_timeout: float | None = 300.0, evaluate_timeout: float | None = 600.0,
                 token: str | None = None, tls: bool = False, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, server_name: str | None = None,
                 max_attempts: int = 5) -> None:
        security = Security(token, tls, ca_file, cert_file, key_file, server_name)
        self.target = target
        self.timeouts = Timeouts(timeout, ingest_timeout, evaluate_timeout)
        self._plans = Plans(self.timeouts)
        self._metadata = security.metadata()
        self.channel = open_channel(self._channels, target, security, max_attempts)
        self._methods = stub_methods(self.channel)

    def _call_metadata(self) -> tuple[tuple[str, str], ...] | None:
        """A call's metadata: the token, and the trace context of the caller's current span
        (retrieval_svc.client._trace), read at each call."""
        return (self._metadata + trace_metadata()) or None

    @classmethod
    def from_environment(cls, target: str | None = None, environ: Mapping[str, str] | None = None,
                         **options: Any) -> Self:
        """A client whose target (when `target` is None) and security options come from
        RETRIEVAL_SVC_TARGET, RETRIEVAL_SVC_TOKEN, RETRIEVAL_SVC_TLS (1/true/yes/on),
        RETRIEVAL_SVC_CA_FILE, RETRIEVAL_SVC_CERT_FILE and RETRIEVAL_SVC_KEY_FILE; a security
        keyword in `options` that is not None replaces its variable."""
        target = target or (os.environ if environ is None else environ).get(ENV_TARGET) or DEFAULT_TARGET
        security = security_from_environment(environ, options)
        return cls(target, **security, **options)
