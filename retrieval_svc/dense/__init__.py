"""Dense retrieval: VectorIndex implementations and the registry that picks one.

Backends (`BACKENDS`), all over int64 keys and L2-normalised float32 vectors,
scoring by inner product:

faiss
    `FaissIndex`: kind "flat" (exact), "hnsw" or "ivf" (approximate). CPU, or
    flat search on every GPU of a GPU build of faiss.
torch
    `TorchExactIndex`: exact (kind "flat" only), a matmul + topk on CUDA when
    torch sees a GPU, else on the CPU.
auto
    kind "flat": faiss on GPU when faiss sees a GPU (faiss.get_num_gpus() > 0),
    else torch on CUDA when torch sees one, else faiss on the CPU. Kinds
    "hnsw" and "ivf" always run on faiss-cpu.

`device` is "auto" (use a GPU when the chosen backend can), "cpu" or "cuda".
Backend "faiss" treats "cuda" as a preference (a faiss-cpu build, or kind
hnsw/ivf, runs on the CPU); "torch" and "auto" refuse "cuda" without a GPU.
FAISS's OpenMP thread count is set process-wide by `configure_threads`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# First: sets OMP_WAIT_POLICY before faiss (or torch) loads its OpenMP runtime.
import retrieval_svc.openmp  # noqa: F401
import faiss

from retrieval_svc.dense._files import read_meta
from retrieval_svc.dense.faiss_index import KINDS, FaissIndex, configure_threads, configured_threads
from retrieval_svc.errors import InvalidArgument
from retrieval_svc.protocols import VectorIndex

if TYPE_CHECKING:
    from retrieval_svc.dense.torch_index import TorchExactIndex

__all__ = [
    "BACKENDS",
    "KINDS",
    "FaissIndex",
    "TorchExactIndex",
    "configure_threads",
    "configured_threads",
    "load_vector_index",
    "make_vector_index",
    "resolve_backend",
]


def __getattr__(name: str) -> Any:
    # torch is imported only when its index is wanted: importing it costs seconds.
    if name == "TorchExactIndex":
        from retrieval_svc.dense.torch_index import TorchExactIndex

        return TorchExactIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _faiss_has_gpu() -> bool:
    return faiss.get_num_gpus() > 0


def resolve_backend(backend: str, kind: str, device: str) -> tuple[str, str]:
    """The concrete (backend, device) that `backend` and `device` stand for, for this kind."""
    if kind not in KINDS:
        raise InvalidArgument(f"dense index kind {kind!r} is not one of {', '.join(KINDS)}")
    wants_gpu = device.startswith("cuda") or device == "gpu"
    if device not in ("auto", "cpu") and not wants_gpu:
        raise InvalidArgument(f"dense index device {device!r} is not one of auto, cpu, cuda")
    if backend == "torch":
        if kind != "flat":
            raise InvalidArgument(
                f"the torch backend is exact only; kind {kind!r} needs backend 'faiss' or 'auto'"
            )
        return "torch", device
    if backend == "faiss":
        # A forced faiss backend takes the GPU where its build can (flat only), else the CPU.
        return "faiss", "cuda" if kind == "flat" and device != "cpu" and _faiss_has_gpu() else "cpu"
    if backend == "auto":
        if kind != "flat" or device == "cpu":
            return "faiss", "cpu"
        if _faiss_has_gpu():
            return "faiss", "cuda"
        if _torch_has_cuda():
            return "torch", "cuda" if device == "auto" else device
        if wants_gpu:
            raise InvalidArgument(f"device {device!r} was asked for but neither faiss nor torch sees a GPU")
        return "faiss", "cpu"
    raise InvalidArgument(f"dense backend {backend!r} is not one of {', '.join(BACKENDS)}")


def _make_faiss(kind: str, dimension: int, device: str, **params: Any) -> VectorIndex:
    return FaissIndex(dimension, kind, device=device, **params)


def _make_torch(kind: str, dimension: int, device: str, **params: Any) -> VectorIndex:
    from retrieval_svc.dense.torch_index import TorchExactIndex

    unknown = sorted(set(params) - {"dtype"})
    if unknown:
        raise InvalidArgument(f"unknown parameter {unknown[0]!r} for the torch backend (known: dtype)")
    return TorchExactIndex(dimension, device=device, **params)


def _load_torch(path: Path, device: str) -> VectorIndex:
    from retrieval_svc.dense.torch_index import TorchExactIndex

    return TorchExactIndex.load(path, device=device)


# backend name -> (make(kind, dimension, device, **params), load(path, device))
_REGISTRY: dict[str, tuple[Callable[..., VectorIndex], Callable[[Path, str], VectorIndex]]] = {
    "faiss": (_make_faiss, lambda path, device: FaissIndex.load(path, device=device)),
    "torch": (_make_torch, _load_torch),
}
BACKENDS = ("auto", *_REGISTRY)


def make_vector_index(
    backend: str, kind: str, dimension: int, device: str = "auto", **params: Any
) -> VectorIndex:
    """An empty index of `kind` on the backend and device that `backend`/`device` resolve to.

    `params` go to the backend: FaissIndex's per-kind parameters
    (faiss_index.DEFAULT_PARAMS) or TorchExactIndex's `dtype`.
    """
    concrete, concrete_device = resolve_backend(backend, kind, device)
    make, _ = _REGISTRY[concrete]
    return make(kind, dimension, concrete_device, **params)


def load_vector_index(
    path: Path, backend: str = "auto", device: str = "auto", kind: str | None = None, **params: Any
) -> VectorIndex:
    """Load a folder written by an index's `save`.

    With the defaults the snapshot's own kind and parameters are kept and only
    the backend and device are resolved as make_vector_index would. When that
    resolution, `kind` or `params` differ from what was saved (say the snapshot
    came from a GPU machine, or the configured kind changed), the saved entries
    are moved into a new index of the wanted shape: vectors are read back from
    the snapshot, nothing is re-embedded.
    """
    meta = read_meta(Path(path))
    kind = kind or meta["kind"]
    concrete, concrete_device = resolve_backend(backend, kind, device)
    unchanged = (
        concrete == meta["backend"]
        and kind == meta["kind"]
        and all(meta["params"].get(name) == value for name, value in params.items())
    )
    if unchanged:
        _, load = _REGISTRY[concrete]
        return load(Path(path), concrete_device)
    _, load_saved = _REGISTRY[meta["backend"]]
    saved = load_saved(Path(path), "cpu")
    target = make_vector_index(concrete, kind, meta["dimension"], concrete_device, **params)
    target.add(*saved.export())
    return target
