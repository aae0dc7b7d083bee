"""The bi-encoder on ONNX Runtime (encoder.backend: onnx): `OnnxEncoder`, and the export it runs.

What runs is the sentence-transformers model's own module chain, as its modules.json lists it
(Transformer -> Pooling -> optional Dense -> optional Normalize), exported with
``torch.onnx.export`` from a token batch (input_ids, attention_mask[, token_type_ids]) to the
sentence embedding, then L2-normalised as the torch encoder does (normalize_embeddings=True).
Inputs are made by the model's tokenizer, saved beside the export, with sentence-transformers'
truncation (``max_seq_length`` wordpieces, longest_first) and batching (longest texts first,
padded per batch). A chain with another kind of module is refused at export.

Exports are made at the first start and kept in a cache folder (encoder.onnx_cache_dir),
``<cache>/<model folder>-<revision>-f<EXPORT_FORMAT>/``: model.onnx, model.int8.onnx (int8
only), tokenizer/, reference.npy (the torch model's embeddings of PROBE_TEXTS) and
export.json. The weights' revision is in the name, so changed weights are exported anew; a
model whose revision is unknown (a hub name the local cache cannot resolve) is exported into a
fresh temporary folder at every start, removed once loaded. Files are written under temporary
names and renamed, under a lock file, so servers sharing the folder export once.

Identity and the store's encoder binding. At export the ONNX model is checked against the torch
model on `PROBE_TEXTS` (short, longer than max_seq_length, non-ASCII, odd spacing): fp32 must
reach a cosine of `PARITY_MIN_COSINE` on every probe, or the start fails. So an fp32 export is
the same encoder as the torch model: its ModelIdentity keeps the weights' revision, and a store
built with either backend opens with the other. int8 (onnxruntime's dynamic quantisation of the
weights, per output channel) gives other vectors (cosines to torch from about 0.98 on SciFact
texts; dense nDCG@10 in docs/benchmarks.md), so its revision is the weights' revision +
``-int8-`` + 8 hex digits of the quantised file's SHA-256: a store refuses to mix its vectors
with fp32 ones. The device
field says which runtime served, e.g. ``cpu (onnxruntime fp32)``.

Like SentenceTransformerEncoder, each call holds a lock (the tokenizer is not safe to share
between threads; batching gives the concurrency, retrieval_svc.batching). ONNX Runtime's
intra-op threads: `threads` (server.torch_threads), 0 for its default (one per physical core).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

# Before torch loads its OpenMP runtime (the export imports torch): see the module.
import retrieval_svc.openmp  # noqa: F401
from retrieval_svc.domain import ModelIdentity
from retrieval_svc.models import UNKNOWN_REVISION, default_model_path, model_revision

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")
# Bumped when the export changes (inputs, outputs, checks): older cached exports are not reused.
EXPORT_FORMAT = 1
PARITY_MIN_COSINE = 0.9999
# Where sentence-transformers looks up a bare hub name ("all-MiniLM-L6-v2"), as models.py does.
HUB_ORGANIZATION = "sentence-transformers"
# sentence-transformers module classes the export knows how to carry (by class name).
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
PROBE_TEXTS = (
    "x",
    "How do I reset my password?",
    "Mitochondrial DNA mutations accumulate with age in human muscle fibres.",
    "  leading and trailing spaces,\ttabs and\nnew lines  ",
    "Ünïcödé Straße, naïve café, 東京, Ελληνικά and emoji 🙂",
    "Numbers 3.14159, 2e-5 and identifiers like BRCA1/2 or IL-6R.",
    # Longer than 256 wordpieces: truncation must cut at the same place.
    " ".join(f"sentence {i} of a long passage about proteins, cells and the genes that code them."
             for i in range(40)),
)


class OnnxExportError(RuntimeError):
    """The model cannot be exported, or its export does not match the torch model."""


@dataclass(frozen=True)
class OnnxExport:
    """An export on disk, as export.json describes it."""

    folder: Path
    model_file: Path
    precision: Precision
    revision: str  # the weights' revision (models.model_revision)
    dimension: int
    max_seq_length: int
    input_names: tuple[str, ...]
    min_cosine: float  # lowest cosine to the torch model over PROBE_TEXTS
    temporary: bool = False  # made for this start only (the weights' revision is unknown)

    @property
    def identity_revision(self) -> str:
        """The revision the store binds to: the weights' for fp32 (same vectors, checked),
        weights + int8 + the quantised file's hash for int8 (other vectors)."""
        if self.precision == "fp32":
            return self.revision
        return f"{self.revision}-int8-{_file_sha256(self.model_file)[:8]}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_name(name: str, revision: str) -> str:
    stem = Path(name.rstrip("/")).name or "model"
    if stem == "model":  # a package's model/ folder: name it by its parent
        stem = Path(name.rstrip("/")).parent.name or stem
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]
    return f"{safe}-{revision}-f{EXPORT_FORMAT}"


# --- export --------------------------------------------------------------------------


def _check_modules(model: Any, name: str) -> None:
    kinds = [type(module).__name__ for module in model]
    unknown = [kind for kind in kinds if kind not in SUPPORTED_MODULES]
    if unknown or not kinds or kinds[0] != "Transformer":
        raise OnnxExportError(
            f"encoder {name!r} has modules {kinds}; the onnx backend exports a Transformer followed by "
            f"{', '.join(SUPPORTED_MODULES[1:])} modules only: use encoder.backend: torch for it")


def _embedding_module(model: Any, input_names: Sequence[str]) -> Any:
    """A torch module from token tensors (in `input_names` order) to sentence embeddings,
    through the sentence-transformers model's own modules."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                features["token_type_ids"] = token_type_ids
            return self.model(features)["sentence_embedding"]

    class WithoutTokenTypes(SentenceEmbedding):
        def forward(self, input_ids, attention_mask):
            return super().forward(input_ids, attention_mask)

    return (SentenceEmbedding if "token_type_ids" in input_names else WithoutTokenTypes)().eval()


def _export_fp32(model: Any, path: Path) -> tuple[str, ...]:
    """torch.onnx.export (the dynamo exporter) of the model's chain, batch and sequence dynamic;
    returns the graph's input names."""
    import torch

    sample = model.preprocess(["an example sentence to trace the graph with", "a shorter one"])
    input_names = tuple(name for name in TOKEN_INPUTS if name in sample)
    module = _embedding_module(model, input_names)
    longest = getattr(getattr(model[0], "auto_model", None), "config", None)
    longest = getattr(longest, "max_position_embeddings", None)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=int(longest)) if longest else torch.export.Dim("sequence")
    shapes = {name: {0: batch, 1: sequence} for name in input_names}
    printed = io.StringIO()  # the exporter prints its progress; it goes to the debug log
    with torch.no_grad(), contextlib.redirect_stdout(printed):
        torch.onnx.export(
            module, tuple(sample[name] for name in input_names), str(path), dynamo=True,
            external_data=False, input_names=list(input_names), output_names=["sentence_embedding"],
            dynamic_shapes=shapes,
        )
    log.debug("torch.onnx.export: %s", printed.getvalue())
    return input_names


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per output channel: one scale per row of a weight matrix. Per tensor, cosines to the torch
    # model fell to 0.90 on SciFact texts (mean 0.945); per channel 0.977 (mean 0.993).
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def export_model(name: str, folder: Path, revision: str) -> None:
    """Export `name` (a sentence-transformers model whose weights' revision is `revision`) into
    `folder` (made here; must not exist): model.onnx, tokenizer/, reference.npy (the torch
    model's embeddings of PROBE_TEXTS) and export.json, once the export has passed the parity
    check. OnnxExportError when the model cannot be exported or its export parts from torch."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(name, device="cpu")
    model.eval()
    _check_modules(model, name)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        fp32 = work / MODEL_FILES["fp32"]
        try:
            input_names = _export_fp32(model, fp32)
        except Exception as exc:
            raise OnnxExportError(f"exporting {name!r} to ONNX failed: {exc}") from exc
        model.tokenizer.save_pretrained(str(work / "tokenizer"))
        reference = model.encode(list(PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        np.save(work / "reference.npy", reference)
        max_seq_length = int(model.max_seq_length or model.tokenizer.model_max_length)
        meta: dict[str, Any] = {
            "format": EXPORT_FORMAT, "model": name, "revision": revision,
            "dimension": int(model.get_embedding_dimension() or 0),
            "max_seq_length": max_seq_length,
            "input_names": list(input_names), "modules": [type(m).__name__ for m in model],
            "torch": _version("torch"), "onnxruntime": _version("onnxruntime"),
            "min_cosine": {"fp32": _min_cosine(work, fp32, input_names, max_seq_length)},
        }
        if meta["min_cosine"]["fp32"] < PARITY_MIN_COSINE:
            raise OnnxExportError(
                f"the ONNX export of {name!r} does not reproduce the torch model: cosine "
                f"{meta['min_cosine']['fp32']:.6f} < {PARITY_MIN_COSINE} on a probe text; use encoder.backend: torch")
        (work / "export.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_int8(folder: Path) -> None:
    """Quantise the fp32 export in `folder` to model.int8.onnx and record its lowest cosine to
    the torch model over PROBE_TEXTS in export.json."""
    meta = json.loads((folder / "export.json").read_text())
    staged = folder / f".{MODEL_FILES['int8']}.partial"
    _quantize_int8(folder / MODEL_FILES["fp32"], staged)
    meta["min_cosine"]["int8"] = _min_cosine(folder, staged, meta["input_names"], meta["max_seq_length"])
    os.replace(staged, folder / MODEL_FILES["int8"])
    _write_atomically(folder / "export.json", json.dumps(meta, indent=2, sort_keys=True))


def _min_cosine(folder: Path, model_file: Path, input_names: Sequence[str], max_seq_length: int) -> float:
    """Lowest cosine between `model_file`'s embeddings of PROBE_TEXTS and the torch model's."""
    runner = _Runner(model_file, folder / "tokenizer", input_names, max_seq_length, threads=0)
    return float(_cosines(runner.embed(list(PROBE_TEXTS), 64), np.load(folder / "reference.npy")).min())


def _write_atomically(path: Path, text: str) -> None:
    staged = path.with_name(f".{path.name}.partial")
    staged.write_text(text)
    os.replace(staged, path)


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "unknown"


def _read_export(folder: Path, precision: Precision) -> OnnxExport | None:
    """The export in `folder` if it is complete, of this format, and holds `precision`."""
    try:
        meta = json.loads((folder / "export.json").read_text())
    except (OSError, ValueError):
        return None
    model_file = folder / MODEL_FILES[precision]
    if meta.get("format") != EXPORT_FORMAT or precision not in meta.get("min_cosine", {}) or not model_file.is_file():
        return None
    return OnnxExport(
        folder=folder, model_file=model_file, precision=precision, revision=str(meta["revision"]),
        dimension=int(meta["dimension"]), max_seq_length=int(meta["max_seq_length"]),
        input_names=tuple(meta["input_names"]), min_cosine=float(meta["min_cosine"][precision]),
    )


def ensure_export(name: str, cache_dir: str | os.PathLike[str], precision: Precision = "fp32") -> OnnxExport:
    """The cached export of `name` for its current weights, made now if missing (a minute or
    so: loads the torch model, exports, checks parity; int8 adds a quantisation)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    revision = model_revision(name, HUB_ORGANIZATION)
    if revision == UNKNOWN_REVISION:
        folder = Path(tempfile.mkdtemp(prefix="unknown-revision-", dir=cache)) / "export"
        log.warning("encoder %s: weights' revision unknown, so its ONNX export cannot be reused; "
                    "exporting afresh into %s", name, folder)
        return dataclasses.replace(_complete(name, folder, precision, revision), temporary=True)
    folder = cache / _folder_name(name, revision)
    found = _read_export(folder, precision)
    if found is not None:
        return found
    with open(cache / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another server may be exporting the same model
        return _complete(name, folder, precision, revision)


def _complete(name: str, folder: Path, precision: Precision, revision: str) -> OnnxExport:
    """`folder`'s export of `precision`, exporting (and quantising) what is missing."""
    if _read_export(folder, "fp32") is None:
        log.info("encoder %s@%s: exporting to ONNX in %s", name, revision, folder)
        if folder.exists():  # an export of another format, or cut short
            shutil.rmtree(folder)
        export_model(name, folder, revision)
    if precision == "int8" and _read_export(folder, "int8") is None:
        log.info("encoder %s@%s: quantising the ONNX export to int8", name, revision)
        add_int8(folder)
    found = _read_export(folder, precision)
    if found is None:
        raise OnnxExportError(f"the ONNX export in {folder} is incomplete after exporting")
    return found


# --- running -------------------------------------------------------------------------


class _Runner:
    """Tokenizer + ONNX Runtime session: texts -> (unnormalised) sentence embeddings."""

    def __init__(self, model_file: Path, tokenizer_dir: Path, input_names: Sequence[str],
                 max_seq_length: int, threads: int) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        self.input_names = tuple(input_names)
        self.max_seq_length = max_seq_length

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        # Longest first, as sentence-transformers batches: less padding per batch.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        rows: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            picked = order[start:start + batch_size]
            tokens = self.tokenizer([texts[i] for i in picked], padding=True, truncation="longest_first",
                                    max_length=self.max_seq_length, return_tensors="np")
            feeds = {name: np.asarray(tokens[name], dtype=np.int64) for name in self.input_names}
            out = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
            if rows is None:
                rows = np.empty((len(texts), out.shape[1]), dtype=np.float32)
            rows[picked] = out
        assert rows is not None  # texts is not empty
        return rows


class OnnxEncoder:
    """An `Encoder` over an ONNX export of a sentence-transformers bi-encoder (see the module).

    Embeddings are L2-normalised float32 rows, as SentenceTransformerEncoder's; `is_query` is
    accepted for the protocol. `max_seq_length` (wordpieces) truncates longer inputs; None keeps
    the model's own limit.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        cache_dir: str | os.PathLike[str],
        precision: Precision = "fp32",
        max_seq_length: int | None = None,
        batch_size: int = 64,
        threads: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if max_seq_length is not None and max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length!r}")
        name = str(model_name_or_path) if model_name_or_path else default_model_path()
        self.export = ensure_export(name, cache_dir, precision)
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length or self.export.max_seq_length
        self._runner = _Runner(self.export.model_file, self.export.folder / "tokenizer",
                               self.export.input_names, self.max_seq_length, threads)
        self.dimension = self.export.dimension
        self.device = "cpu"
        self.identity = ModelIdentity(
            role="encoder", name=name, revision=self.export.identity_revision, dimension=self.dimension,
            device=f"cpu (onnxruntime {precision})",
        )
        self._lock = threading.Lock()
        if self.export.temporary:  # loaded: nothing reads the files again
            shutil.rmtree(self.export.folder.parent, ignore_errors=True)

    def encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        """L2-normalised float32 embeddings, shape (len(texts), dimension)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._runner.embed(texts, self.batch_size)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


__all__ = [
    "EXPORT_FORMAT",
    "PARITY_MIN_COSINE",
    "PRECISIONS",
    "OnnxEncoder",
    "OnnxExport",
    "OnnxExportError",
    "ensure_export",
    "add_int8",
    "export_model",
]
