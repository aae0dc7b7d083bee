"""Tokenization and the content-defined cut rule: classes, locality, spacing, bounds."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunker_docs import WORDS, document, render
from chunkers.boundaries import (
    PARAGRAPH,
    SENTENCE,
    boundary_classes,
    content_cuts,
    segment_starts,
)
from chunkers.tokens import tokenize

MIN_SEGMENT, MAX_SEGMENT = 32, 224  # the defaults for a 256-token window, 32 overlap


def test_tokens_keep_code_point_offsets():
    text = " héllo\u00a0😀 wörld.\n\n x"
    tokens = tokenize(text)
    assert [tokens.token(i) for i in range(len(tokens))] == ["héllo", "😀", "wörld.", "x"]
    assert tokens.starts == [1, 7, 9, 18] and tokens.ends == [6, 8, 15, 19]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four", {1: SENTENCE, 2: SENTENCE, 3: SENTENCE}),
        ('He said "stop." Then (he left.) Done', {3: SENTENCE, 6: SENTENCE}),
        ("Pi is 3.14 roughly", {}),
        ("Wait... what?! ok", {1: SENTENCE, 2: SENTENCE}),
        ("First para\n\nsecond para.\n \t\nthird", {2: PARAGRAPH, 4: PARAGRAPH}),
        ("Windows line ends.\r\n\r\nNext", {3: PARAGRAPH}),
        ("One line\nnext line", {}),
        ("Trailing end. ", {}),  # no boundary after the last token
    ],
)
def test_boundary_classes(text, expected):
    assert boundary_classes(tokenize(text)) == expected


def prose(seed: int, n_tokens: int) -> str:
    return render(document(random.Random(seed), n_tokens))


def bare_words(seed: int, n_tokens: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_tokens))


@settings(max_examples=40, deadline=None)
@given(
    seeds=st.tuples(*[st.integers(0, 2**32 - 1)] * 3),
    punctuated=st.booleans(),
)
def test_cut_decisions_only_look_back(seeds, punctuated):
    """Changing everything after a point keeps every cut before it (the edit-locality premise)."""
    make = prose if punctuated else bare_words
    prefix = make(seeds[0], 1500) + " "
    split_at = len(tokenize(prefix))
    cuts = []
    for seed in seeds[1:]:
        tokens = tokenize(prefix + make(seed, MIN_SEGMENT + 10))
        cuts.append([c for c in content_cuts(tokens, MIN_SEGMENT, MAX_SEGMENT) if c <= split_at])
    assert cuts[0] == cuts[1] and len(cuts[0]) > 5


@settings(max_examples=40, deadline=None)
@given(
    seeds=st.tuples(*[st.integers(0, 2**32 - 1)] * 3),
    punctuated=st.booleans(),
)
def test_cut_decisions_forget_text_more_than_2m_plus_2_tokens_back(seeds, punctuated):
    """Whether b is a cut depends only on tokens [b - 2m - 2, b): no chain of earlier cuts.

    This is what bounds an edit's reach; a rule that measured the minimum
    segment from the previous *cut* (classic content-defined chunking) fails it.
    """
    make = prose if punctuated else bare_words
    suffix = make(seeds[0], 3000)
    reach = 2 * MIN_SEGMENT + 2
    shifted_cuts = []
    for seed in seeds[1:]:
        prefix = make(seed, MAX_SEGMENT + 100) + " "
        offset = len(tokenize(prefix))
        cuts = content_cuts(tokenize(prefix + suffix), MIN_SEGMENT, MAX_SEGMENT)
        shifted_cuts.append([c - offset for c in cuts if c - offset >= reach])
    assert shifted_cuts[0] == shifted_cuts[1] and len(shifted_cuts[0]) > 20


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), punctuated=st.booleans())
def test_segments_are_spaced_and_bounded(seed, punctuated):
    text = (prose if punctuated else bare_words)(seed, 5000)
    tokens = tokenize(text)
    cuts = content_cuts(tokens, MIN_SEGMENT, MAX_SEGMENT)
    assert all(b - a > MIN_SEGMENT for a, b in zip([0, *cuts], [*cuts, len(tokens)]))
    starts = segment_starts(tokens, MIN_SEGMENT, MAX_SEGMENT)
    assert set(cuts) <= set(starts) and starts[0] == 0
    assert all(0 < b - a <= MAX_SEGMENT for a, b in zip(starts, [*starts[1:], len(tokens)]))


def test_segment_sizes_average_about_twice_the_minimum():
    sizes = []
    for seed in range(5):
        tokens = tokenize(prose(seed, 6000))
        starts = segment_starts(tokens, MIN_SEGMENT, MAX_SEGMENT)
        sizes += [b - a for a, b in zip(starts, starts[1:])]
    assert 1.5 * MIN_SEGMENT < statistics.mean(sizes) < 3 * MIN_SEGMENT


def test_paragraph_ends_are_preferred():
    cut_rate = {PARAGRAPH: [0, 0], SENTENCE: [0, 0]}  # class -> [cuts, boundaries]
    for seed in range(5):
        tokens = tokenize(prose(seed, 6000))
        classes = boundary_classes(tokens)
        cuts = set(content_cuts(tokens, MIN_SEGMENT, MAX_SEGMENT))
        for boundary, boundary_class in classes.items():
            cut_rate[boundary_class][0] += boundary in cuts
            cut_rate[boundary_class][1] += 1
    paragraph, sentence = (cuts / total for cuts, total in cut_rate.values())
    # Paragraph ends win every priority comparison, but a sentence-end peak in the
    # m tokens before one still suppresses it (the rule never looks ahead).
    assert paragraph > 2 * sentence


def test_repetitive_text_falls_back_to_bounded_segments():
    """Identical sentences tie on priority, so no boundary is a peak: the fallback bounds them."""
    tokens = tokenize("All work and no play makes a dull text. " * 500)
    assert content_cuts(tokens, MIN_SEGMENT, MAX_SEGMENT) == []
    starts = segment_starts(tokens, MIN_SEGMENT, MAX_SEGMENT)
    assert all(MIN_SEGMENT < b - a <= MAX_SEGMENT for a, b in zip(starts, [*starts[1:], len(tokens)]))


def test_bad_segment_limits_are_rejected():
    with pytest.raises(ValueError, match="min_segment"):
        content_cuts(tokenize("a b c"), 0, 10)
    with pytest.raises(ValueError, match="min_segment"):
        content_cuts(tokenize("a b c"), 11, 10)
