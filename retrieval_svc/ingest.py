"""Ingestion: validate documents, chunk them, embed only new chunks, commit atomically.

Chunk ids are content-derived (see chunkers/), so the diff between a document's
stored chunks and its new ones is a set difference on ids: unchanged chunks keep
their key and embedding, vanished ones are removed from every index, and only
new ones are sent to the encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from chunkers.ids import chunk_id
from retrieval_svc.domain import (
    DEFAULT_NAMESPACE, MAX_TIMESTAMP_SECONDS, Document, TextChunk, indexed_text,
)
from retrieval_svc.deadline import NO_DEADLINE, Deadline
from retrieval_svc.errors import InvalidArgument, InvalidDocument, NotFound, ResourceExhausted
from chunkers.measure import TokenCounter
from retrieval_svc.protocols import Chunker
from retrieval_svc.settings import LimitSettings, MemorySettings
from retrieval_svc.store.base import DocumentStore, NewChunk, StoreWriter

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
MAX_DOC_ID_CHARS = 512


def normalize_namespace(namespace: str) -> str:
    namespace = namespace or DEFAULT_NAMESPACE
    if not NAME_PATTERN.match(namespace):
        raise InvalidArgument(
            f"namespace {namespace[:140]!r} is invalid: use 1..128 characters of [A-Za-z0-9_.-]"
        )
    return namespace


def content_hash(doc: Document) -> str:
    """sha256 over everything that makes a document 'changed' (text, title, metadata, uri)."""
    h = hashlib.sha256()
    for part in (doc.text, doc.title, doc.source_uri):
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    for key in sorted(doc.metadata):
        h.update(f"{key}\x1e{doc.metadata[key]}\x1f".encode("utf-8"))
    return h.hexdigest()


def validate_document(doc: Document, limits: LimitSettings, index: int) -> Document:
    """Return the document with its namespace normalised, or raise InvalidDocument
    naming the document (its position `index` and doc_id), the field and the limit."""
    where = f"document {index}" + (f" (doc_id {doc.doc_id[:140]!r})" if doc.doc_id else "")

    def bad(field: str, reason: str, problem: str) -> InvalidDocument:
        return InvalidDocument(f"{where}: {problem}", index=index, doc_id=doc.doc_id[:512],
                               field=field, reason=reason)

    def too_long(field: str, value: str, limit: int, setting: str) -> InvalidDocument:
        return bad(field, "too_large", f"{field} has {len(value)} characters, over the limit of "
                                       f"{limit} (limits.{setting})")

    try:
        namespace = normalize_namespace(doc.namespace)
    except InvalidArgument as exc:
        raise bad("namespace", "malformed", str(exc)) from None
    if not doc.doc_id:
        raise bad("doc_id", "missing_field", "doc_id is required")
    if len(doc.doc_id) > MAX_DOC_ID_CHARS:
        raise bad("doc_id", "too_large", f"doc_id is longer than {MAX_DOC_ID_CHARS} characters")
    if len(doc.text) > limits.max_document_chars:
        raise bad("text", "too_large",
                  f"text has {len(doc.text)} characters, over the limit of {limits.max_document_chars} "
                  "(limits.max_document_chars); split the document")
    if len(doc.title) > limits.max_title_chars:
        raise too_long("title", doc.title, limits.max_title_chars, "max_title_chars")
    if not doc.text.strip() and not doc.title.strip():
        raise bad("text", "missing_field", "text and title are both blank: a document needs content")
    if len(doc.source_uri) > limits.max_source_uri_chars:
        raise too_long("source_uri", doc.source_uri, limits.max_source_uri_chars, "max_source_uri_chars")
    if len(doc.metadata) > limits.max_metadata_keys:
        raise bad("metadata", "too_large", f"metadata has {len(doc.metadata)} keys, over the limit of "
                                           f"{limits.max_metadata_keys} (limits.max_metadata_keys)")
    metadata_chars = 0
    for key, value in doc.metadata.items():
        if not NAME_PATTERN.match(key):
            raise bad("metadata", "malformed",
                      f"metadata key {key[:140]!r} is invalid: use 1..128 characters of [A-Za-z0-9_.-]")
        if len(value) > limits.max_metadata_value_chars:
            raise bad("metadata", "too_large",
                      f"metadata[{key!r}] has {len(value)} characters, over the limit of "
                      f"{limits.max_metadata_value_chars} (limits.max_metadata_value_chars)")
        metadata_chars += len(key) + len(value)
    if metadata_chars > limits.max_metadata_chars:
        raise bad("metadata", "too_large",
                  f"metadata keys and values have {metadata_chars} characters in all, over the limit of "
                  f"{limits.max_metadata_chars} (limits.max_metadata_chars); every hit carries them")
    t = doc.source_updated_at
    # Strictly below the last Timestamp second: stored as a float, an instant in it can
    # round up past the largest Timestamp and could then never be returned.
    if t is not None and not (math.isfinite(t) and 0 < t < MAX_TIMESTAMP_SECONDS):
        raise bad("source_updated_at", "malformed",
                  "source_updated_at must be an instant after 1970-01-01T00:00:00Z and before "
                  "9999-12-31T23:59:59Z (Timestamp seconds 1..253402300798, nanos 0..999999999)")
    if doc.expires_at is not None and doc.ttl_seconds is not None:
        raise bad("expires_at", "malformed", "set expires_at or ttl_seconds, not both")
    if doc.ttl_seconds is not None and not (math.isfinite(doc.ttl_seconds) and doc.ttl_seconds > 0):
        raise bad("ttl_seconds", "malformed", f"ttl_seconds must be > 0, got {doc.ttl_seconds}")
    if doc.ttl_seconds is not None and doc.ttl_seconds > MAX_TIMESTAMP_SECONDS - time.time():
        raise bad("ttl_seconds", "malformed", "ttl_seconds reaches past 9999-12-31T23:59:59Z")
    if doc.expires_at is not None and not (math.isfinite(doc.expires_at)
                                           and time.time() < doc.expires_at < MAX_TIMESTAMP_SECONDS):
        raise bad("expires_at", "malformed",
                  "expires_at must be in the future and before 9999-12-31T23:59:59Z")
    if namespace == doc.namespace:
        return doc
    return dataclasses.replace(doc, namespace=namespace, metadata=dict(doc.metadata))


def with_expiry(doc: Document, memory: MemorySettings, now: float) -> Document:
    """The document with the expiry it is stored with: its own ttl_seconds (from `now`) or
    expires_at, else its namespace's policy (memory.namespaces), else none."""
    ttl = doc.ttl_seconds
    if ttl is None and doc.expires_at is None:
        policy = memory.policy(doc.namespace)
        ttl = policy.ttl_seconds if policy is not None else None
    if ttl is None:
        return doc
    return dataclasses.replace(doc, expires_at=now + ttl, ttl_seconds=ttl)


@dataclass(frozen=True)
class Rejection:
    """A document left out of an ingest that skips invalid documents."""

    index: int
    doc_id: str
    field: str
    reason: str  # "missing_field" | "too_large" | "malformed"
    message: str


@dataclass
class IngestSummary:
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    chunks_added: int = 0
    chunks_unchanged: int = 0
    chunks_removed: int = 0
    chunks_embedded: int = 0
    index_generation: int = 0
    # For metrics, by namespace: lags (first_indexed_at - source_updated_at) of new
    # chunks, and chunks embedded.
    new_chunk_lags: dict[str, list[float]] = field(default_factory=dict)
    embedded_by_namespace: dict[str, int] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def documents_committed(self) -> int:
        return self.documents_added + self.documents_updated + self.documents_unchanged

    def merge(self, other: "IngestSummary") -> None:
        for name in ("documents_added", "documents_updated", "documents_unchanged", "chunks_added",
                     "chunks_unchanged", "chunks_removed", "chunks_embedded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.index_generation = max(self.index_generation, other.index_generation)
        for ns, lags in other.new_chunk_lags.items():
            self.new_chunk_lags.setdefault(ns, []).extend(lags)
        for ns, count in other.embedded_by_namespace.items():
            self.embedded_by_namespace[ns] = self.embedded_by_namespace.get(ns, 0) + count
        self.rejected.extend(other.rejected)


@dataclass(frozen=True)
class DeleteSummary:
    documents_deleted: int
    chunks_removed: int
    not_found: tuple[str, ...]
    index_generation: int


EmbedFn = Callable[[Sequence[str]], np.ndarray]


class Ingestor:
    def __init__(self, store: DocumentStore, chunker: Chunker, embed_passages: EmbedFn,
                 limits: LimitSettings, prepend_title: bool = False,
                 memory: MemorySettings | None = None, counter: TokenCounter | None = None,
                 passage_prefix: str = "") -> None:
        """`counter`: the chunker measures windows in the encoder's tokens; each document's
        header (passage prefix and, with `prepend_title`, the title) is counted against them."""
        self.store = store
        self.memory = memory or MemorySettings()
        self.counter = counter
        self.passage_prefix = passage_prefix
        self.chunker = chunker
        self.embed_passages = embed_passages
        self.limits = limits
        self.prepend_title = prepend_title

    def ingest(self, documents: Sequence[Document], first_index: int = 0, *,
               skip_invalid: bool = False, deadline: Deadline = NO_DEADLINE) -> IngestSummary:
        """Validate, chunk, embed and commit one batch: atomically on the embedded
        store (one transaction), document by document on Milvus (see store.base).

        An invalid document fails the whole batch (InvalidDocument), or with
        `skip_invalid` is left out and listed in the summary's `rejected`.
        `first_index` is the position of documents[0] in the caller's stream, for
        error messages. A doc_id repeated within the batch: the last one wins.
        The deadline is checked before embedding and before committing; once
        the commit starts, it finishes.
        """
        if len(documents) > self.limits.max_batch_documents:
            raise ResourceExhausted(
                f"batch has {len(documents)} documents, over limits.max_batch_documents="
                f"{self.limits.max_batch_documents}; send smaller batches"
            )
        summary = IngestSummary()
        valid = []
        for i, d in enumerate(documents):
            try:
                valid.append(validate_document(d, self.limits, first_index + i))
            except InvalidDocument as exc:
                if not skip_invalid:
                    raise
                summary.rejected.append(
                    Rejection(exc.index, exc.doc_id, exc.field, exc.reason, str(exc)))
        latest = {(d.namespace, d.doc_id): d for d in valid}
        stored = _by_namespace(self.store.chunk_ids, latest)
        plans = [self._plan(doc, stored.get(key, set())) for key, doc in latest.items()]
        pending = [(plan.doc.namespace, c) for plan in plans for c in plan.new_chunks()]
        deadline.check("embedding")
        vectors = self._embed([self._indexed(plan.doc, c) for plan in plans for c in plan.new_chunks()])
        embedded = {c.chunk_id: v for (_, c), v in zip(pending, vectors)}
        summary.chunks_embedded = len(pending)
        for namespace, _ in pending:
            summary.embedded_by_namespace[namespace] = summary.embedded_by_namespace.get(namespace, 0) + 1
        if not plans:
            summary.index_generation = self.store.generation
            return summary
        deadline.check("committing")
        now = time.time()
        with self.store.writer() as writer:
            # Re-read in the commit: another stream may have changed the documents.
            current = _by_namespace(writer.chunk_ids, latest)
            for plan in plans:
                existing = current.get((plan.doc.namespace, plan.doc.doc_id), set())
                missing = [c for c in plan.chunks if c.chunk_id not in existing
                           and c.chunk_id not in embedded]
                if missing:
                    for c, v in zip(missing, self._embed([self._indexed(plan.doc, c) for c in missing])):
                        embedded[c.chunk_id] = v
                    summary.chunks_embedded += len(missing)
                    ns = plan.doc.namespace
                    summary.embedded_by_namespace[ns] = summary.embedded_by_namespace.get(ns, 0) + len(missing)
                self._commit_document(writer, plan, existing, embedded, now, summary)
        summary.index_generation = self.store.generation
        return summary

    def _indexed(self, doc: Document, chunk: TextChunk) -> str:
        return indexed_text(doc.title, chunk.text, self.prepend_title)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self.embed_passages(texts)

    def _plan(self, doc: Document, existing: set[str]) -> "_Plan":
        # With titles in the index, the title is part of every chunk's identity.
        key = f"{doc.namespace}\x1f{doc.doc_id}"
        if self.prepend_title and doc.title:
            key += f"\x1f{doc.title}"
        reserved = 0
        if self.counter is not None:
            header = self.passage_prefix + (f"{doc.title}\n\n" if self.prepend_title and doc.title else "")
            reserved = self.counter.counts([header])[0] if header else 0
        chunks = self.chunker.split(key, doc.text, reserved_tokens=reserved)
        if not chunks:
            # A title-only document (blank text): its title is its one chunk's content.
            key = f"{doc.namespace}\x1f{doc.doc_id}\x1f{doc.title}"
            chunks = [TextChunk(chunk_id(key, ""), 0, "", 0, 0, len(doc.title.split()))]
        return _Plan(doc, content_hash(doc), chunks, existing)

    def _commit_document(self, writer: StoreWriter, plan: "_Plan", existing: set[str],
                         embedded: dict[str, np.ndarray], now: float,
                         summary: IngestSummary) -> None:
        doc = with_expiry(plan.doc, self.memory, now)
        source_time = doc.source_updated_at if doc.source_updated_at is not None else now
        chunks = [NewChunk(c.chunk_id, c.ordinal, c.text, c.start_char, c.end_char, c.token_count,
                           None if c.chunk_id in existing else embedded[c.chunk_id])
                  for c in plan.chunks]
        put = writer.put_document(doc, plan.content_hash, source_time, chunks, now)
        if put.previous_content_hash is None:
            summary.documents_added += 1
        elif put.previous_content_hash == plan.content_hash:
            summary.documents_unchanged += 1
        else:
            summary.documents_updated += 1
        summary.chunks_added += put.added
        summary.chunks_unchanged += put.kept
        summary.chunks_removed += put.removed
        if put.added:
            summary.new_chunk_lags.setdefault(doc.namespace, []).extend(
                [max(0.0, now - source_time)] * put.added)

    def delete(self, namespace: str, doc_ids: Sequence[str]) -> DeleteSummary:
        namespace = normalize_namespace(namespace)
        if not doc_ids:
            raise InvalidArgument("doc_ids is empty: name at least one document to delete")
        if any(not d for d in doc_ids):
            raise InvalidArgument("doc_ids contains an empty doc_id")
        if not self.store.has_namespace(namespace):
            raise NotFound(f"namespace {namespace!r} does not exist")
        deleted, removed_count, not_found = 0, 0, []
        with self.store.writer() as writer:
            for doc_id in dict.fromkeys(doc_ids):
                removed = writer.delete_document(namespace, doc_id)
                if removed is None:
                    not_found.append(doc_id)
                    continue
                deleted += 1
                removed_count += removed
        return DeleteSummary(deleted, removed_count, tuple(not_found), self.store.generation)


def _by_namespace(lookup: Callable[[str, Sequence[str]], dict[str, set[str]]],
                  docs: dict[tuple[str, str], Document]) -> dict[tuple[str, str], set[str]]:
    """lookup(namespace, doc_ids) once per namespace, keyed by (namespace, doc_id)."""
    by_namespace: dict[str, list[str]] = {}
    for namespace, doc_id in docs:
        by_namespace.setdefault(namespace, []).append(doc_id)
    out = {}
    for namespace, doc_ids in by_namespace.items():
        for doc_id, ids in lookup(namespace, doc_ids).items():
            out[(namespace, doc_id)] = ids
    return out


@dataclass(frozen=True)
class _Plan:
    doc: Document
    content_hash: str
    chunks: list[TextChunk]
    existing: set[str]  # chunk ids when planned

    def new_chunks(self) -> list[TextChunk]:
        """Chunks the document did not have when planned: the ones to embed."""
        return [c for c in self.chunks if c.chunk_id not in self.existing]
