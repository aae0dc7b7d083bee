"""The committed stubs must equal what scripts/gen_protos.py generates from protos/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_current(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(tmp_path)
    committed = REPO / "retrieval_svc" / "api"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    existing = sorted(p.relative_to(committed) for p in committed.rglob("*.py*") if "__pycache__" not in p.parts)
    assert fresh == existing, "stub files differ: run python scripts/gen_protos.py"
    for rel in fresh:
        assert (tmp_path / rel).read_text() == (committed / rel).read_text(), (
            f"{rel} is stale: run python scripts/gen_protos.py"
        )
