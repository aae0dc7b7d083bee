"""The small interfaces each pipeline stage implements.

Request -> chunk/encode -> candidates (dense, BM25) -> fuse -> rerank -> hits.
Each protocol has a handful of implementations chosen by configuration; the
pipeline (retrieval_svc.pipeline) wires them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from retrieval_svc.domain import Candidate, FusedCandidate, ModelIdentity, TextChunk


class Chunker(Protocol):
    def split(self, doc_key: str, text: str, *, reserved_tokens: int = 0) -> list[TextChunk]:
        """Split `text` into overlapping windows that together cover every character;
        `reserved_tokens` of each window are taken by what the encoder reads beside the
        chunk (the title header, a passage prefix)."""


class Encoder(Protocol):
    identity: ModelIdentity
    dimension: int

    def encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """Return L2-normalised float32 embeddings, shape (len(texts), dimension)."""


class VectorIndex(Protocol):
    """A dense index over int64 keys. Scores are inner products (cosine on unit vectors)."""

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, keys: np.ndarray) -> int:
        """Remove these keys; return how many were present."""

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[list[Candidate]]:
        """Top-k per query row, best first; `allowed` restricts to those keys."""

    def __len__(self) -> int: ...

    def keys(self) -> np.ndarray: ...

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys int64, vectors float32) of every live entry, to move them to another
        index without re-embedding."""

    def save(self, path: Path) -> None: ...

    # Maintenance (a rebuild, training or compaction) that a Store runs beside the live
    # index instead of inside a commit, when `maintain_inline` is False.
    maintain_inline: bool

    def maintenance_due(self) -> bool:
        """Whether the index would now be rebuilt, trained or compacted."""

    def maintenance_copy(self) -> Callable[[], "VectorIndex"]:
        """Copy what a maintained replacement needs (cheap; under the caller's shared
        lock); the returned function builds the replacement (slow; needs no lock)."""


class LexicalIndex(Protocol):
    """An incrementally updated lexical (BM25) index over int64 keys."""

    def add(self, keys: Sequence[int], texts: Sequence[str]) -> None: ...

    def remove(self, keys: Sequence[int]) -> int: ...

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> list[Candidate]: ...

    def __len__(self) -> int: ...

    def keys(self) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    # Maintenance (a rebuild, training or compaction) that a Store runs beside the live
    # index instead of inside a commit, when `maintain_inline` is False.
    maintain_inline: bool

    def maintenance_due(self) -> bool:
        """Whether the index would now be rebuilt, trained or compacted."""

    def maintenance_copy(self) -> Callable[[], "LexicalIndex"]:
        """Copy what a maintained replacement needs (cheap; under the caller's shared
        lock); the returned function builds the replacement (slow; needs no lock)."""


class Fuser(Protocol):
    def fuse(
        self,
        ranked: Mapping[str, Sequence[Candidate]],
        weights: Mapping[str, float],
    ) -> list[FusedCandidate]:
        """Merge per-retriever ranked lists (best first) into one list, best first."""


class Reranker(Protocol):
    identity: ModelIdentity

    def rerank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Relevance scores (higher is better), one per passage, in input order."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Scores of (query, passage) pairs from any number of queries: what the
        dynamic batcher calls so concurrent searches share model calls."""
