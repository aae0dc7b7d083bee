"""Chunkers by name, so the service configuration can pick one (`chunker.name`)."""

from __future__ import annotations

from typing import Any, Callable

from chunkers.window import WindowChunker
from retrieval_svc.protocols import Chunker

CHUNKERS: dict[str, Callable[..., Chunker]] = {
    "window": WindowChunker,
}


def make_chunker(name: str, **options: Any) -> Chunker:
    """Build the chunker registered as `name` with its keyword `options`.

    Raises ValueError naming the unknown chunker or the bad option value.
    """
    try:
        factory = CHUNKERS[name]
    except KeyError:
        raise ValueError(f"unknown chunker {name!r}; known: {', '.join(sorted(CHUNKERS))}") from None
    try:
        return factory(**options)
    except TypeError as exc:  # an option the chunker does not take
        raise ValueError(f"chunker {name!r}: {exc}") from None
