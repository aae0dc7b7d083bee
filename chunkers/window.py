"""The overlapping-window chunker: content-defined segments plus a token overlap.

The text is tokenized into `\\S+` runs (chunkers.tokens), cut into segments at
content-defined boundaries (chunkers.boundaries), and each segment becomes one
chunk: the segment's tokens prefixed by the `overlap_tokens` tokens before it.
So a chunk holds at most `overlap_tokens + (window_tokens - overlap_tokens)` =
`window_tokens` tokens, consecutive chunks share `overlap_tokens` tokens (fewer
only at the start of the text), and an edit changes few chunk ids because the
cut points around unchanged text do not move (see chunkers.boundaries for why
and for the cases where more than three ids change).

Character spans: the first chunk starts at offset 0 and the last ends at
`len(text)`; whitespace between two segments belongs to the earlier one, so the
spans together cover every character of the text.

**Encoder tokens.** With a `counter` (chunkers.measure.EncoderTokenCounter) the window,
the overlap and the chunk's `token_count` are in the encoder's tokens, and
`split(..., reserved_tokens=r)` keeps `r` of each window for what the encoder reads
beside the chunk (the title header): every chunk then fits the encoder whole, nothing
is cut off before embedding. Each `\\S+` run weighs its encoder tokens, and the cut rule
measures every distance in that weight (chunkers.boundaries), so the edit bound holds as
with words (tests/chunkers/test_encoder_windows.py). A single run heavier than a window
(a long URL, base64) is split into character pieces.
"""

from __future__ import annotations

from collections import Counter

import bisect
import itertools
import unicodedata

from chunkers.boundaries import segment_starts
from chunkers.ids import chunk_id
from chunkers.measure import TokenCounter
from chunkers.tokens import Tokens, tokenize
from retrieval_svc.domain import TextChunk

# Segments are at least max_segment // MIN_SEGMENT_DIVISOR tokens long (bar the
# text's ends). Gaps between content-defined cuts average about twice the
# minimum and exceed seven times it for about 2e-4 of gaps, so 7 keeps the
# position-dependent fallback for over-long gaps rare; chunks then average
# roughly overlap + 2/7 of the window.
MIN_SEGMENT_DIVISOR = 7


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


class WindowChunker:
    """Overlapping windows over tokens with content-defined, edit-stable boundaries.

    `window_tokens`: the most tokens in one chunk, overlap included.
    `overlap_tokens`: tokens each chunk repeats from the end of the previous one.
    `min_segment_tokens`: the least new (non-overlap) tokens in a chunk except at
    the text's ends; default `(window_tokens - overlap_tokens) // 7`. The
    three-ids-per-edited-sentence bound needs `overlap_tokens <= 2 * min_segment_tokens + 1`.
    """

    def __init__(
        self,
        window_tokens: int = 256,
        overlap_tokens: int = 32,
        min_segment_tokens: int | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        self.counter = counter
        self._min_segment_given = min_segment_tokens
        self.window_tokens = _check_int("window_tokens", window_tokens, 1)
        self.overlap_tokens = _check_int("overlap_tokens", overlap_tokens, 0, window_tokens - 1)
        self.max_segment_tokens = window_tokens - overlap_tokens
        if min_segment_tokens is None:
            min_segment_tokens = max(1, self.max_segment_tokens // MIN_SEGMENT_DIVISOR)
        self.min_segment_tokens = _check_int(
            "min_segment_tokens", min_segment_tokens, 1, self.max_segment_tokens
        )

    def __repr__(self) -> str:
        return (
            f"WindowChunker(window_tokens={self.window_tokens}, "
            f"overlap_tokens={self.overlap_tokens}, "
            f"min_segment_tokens={self.min_segment_tokens})"
        )

    def split(self, doc_key: str, text: str, *, reserved_tokens: int = 0) -> list[TextChunk]:
        """Chunks of `text` in order; `[]` when it has no non-whitespace character.
        `reserved_tokens` (with a counter): room each window keeps for the title header,
        at most half the window (a longer header has its tail cut by the encoder)."""
        tokens = tokenize(text)
        if self.counter is None:
            overlap, max_segment, min_segment = self.overlap_tokens, self.max_segment_tokens, self.min_segment_tokens
            prefix = None
        else:
            window = self.window_tokens - min(max(0, reserved_tokens), self.window_tokens // 2)
            overlap = min(self.overlap_tokens, (window - 1) // 2)
            max_segment = window - overlap
            min_segment = self._min_segment_given or max(1, max_segment // MIN_SEGMENT_DIVISOR)
            min_segment = min(min_segment, max_segment)
            tokens, weights = _weighed(tokens, self.counter, max_segment)
            prefix = [0, *itertools.accumulate(weights)]
        n = len(tokens)
        starts = segment_starts(tokens, min_segment, max_segment, prefix)
        seen: Counter[str] = Counter()
        chunks = []
        for ordinal, segment_start in enumerate(starts):
            segment_end = starts[ordinal + 1] if ordinal + 1 < len(starts) else n
            if prefix is None:
                first_token = max(0, segment_start - overlap)
            else:  # as many tokens before the segment as weigh at most `overlap`
                first_token = bisect.bisect_left(prefix, prefix[segment_start] - overlap, 0, segment_start)
            start_char = 0 if ordinal == 0 else tokens.starts[first_token]
            end_char = tokens.starts[segment_end] if segment_end < n else len(text)
            chunk_text = text[start_char:end_char]
            occurrence = seen[chunk_text]
            seen[chunk_text] += 1
            chunks.append(TextChunk(
                chunk_id=chunk_id(doc_key, chunk_text, occurrence),
                ordinal=ordinal,
                text=chunk_text,
                start_char=start_char,
                end_char=end_char,
                token_count=(segment_end - first_token if prefix is None
                             else prefix[segment_end] - prefix[first_token]),
            ))
        return chunks


def _weighed(tokens: Tokens, counter: TokenCounter, limit: int) -> tuple[Tokens, list[int]]:
    """The tokens with their encoder-token weights (at least 1 each); a token heavier than
    `limit` is split into character pieces of at most limit // 2 (slack for the
    tokenizer reading the pieces joined again inside one chunk), each ending after a
    punctuation mark where its second half has one: then the counts add up exactly. Pieces
    of a run with no punctuation can read a token or so longer joined, so a chunk holding
    several of them can be that much over its window (its tail cut by the encoder)."""
    weights = [max(1, w) for w in counter.counts([tokens.token(i) for i in range(len(tokens))])]
    if all(w <= limit for w in weights):
        return tokens, weights
    starts: list[int] = []
    ends: list[int] = []
    out: list[int] = []
    piece_limit = max(1, limit // 2)
    for i, w in enumerate(weights):
        if w <= limit:
            starts.append(tokens.starts[i])
            ends.append(tokens.ends[i])
            out.append(w)
            continue
        start, end = tokens.starts[i], tokens.ends[i]
        while start < end:
            # The longest piece from `start` within piece_limit tokens (binary search on length).
            low, high = 1, end - start
            while low < high:
                middle = (low + high + 1) // 2
                if counter.counts([tokens.text[start:start + middle]])[0] <= piece_limit:
                    low = middle
                else:
                    high = middle - 1
            if start + low < end:  # end the piece at a punctuation mark in its second half if one is there
                low = next((j + 1 - start for j in range(start + low - 1, start + low // 2 - 1, -1)
                            if _is_punctuation(tokens.text[j])), low)
            starts.append(start)
            ends.append(start + low)
            out.append(max(1, counter.counts([tokens.text[start:start + low]])[0]))
            start += low
    return Tokens(tokens.text, starts, ends), out


def _is_punctuation(char: str) -> bool:
    """BERT's BasicTokenizer makes each such character a word of its own, so pieces that
    meet at one are tokenized joined exactly as apart (their counts add up)."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")
