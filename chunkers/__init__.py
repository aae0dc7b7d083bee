"""Chunkers: split a document's text into overlapping windows with stable ids.

`WindowChunker` is the one implementation (see chunkers.window and
chunkers.boundaries); `make_chunker(name, **options)` picks a chunker by the
name in the service configuration.
"""

from chunkers.registry import CHUNKERS, make_chunker
from chunkers.window import WindowChunker

__all__ = ["CHUNKERS", "WindowChunker", "make_chunker"]
