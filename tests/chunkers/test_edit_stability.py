"""Editing one sentence of a ~100-chunk document changes at most three chunk ids.

The count is `|new_ids - old_ids|`: the chunks ingestion has to embed again.
chunkers.boundaries explains why the bound holds for sentences that contain no
cut candidate of their own (true of these synthetic sentences: at most 24
words, punctuation only at the end); bench/chunk_edit_experiment.py measures
the distribution on synthetic and real text.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunker_docs import EDIT_KINDS, document, edit, fixed_offset_ids, render, sentence, sentence_slots
from chunkers import WindowChunker

DOC_KEY = "ns\x1fdoc-1"
MAX_CHANGED_IDS = 3
# (window, overlap) -> tokens for about 100 chunks
CONFIGS = {(256, 32): 6400, (48, 8): 1500}


def ids(chunker: WindowChunker, text: str) -> set[str]:
    return {chunk.chunk_id for chunk in chunker.split(DOC_KEY, text)}


def changed_ids(config, seed: int, kind: str, where: str, fraction: float = 0.5) -> tuple[int, int]:
    """(ids that are new after the edit, chunks before it)."""
    rng = random.Random(seed)
    chunker = WindowChunker(*config)
    doc = document(rng, CONFIGS[config])
    slots = sentence_slots(doc, kind)
    index = {
        "first": 0,
        "middle": len(slots) // 2,
        "last": len(slots) - 1,
        "anywhere": int(fraction * len(slots)),
    }[where]
    before = ids(chunker, render(doc))
    after = ids(chunker, render(edit(doc, kind, slots[index], sentence(rng))))
    return len(after - before), len(before)


@pytest.mark.parametrize("config", list(CONFIGS))
@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(EDIT_KINDS),
    where=st.sampled_from(["first", "middle", "last", "anywhere", "anywhere", "anywhere"]),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_one_sentence_edit_changes_at_most_three_ids(config, seed, kind, where, fraction):
    changed, chunks = changed_ids(config, seed, kind, where, fraction)
    assert chunks >= 70  # the document really is about 100 chunks long
    # 0 is possible: deleting the first sentence can leave a first chunk whose
    # text equals an old chunk's (ids are content-addressed).
    assert changed <= MAX_CHANGED_IDS


@pytest.mark.parametrize("kind", EDIT_KINDS)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_edits_at_fixed_places(kind, where):
    for seed in range(5):
        changed, _ = changed_ids((256, 32), seed, kind, where)
        assert changed <= MAX_CHANGED_IDS, (seed, kind, where)


def test_fixed_offset_windows_would_fail_the_bound():
    """The experiment can fail: fixed-offset windows change almost every id on an insert at the top."""
    rng = random.Random(11)
    doc = document(rng, CONFIGS[(256, 32)])
    edited = render(edit(doc, "insert", (0, 0), sentence(rng)))
    old_fixed = fixed_offset_ids(DOC_KEY, render(doc), 256, 32)
    new_fixed = fixed_offset_ids(DOC_KEY, edited, 256, 32)
    assert len(new_fixed - old_fixed) > 0.9 * len(old_fixed) > MAX_CHANGED_IDS

    chunker = WindowChunker(256, 32)
    assert len(ids(chunker, edited) - ids(chunker, render(doc))) <= MAX_CHANGED_IDS


def test_unchanged_text_keeps_every_id():
    doc = document(random.Random(5), CONFIGS[(256, 32)])
    chunker = WindowChunker()
    first = chunker.split(DOC_KEY, render(doc))
    again = chunker.split(DOC_KEY, render([list(p) for p in doc]))
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]


def test_ids_do_not_depend_on_position():
    """An unchanged passage keeps its ids when text is inserted far before it."""
    rng = random.Random(9)
    doc = document(rng, CONFIGS[(256, 32)])
    chunker = WindowChunker()
    before = chunker.split(DOC_KEY, render(doc))
    longer = [[sentence(rng) for _ in range(40)], *doc]
    after = chunker.split(DOC_KEY, render(longer))
    tail = {c.chunk_id: c for c in after}
    kept = [c for c in before if c.chunk_id in tail]
    assert len(kept) >= len(before) - MAX_CHANGED_IDS
    assert all(tail[c.chunk_id].start_char > c.start_char for c in kept)
