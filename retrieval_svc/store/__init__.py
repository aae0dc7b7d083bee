"""Stores: the interface (`base`), the embedded store (`engine`: SQLite ledger + FAISS and
BM25 indexes) and the Milvus store (`milvus`), chosen by `store.backend`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from retrieval_svc.store.base import (
    NO_FILTER, DocumentMeta, DocumentStore, NewChunk, PutResult, SearchFilter, StoredDocument,
    StoreReader, StoreStats, StoreWriter,
)
from retrieval_svc.store.engine import IndexPair, Store
from retrieval_svc.store.ledger import EncoderBinding, Ledger

if TYPE_CHECKING:
    from retrieval_svc.settings import Settings

__all__ = [
    "NO_FILTER", "DocumentMeta", "DocumentStore", "EncoderBinding", "IndexPair", "Ledger", "NewChunk",
    "PutResult", "SearchFilter", "Store", "StoreReader", "StoreStats", "StoreWriter", "StoredDocument",
    "open_store",
]


def open_store(settings: "Settings", dimension: int, encoder: EncoderBinding | None) -> DocumentStore:
    """The store `store.backend` names, bound to `encoder` (StartupError when it holds
    another encoder's vectors)."""
    from retrieval_svc.lexical import make_tokenizer

    if settings.store.backend == "milvus":
        from retrieval_svc.store.milvus import MilvusStore

        b = settings.bm25
        tokenizer = make_tokenizer(b.tokenizer, stopwords=b.stopwords, stemmer=b.stemmer or None)
        return MilvusStore(settings.milvus, dimension=dimension, tokenize=tokenizer,
                           k1=b.k1, b=b.b, prepend_title=settings.chunker.prepend_title, encoder=encoder,
                           analysis={"tokenizer": tokenizer.spec})
    from retrieval_svc.app import index_factories

    return Store(Path(settings.store.path), index_factories(settings, dimension),
                 prepend_title=settings.chunker.prepend_title, encoder=encoder)
