"""Dynamic batching: many concurrent callers, one model call per batch.

An accelerator (and, less dramatically, a CPU) runs one forward pass over 32
inputs far faster than 32 passes over one. `DynamicBatcher` lets request
threads submit small lists of items; one background thread gathers them until
the batch holds `max_batch_size` items or the oldest waiting request has waited
`max_wait_ms`, calls `fn` once on the concatenation, and hands each caller its
own slice of the results, in order. This is the scheme of NVIDIA Triton's
dynamic batcher and of text-embeddings-inference.

Used for the encoder (texts -> embedding rows) and the cross-encoder
((query, passage) pairs -> scores).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher was closed before (or while) the request could run."""


@dataclass(eq=False)
class _Request(Generic[T, R]):
    items: list[T]
    future: Future
    enqueued_at: float
    results: list = field(init=False)
    taken: int = 0  # items already placed into batches
    filled: int = 0  # results already written back
    started: bool = False
    started_at: float = 0.0  # when its first batch began (monotonic)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)


@dataclass(eq=False)
class _Slice:
    request: _Request
    start: int
    stop: int


class DynamicBatcher(Generic[T, R]):
    """Collects concurrent requests into batches for one call of `fn`.

    `fn` receives a list of items and must return one result per item, in
    order (a list or anything `len`-able and indexable, e.g. a numpy array,
    whose rows then come back). A request larger than `max_batch_size` is split
    across consecutive batches; its future resolves when every part is done.
    If `fn` raises (or returns the wrong number of results) every request with
    items in that batch gets the exception. `on_batch(size)` is called after
    each call of `fn` with the batch size, for metrics; its errors are logged
    and swallowed.

    The worker thread sleeps on a condition variable between requests (no
    busy-waiting). It is a daemon thread, so a stuck `fn` cannot keep the
    process alive; `close()` stops it and fails requests still waiting.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        name: str = "encoder",
        on_batch: Callable[[int], object] | None = None,
    ) -> None:
        if int(max_batch_size) != max_batch_size or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait_seconds = float(max_wait_ms) / 1000.0
        self.name = name
        self.on_batch = on_batch
        self._queue: deque[_Request] = deque()
        self._queued_items = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[T]) -> Future:
        """Queue `items`; the future resolves to their results (a list, in order).

        A caller may `cancel()` the future while it still waits in the queue.
        Raises BatcherClosed once `close()` was called.
        """
        return self._submit(items)[0]

    def _submit(self, items: Sequence[T]) -> tuple[Future, _Request | None]:
        future: Future = Future()
        items = list(items)
        if not items:
            future.set_result([])
            return future, None
        request: _Request = _Request(items, future, time.monotonic())
        with self._cond:
            if self._closed:
                raise BatcherClosed(f"batcher {self.name!r} is closed")
            self._queue.append(request)
            self._queued_items += len(items)
            self._cond.notify()
        return future, request

    def run(self, items: Sequence[T], timeout: float | None = None) -> list[R]:
        """Submit and wait. Raises TimeoutError (after cancelling the request if it
        has not started) when `timeout` seconds pass, or what `fn` raised."""
        return self.run_timed(items, timeout)[0]

    def run_timed(self, items: Sequence[T], timeout: float | None = None) -> tuple[list[R], float]:
        """As `run`, with the seconds the items waited in the queue before their first batch
        began (the rest of the wait is the model's work: text-embeddings-inference's
        queue_time apart from inference_time)."""
        future, request = self._submit(items)
        try:
            results = future.result(timeout)
            return results, (request.started_at - request.enqueued_at) if request is not None else 0.0
        except FutureTimeoutError:
            if future.done():  # fn itself raised a TimeoutError
                raise
            future.cancel()
            raise TimeoutError(
                f"batcher {self.name!r}: no result within {timeout} s"
            ) from None

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker: a batch already running finishes; requests still
        queued fail with BatcherClosed. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._cond:
            pending = list(self._queue)
            self._queue.clear()
            self._queued_items = 0
        error = BatcherClosed(f"batcher {self.name!r} closed before the request ran")
        for request in pending:
            _fail(request.future, error)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "DynamicBatcher[T, R]":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The worker thread.

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[_Slice] | None:
        """Wait for a full batch or the oldest request's deadline; None once closed."""
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                deadline = self._queue[0].enqueued_at + self.max_wait_seconds
                remaining = deadline - time.monotonic()
                if self._queued_items >= self.max_batch_size or remaining <= 0:
                    return self._take()
                self._cond.wait(remaining)

    def _take(self) -> list[_Slice]:
        """Pop up to max_batch_size items from the queue head (lock held)."""
        batch: list[_Slice] = []
        room = self.max_batch_size
        while self._queue and room > 0:
            request = self._queue[0]
            if not request.started:
                # False when the caller cancelled while the request waited.
                if not request.future.set_running_or_notify_cancel():
                    self._drop_head()
                    continue
                request.started = True
                request.started_at = time.monotonic()
            elif request.future.done():  # an earlier part failed
                self._drop_head()
                continue
            start = request.taken
            stop = min(len(request.items), start + room)
            batch.append(_Slice(request, start, stop))
            request.taken = stop
            room -= stop - start
            self._queued_items -= stop - start
            if stop == len(request.items):
                self._queue.popleft()
        return batch

    def _drop_head(self) -> None:
        request = self._queue.popleft()
        self._queued_items -= len(request.items) - request.taken

    def _run(self, batch: list[_Slice]) -> None:
        items = [item for s in batch for item in s.request.items[s.start : s.stop]]
        try:
            results = self.fn(items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"batcher {self.name!r}: fn returned {len(results)} results for {len(items)} items"
                )
        except BaseException as exc:  # every caller of this batch must hear of it
            for s in batch:
                _fail(s.request.future, exc)
        else:
            offset = 0
            for s in batch:
                request, size = s.request, s.stop - s.start
                request.results[s.start : s.stop] = [results[offset + i] for i in range(size)]
                offset += size
                request.filled += size
                if request.filled == len(request.items):
                    _resolve(request.future, request.results)
        if self.on_batch is not None:
            try:
                self.on_batch(len(items))
            except Exception:
                log.exception("batcher %r: on_batch callback failed", self.name)


def _resolve(future: Future, value: object) -> None:
    try:
        future.set_result(value)
    except InvalidStateError:
        pass  # already settled (cancelled while queued, or failed by close): drop it


def _fail(future: Future, error: BaseException) -> None:
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass


__all__ = ["BatcherClosed", "DynamicBatcher"]
