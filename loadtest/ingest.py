"""A concurrent ingest beside the search load: IngestBatch calls at a fixed document rate.

Searches meet, while a corpus is being (re)indexed, write admission, embedding on the
same cores, index growth and, in the searched namespace, results that change under
them. This ingest is open loop like the searches: batch i of `batch_size` documents is
meant to leave at start + i * batch_size / rate whatever is still outstanding, and its
latency counts from that intended time, with a deadline on every call. It runs on a
thread of its own, with its own event loop and its own connection (opened like the
searches' channels, `driver.open_channels`), so building and awaiting batches does not
take turns with the search pacer, and it shares the searches' start time, so the two
reports' intervals line up.

Documents come from the service's own source reader (`retrieval_svc.sources`, as
`retrieval-svc ingest` reads them): a JSONL file, a BEIR folder (its corpus.jsonl) or a
folder of text files, in source order; records that do not parse are skipped and
counted. Every document goes to one namespace, whatever a record says. Batches ask for
on_invalid SKIP by default, so a document the server rejects is counted
(IngestSummary.rejected_document_count) and the rest of its batch is committed; with REJECT
such a batch fails whole with INVALID_ARGUMENT. The batches are prepared before the
window opens, so no file is read while it is measured.

Nothing is retried: a refused batch (RESOURCE_EXHAUSTED from write admission, expected
under overload) is counted by its status code and not sent again, so the offered rate
stays what was asked.

When the source runs out before the window ends, the ingest goes through it again:
in pass p >= 2 every doc_id gets "#pass<p>" appended, so each pass writes documents
the namespace does not hold yet (embedding, index growth) instead of re-sending stored
ones, which the server acknowledges as unchanged without embedding anything. The
report says which passes were made. Consecutive runs (the steps of --find-capacity)
continue through the source where the last one stopped.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import grpc

from loadtest.driver import Outcome, open_channels, run_open_loop
from loadtest.schedule import Schedule, constant
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from retrieval_svc.client import document_to_pb
from retrieval_svc.domain import Document
from retrieval_svc.sources import Record, SourceError, read_records

ON_INVALID = {"skip": pb.INVALID_DOCUMENT_POLICY_SKIP, "reject": pb.INVALID_DOCUMENT_POLICY_REJECT}
PASS_SUFFIX = "#pass"


class Corpus:
    """The documents of an ingest source, read in source order as far as needed and kept.

    Position p of the endless sequence the ingest sends is document p mod n of pass
    p // n + 1 (n: the source's documents, known once it has been read to its end)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._records: Iterator[Record] | None = read_records(Path(path))
        except SourceError as exc:
            raise ValueError(f"ingest: {exc}") from None
        self._documents: list[Document] = []
        self.skipped = 0  # records that did not parse

    @property
    def size(self) -> int | None:
        """Documents in the source; None until it has been read to its end."""
        return len(self._documents) if self._records is None else None

    def _fill(self, count: int) -> None:
        while self._records is not None and len(self._documents) < count:
            try:
                record = next(self._records, None)
            except SourceError as exc:
                raise ValueError(f"ingest: {exc}") from None
            if record is None:
                self._records = None
            elif record.document is None:
                self.skipped += 1
            else:
                self._documents.append(record.document)
        if self._records is None and not self._documents:
            raise ValueError(f"ingest: no documents in {self.path}"
                             + (f" ({self.skipped} records did not parse)" if self.skipped else ""))

    def pass_of(self, position: int) -> int:
        """1 for the source's first time through, 2 for the second, ..."""
        size = self.size
        return 1 if size is None else position // size + 1

    def documents(self, first: int, count: int) -> list[Document]:
        """Positions first .. first + count - 1 of the endless sequence (reading on as needed)."""
        self._fill(first + count)
        out = []
        for position in range(first, first + count):
            doc = self._documents[position % len(self._documents)]
            n = self.pass_of(position)
            out.append(doc if n == 1 else replace(doc, doc_id=f"{doc.doc_id}{PASS_SUFFIX}{n}"))
        return out


@dataclass(frozen=True)
class IngestLoad:
    """What to write beside the searches: `rate` documents/s in IngestBatch calls of
    `batch_size` documents into `namespace`, each with a deadline of `deadline_s`,
    starting at position `first_document` of the corpus's endless sequence."""

    corpus: Corpus
    rate: float
    batch_size: int = 8
    namespace: str = ""
    deadline_s: float = 10.0
    on_invalid: str = "skip"
    first_document: int = 0

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"ingest rate must be > 0 documents/s, got {self.rate}")
        if self.batch_size < 1:
            raise ValueError(f"ingest batch must be >= 1 document, got {self.batch_size}")
        if not self.deadline_s > 0:
            raise ValueError(f"ingest deadline must be > 0 s, got {self.deadline_s}")
        if self.on_invalid not in ON_INVALID:
            raise ValueError(f"ingest on_invalid must be one of {sorted(ON_INVALID)}, got {self.on_invalid!r}")

    @property
    def batch_rate(self) -> float:
        return self.rate / self.batch_size

    def offsets(self, duration: float) -> Schedule:
        """Constant arrivals of batches: batch i at i * batch_size / rate, in [0, duration)."""
        offsets = constant(self.batch_rate, duration)
        if not offsets:
            raise ValueError(f"an ingest of {self.rate:g} documents/s in batches of {self.batch_size} sends "
                             f"no batch in {duration:g} s: raise the rate or lower the batch")
        return offsets

    def documents_in(self, duration: float) -> int:
        return len(self.offsets(duration)) * self.batch_size

    def requests(self, batches: int) -> list[pb.IngestRequest]:
        docs = self.corpus.documents(self.first_document, batches * self.batch_size)
        policy = ON_INVALID[self.on_invalid]
        return [pb.IngestRequest(documents=[document_to_pb(replace(d, namespace=self.namespace))
                                            for d in docs[b * self.batch_size:(b + 1) * self.batch_size]],
                                 on_invalid=policy)
                for b in range(batches)]


@dataclass(frozen=True)
class BatchCounts:
    """What an OK IngestBatch reported (IngestSummary's counters)."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    chunks_embedded: int = 0

    @property
    def committed(self) -> int:
        return self.added + self.updated + self.unchanged

    @classmethod
    def of(cls, summary: pb.IngestSummary) -> "BatchCounts":
        return cls(added=summary.added_document_count, updated=summary.updated_document_count,
                   unchanged=summary.unchanged_document_count, rejected=summary.rejected_document_count,
                   chunks_embedded=summary.embedded_chunk_count)


class IngestCaller:
    """call(i) -> status code name of IngestBatch i, with a deadline; the counts of every
    OK batch are kept in `counts` (batch index -> BatchCounts)."""

    def __init__(self, channel: grpc.aio.Channel, requests: list[pb.IngestRequest], deadline_s: float) -> None:
        self._stub = rgrpc.RetrievalServiceStub(channel)
        self.requests = requests
        self.deadline_s = deadline_s
        self.counts: dict[int, BatchCounts] = {}

    async def __call__(self, i: int) -> str:
        try:
            summary = await self._stub.IngestBatch(self.requests[i], timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        self.counts[i] = BatchCounts.of(summary)
        return "OK"


@dataclass(frozen=True)
class IngestRun:
    """The outcomes of one ingest window (times from the shared start), with the counts
    of its OK batches."""

    load: IngestLoad
    duration: float
    outcomes: tuple[Outcome, ...]
    counts: dict[int, BatchCounts]

    @property
    def documents_offered(self) -> int:
        return len(self.outcomes) * self.load.batch_size

    @property
    def last_pass(self) -> int:
        if not self.outcomes:
            return 1
        return self.load.corpus.pass_of(self.load.first_document + self.documents_offered - 1)


class IngestThread:
    """The ingest's schedule on a thread of its own, with its own event loop and channel.

    The batches are built here, on the caller's thread, before anything is sent.
    `start()` starts the thread, which connects and waits; `begin(start)` (the search
    pacer's `on_start`) gives it the shared clock reading of offset 0 and lets it run;
    `abort()` releases a thread that was never begun; `join()` waits for the last batch
    (each ends by its deadline) and returns the run, or raises what ended the thread."""

    def __init__(self, target: str, load: IngestLoad, duration: float) -> None:
        self.target = target
        self.load = load
        self.duration = duration
        self.offsets = load.offsets(duration)
        self.requests = load.requests(len(self.offsets))
        self._connected = threading.Event()
        self._go = threading.Event()
        self._start: float | None = None
        self._run: IngestRun | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="loadtest-ingest", daemon=True)

    def start(self, connect_timeout_s: float = 10.0) -> None:
        """Start the thread and wait (at most `connect_timeout_s`) until its channel is connected
        or has given up (its batches then come back UNAVAILABLE)."""
        self._thread.start()
        self._connected.wait(connect_timeout_s)

    def begin(self, start: float) -> None:
        self._start = start
        self._go.set()

    def abort(self) -> None:
        self._go.set()

    def join(self) -> IngestRun:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._run is not None  # set by _main unless it raised
        return self._run

    def _main(self) -> None:
        try:
            outcomes, counts = asyncio.run(self._drive())
            self._run = IngestRun(self.load, self.duration, tuple(outcomes), counts)
        except BaseException as exc:  # handed to join(): a failed ingest must not vanish with its thread
            self._error = exc
        finally:
            self._connected.set()

    async def _drive(self) -> tuple[list[Outcome], dict[int, BatchCounts]]:
        async with open_channels(self.target, own_connection=True) as (channel,):
            self._connected.set()
            await asyncio.to_thread(self._go.wait)
            if self._start is None:  # aborted before the searches started
                return [], {}
            caller = IngestCaller(channel, self.requests, self.load.deadline_s)
            outcomes = await run_open_loop(self.offsets, caller, label=lambda i: "ingest",
                                           wait_after_s=self.load.deadline_s + 5.0, start=self._start)
            return outcomes, caller.counts
