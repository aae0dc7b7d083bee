"""Retrying a failed call with backoff, for jobs that must get through a server restart
(`retrieval-svc ingest`). The typed clients need none of this for a single call: their
channel retries UNAVAILABLE itself (retrieval_svc.client._channel.service_config)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import grpc

from retrieval_svc.client.errors import error_details

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed calls to retry, and after how long.

    Retried: UNAVAILABLE (the server is restarting or unreachable), DEADLINE_EXCEEDED, and
    RESOURCE_EXHAUSTED when the server sent a RetryInfo (its admission queue was full; a
    request over a limit gets none and is not retried). Retry n (0-based) waits a capped
    exponential backoff with "equal jitter", b = min(max_backoff, initial * 2**n), uniform in
    [b/2, b] (Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015), and
    never less than the server's RetryInfo delay. A call is given up after `retries` retries
    or once `max_seconds` have passed since its first failure, whichever comes first.
    """

    retries: int = 10
    max_seconds: float = 300.0
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0

    def delay(self, exc: grpc.RpcError, attempt: int, elapsed_seconds: float) -> float | None:
        """Seconds to wait before retry `attempt` (0-based) after `exc`, `elapsed_seconds`
        after the call first failed; None to give up."""
        code = exc.code() if hasattr(exc, "code") else None
        details = error_details(exc)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            if details.retry_after_seconds is None:
                return None
        elif code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return None
        remaining = self.max_seconds - elapsed_seconds
        if attempt >= self.retries or remaining <= 0:
            return None
        backoff = min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** attempt)
        delay = max(random.uniform(backoff / 2, backoff), details.retry_after_seconds or 0.0)
        return min(delay, remaining)


def call_with_retries(call: Callable[[], T], policy: RetryPolicy,
                      on_retry: Callable[[grpc.RpcError, float], None] | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """call(), retried as `policy` says; `on_retry(error, delay_seconds)` before each wait.
    Raises the last error when the policy gives up."""
    attempt = 0
    first_failure: float | None = None
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            delay = policy.delay(exc, attempt, now - first_failure)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
            attempt += 1
