"""Domain errors. The gRPC layer maps each to its canonical status code."""


class RetrievalError(Exception):
    """Base class; `code` names the gRPC status code."""

    code = "INTERNAL"


class InvalidArgument(RetrievalError):
    code = "INVALID_ARGUMENT"


class NotFound(RetrievalError):
    code = "NOT_FOUND"


class FailedPrecondition(RetrievalError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(RetrievalError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(RetrievalError):
    code = "UNAVAILABLE"
