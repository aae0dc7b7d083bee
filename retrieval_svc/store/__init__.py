"""The embedded durable store: a SQLite ledger plus per-namespace indexes."""

from retrieval_svc.store.engine import IndexPair, Store, StoreStats
from retrieval_svc.store.ledger import Ledger, NewChunk, StoredDocument

__all__ = ["IndexPair", "Ledger", "NewChunk", "Store", "StoreStats", "StoredDocument"]
