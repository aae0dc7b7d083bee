"""Errors of the retrieval client.

A failed call raises one exception class per status code a caller handles differently
(NotFound, InvalidArgument, FailedPrecondition, ResourceExhausted, Unavailable,
DeadlineExceeded, Unauthenticated, PermissionDenied); any other code raises their base,
RetrievalError. Each is still a `grpc.RpcError` with the call's `code()`, `details()` and
`trailing_metadata()`, so code written against the generated stubs keeps working, and
each carries the server's google.rpc details (docs: protos/retrieval/v1/retrieval.proto):
BadRequest field violations and the RetryInfo delay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class FieldViolation(NamedTuple):
    """One google.rpc.BadRequest field violation, e.g.
    ("documents[3].text", "document 3 ...: text and title are both blank")."""

    field: str
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """The google.rpc details of a failed call: the server's RetryInfo delay (None when it
    sent none: retrying the same request will not help) and BadRequest field violations."""

    retry_after_seconds: float | None = None
    field_violations: tuple[FieldViolation, ...] = ()

    def document_index(self) -> int | None:
        """Position in the request of the first document a field violation names."""
        for violation in self.field_violations:
            match = re.match(r"documents\[(\d+)\]", violation.field)
            if match:
                return int(match.group(1))
        return None


def error_details(exc: grpc.RpcError) -> ErrorDetails:
    """Unpack RetryInfo and BadRequest from a failed call's status details (a sync call's
    error or a grpc.aio one)."""
    if isinstance(exc, RetrievalError):
        return exc.error_details
    if not hasattr(exc, "trailing_metadata"):
        return ErrorDetails()
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]  # a grpc.aio error has the same methods
    except ValueError:  # details that disagree with the status: trust the status alone
        return ErrorDetails()
    if status is None:
        return ErrorDetails()
    retry_after: float | None = None
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_after = info.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return ErrorDetails(retry_after, tuple(violations))


class RetrievalError(grpc.RpcError):
    """A call the server (or the channel) failed. `code()` is the grpc.StatusCode and
    `details()` the server's message, as on a grpc.RpcError; `message` is that message."""

    def __init__(self, code: grpc.StatusCode, message: str, details: ErrorDetails | None = None,
                 trailing_metadata: Any = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self._code = code
        self.message = message
        self.error_details = details or ErrorDetails()
        self._trailing_metadata = trailing_metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self.message

    def trailing_metadata(self) -> Any:
        return self._trailing_metadata

    @property
    def field_violations(self) -> tuple[FieldViolation, ...]:
        return self.error_details.field_violations

    @property
    def retry_after_seconds(self) -> float | None:
        return self.error_details.retry_after_seconds


class InvalidArgument(RetrievalError):
    """INVALID_ARGUMENT: the request is malformed; `field_violations` name the bad fields
    of a document (`documents[i].field`)."""


class FailedPrecondition(RetrievalError):
    """FAILED_PRECONDITION: the server cannot do what was asked as configured (re-ranking
    without a reranker)."""


class NotFound(RetrievalError):
    """NOT_FOUND: no such namespace, document, chunk or query set."""


class ResourceExhausted(RetrievalError):
    """RESOURCE_EXHAUSTED: the server is at capacity (retry after `retry_after_seconds`)
    or the request is over a limit (`retry_after_seconds` is None: retrying cannot help)."""


class Unavailable(RetrievalError):
    """UNAVAILABLE: no server answered, or it is shutting down (already retried through
    the channel's retry policy for calls that are safe to retry)."""


class DeadlineExceeded(RetrievalError):
    """DEADLINE_EXCEEDED: the call's deadline passed; the server dropped the work."""


class Unauthenticated(RetrievalError):
    """UNAUTHENTICATED: no valid API key (`token`) or client certificate."""


class PermissionDenied(RetrievalError):
    """PERMISSION_DENIED: the key has no role on the namespace the message names."""


_CLASSES: dict[grpc.StatusCode, type[RetrievalError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def from_rpc_error(exc: grpc.RpcError) -> RetrievalError:
    """The typed error for a failed call (sync or grpc.aio)."""
    if isinstance(exc, RetrievalError):
        return exc
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    cls = _CLASSES.get(code, RetrievalError)
    return cls(code, message, error_details(exc), metadata)
