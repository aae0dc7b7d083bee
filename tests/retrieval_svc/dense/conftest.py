"""The `factory` fixture: each VectorIndex implementation of dense_support.INDEX_FACTORIES."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # dense_support.py

from dense_support import INDEX_FACTORIES, IndexFactory  # noqa: E402


@pytest.fixture(params=[pytest.param(f, id=f.name, marks=f.marks) for f in INDEX_FACTORIES])
def factory(request) -> IndexFactory:
    return request.param
