"""OpenMP's wait policy, set before torch or FAISS load an OpenMP runtime.

Why: the CPU builds of torch and faiss-cpu each bring a libgomp (torch's, and faiss-cpu's own
copy with its OpenBLAS), and each runtime keeps a pool of worker threads. By default a libgomp
worker that runs out of work spins on its core for a while (GOMP_SPINCOUNT, 300,000 polls:
milliseconds) before it sleeps, to be quick for the next parallel region. Alone on idle cores
that pays; but with two pools in one process, or cores shared with other work, the spinning
threads hold the cores that the encoder's next layer needs, and every layer waits for a thread
that is not running. Calling the search pipeline or the encoder in-process from the caller's
own thread made a single-query encode 7-15x slower (issue 10; bench/inprocess_encode.py
measures it). ``OMP_WAIT_POLICY=PASSIVE`` makes idle workers sleep at once.

libgomp reads the variable once, when it is loaded, so it must be in the environment before
the first ``import torch`` or ``import faiss``. Every module of this package that loads
either imports this one first (retrieval_svc.dense, retrieval_svc.models, retrieval_svc.app),
which sets it unless the environment already names a policy or a GOMP_SPINCOUNT (a value the
caller set, any value, is kept). If an OpenMP runtime was loaded before that (the caller imported torch or
faiss before retrieval_svc), it is too late for that runtime: a RuntimeWarning says so and how
to fix it (export OMP_WAIT_POLICY=PASSIVE before Python starts, or import retrieval_svc
first). The variable is set anyway, for runtimes loaded later and for child processes.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

WAIT_POLICY = "OMP_WAIT_POLICY"
SPIN_COUNT = "GOMP_SPINCOUNT"
PASSIVE = "PASSIVE"
# Shared-library names of the OpenMP runtimes: GNU (torch, faiss-cpu), LLVM, Intel.
_RUNTIME_NAMES = ("libgomp", "libomp", "libiomp")
# Modules whose import loads an OpenMP runtime, for systems without /proc/self/maps.
_OPENMP_MODULES = ("torch", "faiss")


def loaded_runtimes() -> list[str] | None:
    """Paths of the OpenMP runtime libraries mapped into this process (from /proc/self/maps),
    or None where that cannot be read (not Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    found = set()
    for line in maps.splitlines():
        path = line.rpartition(" ")[2]
        if any(Path(path).name.startswith(name) for name in _RUNTIME_NAMES):
            found.add(path)
    return sorted(found)


def runtime_loaded() -> bool:
    runtimes = loaded_runtimes()
    if runtimes is None:
        return any(name in sys.modules for name in _OPENMP_MODULES)
    return bool(runtimes)


def prefer_passive_wait() -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless the environment names a policy (or libgomp's spin
    count, GOMP_SPINCOUNT, which a policy would override); return the policy now in force ("" for
    libgomp's default). Warns when an OpenMP runtime is already loaded with the default."""
    if WAIT_POLICY in os.environ or SPIN_COUNT in os.environ:
        return os.environ.get(WAIT_POLICY, "")
    too_late = runtime_loaded()
    os.environ[WAIT_POLICY] = PASSIVE
    if too_late:
        warnings.warn(
            "an OpenMP runtime was loaded before retrieval_svc set OMP_WAIT_POLICY=PASSIVE (torch or "
            "faiss imported first), so its idle threads spin-wait, which can make query encoding several "
            "times slower when torch and FAISS share the process. Export OMP_WAIT_POLICY=PASSIVE before "
            "starting Python, or import retrieval_svc before torch and faiss.",
            RuntimeWarning, stacklevel=2,
        )
    return PASSIVE


prefer_passive_wait()
