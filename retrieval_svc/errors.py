"""Domain errors. The gRPC layer maps each to its canonical status code."""

from __future__ import annotations


class StartupError(RuntimeError):
    """The server cannot start (a taken port, a store in use, an encoder the store
    was not built with); the message says why and what to do, in one line."""


class RetrievalError(Exception):
    """Base class; `code` names the gRPC status code."""

    code = "INTERNAL"


class InvalidArgument(RetrievalError):
    code = "INVALID_ARGUMENT"


class InvalidDocument(InvalidArgument):
    """A document that fails validation; says which one, which field and why.

    `reason` is one of "missing_field", "too_large", "malformed" (the proto's
    RejectionReason)."""

    def __init__(self, message: str, *, index: int, doc_id: str, field: str, reason: str) -> None:
        super().__init__(message)
        self.index = index
        self.doc_id = doc_id
        self.field = field
        self.reason = reason


class NotFound(RetrievalError):
    code = "NOT_FOUND"


class FailedPrecondition(RetrievalError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(RetrievalError):
    """Over a limit, or the server is at capacity. `retry_after_seconds` is set
    when retrying later can succeed (capacity), and None when the request itself
    is too large."""

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(RetrievalError):
    code = "UNAVAILABLE"

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class DeadlineExceeded(RetrievalError):
    """The caller's deadline passed before the work was done; it was dropped."""

    code = "DEADLINE_EXCEEDED"


class Cancelled(RetrievalError):
    """The caller went away; the work was dropped."""

    code = "CANCELLED"


class AlreadyExists(RetrievalError):
    code = "ALREADY_EXISTS"


class Unauthenticated(RetrievalError):
    """No credentials, or credentials no key matches."""

    code = "UNAUTHENTICATED"


class PermissionDenied(RetrievalError):
    """An authenticated caller without the role the call needs on a namespace it named."""

    code = "PERMISSION_DENIED"
