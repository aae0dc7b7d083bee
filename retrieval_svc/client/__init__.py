"""Python clients of the retrieval.v1 API.

    from retrieval_svc.client import RetrievalClient

    with RetrievalClient("127.0.0.1:50051", token=os.environ.get("RETRIEVAL_SVC_TOKEN")) as client:
        client.ingest([{"doc_id": "kites", "text": "Kites fly when wind lifts them.", "metadata": {"lang": "en"}}])
        for hit in client.search("what makes a kite fly?", k=3, filters={"lang": ["en", "de"]}).hits:
            print(hit.rank, round(hit.score, 3), hit.doc_id, hit.lineage.bm25, hit.text)

`RetrievalClient` (sync) and `AsyncRetrievalClient` (asyncio, grpc.aio) have the same methods
and return the frozen dataclasses of `retrieval_svc.client.types`; failed calls raise the
exceptions of `retrieval_svc.client.errors`. They need only grpcio, grpcio-status and protobuf:
`pip install retrieval-svc` installs the clients and the CLI's client commands, and
`pip install "retrieval-svc[server]"` the server.

`ProtoClient` takes and returns protobuf messages (for the server's tests and tools that
speak the wire format); `retry` holds the backoff the ingestion job uses across restarts.
"""

from retrieval_svc.client._calls import Timeouts
from retrieval_svc.client._channel import (
    DEFAULT_TARGET, ENV_CA_FILE, ENV_CERT_FILE, ENV_KEY_FILE, ENV_TARGET, ENV_TLS, ENV_TOKEN, Security,
)
from retrieval_svc.client._convert import DocumentLike, document_to_pb
from retrieval_svc.client.aio import AsyncRetrievalClient
from retrieval_svc.client.errors import (
    DeadlineExceeded, ErrorDetails, FailedPrecondition, FieldViolation, InvalidArgument, NotFound,
    PermissionDenied, ResourceExhausted, RetrievalError, Unauthenticated, Unavailable, error_details,
    from_rpc_error,
)
from retrieval_svc.client.retry import RetryPolicy, call_with_retries
from retrieval_svc.client.stub import ProtoClient
from retrieval_svc.client.sync import RetrievalClient
from retrieval_svc.client.types import (
    Chunk, DeleteSummary, EvaluationResult, Hit, IngestSummary, LabeledQuery, Lineage, Model, NamespaceInfo,
    QueryEvaluation, QuerySetInfo, RejectedDocument, SearchOptions, SearchResult, ServerInfo, StageEvaluation,
    StageScore, StoredDocument,
)
from retrieval_svc.domain import Document

__all__ = [
    "AsyncRetrievalClient", "Chunk", "DEFAULT_TARGET", "DeadlineExceeded", "DeleteSummary", "Document",
    "DocumentLike", "ENV_CA_FILE", "ENV_CERT_FILE", "ENV_KEY_FILE", "ENV_TARGET", "ENV_TLS", "ENV_TOKEN",
    "ErrorDetails", "EvaluationResult", "FailedPrecondition", "FieldViolation", "Hit", "IngestSummary",
    "InvalidArgument", "LabeledQuery", "Lineage", "Model", "NamespaceInfo", "NotFound", "PermissionDenied",
    "ProtoClient", "QueryEvaluation", "QuerySetInfo", "RejectedDocument", "ResourceExhausted", "RetrievalClient",
    "RetrievalError", "RetryPolicy", "SearchOptions", "SearchResult", "Security", "ServerInfo", "StageEvaluation",
    "StageScore", "StoredDocument", "Timeouts", "Unauthenticated", "Unavailable", "call_with_retries", "document_to_pb",
    "error_details", "from_rpc_error",
]
