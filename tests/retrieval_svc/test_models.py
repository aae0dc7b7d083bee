"""SentenceTransformerEncoder over the shipped MiniLM, and model identities."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from retrieval_svc.models import (
    SentenceTransformerEncoder,
    hub_revision,
    model_revision,
    resolve_device,
    weights_revision,
)

HEX16 = re.compile(r"^[0-9a-f]{16}$")


def test_encode_shape_dtype_and_unit_norm(encoder):
    vectors = encoder.encode(["a cat sits on the mat", "stock markets fell", "x"], is_query=False)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.dimension == 384


def test_encode_empty(encoder):
    assert encoder.encode([], is_query=True).shape == (0, 384)


def test_encode_is_deterministic_and_batch_independent(encoder):
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    together = encoder.encode(texts, is_query=False)
    alone = encoder.encode(texts[1:], is_query=True)
    assert np.allclose(together[1], alone[0], atol=1e-5)


def test_paraphrase_is_closer_than_unrelated(encoder):
    q, para, other = encoder.encode(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The giraffe is the tallest living land animal.",
        ],
        is_query=False,
    )
    assert float(q @ para) > float(q @ other) + 0.2


def test_identity(encoder, minilm_path):
    identity = encoder.identity
    assert identity.role == "encoder"
    assert identity.name == str(minilm_path)
    assert HEX16.match(identity.revision)
    assert identity.revision == weights_revision(minilm_path)  # stable across calls
    assert identity.dimension == 384
    assert identity.device == "cpu"


def test_max_seq_length_truncates(minilm_path):
    short = SentenceTransformerEncoder(str(minilm_path), device="cpu", max_seq_length=8)
    assert short.max_seq_length == 8
    prefix = "one two three four five"  # [CLS] + 5 tokens + room for 2 more
    a, b = short.encode([prefix + " six seven", prefix + " six seven eight nine ten eleven"], is_query=False)
    assert np.allclose(a, b, atol=1e-6)


def test_weights_revision_follows_content_not_location(tmp_path, minilm_path):
    first = tmp_path / "first"
    (first / "2_Dense").mkdir(parents=True)
    (first / "model.safetensors").write_bytes(b"weights-v1")
    (first / "2_Dense" / "model.safetensors").write_bytes(b"dense-head")
    (first / "config.json").write_text("{}")
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    rev = weights_revision(first)
    assert HEX16.match(rev)
    assert weights_revision(copy) == rev
    (copy / "config.json").write_text('{"changed": true}')  # not a weight file
    assert weights_revision(copy) == rev
    (copy / "2_Dense" / "model.safetensors").write_bytes(b"dense-head-v2")
    assert weights_revision(copy) != rev
    assert weights_revision(tmp_path / "nothing-here") == "unknown"
    assert model_revision(str(first)) == rev


def test_hub_revision_reads_the_cache(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--acme--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert hub_revision("acme/tiny", cache_dir=tmp_path) == commit
    assert hub_revision("tiny", "acme", cache_dir=tmp_path) == commit
    assert hub_revision("acme/absent", cache_dir=tmp_path) == "unknown"


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_encoder_on_gpu_matches_cpu(minilm_path, encoder):
    gpu = SentenceTransformerEncoder(str(minilm_path), device="auto")
    assert gpu.identity.device == "cuda"
    assert gpu.identity.revision == encoder.identity.revision
    texts = ["a cat sits on the mat", "stock markets fell sharply"]
    assert np.allclose(gpu.encode(texts, is_query=False), encoder.encode(texts, is_query=False), atol=1e-3)
