"""Ingestion jobs: a source's records sent to a server in acknowledged batches.

Each batch is one unary IngestBatch call, committed atomically and acknowledged by its
summary, so the job always knows the first record not yet acknowledged: the point a stopped
job resumes from (`retrieval-svc ingest --resume-from`). A record that is not a valid
document, because it did not parse here or because the server rejected it, either goes to a
dead-letter file while the job carries on (policy "skip"), or stops the job once the records
before it are committed (policy "stop"). Failed calls are retried as a client.RetryPolicy
says; re-sending a batch is safe, since a committed document comes back "unchanged" and
embeds nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence

import grpc

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client import ProtoClient, RetryPolicy, call_with_retries, error_details
from retrieval_svc.sources import Record, SourceError

ON_ERROR_POLICIES = ("skip", "stop")
# IngestSummary counters a job adds up over its batches (index_generation is the last one's).
COUNTERS = ("added_document_count", "updated_document_count", "unchanged_document_count",
            "rejected_document_count", "added_chunk_count", "unchanged_chunk_count", "removed_chunk_count",
            "embedded_chunk_count")


class Outcome(str, Enum):
    COMPLETED = "completed"
    STOPPED_ON_INVALID = "stopped_on_invalid"  # policy "stop" met an invalid record
    SERVER_ERROR = "server_error"  # a call failed and retrying did not help
    INPUT_ERROR = "input_error"  # the input could not be read to the end
    INTERRUPTED = "interrupted"  # Ctrl-C


@dataclass
class JobReport:
    """What a job did. `summary` adds up the acknowledged batches' IngestSummary counters,
    with rejected_document_count counting records rejected here as well as by the server;
    `records` counts the records dealt with (committed or dead-lettered); `next_record` is the
    first record not committed, where a rerun resumes (a record that stopped the job under
    policy "stop" is dead-lettered and also the resume point, to be re-read once fixed)."""

    next_record: int
    records: int = 0
    summary: pb.IngestSummary = field(default_factory=pb.IngestSummary)
    retries: int = 0
    outcome: Outcome = Outcome.COMPLETED
    stopped_at: str = ""  # the record (file:line) the job stopped at
    error: str = ""

    @property
    def committed_document_count(self) -> int:
        s = self.summary
        return s.added_document_count + s.updated_document_count + s.unchanged_document_count

    def add(self, summary: pb.IngestSummary) -> None:
        for name in COUNTERS:
            setattr(self.summary, name, getattr(self.summary, name) + getattr(summary, name))
        self.summary.index_generation = max(self.summary.index_generation, summary.index_generation)


_REASONS = {pb.REJECTION_REASON_MISSING_FIELD: "missing_field", pb.REJECTION_REASON_TOO_LARGE: "too_large",
            pb.REJECTION_REASON_MALFORMED: "malformed"}


class DeadLetterFile:
    """Rejected records as JSON lines, appended (a resumed job adds to the same file); the
    file is created at the first one. Each row: source (file:line), record (0-based position,
    what --resume-from counts), doc_id, field, reason, message, rejected_by ("client": did
    not parse; "server": failed validation) and the original record when there is one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._fh: IO[str] | None = None

    def write(self, record: Record, *, doc_id: str, field_name: str, reason: str, message: str,
              rejected_by: str) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open across writes; close())
        row = {"source": record.location, "record": record.index, "doc_id": doc_id, "field": field_name,
               "reason": reason, "message": message, "rejected_by": rejected_by, "original": record.original}
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()  # a job killed later keeps what it rejected so far
        self.rows += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _without_position(message: str, index: int) -> str:
    """The server's message less its "document <index in the call> (doc_id ...): " opening,
    which would contradict the record's own number; the row says which record it is."""
    return re.sub(rf"^document {index}( \(doc_id .*?\))?: ", "", message, count=1, flags=re.S)


def _original_doc_id(record: Record) -> str:
    if record.document is not None:
        return record.document.doc_id
    original = record.original
    if isinstance(original, dict):
        value = original.get("doc_id", original.get("_id", original.get("id")))
        return "" if value is None else str(value)
    return ""


class _Stop(Exception):
    def __init__(self, outcome: Outcome, record: Record, error: str) -> None:
        super().__init__(error)
        self.outcome = outcome
        self.record = record
        self.error = error


class IngestJob:
    """Runs records through `client.ingest_batch`, `batch_size` records per call.

    `progress(n)` is called as n more records are acknowledged; `notify(line)` with a line for
    a person on each retry.
    """

    def __init__(self, client: ProtoClient, dead_letters: DeadLetterFile, *, on_error: str = "skip",
                 batch_size: int = 64, retry: RetryPolicy | None = None, timeout_seconds: float | None = None,
                 progress: Callable[[int], object] = lambda n: None,
                 notify: Callable[[str], object] = lambda line: None) -> None:
        if on_error not in ON_ERROR_POLICIES:
            raise ValueError(f"on_error {on_error!r} is not one of {ON_ERROR_POLICIES}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.client = client
        self.dead_letters = dead_letters
        self.stop_on_invalid = on_error == "stop"
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.timeout_seconds = timeout_seconds
        self.progress = progress
        self.notify = notify

    def run(self, records: Iterable[Record], start: int = 0) -> JobReport:
        """Send every record; `start` is the index of the first one (a resumed job's --resume-from)."""
        report = JobReport(next_record=start)
        batch: list[Record] = []
        try:
            for record in records:
                if record.document is None and self.stop_on_invalid:
                    self._send(batch, report)  # commit the records before it, then stop
                    self._reject_here(record)
                    report.summary.rejected_document_count += 1
                    report.records += 1
                    raise _Stop(Outcome.STOPPED_ON_INVALID, record, record.message)
                batch.append(record)
                if len(batch) >= self.batch_size:
                    self._send(batch, report)
                    batch = []
            self._send(batch, report)
        except _Stop as stop:
            report.outcome, report.stopped_at, report.error = stop.outcome, stop.record.location, stop.error
        except SourceError as exc:
            report.outcome, report.error = Outcome.INPUT_ERROR, str(exc)
            report.stopped_at = batch[0].location if batch else ""
        except KeyboardInterrupt:
            report.outcome, report.error = Outcome.INTERRUPTED, "interrupted"
            report.stopped_at = batch[0].location if batch else ""
        return report

    def _reject_here(self, record: Record) -> None:
        self.dead_letters.write(record, doc_id=_original_doc_id(record), field_name=record.field,
                                reason=record.reason, message=record.message, rejected_by="client")

    def _call(self, first: Record, docs: Sequence[Record], on_invalid: pb.InvalidDocumentPolicy,
              report: JobReport) -> pb.IngestSummary:
        """IngestBatch of `docs`, retried; a failure retrying cannot fix stops the job at
        `first`, the batch's first record (INVALID_ARGUMENT is raised for the caller)."""
        span = docs[0].location if len(docs) == 1 else f"{docs[0].location} .. {docs[-1].location}"
        retries = 0

        def on_retry(exc: grpc.RpcError, delay: float) -> None:
            nonlocal retries
            retries += 1
            report.retries += 1
            self.notify(f"{exc.code().name} sending {span}: {exc.details()}; "
                        f"retry {retries} of {self.retry.retries} in {delay:.1f} s")

        try:
            return call_with_retries(
                lambda: self.client.ingest_batch([r.document for r in docs if r.document is not None],
                                                 on_invalid=on_invalid, timeout=self.timeout_seconds),
                self.retry, on_retry)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise
            tried = f" (gave up after {retries} {'retry' if retries == 1 else 'retries'})" if retries else ""
            raise _Stop(Outcome.SERVER_ERROR, first, f"{exc.code().name}: {exc.details()}{tried}") from None

    def _send(self, batch: list[Record], report: JobReport) -> None:
        """Send one batch and wait for its acknowledgement; dead-letter its rejected records."""
        if not batch:
            return
        docs = [r for r in batch if r.document is not None]
        summary = pb.IngestSummary()
        if docs:
            policy = pb.INVALID_DOCUMENT_POLICY_REJECT if self.stop_on_invalid else pb.INVALID_DOCUMENT_POLICY_SKIP
            try:
                summary = self._call(batch[0], docs, policy, report)
            except grpc.RpcError as exc:
                bad = error_details(exc).document_index()
                if not self.stop_on_invalid or bad is None or bad >= len(docs):
                    raise _Stop(Outcome.SERVER_ERROR, batch[0], f"{exc.code().name}: {exc.details()}") from None
                # The server validates in order, so documents before `bad` are valid: commit
                # them, and have `bad` listed with its reason, by skipping it alone.
                try:
                    summary = self._call(batch[0], docs[:bad + 1], pb.INVALID_DOCUMENT_POLICY_SKIP, report)
                except grpc.RpcError as again:
                    raise _Stop(Outcome.SERVER_ERROR, batch[0],
                                f"{again.code().name}: {again.details()}") from None
                self._acknowledge(batch[:batch.index(docs[bad])], docs[:bad + 1], summary, report)
                rejection = summary.rejected[0] if summary.rejected else None
                self._dead_letter(docs[bad], rejection, exc)
                if rejection is None:
                    report.summary.rejected_document_count += 1
                report.records += 1
                raise _Stop(Outcome.STOPPED_ON_INVALID, docs[bad],
                            _without_position(rejection.message, bad) if rejection else exc.details() or "") from None
        self._acknowledge(batch, docs, summary, report)

    def _acknowledge(self, batch: Sequence[Record], docs: Sequence[Record], summary: pb.IngestSummary,
                     report: JobReport) -> None:
        rejected = {docs[r.index].index: r for r in summary.rejected if 0 <= r.index < len(docs)}
        for record in batch:
            if record.document is None:
                self._reject_here(record)
                report.summary.rejected_document_count += 1
            elif record.index in rejected:
                self._dead_letter(record, rejected[record.index])
        report.add(summary)
        report.records += len(batch)
        report.next_record = batch[-1].index + 1 if batch else report.next_record
        self.progress(len(batch))

    def _dead_letter(self, record: Record, rejection: pb.RejectedDocument | None,
                     exc: grpc.RpcError | None = None) -> None:
        if rejection is not None:
            self.dead_letters.write(record, doc_id=rejection.doc_id or _original_doc_id(record),
                                    field_name=rejection.field, reason=_REASONS.get(rejection.reason, "invalid"),
                                    message=_without_position(rejection.message, rejection.index),
                                    rejected_by="server")
        elif exc is not None:
            self.dead_letters.write(record, doc_id=_original_doc_id(record), field_name="", reason="invalid",
                                    message=exc.details() or "", rejected_by="server")
