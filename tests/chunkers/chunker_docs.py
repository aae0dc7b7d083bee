"""Synthetic prose for the chunker tests, single-sentence edits, and a fixed-offset baseline."""

from __future__ import annotations

import random
import re

from chunkers.ids import chunk_id
from chunkers.tokens import tokenize

Document = list[list[str]]  # paragraphs of sentences
EDIT_KINDS = ("replace", "insert", "delete")
SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]}\u00bb]*$")

_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
WORDS = sorted({
    "".join(random.Random(i).choice(_SYLLABLES) for _ in range(1 + i % 4)) for i in range(3000)
})


def sentence(rng: random.Random) -> str:
    """4 to 24 words, capitalised, ending in . ? ! or a closing quote/bracket after one."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(4, 24))]
    words[0] = words[0].capitalize()
    if rng.random() < 0.1:
        words[rng.randrange(len(words) - 1)] += ","
    return " ".join(words) + rng.choice([".", ".", ".", "?", "!", '."', ".)"])


def document(rng: random.Random, n_tokens: int) -> Document:
    """Paragraphs of 1 to 8 sentences until the text has at least `n_tokens` tokens."""
    doc: Document = []
    total = 0
    while total < n_tokens:
        paragraph = [sentence(rng) for _ in range(rng.randint(1, 8))]
        total += sum(len(s.split()) for s in paragraph)
        doc.append(paragraph)
    return doc


def render(doc: Document) -> str:
    return "\n\n".join(" ".join(paragraph) for paragraph in doc)


def sentence_slots(doc: Document, kind: str) -> list[tuple[int, int]]:
    """(paragraph, sentence) positions an edit of `kind` can apply to, in text order."""
    slots = [(p, s) for p, paragraph in enumerate(doc) for s in range(len(paragraph))]
    if kind == "insert":  # also after the last sentence
        slots.append((len(doc) - 1, len(doc[-1])))
    return slots


def edit(doc: Document, kind: str, slot: tuple[int, int], new_sentence: str) -> Document:
    """Replace, insert before, or delete the sentence at `slot`."""
    edited = [list(paragraph) for paragraph in doc]
    p, s = slot
    if kind == "replace":
        edited[p][s] = new_sentence
    elif kind == "insert":
        edited[p].insert(s, new_sentence)
    elif kind == "delete":
        del edited[p][s]
        if not edited[p]:
            del edited[p]
    else:
        raise ValueError(f"unknown edit kind {kind!r}")
    return edited


def fixed_offset_ids(doc_key: str, text: str, window_tokens: int, overlap_tokens: int) -> set[str]:
    """Ids of windows at fixed token offsets: the design the content-defined cuts replace."""
    tokens = tokenize(text)
    stride = window_tokens - overlap_tokens
    ids = set()
    for first in range(0, max(1, len(tokens) - overlap_tokens), stride):
        last = min(first + window_tokens, len(tokens)) - 1
        ids.add(chunk_id(doc_key, text[tokens.starts[first]:tokens.ends[last]]))
    return ids
