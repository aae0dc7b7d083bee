"""WindowChunker: coverage, offsets, window and overlap sizes, ids, argument checks."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunker_docs import SENTENCE_END, document, render
from chunkers import CHUNKERS, WindowChunker, make_chunker
from chunkers.ids import chunk_id
from retrieval_svc.domain import TextChunk

DOC_KEY = "ns\x1fdoc-1"
FAST = settings(max_examples=150, deadline=None)

# Small alphabets with every character class the chunker treats specially:
# sentence ends, closing quotes/brackets, newlines (paragraphs), Unicode
# whitespace, and characters outside the BMP (offsets are code points).
texts = st.text(
    alphabet=st.sampled_from(list("ab c.!?\"')\n\t\r") + ["é", "😀", "\u00a0", "\u2003", "\u201d"]),
    max_size=400,
)


@st.composite
def chunkers(draw) -> WindowChunker:
    window = draw(st.integers(1, 40))
    overlap = draw(st.integers(0, window - 1))
    min_segment = draw(st.none() | st.integers(1, window - overlap))
    return WindowChunker(window, overlap, min_segment)


def count_tokens(text: str) -> int:
    return len(re.findall(r"\S+", text))


def check_invariants(chunker: WindowChunker, text: str, chunks: list[TextChunk]) -> None:
    if not text.strip():
        assert chunks == []
        return
    assert chunks
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(text)
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert chunk.text == text[chunk.start_char:chunk.end_char]
        assert chunk.token_count == count_tokens(chunk.text)
        assert 1 <= chunk.token_count <= chunker.window_tokens
    for previous, chunk in zip(chunks, chunks[1:]):
        # No gap between consecutive spans, and each chunk brings new text.
        assert previous.start_char <= chunk.start_char <= previous.end_char < chunk.end_char
        # The overlap is exactly `overlap_tokens` tokens, or all the tokens before
        # the chunk's own segment where fewer precede it.
        shared = count_tokens(text[chunk.start_char:previous.end_char])
        assert shared == min(chunker.overlap_tokens, count_tokens(text[:previous.end_char]))
        assert chunk.token_count - shared <= chunker.max_segment_tokens
        if chunker.overlap_tokens:
            assert not chunk.text[0].isspace()


@FAST
@given(chunker=chunkers(), text=texts)
def test_chunks_cover_the_text_within_the_window(chunker, text):
    check_invariants(chunker, text, chunker.split(DOC_KEY, text))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), window=st.sampled_from([48, 128, 256]))
def test_invariants_hold_on_long_prose(seed, window):
    chunker = WindowChunker(window, window // 8)
    text = render(document(random.Random(seed), 3000))
    check_invariants(chunker, text, chunker.split(DOC_KEY, text))


@FAST
@given(chunker=chunkers(), text=texts)
def test_rechunking_gives_identical_chunks(chunker, text):
    assert chunker.split(DOC_KEY, text) == chunker.split(DOC_KEY, text)
    assert WindowChunker(
        chunker.window_tokens, chunker.overlap_tokens, chunker.min_segment_tokens
    ).split(DOC_KEY, text) == chunker.split(DOC_KEY, text)


@FAST
@given(chunker=chunkers(), text=texts)
def test_ids_are_unique_within_a_document(chunker, text):
    ids = [chunk.chunk_id for chunk in chunker.split(DOC_KEY, text)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_repeated_passages_get_distinct_ids():
    text = "The same sentence again and again. " * 400
    chunks = WindowChunker(48, 8).split(DOC_KEY, text)
    assert len({c.text for c in chunks}) < len(chunks)  # there are identical windows
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_ids_depend_on_the_document_key():
    text = render(document(random.Random(7), 1000))
    chunker = WindowChunker(48, 8)
    first = {c.chunk_id for c in chunker.split("ns\x1fa", text)}
    second = {c.chunk_id for c in chunker.split("ns\x1fb", text)}
    assert first and not first & second


def test_chunk_id_is_a_stable_hash():
    # Pinned: changing the id scheme changes every stored chunk id (a full re-embed).
    assert chunk_id("ns\x1fdoc", "hello world", 0) == chunk_id("ns\x1fdoc", "hello world")
    assert chunk_id("ns\x1fdoc", "hello world", 0) != chunk_id("ns\x1fdoc", "hello world", 1)
    assert chunk_id("a", "bc") != chunk_id("ab", "c")
    assert chunk_id("ns\x1fdoc", "hello world", 0) == "62fd87de2930016a3010e314df060774"


def test_boundaries_are_pinned():
    # Pinned: a change of the cut rule moves cuts and so changes stored chunk ids.
    text = render(document(random.Random(2024), 2000))
    chunks = WindowChunker().split(DOC_KEY, text)
    assert [c.token_count for c in chunks][:8] == [88, 83, 78, 72, 88, 84, 94, 72]


@pytest.mark.parametrize("text", ["", " ", "\n\n\t ", "\u00a0\u2003"])
def test_blank_text_gives_no_chunks(text):
    assert WindowChunker().split(DOC_KEY, text) == []


def test_short_text_is_one_chunk():
    text = "  Hello there.  "
    [chunk] = WindowChunker().split(DOC_KEY, text)
    assert (chunk.text, chunk.start_char, chunk.end_char, chunk.token_count) == (text, 0, 16, 2)


def test_offsets_are_code_points():
    text = "😀 é " * 300
    chunks = WindowChunker(16, 4).split(DOC_KEY, text)
    assert len(chunks) > 10
    check_invariants(WindowChunker(16, 4), text, chunks)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_prose_is_cut_at_sentence_ends(seed):
    # Synthetic sentences have at most 24 words, well inside a window, so no cut
    # needs to fall inside a sentence.
    text = render(document(random.Random(seed), 4000))
    chunks = WindowChunker().split(DOC_KEY, text)
    assert len(chunks) > 30
    for previous in chunks[:-1]:
        assert SENTENCE_END.search(previous.text.rstrip()), previous.text[-40:]


def test_text_without_punctuation_is_still_cut_within_the_window():
    rng = random.Random(3)
    text = " ".join(rng.choice("abcdefghij") * rng.randint(1, 5) for _ in range(5000))
    chunker = WindowChunker()
    chunks = chunker.split(DOC_KEY, text)
    check_invariants(chunker, text, chunks)
    assert len(chunks) > 5000 / chunker.max_segment_tokens


def test_defaults():
    chunker = WindowChunker()
    assert (chunker.window_tokens, chunker.overlap_tokens) == (256, 32)
    assert (chunker.max_segment_tokens, chunker.min_segment_tokens) == (224, 32)
    assert "window_tokens=256" in repr(chunker)


@pytest.mark.parametrize(
    ("options", "name", "bad"),
    [
        ({"window_tokens": 0}, "window_tokens", "0"),
        ({"window_tokens": -5}, "window_tokens", "-5"),
        ({"window_tokens": 2.5}, "window_tokens", "2.5"),
        ({"window_tokens": "256"}, "window_tokens", "'256'"),
        ({"window_tokens": True}, "window_tokens", "True"),
        ({"overlap_tokens": -1}, "overlap_tokens", "-1"),
        ({"overlap_tokens": 256}, "overlap_tokens", "256"),
        ({"window_tokens": 10, "overlap_tokens": 11}, "overlap_tokens", "11"),
        ({"overlap_tokens": None}, "overlap_tokens", "None"),
        ({"min_segment_tokens": 0}, "min_segment_tokens", "0"),
        ({"min_segment_tokens": 225}, "min_segment_tokens", "225"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_value(options, name, bad):
    with pytest.raises(ValueError) as raised:
        WindowChunker(**options)
    assert name in str(raised.value) and bad in str(raised.value)


def test_edge_arguments_are_accepted():
    assert WindowChunker(1, 0).split(DOC_KEY, "a b c") == WindowChunker(1, 0).split(DOC_KEY, "a b c")
    assert [c.text for c in WindowChunker(1, 0).split(DOC_KEY, "a b c")] == ["a ", "b ", "c"]
    assert [c.token_count for c in WindowChunker(2, 1).split(DOC_KEY, "a b c")] == [1, 2, 2]


def test_registry_builds_a_chunker_by_name():
    chunker = make_chunker("window", window_tokens=48, overlap_tokens=8)
    assert isinstance(chunker, WindowChunker) and CHUNKERS["window"] is WindowChunker
    assert (chunker.window_tokens, chunker.overlap_tokens) == (48, 8)
    assert isinstance(make_chunker("window"), WindowChunker)


def test_registry_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown chunker 'sentence'.*window"):
        make_chunker("sentence")
    with pytest.raises(ValueError, match="window.*stride_tokens"):
        make_chunker("window", stride_tokens=3)
    with pytest.raises(ValueError, match="overlap_tokens.*300"):
        make_chunker("window", overlap_tokens=300)
