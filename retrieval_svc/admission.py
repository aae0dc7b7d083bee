"""Admission control: a bounded number of calls run, a bounded number wait, the rest are refused.

Past its capacity a server that queues without bound only adds latency: every
request waits behind the backlog, most finish after their callers gave up, and
the work is done for nobody. A `Pool` admits up to `in_flight` calls at once and
lets up to `queue` more wait, each at most `queue_timeout_seconds` and never past
its own deadline; a call beyond that is refused at once with RESOURCE_EXHAUSTED
and a retry hint, which a client (or a load balancer) can act on. This is the
"bounded concurrency plus short queue" scheme of Envoy's adaptive concurrency and
gRPC's `maximum_concurrent_rpcs`, with the wait bounded by the caller's deadline
(a call that could only finish late is not admitted).

A caller is also refused at once, not after waiting, when its wait would be too
long anyway: the pool keeps a moving average of how long a call holds a slot, and
expected wait = (calls waiting + 1) x that average / in_flight. Past
`queue_timeout_seconds`, or past the caller's own deadline, the call is refused
before it waits, so a refusal costs the caller (and a handler thread) almost
nothing and what is admitted keeps its latency.

Waiters are served in arrival order (a ticket queue), so a burst cannot starve
the oldest caller.
"""

from __future__ import annotations

import collections
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from retrieval_svc.deadline import Deadline
from retrieval_svc.errors import Cancelled, DeadlineExceeded, ResourceExhausted

# Weight of the newest sample in the moving average of slot-holding time.
_EWMA_WEIGHT = 0.2


class Pool:
    def __init__(
        self,
        name: str,
        in_flight: int,
        queue: int,
        queue_timeout_seconds: float,
        retry_after_seconds: float,
        on_refused: Callable[[str, str], object] | None = None,
        on_wait: Callable[[str, float], object] | None = None,
    ) -> None:
        self.name = name
        self.in_flight = in_flight
        self.queue = queue
        self.queue_timeout_seconds = queue_timeout_seconds
        self.retry_after_seconds = retry_after_seconds
        self._on_refused = on_refused
        self._on_wait = on_wait
        self._cond = threading.Condition(threading.Lock())
        self._running = 0
        self._waiting: collections.deque[object] = collections.deque()
        self._hold_seconds = 0.0  # moving average of how long a call holds a slot; 0 = no sample yet

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _refuse(self, reason: str, message: str) -> ResourceExhausted:
        if self._on_refused is not None:
            self._on_refused(self.name, reason)
        return ResourceExhausted(message, retry_after_seconds=self.retry_after_seconds)

    @contextmanager
    def slot(self, deadline: Deadline, *, timed: bool = True) -> Iterator[None]:
        """Hold one of the pool's running slots for the block; see the module docstring.
        `timed=False` leaves the block out of the slot-holding average (a long
        evaluation would otherwise make every search look slow)."""
        started = time.monotonic()
        with self._cond:
            if self._running < self.in_flight and not self._waiting:
                self._running += 1
            else:
                self._wait(deadline)
        if self._on_wait is not None:
            self._on_wait(self.name, time.monotonic() - started)
        admitted = time.monotonic()
        try:
            yield
        finally:
            held = time.monotonic() - admitted
            with self._cond:
                self._running -= 1
                if timed:
                    self._hold_seconds = held if not self._hold_seconds else (
                        (1 - _EWMA_WEIGHT) * self._hold_seconds + _EWMA_WEIGHT * held)
                self._cond.notify_all()

    def expected_wait(self) -> float:
        """Seconds a call arriving now would wait for a slot (0 while no call has finished)."""
        return (len(self._waiting) + 1) * self._hold_seconds / self.in_flight

    def _wait(self, deadline: Deadline) -> None:
        """With the lock held: queue for a slot, or raise."""
        if len(self._waiting) >= self.queue:
            raise self._refuse(
                "queue_full",
                f"the server is at capacity: {self._running} {self.name} calls running and "
                f"{len(self._waiting)} waiting (admission.{self.name}_in_flight="
                f"{self.in_flight}, admission.{self.name}_queue={self.queue}); "
                f"retry after {self.retry_after_seconds:g}s",
            )
        remaining = deadline.remaining()
        timeout = self.queue_timeout_seconds if remaining is None else min(
            self.queue_timeout_seconds, remaining)
        expected = self.expected_wait()
        if expected > timeout:
            raise self._refuse(
                "expected_wait",
                f"the server is at capacity: a {self.name} call would wait about {expected:.3f}s for one "
                f"of {self.in_flight} slots ({len(self._waiting)} waiting), longer than "
                + ("its deadline allows" if timeout < self.queue_timeout_seconds
                   else f"admission.queue_timeout_seconds={self.queue_timeout_seconds:g}")
                + f"; retry after {self.retry_after_seconds:g}s",
            )
        give_up = time.monotonic() + timeout
        ticket = object()
        self._waiting.append(ticket)
        try:
            while not (self._waiting[0] is ticket and self._running < self.in_flight):
                left = give_up - time.monotonic()
                if left <= 0 or deadline.cancelled():
                    break
                self._cond.wait(min(left, 0.05))
            else:
                self._running += 1
                return
        finally:
            self._waiting.remove(ticket)
            self._cond.notify_all()
        if deadline.cancelled() and not deadline.expired():  # gRPC cancels expired calls too
            raise Cancelled(f"the caller went away while waiting for a {self.name} slot")
        if deadline.expired() or (remaining is not None and remaining <= self.queue_timeout_seconds):
            if self._on_refused is not None:
                self._on_refused(self.name, "deadline")
            raise DeadlineExceeded(
                f"the deadline passed while waiting for a {self.name} slot "
                f"({self.in_flight} running); the call was not run")
        raise self._refuse(
            "queue_timeout",
            f"the server is at capacity: waited {self.queue_timeout_seconds:g}s "
            f"(admission.queue_timeout_seconds) for one of {self.in_flight} {self.name} slots; "
            f"retry after {self.retry_after_seconds:g}s",
        )
