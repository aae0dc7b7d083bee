"""retrieval-svc: retrieval as a service over gRPC (dense + BM25, fused, re-ranked)."""

__version__ = "0.2.0"
