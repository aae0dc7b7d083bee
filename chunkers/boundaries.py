"""Content-defined segment boundaries over a token sequence.

A *boundary* `b` (1 <= b < n) sits between token `b-1` and token `b`; cutting
there starts a new segment at token `b`. Segments partition the tokens; the
window chunker turns each segment into one chunk by prefixing the tokens just
before it (the overlap).

Why content-defined: chunk ids hash chunk content, so they survive an edit
only if the cut points around unchanged text stay where they were. Cutting
every N tokens fails that: one inserted word near the top moves every later
cut. Here every cut decision looks only at the few dozen tokens *before* the
boundary, never at its absolute position or at the previous cut, so an edit
can only move cuts in a short stretch of text right after it.

The rule, with `min_segment` = m:

1. Candidates. A boundary after a token ending in `.`, `!` or `?` (optionally
   followed by closing quotes or brackets) is a sentence end; one whose
   whitespace holds a blank line is a paragraph end. Plain boundaries (inside a
   sentence) are candidates only where no sentence end occurred in the last
   `max_segment - m - 1` tokens, so text without punctuation still gets cuts
   while prose is only cut inside a sentence when the sentence is too long to
   fit a window.
2. Priority. `(class, h)`: paragraph end > sentence end > plain, ties broken
   by `h`, a 64-bit blake2b hash of the `CONTEXT_TOKENS` tokens before the
   boundary (whitespace-normalised). Identical text gives identical priorities.
3. Peaks. A candidate is a peak if its priority is strictly higher than that
   of every candidate in the `m - 1` tokens before it.
4. Cuts. A peak is a cut if no other peak lies in the `m` tokens before it
   (the document start counts as a peak) and more than `m` tokens follow it.
   Every cut is a peak and every peak suppresses the next `m` tokens, so cuts
   are more than `m` tokens apart; peaks are common enough (sliding-window
   maxima) that gaps are short: with m = 32 the mean gap is about 2m, the
   99.9th percentile about 6m.
5. Bound. A gap longer than `max_segment` tokens (about 2e-4 of gaps with the
   default m = max_segment // 7, or text with no usable priorities, such as one
   phrase repeated) is split by a fallback that repeatedly cuts at the
   highest-priority boundary between `m + 1` and `max_segment` tokens past the
   last cut. Only this fallback depends on where the previous cut fell.

Why an edit is local: whether boundary `b` is a cut depends only on tokens in
`[b - 2m - 2, b)` (the suppression window of m tokens, the peak window of
m - 1 before that, and the 3 hash-context tokens before that). Replacing,
inserting or deleting one sentence covering tokens `[e0, e1)` therefore
changes no cut at or before `e0`, and changes cuts after it only among the
boundaries in `[e1, e1 + 2m + 1]` (when the sentence holds no candidate of its
own). Cuts are at least m + 1 apart, so that stretch holds at most two cuts,
and the new document differs from the old one in at most three segments
starting at or after the last cut before the edit. The segment after them
starts more than `2m + 1` tokens past the edit, so its overlap prefix of
`overlap <= 2m + 1` tokens is unchanged: at most three chunk ids change.
What can exceed three: an edited "sentence" that contains a candidate of its
own (an abbreviation such as "e.g.", or plain candidates in a run of over
`max_segment - m - 1` tokens without a sentence end), a fallback cut near the
edit, an edit within about m tokens of the document's end (the end rule of
step 4), `overlap > 2m + 1`, or duplicated chunks whose repetition index shifts.

Weighted tokens (`segment_starts(prefix=...)`, encoder tokens per `\\S+` run):
a token of weight w spans w positions and every distance above is a difference
of positions; the hash context is the fewest tokens before the boundary that
weigh at least `CONTEXT_TOKENS`. The argument carries over word for word: a
context starts with the token that covers the position `CONTEXT_TOKENS` before
the boundary, so an edit that reaches into it ends fewer than `CONTEXT_TOKENS`
positions before the boundary, and the stretch of changed cuts is again
`[e1, e1 + 2m + 1]` in positions, with cuts more than m positions apart.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections import deque
from typing import Iterator

from chunkers.tokens import Tokens

PLAIN, SENTENCE, PARAGRAPH = 0, 1, 2
CONTEXT_TOKENS = 3

# A token that ends a sentence: . ! or ? then optional closing quotes/brackets,
# matched at the end of a token (followed by whitespace or the end of the text).
SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]}\u00bb]*(?=\s|\Z)")
PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")


def boundary_classes(tokens: Tokens) -> dict[int, int]:
    """Map each sentence-end or paragraph-end boundary to its class.

    Plain boundaries are absent from the map.
    """
    n = len(tokens)
    classes: dict[int, int] = {}
    if n < 2:
        return classes
    token_at_end = {end: i for i, end in enumerate(tokens.ends)}
    for match in SENTENCE_END.finditer(tokens.text):
        index = token_at_end.get(match.end())
        if index is not None and index + 1 < n:
            classes[index + 1] = SENTENCE
    for match in PARAGRAPH_BREAK.finditer(tokens.text):
        boundary = bisect.bisect_right(tokens.starts, match.start())
        if 1 <= boundary < n:
            classes[boundary] = PARAGRAPH
    return classes


class BoundaryPriorities:
    """Priority of each boundary of one text: `(class, hash)` packed into one int.

    The hash is 64 bits of blake2b over the `CONTEXT_TOKENS` tokens before the
    boundary joined by single spaces, so it depends on content only. With
    `prefix` (weights, see `segment_starts`) the context is the fewest tokens
    before the boundary that weigh at least `CONTEXT_TOKENS`. Values are
    computed once per boundary (the fallback split revisits boundaries) and
    once per distinct context (repetitive text repeats contexts).
    """

    def __init__(self, tokens: Tokens, prefix: list[int] | None = None) -> None:
        self.tokens = tokens
        self.classes = boundary_classes(tokens)
        self._position: list[int] | range = range(len(tokens) + 1) if prefix is None else prefix
        self._by_boundary: dict[int, int] = {}
        self._by_context: dict[str, int] = {}

    def __call__(self, boundary: int) -> int:
        value = self._by_boundary.get(boundary)
        if value is None:
            tokens, position = self.tokens, self._position
            # The last token that starts CONTEXT_TOKENS or more before the boundary.
            first = max(0, bisect.bisect_right(position, position[boundary] - CONTEXT_TOKENS) - 1)
            context = " ".join(tokens.text[tokens.starts[first]:tokens.ends[boundary - 1]].split())
            hashed = self._by_context.get(context)
            if hashed is None:
                digest = hashlib.blake2b(context.encode("utf-8"), digest_size=8).digest()
                hashed = self._by_context[context] = int.from_bytes(digest, "big")
            value = (self.classes.get(boundary, PLAIN) << 64) | hashed
            self._by_boundary[boundary] = value
        return value


def segment_starts(tokens: Tokens, min_segment: int, max_segment: int,
                   prefix: list[int] | None = None) -> list[int]:
    """Token indexes where segments start: `[0, cut_1, cut_2, ...]`, or `[]` for no tokens.

    Every segment has at most `max_segment` tokens (with `prefix`, the running sums of
    per-token weights such as encoder tokens, `prefix[i]` = weight of tokens `[0, i)`:
    at most `max_segment` weight; every single token must weigh at most that); segments
    are longer than `min_segment` tokens except where the whole text or a fallback split
    is too short for that (see the module docstring). With `prefix` every distance of the
    rule is a difference of weights -- a token of weight w is w positions long -- so the
    edit-locality argument holds as it stands, in weight.
    """
    n = len(tokens)
    if n == 0:
        return []
    priorities = BoundaryPriorities(tokens, prefix)
    cuts = content_cuts(tokens, min_segment, max_segment, priorities, prefix)
    starts = [0]
    for start, end in zip([0, *cuts], [*cuts, n]):
        starts.extend(_split_long_gap(start, end, priorities, min_segment, max_segment, prefix))
        if end < n:
            starts.append(end)
    return starts


def content_cuts(
    tokens: Tokens,
    min_segment: int,
    max_segment: int,
    priorities: BoundaryPriorities | None = None,
    prefix: list[int] | None = None,
) -> list[int]:
    """The content-defined cuts (steps 1 to 4), before over-long gaps are split. With
    `prefix`, every distance of the rule is measured in weight (see `segment_starts`)."""
    if not 1 <= min_segment <= max_segment:
        raise ValueError(f"need 1 <= min_segment <= max_segment, got {min_segment}, {max_segment}")
    if priorities is None:
        priorities = BoundaryPriorities(tokens, prefix)
    position: list[int] | range = range(len(tokens) + 1) if prefix is None else prefix
    peak_lookback = max(1, min_segment + 2 - CONTEXT_TOKENS)
    plain_after = max(peak_lookback + 1, max_segment - min_segment - 1)
    candidates = _candidates(len(tokens), priorities, plain_after, position)
    return _peak_cuts(candidates, len(tokens), min_segment, peak_lookback, position)


def _candidates(
    n: int, priorities: BoundaryPriorities, plain_after: int, position: list[int] | range
) -> Iterator[tuple[int, int]]:
    """(boundary, priority) for every candidate, in text order."""
    previous_sentence_end = 0  # the document start counts as one
    for boundary in [*sorted(priorities.classes), n]:
        # Plain candidates: more than plain_after past the last sentence end.
        first_plain = bisect.bisect_right(position, position[previous_sentence_end] + plain_after)
        for plain in range(first_plain, boundary):
            yield plain, priorities(plain)
        if boundary < n:
            yield boundary, priorities(boundary)
        previous_sentence_end = boundary


def _peak_cuts(
    candidates: Iterator[tuple[int, int]], n: int, min_segment: int, peak_lookback: int,
    position: list[int] | range,
) -> list[int]:
    """Steps 3 and 4 of the module docstring, in one pass with a sliding-window maximum."""
    window: deque[tuple[int, int]] = deque()  # (position, priority), priorities decreasing
    cuts: list[int] = []
    last_peak = 0  # a position
    end = position[n]
    for boundary, prio in candidates:
        at = position[boundary]
        while window and window[0][0] < at - peak_lookback:
            window.popleft()
        is_peak = not window or window[0][1] < prio
        while window and window[-1][1] <= prio:
            window.pop()
        window.append((at, prio))
        if is_peak:
            if at - last_peak > min_segment and end - at > min_segment:
                cuts.append(boundary)
            last_peak = at
    return cuts


def _split_long_gap(
    start: int, end: int, priorities: BoundaryPriorities, min_segment: int, max_segment: int,
    prefix: list[int] | None = None,
) -> list[int]:
    """Fallback cuts inside a segment longer than `max_segment` tokens, or weight with
    `prefix` (step 5)."""
    def weight(a: int, b: int) -> int:
        return b - a if prefix is None else prefix[b] - prefix[a]

    cuts = []
    while weight(start, end) > max_segment:
        # The furthest boundary whose segment still fits.
        if prefix is None:
            far = start + max_segment
        else:
            far = max(start + 1, bisect.bisect_right(prefix, prefix[start] + max_segment, start, end) - 1)
        low, high = start + min_segment + 1, min(far, end - min_segment - 1)
        if low > high:  # windows too small for the minimum: any boundary will do
            low, high = start + 1, far
        start = max(range(low, high + 1), key=lambda boundary: (priorities(boundary), boundary))
        cuts.append(start)
    return cuts
