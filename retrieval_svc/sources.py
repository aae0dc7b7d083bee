"""Document sources for ingestion jobs: JSONL, BEIR corpus.jsonl, or a folder of .txt/.md files.

JSONL records: {"doc_id" | "_id" | "id", "text", "title"?, "namespace"?, "metadata"?: {str: str},
"source_updated_at"?: ISO-8601 string or POSIX seconds, "source_uri"?}. A BEIR corpus.jsonl is
the same shape ("_id", "title", "text"). Folder files: doc_id = path relative to the folder,
source_updated_at = file mtime, source_uri = file:// URI, title = first Markdown heading or name.

A source is a sequence of records: the non-blank lines of a JSONL file, or the text files of a
folder in sorted order. `read_records` yields every record, parsed or not, with its 0-based
position (what `retrieval-svc ingest --resume-from` counts) and its place (file:line), so a job
can set a record that does not parse aside and carry on. Only an input that cannot be read at
all raises SourceError.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from retrieval_svc.domain import MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS, Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}


class SourceError(ValueError):
    """The input cannot be read (a missing path, an I/O error), or, from
    `read_documents`, a record did not parse."""


@dataclass(frozen=True)
class Record:
    """One record of a source: a document, or why the record is not one.

    `index` is the record's 0-based position in the source; `location` is "path:line" for
    JSONL and the file's path for a folder. `original` is the parsed JSON value, or the raw
    line when it did not parse (None for folder files). When `document` is None, `field`,
    `reason` ("unparseable" or "malformed") and `message` say what is wrong.
    """

    index: int
    location: str
    document: Document | None
    original: Any = None
    field: str = ""
    reason: str = ""
    message: str = ""


class _Malformed(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _timestamp(value) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Malformed("source_updated_at", f"source_updated_at {value[:80]!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        seconds = parsed.timestamp()
    else:
        raise _Malformed("source_updated_at", "source_updated_at must be an ISO-8601 string or POSIX seconds")
    if not (math.isfinite(seconds) and MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS):
        raise _Malformed("source_updated_at", f"source_updated_at {value!r} is not an instant in years 1..9999")
    return seconds


def _text(record: dict, key: str) -> str:
    """A string field; null or absent is ""."""
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(key, f"{key} must be a string, not {type(value).__name__}")
    return _encodable(key, value)


def _encodable(field: str, value: str) -> str:
    # JSON may escape a lone surrogate ("\ud800"), which no UTF-8 protobuf string can carry.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Malformed(field, f"{field} holds a lone surrogate (an escaped half of a UTF-16 pair)") from None
    return value


def _doc_id(record: dict) -> str:
    value = record.get("doc_id", record.get("_id", record.get("id")))
    if value is None:
        return ""  # the server rejects it as a missing field
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Malformed("doc_id", f"doc_id must be a string or an integer, not {type(value).__name__}")
    return _encodable("doc_id", str(value))


def _metadata(record: dict) -> dict[str, str]:
    metadata = record.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise _Malformed("metadata", "metadata must be an object of strings")
    out = {}
    for key, value in metadata.items():
        if isinstance(value, (dict, list)) or value is None:
            raise _Malformed("metadata", f"metadata[{key[:80]!r}] must be a string, number or boolean, "
                                         f"not {'null' if value is None else type(value).__name__}")
        out[_encodable("metadata", key)] = _encodable("metadata", str(value))
    return out


def _document(record: dict, namespace: str) -> Document:
    return Document(
        namespace=namespace or _text(record, "namespace"),
        doc_id=_doc_id(record),
        text=_text(record, "text"),
        title=_text(record, "title"),
        metadata=_metadata(record),
        source_updated_at=_timestamp(record.get("source_updated_at")),
        source_uri=_text(record, "source_uri"),
    )


def _jsonl_record(raw: bytes, index: int, where: str, namespace: str) -> Record:
    try:
        line = raw.decode("utf-8-sig" if index == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        return Record(index, where, None, raw.decode("utf-8", "replace").rstrip("\r\n"), "record",
                      "unparseable", f"not valid UTF-8 (byte {exc.start})")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return Record(index, where, None, line.rstrip("\r\n"), "record", "unparseable",
                      f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})")
    except RecursionError:
        return Record(index, where, None, line.rstrip("\r\n"), "record", "unparseable",
                      "not valid JSON (nested too deeply)")
    if not isinstance(record, dict):
        return Record(index, where, None, record, "record", "unparseable",
                      f"expected a JSON object, got {type(record).__name__}")
    try:
        return Record(index, where, _document(record, namespace), record)
    except _Malformed as exc:
        return Record(index, where, None, record, exc.field, "malformed", str(exc))


def read_jsonl_records(path: Path, namespace: str = "", start: int = 0) -> Iterator[Record]:
    """Every record of a JSONL file from record `start` on (the ones before are counted, not parsed)."""
    index = 0
    try:
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                if index >= start:
                    yield _jsonl_record(raw, index, f"{path}:{line_no}", namespace)
                index += 1
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _text_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


def read_folder_records(root: Path, namespace: str = "", start: int = 0) -> Iterator[Record]:
    for index, path in enumerate(_text_files(root)):
        if index < start:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            mtime = path.stat().st_mtime
        except OSError as exc:
            yield Record(index, str(path), None, None, "record", "unparseable",
                         f"cannot read: {exc.strerror or exc}")
            continue
        title = next((line.lstrip("# ").strip() for line in text.splitlines()
                      if line.startswith("#")), path.stem)
        yield Record(index, str(path), Document(
            namespace=namespace, doc_id=str(path.relative_to(root)), text=text, title=title,
            metadata={"suffix": path.suffix.lower().lstrip(".")},
            source_updated_at=mtime, source_uri=path.resolve().as_uri(),
        ))


def _jsonl_path(path: Path) -> Path | None:
    """The JSONL file behind `path` (itself, or a BEIR folder's corpus.jsonl); None for a folder of files."""
    path = Path(path)
    if path.is_dir():
        corpus = path / "corpus.jsonl"
        return corpus if corpus.exists() else None
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    return path


def read_records(path: Path, namespace: str = "", start: int = 0) -> Iterator[Record]:
    """Records of a JSONL file, a BEIR folder (its corpus.jsonl) or a folder of text files,
    from record `start` on. Raises SourceError at once for a path that does not exist."""
    jsonl = _jsonl_path(path)
    if jsonl is None:
        return read_folder_records(Path(path), namespace, start)
    return read_jsonl_records(jsonl, namespace, start)


def read_documents(path: Path, namespace: str = "") -> Iterator[Document]:
    """Documents from a JSONL file, a BEIR folder or a folder of text files; raises
    SourceError ("file:line: what is wrong") at the first record that does not parse."""
    records = read_records(path, namespace)  # a missing path raises here, not at the first next()

    def documents() -> Iterator[Document]:
        for record in records:
            if record.document is None:
                raise SourceError(f"{record.location}: {record.message}")
            yield record.document

    return documents()


def count_documents(path: Path) -> int | None:
    """Number of records, for a progress bar."""
    jsonl = _jsonl_path(path)
    if jsonl is None:
        return len(_text_files(Path(path)))
    try:
        with open(jsonl, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError as exc:
        raise SourceError(f"cannot read {jsonl}: {exc.strerror or exc}") from None
