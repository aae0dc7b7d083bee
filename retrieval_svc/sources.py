"""Document sources for ingestion jobs: JSONL, BEIR corpus.jsonl, or a folder of .txt/.md files.

JSONL records: {"doc_id" | "_id" | "id", "text", "title"?, "namespace"?, "metadata"?: {str: str},
"source_updated_at"?: ISO-8601 string or POSIX seconds, "source_uri"?}. A BEIR corpus.jsonl is
the same shape ("_id", "title", "text"). Folder files: doc_id = path relative to the folder,
source_updated_at = file mtime, source_uri = file:// URI, title = first Markdown heading or name.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from retrieval_svc.domain import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}


class SourceError(ValueError):
    pass


def _timestamp(value, where: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SourceError(f"{where}: source_updated_at {value!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    raise SourceError(f"{where}: source_updated_at must be a string or a number")


def read_jsonl(path: Path, namespace: str = "") -> Iterator[Document]:
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise SourceError(f"{where}: expected a JSON object")
            doc_id = record.get("doc_id", record.get("_id", record.get("id")))
            metadata = record.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise SourceError(f"{where}: metadata must be an object of strings")
            yield Document(
                namespace=namespace or record.get("namespace", ""),
                doc_id=str(doc_id) if doc_id is not None else "",
                text=record.get("text") or "",
                title=record.get("title") or "",
                metadata={str(k): str(v) for k, v in metadata.items()},
                source_updated_at=_timestamp(record.get("source_updated_at"), where),
                source_uri=record.get("source_uri") or "",
            )


def read_folder(root: Path, namespace: str = "") -> Iterator[Document]:
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES):
        text = path.read_text(encoding="utf-8", errors="replace")
        title = next((line.lstrip("# ").strip() for line in text.splitlines()
                      if line.startswith("#")), path.stem)
        yield Document(
            namespace=namespace, doc_id=str(path.relative_to(root)), text=text, title=title,
            metadata={"suffix": path.suffix.lower().lstrip(".")},
            source_updated_at=path.stat().st_mtime, source_uri=path.resolve().as_uri(),
        )


def read_documents(path: Path, namespace: str = "") -> Iterator[Document]:
    """Documents from a JSONL file, a BEIR folder (its corpus.jsonl) or a folder of text files."""
    path = Path(path)
    if path.is_dir():
        corpus = path / "corpus.jsonl"
        return read_jsonl(corpus, namespace) if corpus.exists() else read_folder(path, namespace)
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    return read_jsonl(path, namespace)


def count_documents(path: Path) -> int | None:
    """Number of documents, for a progress bar (None if unknown cheaply)."""
    path = Path(path)
    if path.is_dir():
        corpus = path / "corpus.jsonl"
        if not corpus.exists():
            return sum(1 for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        path = corpus
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())
