"""How many chunk ids does a single-sentence edit change?

Applies random single-sentence edits (replace, insert, delete; the position
uniform over sentences, the first one included) to long documents, chunks the
document before and after, and counts the ids of the new chunking that the old
one did not have (`|new_ids - old_ids|`, the chunks ingestion must re-embed).
Prints the distribution (0, 1, 2, 3, >3) and the mean per edit kind, for
WindowChunker and, for contrast, for fixed-offset windows of the same size.

Documents: synthetic prose (random sentences from a made-up word list, in
paragraphs) sized to about 100 chunks, and, when the Cranfield corpus is
present, its abstracts concatenated into documents of about the same size.
Also prints chunk-size statistics and the time to chunk a 1 MB document.

    .venv/bin/python bench/chunk_edit_experiment.py [--edits 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chunkers import WindowChunker  # noqa: E402
from chunkers.boundaries import PARAGRAPH, boundary_classes, content_cuts, segment_starts  # noqa: E402
from chunkers.ids import chunk_id  # noqa: E402
from chunkers.tokens import tokenize  # noqa: E402

CRANFIELD = Path("/work/shared/data/cranfield/corpus.jsonl")
DOC_KEY = "bench\x1fdoc"
KINDS = ("replace", "insert", "delete")
BUCKETS = ("0", "1", "2", "3", ">3")

Document = list[list[str]]  # paragraphs of sentences


def render(doc: Document) -> str:
    return "\n\n".join(" ".join(paragraph) for paragraph in doc)


def synthetic_sentence(rng: random.Random, words: list[str], punctuated: bool = True) -> str:
    tokens = [rng.choice(words) for _ in range(rng.randint(4, 24))]
    if not punctuated:
        return " ".join(tokens)
    tokens[0] = tokens[0].capitalize()
    if rng.random() < 0.1:
        tokens[rng.randrange(len(tokens) - 1)] += ","
    end = rng.choice([".", ".", ".", ".", "?", "!", '."', ".)"])
    return " ".join(tokens) + end


def synthetic_document(rng: random.Random, words: list[str], n_tokens: int) -> Document:
    doc: Document = []
    total = 0
    while total < n_tokens:
        paragraph = [synthetic_sentence(rng, words) for _ in range(rng.randint(1, 8))]
        total += sum(len(s.split()) for s in paragraph)
        doc.append(paragraph)
    return doc


def word_list(rng: random.Random, size: int = 3000) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "st", "qu"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(size)]


def sentences_of(text: str) -> list[str]:
    """Split text into sentences with the chunker's own sentence-end rule."""
    sentences, current = [], []
    for token in text.split():
        current.append(token)
        if re.search(r"[.!?][\"'\u201d\u2019)\]}\u00bb]*$", token):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def cranfield_documents(path: Path, n_tokens: int) -> tuple[list[Document], list[str]]:
    """The corpus's texts (one paragraph each) concatenated into documents of `n_tokens`."""
    abstracts = [json.loads(line)["text"] for line in path.open()]
    paragraphs = [sentences_of(a) for a in abstracts if a.strip()]
    pool = [s for p in paragraphs for s in p]
    docs, current, total = [], [], 0
    for paragraph in paragraphs:
        current.append(paragraph)
        total += sum(len(s.split()) for s in paragraph)
        if total >= n_tokens:
            docs.append(current)
            current, total = [], 0
    return docs, pool


def random_edit(rng: random.Random, doc: Document, kind: str, new_sentence: str,
                first: bool = False) -> Document:
    edited = [list(p) for p in doc]
    slots = [(p, s) for p, paragraph in enumerate(edited) for s in range(len(paragraph))]
    if kind == "insert":  # before any sentence, or after the last one
        slots.append((len(edited) - 1, len(edited[-1])))
    p, s = slots[0] if first else rng.choice(slots)
    if kind == "replace":
        edited[p][s] = new_sentence
    elif kind == "insert":
        edited[p].insert(s, new_sentence)
    else:
        del edited[p][s]
        if not edited[p]:
            del edited[p]
    return edited


class FixedWindows:
    """Baseline: windows at fixed token offsets (stride window - overlap)."""

    def __init__(self, window_tokens: int, overlap_tokens: int) -> None:
        self.window, self.stride = window_tokens, window_tokens - overlap_tokens

    def ids(self, text: str) -> set[str]:
        tokens = tokenize(text)
        ids = set()
        for first in range(0, max(1, len(tokens) - self.window + self.stride), self.stride):
            last = min(first + self.window, len(tokens)) - 1
            ids.add(chunk_id(DOC_KEY, text[tokens.starts[first]:tokens.ends[last]]))
        return ids


def run_edits(name, docs, new_sentence, chunker, fixed, edits, rng, first_only=False):
    counts = {kind: [] for kind in KINDS}
    fixed_counts = {kind: [] for kind in KINDS}
    chunks_per_doc = []
    for trial in range(edits):
        doc = docs[trial % len(docs)]
        text = render(doc)
        old = {c.chunk_id for c in chunker.split(DOC_KEY, text)}
        chunks_per_doc.append(len(old))
        kind = KINDS[trial % len(KINDS)]
        edited = render(random_edit(rng, doc, kind, new_sentence(rng), first_only))
        new = {c.chunk_id for c in chunker.split(DOC_KEY, edited)}
        counts[kind].append(len(new - old))
        fixed_counts[kind].append(len(fixed.ids(edited) - fixed.ids(text)))
    label = f"{name}{' (first sentence)' if first_only else ''}"
    print(f"\n{label}: {edits} edits, {statistics.mean(chunks_per_doc):.0f} chunks/doc on average")
    print_table(counts, fixed_counts)
    return counts


def print_table(counts, fixed_counts) -> None:
    print(f"{'kind':<10}{'n':>6}" + "".join(f"{b:>7}" for b in BUCKETS) + f"{'mean':>7}{'max':>5}"
          + "  | fixed-offset mean, >3")
    rows = list(KINDS) + ["all"]
    for kind in rows:
        values = sum(counts.values(), []) if kind == "all" else counts[kind]
        fixed = sum(fixed_counts.values(), []) if kind == "all" else fixed_counts[kind]
        hist = Counter(min(v, 4) for v in values)
        cells = "".join(f"{hist[i]:>7}" for i in range(5))
        over = sum(v > 3 for v in fixed)
        print(f"{kind:<10}{len(values):>6}{cells}{statistics.mean(values):>7.2f}{max(values):>5}"
              f"  | {statistics.mean(fixed):6.2f}, {over}/{len(fixed)}")


def size_stats(name: str, texts: list[str], chunker: WindowChunker) -> None:
    sizes, kinds, fallback = [], Counter(), 0
    for text in texts:
        tokens = tokenize(text)
        classes = boundary_classes(tokens)
        limits = chunker.min_segment_tokens, chunker.max_segment_tokens
        starts = segment_starts(tokens, *limits)
        fallback += len(starts) - 1 - len(content_cuts(tokens, *limits))
        sizes += [c.token_count for c in chunker.split(DOC_KEY, text)]
        for start in starts[1:]:
            kinds[{PARAGRAPH: "paragraph end", 1: "sentence end"}.get(classes.get(start), "plain")] += 1
    total = sum(kinds.values())
    shares = ", ".join(f"{k} {v / total:.1%}" for k, v in kinds.most_common())
    sizes.sort()
    print(f"{name}: tokens/chunk mean {statistics.mean(sizes):.0f}, median {sizes[len(sizes) // 2]}, "
          f"min {sizes[0]}, max {sizes[-1]}; cuts at: {shares}; fallback cuts {fallback}/{total}")


def time_one_megabyte(chunker: WindowChunker, rng: random.Random, words: list[str]) -> None:
    texts = {
        "prose": render(synthetic_document(rng, words, 200_000)),
        "no punctuation": " ".join(rng.choice(words) for _ in range(200_000)),
        # Worst cases: every context hash ties, so the fallback splits everything.
        "one sentence repeated": "All work and no play makes Jack a dull boy. " * 30_000,
        "one-letter words": "a " * 500_000,
    }
    for name, text in texts.items():
        text = text[:1_000_000]
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            chunks = chunker.split(DOC_KEY, text)
            best = min(best, time.perf_counter() - started)
        print(f"1 MB {name}: {len(tokenize(text))} tokens -> {len(chunks)} chunks "
              f"in {best:.2f} s (best of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--min-segment", type=int, default=None)
    parser.add_argument("--cranfield", type=Path, default=CRANFIELD,
                        help="BEIR corpus.jsonl of real text; skipped when missing")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    chunker = WindowChunker(args.window, args.overlap, args.min_segment)
    fixed = FixedWindows(args.window, args.overlap)
    print(chunker)
    words = word_list(rng)
    doc_tokens = 100 * 2 * chunker.min_segment_tokens  # gaps average about 2 * min
    docs = [synthetic_document(rng, words, doc_tokens) for _ in range(50)]
    synthetic_new = lambda r: synthetic_sentence(r, words)  # noqa: E731
    run_edits("synthetic", docs, synthetic_new, chunker, fixed, args.edits, rng)
    run_edits("synthetic", docs, synthetic_new, chunker, fixed, max(30, args.edits // 10), rng, True)
    texts = [render(d) for d in docs]
    if args.cranfield.exists():
        cran_docs, pool = cranfield_documents(args.cranfield, doc_tokens)
        cran_new = lambda r: r.choice(pool)  # noqa: E731
        run_edits("cranfield", cran_docs, cran_new, chunker, fixed, args.edits, rng)
        run_edits("cranfield", cran_docs, cran_new, chunker, fixed, max(30, args.edits // 10), rng, True)
    # Pathological for sentence snapping: no sentence ends at all, so every cut
    # falls inside the text's runs of words; an edit replaces, inserts or
    # deletes a run of 4 to 24 words.
    bare_docs = [[[synthetic_sentence(rng, words, False) for _ in range(len(render(d).split()) // 14)]]
                 for d in docs[:10]]
    bare_new = lambda r: synthetic_sentence(r, words, False)  # noqa: E731
    run_edits("no punctuation", bare_docs, bare_new, chunker, fixed, max(30, args.edits // 5), rng)
    print()
    size_stats("synthetic", texts, chunker)
    if args.cranfield.exists():
        size_stats("cranfield", [render(d) for d in cran_docs], chunker)
    time_one_megabyte(chunker, rng, words)


if __name__ == "__main__":
    main()
