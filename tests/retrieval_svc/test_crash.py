"""Crash test: `retrieval-svc serve` killed with SIGKILL while it ingests, then restarted.

A generated corpus goes in through client-streaming Ingest, in several streams;
a stream whose call returned is acknowledged. The server is killed early in a
stream, in the middle of one (once the server committed its first message),
right after one was acknowledged, and twice while
it writes an index snapshot (seen by polling the store folder every
millisecond: a staging folder `indexes/g<generation>/` newer than the
manifest, then `indexes/manifest.json.tmp`), and once after a snapshot caught
up (so that a restart loads it rather than rebuilding from the ledger). After
each kill the server is restarted on the same folder and:

- every acknowledged document is there (GetDocument gives its text) and is
  found, with its own distinctive text and the filter doc_id=<id>, by a search
  in each mode (dense, bm25, hybrid);
- a document of the interrupted stream may be missing, but if GetDocument
  returns it, it is searchable too, and what survived of that stream is whole
  messages from its start (each message is committed atomically, in order);
- ledger == indexes: every namespace in Info has chunk_count == dense_vector_count ==
  bm25_chunk_count;
- re-ingesting acknowledged documents is idempotent (all unchanged, nothing embedded).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.client import ProtoClient
from retrieval_svc.domain import Document

from corpus import WORDS  # on sys.path via this folder's conftest
from served import ServedProcess

SNAPSHOT_ENV = {"RETRIEVAL_SVC_STORE__SNAPSHOT_INTERVAL_SECONDS": "0.2"}
MODES = {"dense": pb.SEARCH_MODE_DENSE, "bm25": pb.SEARCH_MODE_BM25, "hybrid": pb.SEARCH_MODE_HYBRID}
BULK_DOCUMENTS = 120  # makes each snapshot take some milliseconds
STREAM_DOCUMENTS = 24
MESSAGE_DOCUMENTS = 4
SNAPSHOT_WAIT_SECONDS = 8.0
QUERIES_PER_BATCH = 100
CALL_TIMEOUT = 60.0


class Corpus:
    """Deterministic documents, each with a word no other document has."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.count = 0

    def take(self, namespace: str, n: int, sentences: int = 6) -> list[Document]:
        docs = []
        for _ in range(n):
            self.count += 1
            marker = f"zq{self.count:05d}x{self.rng.randrange(36**3):03x}"
            opening = (f"Record {marker} notes the {self.rng.choice(WORDS)} {self.rng.choice(WORDS)} "
                       f"near the {self.rng.choice(WORDS)}.")
            body = " ".join(
                " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(8, 14))).capitalize() + "."
                for _ in range(sentences))
            docs.append(Document(namespace, f"{namespace}-{self.count:05d}", f"{opening} {body}",
                                 title=f"record {self.count}", metadata={"marker": marker}))
        return docs


def query_of(doc: Document) -> str:
    """The document's distinctive opening sentence."""
    return doc.text.split(". ", 1)[0] + "."


@dataclass
class StreamRun:
    """A client-streaming Ingest in a thread; `sent` counts messages handed to gRPC.

    gRPC's flow control lets a client run far ahead of the server, so the messages
    are paced (`pause` seconds apart): then "after message n" means something on the
    server's side too, and an endless stream stays small."""

    client: ProtoClient
    docs: list[Document] | None = None
    endless: "Corpus | None" = None
    namespace: str = "crash"
    pause: float = 0.05
    sent: int = 0
    yielded: list[Document] = field(default_factory=list)
    result: pb.IngestSummary | None = None
    error: grpc.RpcError | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    progressed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> "StreamRun":
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _documents(self):
        messages = ([self.docs[i:i + MESSAGE_DOCUMENTS] for i in range(0, len(self.docs), MESSAGE_DOCUMENTS)]
                    if self.docs is not None else None)
        i = 0
        while not self.stop.is_set() and (messages is None or i < len(messages)):
            batch = messages[i] if messages is not None else self.endless.take(
                self.namespace, MESSAGE_DOCUMENTS, sentences=2)
            if i:
                self.stop.wait(self.pause)
            i += 1
            self.yielded.extend(batch)
            yield from batch

    def _on_batch(self, _size: int) -> None:
        with self.progressed:
            self.sent += 1
            self.progressed.notify_all()

    def _run(self) -> None:
        try:
            self.result = self.client.ingest(self._documents(), batch_size=MESSAGE_DOCUMENTS,
                                             on_batch=self._on_batch, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            with self.progressed:
                self.progressed.notify_all()

    def wait_sent(self, messages: int, timeout: float = 30.0) -> None:
        with self.progressed:
            self.progressed.wait_for(lambda: self.sent >= messages or not self.thread.is_alive(), timeout)

    def join(self) -> None:
        self.stop.set()
        self.thread.join(timeout=CALL_TIMEOUT)


def snapshot_in_progress(indexes: Path, since: float) -> str | None:
    """'manifest.json.tmp' or 'g<N>' while a snapshot is being written (a staging folder
    newer than the manifest's generation, touched since `since`), else None."""
    if (indexes / "manifest.json.tmp").exists():
        return "manifest.json.tmp"
    try:
        manifest_generation = json.loads((indexes / "manifest.json").read_text())["generation"]
    except (OSError, ValueError, KeyError):
        manifest_generation = -1
    try:
        folders = list(indexes.glob("g*"))
    except OSError:
        return None
    for folder in folders:
        try:
            generation, changed = int(folder.name[1:]), folder.stat().st_mtime
        except (ValueError, OSError):
            continue
        if generation > manifest_generation and changed >= since:
            return folder.name
    return None


class CrashRun:
    def __init__(self, tmp_path: Path) -> None:
        self.data, self.log = tmp_path / "store", tmp_path / "server.log"
        self.corpus = Corpus(seed=7)
        self.acked: dict[tuple[str, str], Document] = {}
        self.interrupted: dict[tuple[str, str], Document] = {}
        self.problems: list[str] = []
        self.events: list[str] = []
        self.server: ServedProcess | None = None
        self.client: ProtoClient | None = None
        self.started_wall = 0.0

    # --- server ---------------------------------------------------------------------

    def start(self) -> None:
        self.started_wall = time.time()
        began = time.monotonic()
        self.server = ServedProcess(self.data, self.log, env=SNAPSHOT_ENV)
        self.client = ProtoClient(self.server.target, timeout=CALL_TIMEOUT)
        rebuilt = "rebuil" in self.log.read_text(errors="replace").split("--- start")[-1]
        self.events.append(f"start {time.monotonic() - began:.1f}s" + (" (indexes rebuilt)" if rebuilt else ""))

    def kill(self, why: str) -> None:
        self.server.kill()
        self.client.close()
        self.events.append(f"kill -9 {why}")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            self.server.kill()

    # --- ingest -----------------------------------------------------------------------

    def ingest(self, docs: list[Document]) -> pb.IngestSummary:
        summary = self.client.ingest(docs, batch_size=MESSAGE_DOCUMENTS * 8, timeout=CALL_TIMEOUT)
        self._ack(docs)
        return summary

    def _ack(self, docs) -> None:
        for doc in docs:
            self.acked[(doc.namespace, doc.doc_id)] = doc
            self.interrupted.pop((doc.namespace, doc.doc_id), None)

    def _interrupt(self, run: StreamRun) -> None:
        if run.result is not None:  # it returned before the kill: acknowledged after all
            self._ack(run.yielded)
            return
        for doc in run.yielded:
            if (doc.namespace, doc.doc_id) not in self.acked:
                self.interrupted[(doc.namespace, doc.doc_id)] = doc

    def resend_interrupted(self) -> None:
        """Continue where the killed stream stopped: its documents go in again."""
        if self.interrupted:
            self.ingest(list(self.interrupted.values()))

    # --- kills ------------------------------------------------------------------------

    def kill_early(self) -> None:
        """Kill as soon as the first message of a stream was handed to gRPC."""
        run = StreamRun(self.client, docs=self.corpus.take("crash", STREAM_DOCUMENTS)).start()
        run.wait_sent(1)
        self.kill(f"early in a stream (after {run.sent} of {STREAM_DOCUMENTS // MESSAGE_DOCUMENTS} messages sent)")
        run.join()
        self._interrupt(run)

    def kill_mid_stream(self) -> None:
        """Kill once the server has committed the stream's first message, before the stream ends."""
        docs = self.corpus.take("crash", STREAM_DOCUMENTS)
        run = StreamRun(self.client, docs=docs).start()
        first_message_done = docs[MESSAGE_DOCUMENTS - 1]
        deadline = time.monotonic() + CALL_TIMEOUT
        while run.thread.is_alive() and time.monotonic() < deadline:
            try:
                self.client.get_document(first_message_done.namespace, first_message_done.doc_id)
                break
            except grpc.RpcError:
                time.sleep(0.01)
        state = "returned" if not run.thread.is_alive() else f"{run.sent} messages sent"
        self.kill(f"mid-stream (first message committed, {state})")
        run.join()
        self._interrupt(run)

    def kill_after_ack(self) -> None:
        docs = self.corpus.take("crash", STREAM_DOCUMENTS)
        self.client.ingest(docs, batch_size=MESSAGE_DOCUMENTS, timeout=CALL_TIMEOUT)
        self.kill("right after a stream was acknowledged")
        self._ack(docs)

    def kill_during_snapshot(self, want: str) -> None:
        """Stream until the poller sees a snapshot being written (`want`: "staging" or
        "manifest"), then kill. Falls back to a staging folder after SNAPSHOT_WAIT_SECONDS."""
        indexes = self.data / "indexes"
        run = StreamRun(self.client, endless=self.corpus, namespace="snap").start()
        deadline = time.monotonic() + SNAPSHOT_WAIT_SECONDS
        seen = None
        while run.thread.is_alive():
            seen = snapshot_in_progress(indexes, self.started_wall)
            if seen and (want == "staging" or seen == "manifest.json.tmp" or time.monotonic() > deadline):
                break
            seen = None
            if time.monotonic() > deadline + SNAPSHOT_WAIT_SECONDS:
                break
            time.sleep(0.001)
        self.kill(f"during a snapshot write ({seen or 'none seen'}, {run.sent} messages into the stream)")
        run.join()
        self._interrupt(run)
        if run.error is None and run.result is None:
            self.problems.append("the endless stream neither failed nor returned after the kill")
        if seen is None:
            self.problems.append(f"no snapshot was seen being written within {2 * SNAPSHOT_WAIT_SECONDS:.0f}s "
                                 "of streaming (store.snapshot_interval_seconds=0.2)")

    def kill_after_snapshot_caught_up(self) -> None:
        """Kill once the manifest holds the server's generation, so that the restart
        loads the snapshot instead of rebuilding the indexes from the ledger."""
        indexes = self.data / "indexes"
        generation = self.client.info().index_generation
        deadline = time.monotonic() + SNAPSHOT_WAIT_SECONDS
        written = -1
        while time.monotonic() < deadline:
            try:
                written = json.loads((indexes / "manifest.json").read_text())["generation"]
            except (OSError, ValueError, KeyError):
                written = -1
            if written == generation and snapshot_in_progress(indexes, self.started_wall) is None:
                break
            time.sleep(0.01)
        else:
            self.problems.append(f"no snapshot of generation {generation} was written within "
                                 f"{SNAPSHOT_WAIT_SECONDS:.0f}s (manifest has {written})")
        self.kill(f"after the snapshot of generation {written} was written")

    # --- checks -----------------------------------------------------------------------

    def verify(self, after: str) -> None:
        began = time.monotonic()
        problems = []
        found_interrupted = [key for key in self.interrupted if self._stored_text(key, problems) is not None]
        # Each message is committed atomically and in order, so what survived of the
        # interrupted stream is a run of whole messages from its start.
        order = list(self.interrupted)
        if found_interrupted and (set(found_interrupted) != set(order[:len(found_interrupted)])
                                  or len(found_interrupted) % MESSAGE_DOCUMENTS):
            problems.append(f"of the interrupted stream {sorted(k[1] for k in found_interrupted)} are stored, "
                            f"not whole messages of {MESSAGE_DOCUMENTS} from its start "
                            f"({[k[1] for k in order]})")
        for key, doc in self.acked.items():
            text = self._stored_text(key, problems)
            if text is None:
                problems.append(f"acknowledged {key[1]} ({key[0]}) is missing")
            elif text != doc.text:
                problems.append(f"acknowledged {key[1]} ({key[0]}) has other text: {text[:60]!r}")
        searchable = list(self.acked.values()) + [self.interrupted[k] for k in found_interrupted]
        for name, mode in MODES.items():
            for start in range(0, len(searchable), QUERIES_PER_BATCH):
                batch = searchable[start:start + QUERIES_PER_BATCH]
                self._search(batch, name, mode, problems)
        for ns in self.client.info().namespaces:
            if not ns.chunk_count == ns.dense_vector_count == ns.bm25_chunk_count:
                problems.append(f"namespace {ns.name!r}: ledger chunks {ns.chunk_count}, dense vectors "
                                f"{ns.dense_vector_count}, bm25 chunks {ns.bm25_chunk_count}")
        again = list(self.acked.values())[-3:] + list(self.acked.values())[:2]
        summary = self.client.ingest(again, batch_size=MESSAGE_DOCUMENTS, timeout=CALL_TIMEOUT)
        if summary.unchanged_document_count != len(again) or summary.embedded_chunk_count != 0:
            problems.append(f"re-ingest of {len(again)} acknowledged documents was not idempotent: "
                            f"{str(summary).strip()!r}")
        self.events.append(f"verified {len(self.acked)} acknowledged, {len(found_interrupted)} of "
                           f"{len(self.interrupted)} interrupted present ({time.monotonic() - began:.1f}s)")
        self.problems += [f"after {after}: {p}" for p in problems[:25]]
        if len(problems) > 25:
            self.problems.append(f"after {after}: … {len(problems) - 25} more")

    def _stored_text(self, key, problems) -> str | None:
        try:
            return self.client.get_document(key[0], key[1]).document.text
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                problems.append(f"GetDocument {key[1]} ({key[0]}): {exc.code().name} {exc.details()}")
            return None

    def _search(self, docs: list[Document], name: str, mode: int, problems: list[str]) -> None:
        requests = [pb.SearchRequest(query=query_of(d), namespace=d.namespace, k=5, mode=mode,
                                     filters=[pb.FilterClause(key="doc_id", any_of=[d.doc_id])]) for d in docs]
        try:
            results = self.client.batch_search(requests).results
        except grpc.RpcError as exc:
            problems.append(f"{name} BatchSearch of {len(docs)} queries: {exc.code().name} {exc.details()}")
            return
        for doc, result in zip(docs, results):
            ids = {h.doc_id for h in result.hits}
            if ids != {doc.doc_id}:
                kind = "acknowledged" if (doc.namespace, doc.doc_id) in self.acked else "interrupted but stored"
                problems.append(f"{kind} {doc.doc_id} ({doc.namespace}): {name} search for {query_of(doc)!r} "
                                f"with filter doc_id={doc.doc_id} returned {sorted(ids) or 'nothing'}")


def test_kill_9_during_ingest_and_snapshots_loses_nothing_acknowledged(tmp_path):
    began = time.monotonic()
    run = CrashRun(tmp_path)
    try:
        run.start()
        run.ingest(run.corpus.take("bulk", BULK_DOCUMENTS, sentences=1))
        run.ingest(run.corpus.take("crash", STREAM_DOCUMENTS))
        kills = [
            ("early in a stream", run.kill_early),
            ("mid-stream", run.kill_mid_stream),
            ("after an acknowledged stream", run.kill_after_ack),
            ("during a snapshot (staging folder)", lambda: run.kill_during_snapshot("staging")),
            ("during a snapshot (manifest.json.tmp)", lambda: run.kill_during_snapshot("manifest")),
            ("after a snapshot caught up", run.kill_after_snapshot_caught_up),
        ]
        for label, kill in kills:
            kill()
            run.start()
            run.verify(f"kill -9 {label}")
            run.resend_interrupted()
        run.ingest(run.corpus.take("crash", MESSAGE_DOCUMENTS))
        run.verify("the last restart and more ingest")
    finally:
        run.close()
    print(f"crash: {len(run.acked)} acknowledged documents; {'; '.join(run.events)}; "
          f"{time.monotonic() - began:.1f}s")
    assert not run.problems, "\n".join(run.problems) + f"\nserver log tail:\n{run.server.log_tail(2000)}"
