"""Session memory: document expiry, its refresh on read, and the sweep (docs/memory.md).

A document expires at `expires_at` (its own, from its ttl_seconds, or from its namespace's
policy in `memory.namespaces`). The store leaves expired documents out of every read at
once (store.base); the sweep here deletes them later, in the background, and deletes a
namespace it empties. A read that refreshes moves a TTL document's expiry to now + TTL.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

from retrieval_svc.domain import DEFAULT_NAMESPACE
from retrieval_svc.settings import MemorySettings
from retrieval_svc.store.base import DocumentStore
from retrieval_svc.telemetry import Telemetry

log = logging.getLogger(__name__)

# A refresh writes only when it moves the expiry by more than this share of the TTL (or
# REFRESH_MAX_SECONDS), so a hot document's reads do not each become a write (on Milvus,
# a new version of the document).
REFRESH_FRACTION = 0.1
REFRESH_MAX_SECONDS = 60.0


def refresh_due(expires_at: float | None, ttl_seconds: float | None, now: float) -> float | None:
    """The new expiry a refreshing read at `now` should write, or None (no TTL, or the
    expiry is recent enough)."""
    if expires_at is None or not ttl_seconds:
        return None
    target = now + ttl_seconds
    if target - expires_at <= min(ttl_seconds * REFRESH_FRACTION, REFRESH_MAX_SECONDS):
        return None
    return target


class Memory:
    def __init__(self, store: DocumentStore, settings: MemorySettings, telemetry: Telemetry | None = None) -> None:
        self.store = store
        self.settings = settings
        self.telemetry = telemetry

    def refreshes(self, namespace: str, requested: bool | None) -> bool:
        """Whether a read in `namespace` refreshes TTLs: as asked, else the namespace's policy."""
        if requested is not None:
            return requested
        policy = self.settings.policy(namespace)
        return policy is not None and policy.refresh_on_read

    def refresh(self, namespace: str,
                documents: Iterable[tuple[str, float | None, float | None]]) -> dict[str, float]:
        """Extend the TTLs of these (doc_id, expires_at, ttl_seconds) where due: the new
        expiry of each document that moved."""
        now = time.time()
        due = {}
        for doc_id, expires_at, ttl in documents:
            target = refresh_due(expires_at, ttl, now)
            if target is not None:
                due[doc_id] = target
        if not due:
            return {}
        try:
            with self.store.writer() as writer:
                moved = {doc_id: target for doc_id, target in due.items()
                         if writer.extend_expiry(namespace, doc_id, target)}
        except Exception:
            # The read succeeded; a refresh that could not be written must not fail it.
            log.warning("could not extend the TTL of %d documents in namespace %r; the read is answered "
                        "without", len(due), namespace, exc_info=True)
            return {}
        if self.telemetry and moved:
            self.telemetry.ttl_refreshes.inc(len(moved))
        return moved

    def sweep(self, now: float | None = None) -> tuple[int, int, int]:
        """Delete up to memory.sweep_batch expired documents, then the namespaces that left
        empty: (documents, chunks, namespaces) deleted."""
        now = time.time() if now is None else now
        expired = self.store.expired(now, self.settings.sweep_batch)
        if not expired:
            return 0, 0, 0
        documents = chunks = 0
        touched = set()
        with self.store.writer() as writer:
            for namespace, doc_id in expired:
                removed = writer.delete_document(namespace, doc_id, expired_by=now)
                if removed is not None:
                    documents += 1
                    chunks += removed
                    touched.add(namespace)
        namespaces = 0
        with self.store.writer() as writer:
            for namespace in sorted(touched - {DEFAULT_NAMESPACE}):
                namespaces += writer.delete_namespace(namespace, only_if_empty=True) is not None
        if self.telemetry:
            self.telemetry.expired_deleted.labels("documents").inc(documents)
            self.telemetry.expired_deleted.labels("chunks").inc(chunks)
            self.telemetry.expired_deleted.labels("namespaces").inc(namespaces)
        log.info("expiry sweep: deleted %d documents (%d chunks) and %d emptied namespaces",
                 documents, chunks, namespaces)
        return documents, chunks, namespaces
