"""A call's deadline and cancellation, as the pipeline sees them (no gRPC here).

The transport builds one per RPC from the caller's deadline and liveness; the
ingestor, the search pipeline and the evaluation runner call `check(stage)`
before each expensive step (encoding, re-ranking, committing), so work whose
caller has gone or whose deadline has passed is dropped instead of run for
nobody.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from retrieval_svc.errors import Cancelled, DeadlineExceeded


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Deadline:
    # time.monotonic() instant after which the caller no longer wants the result; None = none.
    expires_at: float | None = None
    # True once the caller has gone away (cancelled the call or disconnected).
    cancelled: Callable[[], bool] = field(default=_never, compare=False)

    @classmethod
    def after(cls, seconds: float | None, cancelled: Callable[[], bool] = _never) -> "Deadline":
        return cls(None if seconds is None else time.monotonic() + seconds, cancelled)

    def remaining(self) -> float | None:
        """Seconds left (may be negative), or None without a deadline."""
        return None if self.expires_at is None else self.expires_at - time.monotonic()

    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at

    def check(self, before: str) -> None:
        """Raise Cancelled or DeadlineExceeded if the work should not go on to `before`."""
        # The deadline first: gRPC also cancels a call whose deadline passed.
        if self.expired():
            raise DeadlineExceeded(f"the deadline passed before {before}; the work was dropped")
        if self.cancelled():
            raise Cancelled(f"the caller went away before {before}; the work was dropped")


NO_DEADLINE = Deadline()
