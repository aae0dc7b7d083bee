"""Okapi BM25 over an incrementally updated inverted index (the `LexicalIndex` protocol).

Scoring is exactly that of ``rank_bm25.BM25Okapi`` (rank-bm25 0.2.2) on the
current document set, formula and floating-point operation order included:

    idf(t)      = log(N - n_t + 0.5) - log(n_t + 0.5)
                  (if negative -- t is in more than half the documents --
                   replaced by epsilon * mean over *every* corpus term of idf,
                   negative idfs included)
    norm(d)     = k1 * ((1 - b) + b * |d| / avgdl)
    score(q, d) = sum over query tokens t, in query order, repeats counted each
                  time, of  idf(t) * (tf(t, d) * (k1 + 1)) / (tf(t, d) + norm(d))

with N the number of documents, n_t the number containing t, |d| a document's
token count and avgdl their mean. Query terms that no document contains add 0.

Differences from calling ``BM25Okapi.get_scores``, all deliberate:

- `search` returns only documents with a non-zero score, i.e. that contain at
  least one query term of non-zero idf (rank_bm25 scores every document,
  mostly 0). A negative score is possible only when the mean idf is negative
  (tiny corpora where most terms are in most documents); such documents are
  returned, below the positive ones.
- ties are broken by key ascending, so results are deterministic.
- the epsilon floor's mean idf is summed per distinct document frequency
  (``count * idf``, added with `math.fsum`) rather than term by term in corpus
  order, so an idf that is floored can differ from rank_bm25's in the last
  bits (rank_bm25's own naive sum depends on the order documents were given;
  where that mean is ~0 through cancellation both are ~1e-17 and may differ
  relatively more). Everything else is bit-identical, and scores do not depend
  on the order of writes: an index built incrementally scores bit-identically
  to one built at once from the same documents.
- with k1 = 0, or b = 1 and an empty document, rank_bm25 computes 0/0 (NaN)
  for documents lacking a query term; here those documents simply do not match.
- `allowed` restricts which documents are returned, not the statistics: N,
  avgdl and idf are always those of the whole index.

Data layout and costs (P = postings, V = terms, R = document rows):

- one row per added document (internal, never reused until compaction):
  key, length, alive flag, and the row's distinct term ids (for `remove`);
- per term: document frequency, a posting array (int32, 2 x capacity: rows
  ascending, term frequencies) that grows by doubling, and a count of dead
  postings (rows since removed), masked out when searching.
- `add` costs the tokenization plus O(postings added), vectorised per batch;
  `remove` costs O(distinct terms of the removed documents). A term whose
  postings are more than half dead is compacted then (amortised O(1) per
  removal); when more than half the rows (or terms), and at least 1024, are
  dead the whole index is renumbered, O(P + V), amortised over at least that
  many removals.
- `search` reads every posting of the query terms once per occurrence, adding
  weights into a dense array of R scores in a compiled loop (`_kernels`), then
  selects the top k from it in O(R) (sampled bar, exact partition). Neither
  loop is NumPy's: measured 4x faster at p50 and p95 than the gather /
  `np.bincount` / `np.partition` version on 51,830 SciFact documents
  (docs/benchmarks.md, "BM25 query latency"). Pruning (MaxScore) was measured
  slower there and is not used.
- What depends on N and avgdl (norm per row, the epsilon floor) is computed
  lazily once per write generation by the first search after a write and
  cached: norm is O(R) NumPy work; the floor is a histogram of document
  frequencies (O(V) NumPy) and one `math.log` pair per *distinct* document
  frequency -- at most sqrt(2P) of them, since the distinct frequencies
  n_1 < n_2 < ... sum to at most P.

Thread safety: writes (`add`, `remove`) must be serialised by the caller and
must not run during reads. Reads (`search`, `keys`, `__len__`, `save`) may run
concurrently with each other: they never mutate shared state except the lazily
computed per-generation caches, which are built under a lock and swapped in
whole.
"""

from __future__ import annotations

import json
import math
import operator
import os
import threading
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from retrieval_svc.domain import Candidate
from retrieval_svc.lexical import _kernels
from retrieval_svc.lexical.tokenization import Tokenizer

FORMAT = "retrieval_svc.lexical.bm25"
FORMAT_VERSION = 1

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Whole-index compaction waits for at least this many dead rows (or terms).
_MIN_COMPACTION = 1024
_EMPTY_I32 = np.zeros(0, dtype=np.int32)
_NO_POSTINGS = np.zeros((2, 0), dtype=np.int32)


@dataclass(frozen=True)
class _Statistics:
    """What BM25 needs beyond postings, for one write generation."""

    generation: int
    documents: int
    avgdl: float
    norm: np.ndarray  # per row: k1 * ((1 - b) + b * length / avgdl)
    idf_floor: float  # epsilon * mean idf over every term in the index


@dataclass(frozen=True)
class _KeyLookup:
    generation: int
    keys: np.ndarray  # live keys, ascending
    rows: np.ndarray  # their rows


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    """`array` with capacity for at least `needed` entries (doubling), contents kept."""
    if needed <= array.shape[0]:
        return array
    grown = np.zeros(max(needed, 2 * array.shape[0], 16), dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


def _extended(postings: np.ndarray, size: int, new: np.ndarray) -> np.ndarray:
    """`postings` (2 x capacity, `size` used) with the columns `new` appended.
    Capacity doubles, so appends are amortised O(1) per posting."""
    needed = size + new.shape[1]
    if size == 0 and postings.shape[1] < needed:
        # Most terms are rare: start as a view of the batch's array, no spare
        # capacity; the first append to it copies.
        return new
    if postings.shape[1] < needed:
        grown = np.empty((2, max(needed, 2 * postings.shape[1])), dtype=np.int32)
        grown[:, :size] = postings[:, :size]
        postings = grown
    postings[:, size:needed] = new
    return postings


def warm_up() -> None:
    """Compile the search kernels (or load them from numba's cache) now: a server
    calls this at start-up so that its first BM25 query does not wait seconds."""
    index = BM25Index(str.split)
    index.add(range(2), ["warm up", "up"])
    index.remove([1])  # the masked kernel too
    index.search("warm up", 1)
    index.search("warm", 1, allowed=np.arange(1))


def _as_key(value: Any) -> int:
    key = operator.index(value)
    if not _INT64_MIN <= key <= _INT64_MAX:
        raise ValueError(f"key {key} does not fit in int64")
    return key


class BM25Index:
    """Okapi BM25 (rank_bm25.BM25Okapi-exact) over int64 keys, updated in place."""

    def __init__(
        self,
        tokenizer: Callable[[str], list[str]] | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
    ) -> None:
        if not (math.isfinite(k1) and k1 >= 0):
            raise ValueError(f"k1 must be a finite number >= 0, got {k1!r}")
        if not (math.isfinite(b) and 0 <= b <= 1):
            raise ValueError(f"b must be between 0 and 1, got {b!r}")
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon must be a finite number, got {epsilon!r}")
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()
        self.k1 = float(k1)
        self.b = float(b)
        self.epsilon = float(epsilon)
        self._lock = threading.Lock()  # guards the lazily built caches only
        self._statistics: _Statistics | None = None
        self._key_lookup: _KeyLookup | None = None
        self._generation = 0
        # Terms: ids are dense and in insertion order, so iterating the dict
        # yields the terms by id.
        self._term_ids: dict[str, int] = {}
        self._df = np.zeros(0, dtype=np.int64)  # live postings per term
        self._dead = np.zeros(0, dtype=np.int64)  # dead postings per term
        self._size = np.zeros(0, dtype=np.int64)  # used length of the posting arrays
        # Per term, int32 of shape (2, capacity): rows (ascending), then term
        # frequencies; the first `_size[term]` columns are in use.
        self._postings: list[np.ndarray] = []
        # Rows.
        self._rows = 0
        self._row_key = np.zeros(0, dtype=np.int64)
        self._row_len = np.zeros(0, dtype=np.int64)
        self._row_alive = np.zeros(0, dtype=bool)
        self._row_terms: list[np.ndarray | None] = []  # distinct term ids per live row
        self._key_to_row: dict[int, int] = {}
        self._total_len = 0  # tokens in live documents
        self._dead_rows = 0

    # --- the protocol ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._key_to_row)

    def keys(self) -> np.ndarray:
        """The keys present, int64, ascending."""
        return self._lookup().keys.copy()

    def add(self, keys: Sequence[int], texts: Sequence[str]) -> None:
        """Index `texts` under `keys`. A key already present is replaced (its old
        text removed first). ValueError for unequal lengths, a key repeated within
        the call, or a key outside int64; then the index is unchanged."""
        key_list = [_as_key(k) for k in keys]
        texts = list(texts)
        if len(key_list) != len(texts):
            raise ValueError(f"add got {len(key_list)} keys but {len(texts)} texts")
        seen: set[int] = set()
        for k in key_list:
            if k in seen:
                raise ValueError(f"key {k} appears more than once in one add")
            seen.add(k)
        if not key_list:
            return
        tokenized = [self.tokenizer(text) for text in texts]
        replaced = [self._key_to_row.pop(k) for k in key_list if k in self._key_to_row]
        if replaced:
            self._drop_rows(replaced)
        self._append(key_list, tokenized)
        self._generation += 1
        self._maybe_compact()

    def remove(self, keys: Iterable[int]) -> int:
        """Remove these keys; return how many were present (unknown keys are ignored)."""
        key_list = [operator.index(k) for k in keys]  # a bad key fails before any change
        rows = []
        for key in key_list:
            row = self._key_to_row.pop(key, None)
            if row is not None:
                rows.append(row)
        if rows:
            self._drop_rows(rows)
            self._generation += 1
            self._maybe_compact()
        return len(rows)

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> list[Candidate]:
        """The top `k` documents by BM25 score for `query`, best first, ties by
        key ascending; only documents with a non-zero score. `allowed` (int64
        keys) restricts the documents returned, not the statistics."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if k == 0 or not self._key_to_row:
            return []
        tokens = self.tokenizer(query)
        if not tokens:
            return []
        mask = self._row_alive if allowed is None else self._eligible_rows(allowed)
        if allowed is not None and not mask.any():
            return []
        stats = self._current_statistics()
        scores = np.zeros(self._rows)
        k1_plus_1 = self.k1 + 1
        idfs: dict[int, float] = {}
        matched = False
        # Term by term in query order, repeats each time: rank_bm25's additions.
        for token in tokens:
            term = self._term_ids.get(token)
            if term is None:
                continue
            idf = idfs.get(term)
            if idf is None:
                df = int(self._df[term])
                idf = math.log(stats.documents - df + 0.5) - math.log(df + 0.5) if df else 0.0
                if idf < 0:
                    idf = stats.idf_floor
                idfs[term] = idf
            if idf == 0:
                continue  # adds exactly 0 to every score (or the term is gone)
            size = int(self._size[term])
            postings = self._postings[term]
            _kernels.accumulate(
                scores, postings[0, :size], postings[1, :size], mask,
                allowed is not None or bool(self._dead[term]), stats.norm, idf, k1_plus_1,
            )
            matched = True
        if not matched:
            return []
        rows = _kernels.top_rows(scores, k)
        return self._ranked(rows, scores[rows], k)

    def save(self, path: Path) -> None:
        """Write the index to `path` (an uncompressed .npz, whatever the name),
        atomically: a temporary file beside it, fsync, then os.replace. Dead rows
        and terms are left out, so the file is what a compacted index holds."""
        path = Path(path)
        arrays = self._export()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                # numpy's stub also matches **arrays against the bool allow_pickle parameter.
                np.savez(fh, **arrays)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(
        cls, path: Path, tokenizer: Callable[[str], list[str]] | None = None, *,
        k1: float | None = None, b: float | None = None, epsilon: float | None = None,
    ) -> "BM25Index":
        """Read an index `save` wrote. `tokenizer` None means the saved `Tokenizer`
        spec; ValueError if the file is not such an index, or if `tokenizer` is a
        `Tokenizer` other than the one the index was built with. `k1`, `b` and
        `epsilon` act only at query time, so given values replace the saved ones
        (a changed configuration takes effect without a rebuild)."""
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        try:
            meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a saved BM25 index") from exc
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} holds format {meta.get('format')!r} version {meta.get('version')!r}; "
                f"expected {FORMAT!r} version {FORMAT_VERSION}"
            )
        saved_spec = meta["tokenizer"]
        if tokenizer is None:
            tokenizer = Tokenizer(**saved_spec) if saved_spec else Tokenizer()
        elif isinstance(tokenizer, Tokenizer) and saved_spec and saved_spec != tokenizer.spec:
            raise ValueError(
                f"{path} was built with tokenizer {saved_spec}, not {tokenizer.spec}; "
                "rebuild the index to change tokenizers"
            )
        index = cls(
            tokenizer,
            k1=meta["k1"] if k1 is None else k1,
            b=meta["b"] if b is None else b,
            epsilon=meta["epsilon"] if epsilon is None else epsilon,
        )
        index._restore(arrays)
        return index

    # --- writes --------------------------------------------------------------------

    def _append(self, keys: list[int], tokenized: list[list[str]]) -> None:
        count = len(keys)
        first_row = self._rows
        term_ids = self._term_ids
        first_new_term = len(term_ids)
        # New terms get the next ids in order of first appearance (dict.fromkeys
        # keeps it), then every token is mapped with C-level iteration.
        new_terms = [t for t in dict.fromkeys(chain.from_iterable(tokenized)) if t not in term_ids]
        term_ids.update(zip(new_terms, range(first_new_term, first_new_term + len(new_terms))))
        lengths = np.fromiter(map(len, tokenized), dtype=np.int64, count=count)
        flat = np.fromiter(
            map(term_ids.__getitem__, chain.from_iterable(tokenized)),
            dtype=np.int64, count=int(lengths.sum()),
        )
        docs = np.repeat(np.arange(count, dtype=np.int64), lengths)
        # One sort gives (term, document) pairs in term order, documents ascending
        # within a term, with their term frequencies.
        pairs, tfs = np.unique(flat * count + docs, return_counts=True)
        terms = pairs // count
        docs = pairs - terms * count
        postings = np.stack([docs + first_row, tfs]).astype(np.int32)

        vocabulary = len(term_ids)
        if vocabulary > first_new_term:
            self._df = _grown(self._df, vocabulary)
            self._dead = _grown(self._dead, vocabulary)
            self._size = _grown(self._size, vocabulary)
            self._postings.extend([_NO_POSTINGS] * (vocabulary - first_new_term))
        touched, starts, counts = np.unique(terms, return_index=True, return_counts=True)
        store = self._postings
        for term, start, end, size in zip(
            touched.tolist(), starts.tolist(), (starts + counts).tolist(),
            self._size[touched].tolist(),
        ):
            store[term] = _extended(store[term], size, postings[:, start:end])
        self._df[touched] += counts
        self._size[touched] += counts

        end_row = first_row + count
        self._row_key = _grown(self._row_key, end_row)
        self._row_len = _grown(self._row_len, end_row)
        self._row_alive = _grown(self._row_alive, end_row)
        self._row_key[first_row:end_row] = keys
        self._row_len[first_row:end_row] = lengths
        self._row_alive[first_row:end_row] = True
        by_doc = terms[np.argsort(docs, kind="stable")].astype(np.int32)
        distinct_per_doc = np.bincount(docs, minlength=count)
        self._row_terms.extend(np.split(by_doc, np.cumsum(distinct_per_doc)[:-1]))
        self._key_to_row.update(zip(keys, range(first_row, end_row)))
        self._rows = end_row
        self._total_len += int(lengths.sum())

    def _drop_rows(self, rows: list[int]) -> None:
        """Mark rows dead and update the statistics; their keys are already unmapped."""
        row_array = np.asarray(rows, dtype=np.int64)
        self._row_alive[row_array] = False
        self._total_len -= int(self._row_len[row_array].sum())
        self._dead_rows += len(rows)
        term_lists = []
        for row in rows:
            row_terms = self._row_terms[row]
            if row_terms is None:
                raise RuntimeError(f"row {row} is dropped twice")  # callers pass rows they just unmapped
            term_lists.append(row_terms)
            self._row_terms[row] = None
        terms, counts = np.unique(np.concatenate(term_lists), return_counts=True)
        self._df[terms] -= counts
        self._dead[terms] += counts
        for term in terms[self._dead[terms] > self._df[terms]].tolist():
            self._compact_term(term)

    def _compact_term(self, term: int) -> None:
        postings = self._postings[term][:, : self._size[term]]
        self._postings[term] = postings[:, self._row_alive[postings[0]]]
        self._size[term] = self._df[term]
        self._dead[term] = 0

    # Whole-index compaction is inline (inside add/remove) by default; a Store turns
    # that off and compacts a copy beside the live index (maintenance_copy), so
    # searches never wait for it.
    maintain_inline = True

    def maintenance_due(self) -> bool:
        """More than half the rows (or terms), and at least _MIN_COMPACTION, are dead."""
        live_rows = len(self._key_to_row)
        vocabulary = len(self._term_ids)
        live_terms = int(np.count_nonzero(self._df[:vocabulary]))
        dead_terms = vocabulary - live_terms
        return (self._dead_rows > max(_MIN_COMPACTION, live_rows)
                or dead_terms > max(_MIN_COMPACTION, live_terms))

    def maintenance_copy(self) -> Callable[[], "BM25Index"]:
        """Export the live content now (O(P + V), under the caller's shared lock); the
        returned function builds the compacted replacement from it (needs no lock)."""
        arrays = self._export_arrays()

        def build() -> BM25Index:
            fresh = BM25Index(self.tokenizer, k1=self.k1, b=self.b, epsilon=self.epsilon)
            fresh._restore(arrays)
            fresh.maintain_inline = self.maintain_inline
            return fresh

        return build

    def _maybe_compact(self) -> None:
        if self.maintain_inline and self.maintenance_due():
            self._restore(self._export_arrays())

    # --- reads ---------------------------------------------------------------------

    def _current_statistics(self) -> _Statistics:
        stats = self._statistics
        if stats is not None and stats.generation == self._generation:
            return stats
        with self._lock:
            stats = self._statistics
            if stats is None or stats.generation != self._generation:
                stats = self._compute_statistics()
                self._statistics = stats
            return stats

    def _compute_statistics(self) -> _Statistics:
        documents = len(self._key_to_row)
        avgdl = self._total_len / documents
        lengths = self._row_len[: self._rows]
        if avgdl > 0:
            norm = self.k1 * ((1 - self.b) + (self.b * lengths) / avgdl)
        else:  # no tokens at all: nothing will be scored
            norm = np.full(self._rows, self.k1 * (1 - self.b))
        dfs = self._df[: len(self._term_ids)]
        dfs = dfs[dfs > 0]
        floor = 0.0
        if dfs.size:
            # Every term with document frequency n has the same idf, so the sum over
            # all V terms is a sum over the distinct frequencies, weighted by how many
            # terms share each one.
            terms_with_df = np.bincount(dfs)
            distinct = np.flatnonzero(terms_with_df)
            idf_sum = math.fsum(
                count * (math.log(documents - n + 0.5) - math.log(n + 0.5))
                for n, count in zip(distinct.tolist(), terms_with_df[distinct].tolist())
            )
            floor = self.epsilon * (idf_sum / dfs.size)
        return _Statistics(self._generation, documents, avgdl, norm, floor)

    def _lookup(self) -> _KeyLookup:
        lookup = self._key_lookup
        if lookup is not None and lookup.generation == self._generation:
            return lookup
        with self._lock:
            lookup = self._key_lookup
            if lookup is None or lookup.generation != self._generation:
                rows = np.flatnonzero(self._row_alive[: self._rows])
                keys = self._row_key[rows]
                order = np.argsort(keys, kind="stable")
                lookup = _KeyLookup(self._generation, keys[order], rows[order])
                self._key_lookup = lookup
            return lookup

    def _eligible_rows(self, allowed: np.ndarray) -> np.ndarray:
        """Boolean mask over rows: live and with a key in `allowed`."""
        allowed = np.asarray(allowed).reshape(-1)
        if allowed.size and allowed.dtype.kind not in "iu":
            raise ValueError(f"allowed must hold integer keys, got dtype {allowed.dtype}")
        mask = np.zeros(self._rows, dtype=bool)
        lookup = self._lookup()
        if allowed.size == 0 or lookup.keys.size == 0:
            return mask
        allowed = allowed.astype(np.int64, copy=False)
        positions = np.searchsorted(lookup.keys, allowed)
        positions[positions == lookup.keys.size] = 0
        found = lookup.keys[positions] == allowed
        mask[lookup.rows[positions[found]]] = True
        return mask

    def _ranked(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[Candidate]:
        """The best `k` of these rows (the top k and their ties), by score, then key."""
        keys = self._row_key[rows]
        order = np.lexsort((keys, -scores))[:k]
        return [
            Candidate(key, score)
            for key, score in zip(keys[order].tolist(), scores[order].tolist())
        ]

    # --- persistence and compaction ---------------------------------------------

    def _export_arrays(self) -> dict[str, Any]:
        """The live content, renumbered densely: rows in row order, terms in id order,
        postings as CSR (term -> rows, tfs)."""
        alive = self._row_alive[: self._rows]
        new_row = (np.cumsum(alive) - 1).astype(np.int32)
        live_rows = np.flatnonzero(alive)
        vocabulary = len(self._term_ids)
        dfs = self._df[:vocabulary]
        live_terms = np.flatnonzero(dfs > 0)
        term_list = list(self._term_ids)
        rows_parts, tf_parts = [], []
        for term in live_terms.tolist():
            size = int(self._size[term])
            postings = self._postings[term]
            rows, tfs = postings[0, :size], postings[1, :size]
            if self._dead[term]:
                keep = alive[rows]
                rows, tfs = rows[keep], tfs[keep]
            rows_parts.append(new_row[rows])
            tf_parts.append(tfs)
        offsets = np.zeros(live_terms.size + 1, dtype=np.int64)
        np.cumsum(dfs[live_terms], out=offsets[1:])
        return {
            "terms": [term_list[t] for t in live_terms.tolist()],
            "offsets": offsets,
            "post_rows": np.concatenate(rows_parts) if rows_parts else _EMPTY_I32,
            "post_tfs": np.concatenate(tf_parts) if tf_parts else _EMPTY_I32,
            "keys": self._row_key[live_rows],
            "lengths": self._row_len[live_rows],
        }

    def _export(self) -> dict[str, np.ndarray]:
        arrays = self._export_arrays()
        terms = arrays.pop("terms")
        spec = self.tokenizer.spec if isinstance(self.tokenizer, Tokenizer) else None
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION,
            "k1": self.k1, "b": self.b, "epsilon": self.epsilon, "tokenizer": spec,
            "documents": int(arrays["keys"].size), "terms": len(terms),
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        # Terms as one UTF-8 blob plus lengths in code points; surrogatepass keeps
        # any str a tokenizer can produce.
        arrays["term_text"] = np.frombuffer(
            "".join(terms).encode("utf-8", "surrogatepass"), dtype=np.uint8
        )
        arrays["term_lengths"] = np.fromiter(map(len, terms), dtype=np.int64, count=len(terms))
        return arrays

    def _restore(self, arrays: dict[str, Any]) -> None:
        """Replace the content with exported arrays (from `_export_arrays` or a file)."""
        if "terms" in arrays:
            terms = arrays["terms"]
        else:
            text = arrays["term_text"].tobytes().decode("utf-8", "surrogatepass")
            ends = np.cumsum(arrays["term_lengths"]).tolist()
            terms = [text[start:end] for start, end in zip([0, *ends[:-1]], ends)]
        offsets = np.asarray(arrays["offsets"], dtype=np.int64)
        post_rows = np.asarray(arrays["post_rows"], dtype=np.int32)
        post_tfs = np.asarray(arrays["post_tfs"], dtype=np.int32)
        keys = np.asarray(arrays["keys"], dtype=np.int64)
        lengths = np.asarray(arrays["lengths"], dtype=np.int64)
        vocabulary, count = len(terms), keys.size
        if (offsets.size != vocabulary + 1 or lengths.size != count
                or post_rows.size != offsets[-1] or post_tfs.size != post_rows.size
                or (post_rows.size and not 0 <= post_rows.min() <= post_rows.max() < count)):
            raise ValueError("inconsistent BM25 index arrays")

        self._term_ids = dict(zip(terms, range(vocabulary)))
        self._df = np.diff(offsets)
        self._size = self._df.copy()
        self._dead = np.zeros(vocabulary, dtype=np.int64)
        bounds = offsets.tolist()
        # Views into one array: they have no spare capacity, so the first append
        # to a term copies its postings instead of writing into them.
        postings = np.stack([post_rows, post_tfs])
        self._postings = [postings[:, s:e] for s, e in zip(bounds[:-1], bounds[1:])]

        self._rows = count
        self._row_key = keys.copy()
        self._row_len = lengths.copy()
        self._row_alive = np.ones(count, dtype=bool)
        self._key_to_row = dict(zip(keys.tolist(), range(count)))
        self._total_len = int(lengths.sum())
        self._dead_rows = 0
        # Forward index (row -> distinct terms), the transpose of the postings.
        term_of_posting = np.repeat(np.arange(vocabulary, dtype=np.int32), self._df)
        by_row = term_of_posting[np.argsort(post_rows, kind="stable")]
        per_row = np.bincount(post_rows, minlength=count)
        self._row_terms = list(np.split(by_row, np.cumsum(per_row)[:-1])) if count else []
        self._generation += 1
        self._statistics = None
        self._key_lookup = None
