"""Answer a question from a running retrieval-svc server, citing the documents it used.

    .venv/bin/retrieval-svc serve --data var/store &            # README, "Using it"
    .venv/bin/retrieval-svc ingest examples/sample.jsonl
    .venv/bin/python examples/rag.py "How does BM25 weigh rare terms?"

It retrieves chunks with the LangChain retriever (retrieval_svc.integrations.langchain; needs
`pip install "retrieval-svc[langchain]"`), puts them in a prompt as context cited by [doc_id],
and answers with the first of:
- `--chat-model MODULE:CLASS`: any LangChain chat model, made with `--chat-model-kwargs` (JSON),
  e.g. `--chat-model langchain_openai:ChatOpenAI --chat-model-kwargs '{"model": "gpt-4o-mini"}'`;
- `$RAG_OPENAI_BASE_URL`: an OpenAI-compatible chat completions server (vLLM, llama.cpp, Ollama:
  http://host:port/v1), model `$RAG_OPENAI_MODEL`, key `$OPENAI_API_KEY` if it needs one;
- otherwise, offline: an extractive answer, the context sentences that share the most words
  with the question, each followed by the [doc_id] it comes from.
The server's address and credentials: --target, else the RETRIEVAL_SVC_* variables of the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import urllib.request
from typing import Any, Callable

from langchain_core.documents import Document

from retrieval_svc.client import RetrievalError
from retrieval_svc.integrations.langchain import LangChainRetriever

INSTRUCTIONS = ("Answer the question using only the context passages below. After each claim, cite the "
                "passage it comes from as [doc_id]. If the context does not answer the question, say so.")
# Words too common to say whether a sentence answers a question.
STOPWORDS = frozenset("a an and are as at be by can do does for from how i in is it its of on or so that the "
                      "their them then there these they this to was what when where which who why will with "
                      "you your".split())


def context_block(docs: list[Document]) -> str:
    blocks = []
    for doc in docs:
        meta = doc.metadata
        about = [meta["source_uri"]] if meta["source_uri"] else []
        if meta["source_updated_at"]:
            about.append(f"updated {meta['source_updated_at'][:10]}")
        heading = f"[{meta['doc_id']}] {meta['title']}" + (f" ({', '.join(about)})" if about else "")
        blocks.append(f"{heading}\n{doc.page_content}")
    return "\n\n".join(blocks)


def build_prompt(question: str, docs: list[Document]) -> str:
    return f"Context:\n\n{context_block(docs)}\n\nQuestion: {question}"


def _terms(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    # A crude plural fold, so that "terms" meets "term".
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w not in STOPWORDS}


def extractive_answer(question: str, docs: list[Document], sentences: int = 2) -> str:
    """The `sentences` context sentences sharing the most question words (ties: the better-ranked
    chunk first), each with its [doc_id]; no model needed."""
    wanted = _terms(question)
    scored = []
    for rank, doc in enumerate(docs):
        for position, sentence in enumerate(re.split(r"(?<=[.!?])\s+", doc.page_content.strip())):
            overlap = len(wanted & _terms(sentence))
            if overlap:
                scored.append((-overlap, rank, position, sentence, doc.metadata["doc_id"]))
    if not scored:
        return "The retrieved context does not answer this question."
    return " ".join(f"{sentence} [{doc_id}]" for *_, sentence, doc_id in sorted(scored)[:sentences])


def langchain_generator(spec: str, kwargs: dict[str, Any]) -> Callable[[str, str], str]:
    """A LangChain chat model named MODULE:CLASS, made with `kwargs`."""
    module, _, name = spec.partition(":")
    model = getattr(importlib.import_module(module), name)(**kwargs)
    return lambda system, user: model.invoke([("system", system), ("human", user)]).text


def openai_generator(base_url: str, model: str, api_key: str | None) -> Callable[[str, str], str]:
    """POST /chat/completions of an OpenAI-compatible server (standard library only)."""
    def generate(system: str, user: str) -> str:
        body = {"model": model, "temperature": 0,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        request = urllib.request.Request(f"{base_url.rstrip('/')}/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {api_key}"} if api_key else {})})
        with urllib.request.urlopen(request, timeout=120) as reply:
            return json.load(reply)["choices"][0]["message"]["content"]
    return generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question")
    parser.add_argument("--target", help="HOST:PORT (default: $RETRIEVAL_SVC_TARGET or 127.0.0.1:50051)")
    parser.add_argument("--namespace")
    parser.add_argument("--k", type=int, default=4, help="chunks of context (default 4)")
    parser.add_argument("--mode", choices=("dense", "bm25", "hybrid"), help="default: the server's")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    parser.add_argument("--chat-model", metavar="MODULE:CLASS", help="a LangChain chat model")
    parser.add_argument("--chat-model-kwargs", type=json.loads, default={}, metavar="JSON")
    parser.add_argument("--show-prompt", action="store_true")
    args = parser.parse_args(argv)

    filters: dict[str, list[str]] = {}
    for item in args.filter:
        key, _, value = item.partition("=")
        filters.setdefault(key, []).append(value)
    retriever = LangChainRetriever(target=args.target, namespace=args.namespace, k=args.k, mode=args.mode,
                                   filters=filters or None)
    try:
        docs = retriever.invoke(args.question)
    except RetrievalError as exc:
        print(f"rag.py: the search failed: {exc}\nIs a server running? Start one with `retrieval-svc serve`, "
              "or name one with --target (or RETRIEVAL_SVC_TARGET).", file=sys.stderr)
        return 1
    finally:
        retriever.close()

    print(f"Question: {args.question}\n\nContext ({len(docs)} chunks):")
    for doc in docs:
        meta = doc.metadata
        stages = " ".join(f"{stage} #{seen['rank']}" for stage, seen in meta["lineage"].items() if seen)
        print(f"  {meta['rank']}. [{meta['doc_id']}] {meta['title']!r} score {meta['score']:.3f} ({stages}), "
              f"updated {meta['source_updated_at']}")
    prompt = build_prompt(args.question, docs)
    if args.show_prompt:
        print(f"\nPrompt:\n{INSTRUCTIONS}\n\n{prompt}")

    base_url = os.environ.get("RAG_OPENAI_BASE_URL")
    if args.chat_model:
        how, generate = args.chat_model, langchain_generator(args.chat_model, args.chat_model_kwargs)
    elif base_url:
        how, generate = base_url, openai_generator(base_url, os.environ.get("RAG_OPENAI_MODEL", "default"),
                                                   os.environ.get("OPENAI_API_KEY"))
    else:
        how, generate = "extractive, offline", None
    answer = generate(INSTRUCTIONS, prompt) if generate else extractive_answer(args.question, docs)
    print(f"\nAnswer ({how}):\n{answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
