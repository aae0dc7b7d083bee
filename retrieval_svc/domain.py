"""Domain objects that flow through the pipeline.

They are frozen dataclasses: the gRPC layer translates protobuf messages to and
from these, and nothing inside the pipeline sees a protobuf message. Instants
are POSIX seconds (float, UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

DEFAULT_NAMESPACE = "default"
# google.protobuf.Timestamp's range, in POSIX seconds: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799


@dataclass(frozen=True)
class Document:
    """A source document as a client sent it."""

    namespace: str
    doc_id: str
    text: str
    title: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    source_updated_at: float | None = None
    source_uri: str = ""
    # Session memory: when the document expires, and the TTL a refreshing read extends it by.
    # Both None: it never expires (unless its namespace's policy sets a TTL at ingest).
    expires_at: float | None = None
    ttl_seconds: float | None = None


@dataclass(frozen=True)
class TextChunk:
    """A chunker's output: one overlapping window of a document's text.

    `chunk_id` depends only on the document key and the window's content (and,
    for repeated identical windows, on which repetition it is), never on its
    position, so unchanged text keeps its id when text elsewhere changes.
    `start_char`/`end_char` are code-point offsets into the document text, end
    exclusive, and `text == document_text[start_char:end_char]`.
    """

    chunk_id: str
    ordinal: int
    text: str
    start_char: int
    end_char: int
    token_count: int


@dataclass(frozen=True)
class Chunk:
    """A stored chunk with its freshness timestamps."""

    key: int  # internal int64 row id, the id used by every index
    chunk_id: str
    namespace: str
    doc_id: str
    ordinal: int
    text: str
    start_char: int
    end_char: int
    token_count: int
    source_updated_at: float
    first_indexed_at: float
    last_verified_at: float


@dataclass(frozen=True)
class Candidate:
    """One retriever's candidate: an index key and that retriever's score."""

    key: int
    score: float


@dataclass(frozen=True)
class StageScore:
    """Where a stage placed a hit: 1-based rank and the stage's raw score."""

    rank: int
    score: float


@dataclass(frozen=True)
class FusedCandidate:
    """A candidate after fusion, with what each retriever said of it."""

    key: int
    score: float
    sources: Mapping[str, StageScore]  # retriever name ("dense", "bm25") -> its view


class SearchMode(str, Enum):
    DENSE = "dense"
    BM25 = "bm25"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class ModelIdentity:
    role: str  # "encoder" | "reranker"
    name: str
    revision: str  # content hash of the weights
    dimension: int = 0
    device: str = "cpu"


def indexed_text(title: str, text: str, prepend_title: bool) -> str:
    """What the encoder and BM25 see for a chunk: its text, headed by the title.
    A title-only document's one chunk has blank text: the title is its content."""
    if not text.strip():
        return title
    return f"{title}\n\n{text}" if prepend_title and title else text
