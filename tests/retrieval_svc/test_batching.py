"""DynamicBatcher: results in order under concurrency, batches form, size cap,
exception propagation, cancellation and close()."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from retrieval_svc.batching import BatcherClosed, DynamicBatcher


class Recorder:
    """fn for a batcher: doubles each item, records each batch, optionally waits on a gate."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        self.batches: list[list] = []
        self.delay = delay
        self.gate = gate
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, items):
        with self._lock:
            self.batches.append(list(items))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        return [x * 2 for x in items]


def test_concurrent_callers_get_their_own_results_in_order():
    fn = Recorder(delay=0.005)
    batcher = DynamicBatcher(fn, max_batch_size=16, max_wait_ms=20, name="test")
    callers = 24
    start = threading.Barrier(callers)
    results: dict[int, list] = {}

    def call(i: int) -> None:
        items = [i * 1000 + j for j in range(1 + i % 5)]  # 1..5 items each
        start.wait()
        results[i] = batcher.run(items, timeout=10)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    batcher.close()
    for i in range(callers):
        assert results[i] == [2 * (i * 1000 + j) for j in range(1 + i % 5)]
    sizes = [len(b) for b in fn.batches]
    assert sum(sizes) == sum(1 + i % 5 for i in range(callers))
    assert max(sizes) <= 16
    assert len(fn.batches) < callers  # requests were actually batched together
    assert max(sizes) > 5  # some batch held more than one request


def test_large_request_is_split_across_batches():
    fn = Recorder()
    sizes: list[int] = []
    with DynamicBatcher(fn, max_batch_size=4, max_wait_ms=0, on_batch=sizes.append) as batcher:
        assert batcher.run(list(range(10)), timeout=5) == [2 * x for x in range(10)]
    assert [len(b) for b in fn.batches] == [4, 4, 2]
    assert sizes == [4, 4, 2]
    assert [x for b in fn.batches for x in b] == list(range(10))


def test_full_batch_dispatches_without_waiting_for_max_wait():
    fn = Recorder()
    with DynamicBatcher(fn, max_batch_size=3, max_wait_ms=60_000) as batcher:
        started = time.monotonic()
        assert batcher.run([1, 2, 3], timeout=5) == [2, 4, 6]
        assert time.monotonic() - started < 5


def test_lone_request_waits_for_max_wait_then_runs():
    fn = Recorder()
    with DynamicBatcher(fn, max_batch_size=100, max_wait_ms=30) as batcher:
        started = time.monotonic()
        assert batcher.run([1], timeout=5) == [2]
        # Lower bound only: the worker holds a partial batch until the deadline.
        assert time.monotonic() - started >= 0.029


def test_exception_reaches_every_caller_of_the_batch():
    calls = []

    def broken(items):
        calls.append(list(items))
        raise ValueError("model exploded")

    # Two one-item requests fill a batch of 2, so they share one call of fn.
    with DynamicBatcher(broken, max_batch_size=2, max_wait_ms=60_000) as batcher:
        first, second = batcher.submit(["a"]), batcher.submit(["b"])
        for future in (first, second):
            with pytest.raises(ValueError, match="model exploded"):
                future.result(timeout=5)
    assert calls == [["a", "b"]]


def test_timeout_error_raised_by_fn_is_not_mistaken_for_a_wait_timeout():
    def stalls(items):
        raise TimeoutError("device stalled")

    with DynamicBatcher(stalls, max_wait_ms=0) as batcher:
        with pytest.raises(TimeoutError, match="device stalled"):
            batcher.run([1], timeout=5)


def test_wrong_number_of_results_is_an_error():
    with DynamicBatcher(lambda items: items[:-1], max_batch_size=8, max_wait_ms=0) as batcher:
        with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
            batcher.run([1, 2], timeout=5)


def test_worker_survives_a_failed_batch():
    state = {"fail": True}

    def flaky(items):
        if state.pop("fail", False):
            raise ValueError("once")
        return [x + 1 for x in items]

    with DynamicBatcher(flaky, max_batch_size=8, max_wait_ms=0) as batcher:
        with pytest.raises(ValueError):
            batcher.run([1], timeout=5)
        assert batcher.run([1, 2], timeout=5) == [2, 3]


def test_numpy_rows_come_back_per_caller():
    def embed(texts):
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    with DynamicBatcher(embed, max_batch_size=8, max_wait_ms=0) as batcher:
        rows = batcher.run(["a", "bbb"], timeout=5)
    assert np.array_equal(np.stack(rows), np.array([[1, 1], [3, 1]], dtype=np.float32))


def test_cancelled_request_never_reaches_fn():
    gate = threading.Event()
    fn = Recorder(gate=gate)
    with DynamicBatcher(fn, max_batch_size=1, max_wait_ms=0) as batcher:
        running = batcher.submit([1])
        assert fn.entered.wait(5)
        queued = batcher.submit([2])
        assert queued.cancel()
        later = batcher.submit([3])
        gate.set()
        assert running.result(5) == [2]
        assert later.result(5) == [6]
    assert fn.batches == [[1], [3]]


def test_run_timeout_raises_and_cancels():
    gate = threading.Event()
    fn = Recorder(gate=gate)
    batcher = DynamicBatcher(fn, max_batch_size=1, max_wait_ms=0)
    try:
        batcher.submit([1])
        assert fn.entered.wait(5)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            batcher.run([2], timeout=0.05)
        assert time.monotonic() - started < 2
    finally:
        gate.set()
        batcher.close()
    assert [2] not in fn.batches


def test_close_fails_pending_and_lets_the_running_batch_finish():
    gate = threading.Event()
    fn = Recorder(gate=gate)
    batcher = DynamicBatcher(fn, max_batch_size=1, max_wait_ms=0, name="enc")
    running = batcher.submit([1])
    assert fn.entered.wait(5)
    pending = batcher.submit([2])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.02)
    gate.set()
    closer.join(5)
    assert running.result(5) == [2]
    with pytest.raises(BatcherClosed, match="'enc'"):
        pending.result(5)
    with pytest.raises(BatcherClosed):
        batcher.submit([3])
    assert batcher.closed
    assert not batcher._thread.is_alive()
    batcher.close()  # idempotent


def test_empty_request_resolves_immediately():
    fn = Recorder()
    with DynamicBatcher(fn) as batcher:
        assert batcher.run([], timeout=1) == []
    assert fn.batches == []


def test_on_batch_errors_do_not_break_batching():
    def bad_metric(size):
        raise RuntimeError("metrics down")

    with DynamicBatcher(lambda xs: xs, max_wait_ms=0, on_batch=bad_metric) as batcher:
        assert batcher.run([1, 2], timeout=5) == [1, 2]
        assert batcher.run([3], timeout=5) == [3]


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_batch_size": 2.5}, {"max_wait_ms": -1}])
def test_bad_settings_rejected(kwargs):
    with pytest.raises(ValueError):
        DynamicBatcher(lambda xs: xs, **kwargs)
