"""Pool: bounded in-flight calls, a bounded queue, refusals at once when the wait would be too long."""

from __future__ import annotations

import threading
import time

import pytest

from retrieval_svc.admission import Pool
from retrieval_svc.deadline import NO_DEADLINE, Deadline
from retrieval_svc.errors import Cancelled, DeadlineExceeded, ResourceExhausted


def _pool(**overrides) -> tuple[Pool, list[tuple[str, str]]]:
    refused: list[tuple[str, str]] = []
    options = {"in_flight": 1, "queue": 4, "queue_timeout_seconds": 0.1, "retry_after_seconds": 0.5}
    options.update(overrides)
    pool = Pool("search", options.pop("in_flight"), options.pop("queue"), options.pop("queue_timeout_seconds"),
                options.pop("retry_after_seconds"), on_refused=lambda p, r: refused.append((p, r)))
    return pool, refused


def _hold(pool: Pool, seconds: float, started: threading.Event | None = None) -> threading.Thread:
    def run():
        with pool.slot(NO_DEADLINE):
            if started:
                started.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_call_whose_expected_wait_is_too_long_is_refused_without_waiting():
    pool, refused = _pool()
    _hold(pool, 0.3).join()  # one sample: a call holds a slot about 0.3 s
    started = threading.Event()
    holder = _hold(pool, 0.5, started)
    assert started.wait(5)
    t = time.monotonic()
    with pytest.raises(ResourceExhausted, match="would wait about 0.300s") as e:
        with pool.slot(NO_DEADLINE):
            pass
    assert time.monotonic() - t < 0.05  # at once, not after queue_timeout_seconds
    assert e.value.retry_after_seconds == 0.5
    assert refused == [("search", "expected_wait")]
    holder.join()


def test_a_full_queue_refuses_at_once_and_waiters_run_in_arrival_order():
    pool, refused = _pool(queue=2, queue_timeout_seconds=5.0)
    started = threading.Event()
    holder = _hold(pool, 0.3, started)
    assert started.wait(5)
    order: list[int] = []

    def wait_then_record(i: int) -> None:
        with pool.slot(NO_DEADLINE):
            order.append(i)

    waiters = []
    for i in range(2):
        waiters.append(threading.Thread(target=wait_then_record, args=(i,)))
        waiters[-1].start()
        time.sleep(0.05)
    assert pool.waiting == 2
    with pytest.raises(ResourceExhausted, match="admission.search_queue=2"):
        with pool.slot(NO_DEADLINE):
            pass
    assert refused == [("search", "queue_full")]
    holder.join()
    for w in waiters:
        w.join()
    assert order == [0, 1]


def test_a_deadline_that_passes_in_the_queue_raises_deadline_exceeded_and_never_runs():
    pool, refused = _pool(queue_timeout_seconds=5.0)
    started = threading.Event()
    holder = _hold(pool, 0.4, started)
    assert started.wait(5)
    ran = []
    with pytest.raises(DeadlineExceeded):
        with pool.slot(Deadline.after(0.1)):
            ran.append(True)
    assert not ran and refused == [("search", "deadline")]
    holder.join()


def test_a_caller_that_leaves_the_queue_is_cancelled():
    pool, _ = _pool(queue_timeout_seconds=5.0)
    started = threading.Event()
    holder = _hold(pool, 0.4, started)
    assert started.wait(5)
    gone = threading.Event()
    threading.Timer(0.1, gone.set).start()
    with pytest.raises(Cancelled):
        with pool.slot(Deadline(None, cancelled=gone.is_set)):
            pass
    holder.join()
    assert pool.running == 0 and pool.waiting == 0


def test_untimed_calls_do_not_move_the_expected_wait():
    pool, _ = _pool()

    def long_untimed():
        with pool.slot(NO_DEADLINE, timed=False):
            time.sleep(0.2)

    thread = threading.Thread(target=long_untimed)
    thread.start()
    thread.join()
    assert pool.expected_wait() == 0.0
