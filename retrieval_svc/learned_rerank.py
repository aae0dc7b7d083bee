"""A learned re-ranker: a small scorer over each head candidate's features, trained on the
user's own labeled queries by `retrieval-svc train-reranker` (retrieval_svc.train_reranker).

Why not a cross-encoder alone: no trained cross-encoder can be installed here, and one
fine-tuned on a few hundred labeled queries on a CPU (retrieval_svc.train_reranker measures
it) is weaker than the service's own fused ranking, so replacing the fused order with its
logits loses quality. What re-ranking can learn cheaply is *how to weigh what the service
already knows* about each candidate: its dense and BM25 scores and ranks and its fused score
and rank ("learned fusion", the scorer's first stage), plus, when the installed model has one,
a fine-tuned cross-encoder's logit as more features (so the scorer puts on the cross-encoder
only the weight it earns on held-out queries).

Features of one candidate of a re-ranked head (the first rerank_top_n fused candidates),
computed over that head only, so training (from search hits) and serving (from the fused
list) see the same numbers; `FEATURES` names them in order:

- fused: the fused score, its gap to the head's best, 1/rank and log(rank) in the fused order;
- dense and bm25 each: present (0/1: the retriever returned the chunk), the score (filled
  with the head's lowest score of that retriever when absent), the gap to the head's best,
  the score over the head's best (bm25 only: BM25 scores have no fixed scale), 1/rank and
  log(rank) in that retriever's list (absent: 0 and log(1000));
- cross-encoder (installed models with one): the logit, its gap to the head's best and its
  z-score within the head.

The scorer standardises the features with the training means and deviations, then applies a
linear layer, or one tanh hidden layer and a linear output (`score_features`). Its weights
are plain numbers in the model's manifest, so serving needs numpy only.

An installed model is a folder, `<models dir>/reranker-v<N>-<revision>/`, holding
`reranker.json` (the manifest: name, version, features, scorer weights, what it was trained
on and the held-out figures that let it in) and, for a model with a cross-encoder, the
fine-tuned `cross_encoder/` (a sentence-transformers CrossEncoder folder). The models
folder's `CURRENT` file names the version in force; `reranker.model` may name the models
folder (the current version is read at start-up), one version's folder, or a plain
cross-encoder (CrossEncoderReranker).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from retrieval_svc.domain import FusedCandidate, ModelIdentity, StageScore

MANIFEST = "reranker.json"
CURRENT = "CURRENT"
CROSS_ENCODER_DIR = "cross_encoder"
MANIFEST_FORMAT = 1
ABSENT_LOG_RANK = math.log(1000.0)

FUSION_FEATURES = (
    "fused_score", "fused_gap", "fused_inverse_rank", "fused_log_rank",
    "dense_present", "dense_score", "dense_gap", "dense_inverse_rank", "dense_log_rank",
    "bm25_present", "bm25_score", "bm25_gap", "bm25_relative", "bm25_inverse_rank", "bm25_log_rank",
)
CROSS_ENCODER_FEATURES = ("cross_encoder_logit", "cross_encoder_gap", "cross_encoder_z")


@dataclass(frozen=True)
class HeadCandidate:
    """What the features of one candidate are computed from: its fused score and what each
    retriever said of it (None: that retriever did not return it)."""

    fused_score: float
    dense: StageScore | None
    bm25: StageScore | None


def _retriever_columns(views: Sequence[StageScore | None], relative: bool) -> list[np.ndarray]:
    present = np.array([v is not None for v in views], dtype=np.float64)
    raw = np.array([v.score if v is not None else np.nan for v in views], dtype=np.float64)
    low, high = (float(np.nanmin(raw)), float(np.nanmax(raw))) if present.any() else (0.0, 0.0)
    score = np.where(present > 0, raw, low)
    columns = [present, score, score - high]
    if relative:
        columns.append(score / high if high > 0 else np.zeros_like(score))
    ranks = np.array([v.rank if v is not None else 0 for v in views], dtype=np.float64)
    columns.append(np.where(present > 0, 1.0 / np.maximum(ranks, 1.0), 0.0))
    columns.append(np.where(present > 0, np.log(np.maximum(ranks, 1.0)), ABSENT_LOG_RANK))
    return columns


def head_features(head: Sequence[HeadCandidate], cross_encoder: np.ndarray | None = None) -> np.ndarray:
    """The features (rows: candidates in fused order; columns: FUSION_FEATURES, then
    CROSS_ENCODER_FEATURES when `cross_encoder` logits are given), float64."""
    n = len(head)
    width = len(FUSION_FEATURES) + (len(CROSS_ENCODER_FEATURES) if cross_encoder is not None else 0)
    if n == 0:
        return np.zeros((0, width))
    fused = np.array([c.fused_score for c in head], dtype=np.float64)
    position = np.arange(1, n + 1, dtype=np.float64)
    columns = [fused, fused - fused.max(), 1.0 / position, np.log(position)]
    columns += _retriever_columns([c.dense for c in head], relative=False)
    columns += _retriever_columns([c.bm25 for c in head], relative=True)
    if cross_encoder is not None:
        logits = np.asarray(cross_encoder, dtype=np.float64).reshape(n)
        spread = logits.std()
        columns += [logits, logits - logits.max(),
                    (logits - logits.mean()) / spread if spread > 0 else np.zeros(n)]
    return np.stack(columns, axis=1)


def score_features(scorer: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """The scorer's output per row: standardise with the stored mean and std, then the
    layers: [hidden (tanh)], output (linear)."""
    x = (features - np.asarray(scorer["mean"])) / np.asarray(scorer["std"])
    layers = scorer["layers"]
    for i, layer in enumerate(layers):
        x = x @ np.asarray(layer["weight"], dtype=np.float64).T + np.asarray(layer["bias"], dtype=np.float64)
        if i < len(layers) - 1:
            x = np.tanh(x)
    return x.reshape(-1)


def resolve_model_folder(path: str | os.PathLike[str]) -> Path | None:
    """The installed version `path` names: a models folder with a CURRENT file (the version
    it names), or one version's folder (with reranker.json); None for anything else (a plain
    cross-encoder's folder or a hub name). A CURRENT naming a missing version is an error."""
    root = Path(path)
    current = root / CURRENT
    if current.is_file():
        name = current.read_text().strip()
        folder = root / name
        if not name or "/" in name or not (folder / MANIFEST).is_file():
            raise ValueError(f"{current} names {name!r}, which is not an installed reranker under {root}")
        return folder
    if (root / MANIFEST).is_file():
        return root
    return None


def folder_revision(folder: str | os.PathLike[str]) -> str:
    """16 hex digits of SHA-256 over the manifest and the cross-encoder's weights revision."""
    from retrieval_svc.models import weights_revision

    folder = Path(folder)
    digest = hashlib.sha256((folder / MANIFEST).read_bytes())
    if (folder / CROSS_ENCODER_DIR).is_dir():
        digest.update(weights_revision(folder / CROSS_ENCODER_DIR).encode())
    return digest.hexdigest()[:16]


class LearnedReranker:
    """A `Reranker` over an installed learned model (see the module docstring).

    `score_pairs` gives the cross-encoder's logits (zeros for a model without one: nothing to
    compute); `combine` turns them and the head's fused candidates into the final scores.
    RerankStage calls `combine` when a reranker has one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 32,
        max_passage_chars: int = 2000,
    ) -> None:
        from retrieval_svc.models import CrossEncoderReranker, resolve_device

        folder = resolve_model_folder(path)
        if folder is None:
            raise ValueError(f"{path} holds no installed reranker ({MANIFEST} or {CURRENT})")
        self.folder = folder
        self.manifest = json.loads((folder / MANIFEST).read_text())
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{folder / MANIFEST}: format {self.manifest.get('format')!r} is not "
                             f"{MANIFEST_FORMAT}")
        self.scorer = self.manifest["scorer"]
        self.cross_encoder: CrossEncoderReranker | None = None
        if self.manifest.get("cross_encoder"):
            self.cross_encoder = CrossEncoderReranker(
                folder / CROSS_ENCODER_DIR, device=device, max_length=max_length,
                batch_size=batch_size, max_passage_chars=max_passage_chars)
        expected = len(FUSION_FEATURES) + (len(CROSS_ENCODER_FEATURES) if self.cross_encoder else 0)
        if len(self.scorer["mean"]) != expected:
            raise ValueError(f"{folder / MANIFEST}: the scorer takes {len(self.scorer['mean'])} features, "
                             f"this version computes {expected}")
        self.device = self.cross_encoder.device if self.cross_encoder else resolve_device(device)
        self.identity = ModelIdentity(
            role="reranker", name=str(self.manifest["name"]), revision=folder_revision(folder),
            dimension=0, device=self.device)

    def rerank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if self.cross_encoder is None:
            return np.zeros(len(pairs), dtype=np.float32)
        return self.cross_encoder.score_pairs(pairs)

    def combine(self, scores: np.ndarray, head: Sequence[FusedCandidate]) -> np.ndarray:
        """The learned score of each head candidate (fused order in, same order out)."""
        candidates = [HeadCandidate(c.score, c.sources.get("dense"), c.sources.get("bm25")) for c in head]
        features = head_features(candidates, scores if self.cross_encoder is not None else None)
        return score_features(self.scorer, features)


__all__ = [
    "CROSS_ENCODER_FEATURES",
    "CURRENT",
    "FUSION_FEATURES",
    "HeadCandidate",
    "LearnedReranker",
    "MANIFEST",
    "folder_revision",
    "head_features",
    "resolve_model_folder",
    "score_features",
]
