"""Index snapshots on disk: one folder per index, written file by file atomically.

Layout of a snapshot folder::

    meta.json      backend, kind, dimension, params and per-kind state; written last
    index.faiss    (FAISS) faiss.write_index output
    labels.npy     (FAISS HNSW) internal row -> key
    vectors.npz    (torch) keys and float32 vectors

Each file is written to a temporary name, fsynced and renamed over the final
name with os.replace, so a reader never sees a half-written file; meta.json
goes last, so a folder without it is an unfinished snapshot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

META = "meta.json"
FORMAT_VERSION = 1


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Call write(tmp_path) (its return value is ignored), fsync the result and
    rename it over `target`."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    body = json.dumps({"format_version": FORMAT_VERSION, **meta}, sort_keys=True)
    write_atomically(folder / META, lambda tmp: tmp.write_text(body))


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {folder} is not a saved vector index")
    meta = json.loads(path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {meta.get('format_version')!r} is not {FORMAT_VERSION}; "
            "rebuild the index from the ledger"
        )
    return meta
