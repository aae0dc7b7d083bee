"""Arrival schedules: when each request of an open-loop run is meant to leave.

A schedule is a sorted list of offsets in seconds from the start of the run.
The driver sends request i at offset i whatever happened to the requests
before it, so the offered load does not depend on how fast the server answers
(a closed loop, where each client waits for its answer, lowers its rate exactly
when the server slows down and so hides the queueing it should measure:
Gil Tene's "coordinated omission").

Variants are chosen by name from `ARRIVALS`:

- ``constant``: offset_i = i / rate, i = 0 .. round(rate * duration) - 1.
- ``poisson``: gaps drawn from Exp(rate) (a Poisson process of intensity
  `rate`), from a seeded `random.Random`; the count varies around
  rate * duration with standard deviation sqrt(rate * duration).
"""

from __future__ import annotations

import random
from typing import Callable

Schedule = list[float]


def _check(rate: float, duration: float) -> None:
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 s, got {duration}")


def constant(rate: float, duration: float, seed: int | None = None) -> Schedule:
    """Evenly spaced arrivals: round(rate * duration) of them, the first at 0."""
    _check(rate, duration)
    return [i / rate for i in range(round(rate * duration))]


def poisson(rate: float, duration: float, seed: int | None = 0) -> Schedule:
    """Poisson arrivals of intensity `rate` in [0, duration); the same seed gives the same list."""
    _check(rate, duration)
    rng = random.Random(seed)
    offsets, t = [], rng.expovariate(rate)
    while t < duration:
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


ARRIVALS: dict[str, Callable[..., Schedule]] = {"constant": constant, "poisson": poisson}


def make_schedule(arrival: str, rate: float, duration: float, seed: int | None = 0) -> Schedule:
    try:
        build = ARRIVALS[arrival]
    except KeyError:
        raise ValueError(f"unknown arrival {arrival!r}; choose one of {sorted(ARRIVALS)}") from None
    return build(rate, duration, seed)
