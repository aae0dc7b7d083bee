"""Retrievers for LLM frameworks over the typed client (retrieval_svc.client).

- `retrieval_svc.integrations.langchain.LangChainRetriever`: a LangChain `BaseRetriever`
  (`pip install "retrieval-svc[langchain]"`).
- `retrieval_svc.integrations.llama_index.LlamaIndexRetriever`: a LlamaIndex `BaseRetriever`
  (`pip install "retrieval-svc[llama-index]"`).
- `retrieval_svc.integrations.langgraph.RetrievalStore`: a LangGraph `BaseStore` for agents'
  long-term memory with TTLs (`pip install "retrieval-svc[langgraph]"`; docs/memory.md).

Each imports its framework in its own module only, so `import retrieval_svc` and the client
still need nothing but grpcio, grpcio-status and protobuf. Both search through the sync client
on the sync path and through the asyncio client (grpc.aio) on the async path, and put the same
hit fields into their documents' metadata (`hit_metadata`).
"""

from retrieval_svc.integrations._search import Clients, hit_metadata, search_options

__all__ = ["Clients", "hit_metadata", "search_options"]
