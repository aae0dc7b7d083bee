"""retrieval_svc.openmp: OMP_WAIT_POLICY is set before torch or faiss load OpenMP, a caller's
value is kept, and a runtime loaded too early is reported. Each case is a fresh interpreter:
libgomp reads the variable once, when it loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, sys, warnings
warnings.simplefilter("always")
caught = []
warnings.showwarning = lambda message, *rest: caught.append(str(message))
{before}
import {module}
import torch, faiss  # noqa: E401
from retrieval_svc.openmp import loaded_runtimes
print(json.dumps({{"policy": os.environ.get("OMP_WAIT_POLICY"), "runtimes": loaded_runtimes(),
                  "warnings": caught}}))
"""


def _probe(module: str, before: str = "", **environ: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(environ)
    ran = subprocess.run([sys.executable, "-c", PROBE.format(module=module, before=before)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["retrieval_svc.dense", "retrieval_svc.models"])
def test_passive_before_the_runtimes_load(module):
    out = _probe(module)
    assert out["policy"] == "PASSIVE"
    assert any("libgomp" in path for path in out["runtimes"])  # loaded afterwards, reading PASSIVE
    assert out["warnings"] == []


def test_a_policy_the_caller_set_is_kept():
    out = _probe("retrieval_svc.dense", OMP_WAIT_POLICY="ACTIVE")
    assert out["policy"] == "ACTIVE" and out["warnings"] == []
    # A spin count is a choice too (a policy would override it): no policy is added.
    out = _probe("retrieval_svc.dense", GOMP_SPINCOUNT="10000")
    assert out["policy"] is None and out["warnings"] == []


def test_a_runtime_loaded_first_is_reported():
    out = _probe("retrieval_svc.models", before="import torch")
    assert out["policy"] == "PASSIVE"  # for runtimes loaded later and child processes
    assert len(out["warnings"]) == 1 and "Export OMP_WAIT_POLICY=PASSIVE" in out["warnings"][0]
