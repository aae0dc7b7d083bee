"""What the ingest beside the searches did, per interval and overall, as a table and as JSON.

Per interval [t, t + interval) of the shared time line (the last ones only hold answers):
- offered docs/s: documents of the batches whose *intended* send time falls in it;
- committed docs/s: documents committed (added + updated + unchanged) by the OK
  batches that *answered* in it, so a tail after the last send shows a backlog draining;
- batch latency p50/p99 of the OK batches offered in it, from the intended send time;
- status codes of the batches offered in it (RESOURCE_EXHAUSTED: write admission refused
  the batch; nothing of it was committed).

Overall: offered docs/s = documents / nominal duration; committed docs/s = committed
documents / (time from the start to the last answer, at least the nominal duration).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from loadtest.driver import Outcome
from loadtest.ingest import PASS_SUFFIX, BatchCounts, IngestRun
from loadtest.report import REFUSAL_CODES, buckets, codes_text, markdown_table, ms
from loadtest.stats import LatencySummary


@dataclass(frozen=True)
class IngestWindow:
    start: float
    end: float
    batches: int
    documents: int
    offered_rate: float  # documents/s
    committed: int  # documents committed by the OK batches answered in the window
    committed_rate: float
    codes: Mapping[str, int]  # of the batches offered in the window
    ok_latency: LatencySummary
    lateness: LatencySummary

    @property
    def refused(self) -> int:
        return sum(self.codes.get(c, 0) for c in REFUSAL_CODES)

    def to_dict(self) -> dict:
        return {
            "start_s": round(self.start, 3), "end_s": round(self.end, 3), "batches": self.batches,
            "documents_offered": self.documents, "offered_docs_per_s": round(self.offered_rate, 3),
            "documents_committed": self.committed, "committed_docs_per_s": round(self.committed_rate, 3),
            "codes": dict(sorted(self.codes.items())), "refused": self.refused,
            "ok_batch_latency": self.ok_latency.to_ms(), "send_lateness": self.lateness.to_ms(),
        }


def _window(offered: Sequence[Outcome], completed: Sequence[Outcome], counts: Mapping[int, BatchCounts],
            batch_size: int, start: float, end: float, offered_span: float | None = None) -> IngestWindow:
    span = end - start
    committed = sum(counts[o.index].committed for o in completed if o.code == "OK")
    return IngestWindow(
        start=start, end=end, batches=len(offered), documents=len(offered) * batch_size,
        offered_rate=len(offered) * batch_size / (offered_span or span) if span > 0 else 0.0,
        committed=committed, committed_rate=committed / span if span > 0 else 0.0,
        codes=dict(Counter(o.code for o in offered)),
        ok_latency=LatencySummary.of([o.latency for o in offered if o.code == "OK"]),
        lateness=LatencySummary.of([o.lateness for o in offered]))


@dataclass(frozen=True)
class IngestReport:
    """The ingest of one run. `totals`: the OK batches' IngestSummary counters added up."""

    source: str
    namespace: str
    rate: float
    batch_size: int
    deadline_s: float
    on_invalid: str
    first_document: int
    corpus_documents: int | None  # None: the source was not read to its end
    skipped_records: int
    last_pass: int
    overall: IngestWindow
    intervals: tuple[IngestWindow, ...]
    totals: BatchCounts

    @property
    def embedded_nothing(self) -> bool:
        """Every committed document was already stored: no write load beyond the bookkeeping."""
        return self.totals.committed > 0 and self.totals.chunks_embedded == 0

    def outcome(self) -> str:
        """One line: whether the ingest kept up, for the verdict and the report."""
        o, t = self.overall, self.totals
        lost = o.documents - t.committed - t.rejected
        return (f"ingest ran: {o.documents} documents offered ({o.offered_rate:.1f}/s) in {o.batches} "
                f"IngestBatch calls; {t.committed} committed ({o.committed_rate:.1f}/s), {t.rejected} "
                f"rejected by validation, {lost} in failed batches; batches {codes_text(o.codes)}")

    def to_dict(self) -> dict:
        t = self.totals
        return {
            "source": self.source, "namespace": self.namespace or "default", "rate_docs_per_s": self.rate,
            "batch_size": self.batch_size, "deadline_ms": round(self.deadline_s * 1000, 3),
            "on_invalid": self.on_invalid, "first_document": self.first_document,
            "corpus_documents": self.corpus_documents, "skipped_records": self.skipped_records,
            "passes": self.last_pass, "outcome": self.outcome(),
            "totals": {"committed": t.committed, "added": t.added, "updated": t.updated,
                       "unchanged": t.unchanged, "rejected": t.rejected, "chunks_embedded": t.chunks_embedded},
            "overall": self.overall.to_dict(),
            "intervals": [w.to_dict() for w in self.intervals],
        }

    def format(self) -> str:
        headers = ["t s", "offered docs/s", "committed docs/s", "batches", "OK p50 ms", "OK p99 ms",
                   "refused", "send late p99 ms", "codes"]
        rows = [_row(f"{round(w.start, 2):g}-{round(w.end, 2):g}", w) for w in self.intervals]
        rows.append(_row("all", self.overall))
        t = self.totals
        corpus = (f"{self.corpus_documents} documents" if self.corpus_documents is not None
                  else "the source not read to its end")
        passes = ("pass 1" if self.last_pass == 1 else
                  f"passes up to {self.last_pass} (doc_ids of pass p >= 2 end in '{PASS_SUFFIX}<p>')")
        lines = [
            f"ingest beside the searches: {self.rate:g} docs/s in IngestBatch calls of {self.batch_size} into "
            f"namespace {self.namespace or 'default'!r}, deadline {self.deadline_s * 1000:g} ms, on_invalid "
            f"{self.on_invalid}; from {self.source} ({corpus}"
            + (f", {self.skipped_records} unparseable records skipped" if self.skipped_records else "")
            + f"), from document {self.first_document}, {passes}",
            "batch latency: OK batches, from the intended send time; committed = added + updated + unchanged, "
            "by answer time",
            markdown_table(headers, rows),
            self.outcome(),
            f"committed: {t.added} added, {t.updated} updated, {t.unchanged} unchanged; "
            f"{t.chunks_embedded} chunks embedded",
        ]
        if self.embedded_nothing:
            lines.append("note: every committed document was already stored unchanged, so the ingest embedded "
                         "nothing; for a real write load send documents the namespace does not hold (another "
                         "corpus, or --ingest-namespace)")
        return "\n".join(lines)


def _row(label: str, w: IngestWindow) -> list[str]:
    return [label, f"{w.offered_rate:.1f}", f"{w.committed_rate:.1f}", str(w.batches), ms(w.ok_latency.p50),
            ms(w.ok_latency.p99), str(w.refused), ms(w.lateness.p99), codes_text(w.codes)]


def summarize_ingest(run: IngestRun, interval: float = 1.0) -> IngestReport:
    load, outcomes = run.load, run.outcomes
    batch = load.batch_size
    end = max(run.duration, max((o.done for o in outcomes), default=0.0))
    offered_in, done_in = buckets(outcomes, end, interval)
    intervals = tuple(_window(offered_in[i], done_in[i], run.counts, batch, i * interval, (i + 1) * interval)
                      for i in range(len(offered_in)))
    overall = _window(outcomes, outcomes, run.counts, batch, 0.0, end, offered_span=run.duration)
    ok = [run.counts[o.index] for o in outcomes if o.code == "OK"]
    totals = BatchCounts(added=sum(c.added for c in ok), updated=sum(c.updated for c in ok),
                         unchanged=sum(c.unchanged for c in ok), rejected=sum(c.rejected for c in ok),
                         chunks_embedded=sum(c.chunks_embedded for c in ok))
    return IngestReport(source=load.corpus.path, namespace=load.namespace, rate=load.rate, batch_size=batch,
                        deadline_s=load.deadline_s, on_invalid=load.on_invalid,
                        first_document=load.first_document, corpus_documents=load.corpus.size,
                        skipped_records=load.corpus.skipped, last_pass=run.last_pass, overall=overall,
                        intervals=intervals, totals=totals)
