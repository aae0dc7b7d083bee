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
"""

from __future__ import annotations

from collections import Counter

from chunkers.boundaries import segment_starts
from chunkers.ids import chunk_id
from chunkers.tokens import tokenize
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
    ) -> None:
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

    def split(self, doc_key: str, text: str) -> list[TextChunk]:
        """Chunks of `text` in order; `[]` when it has no non-whitespace character."""
        tokens = tokenize(text)
        n = len(tokens)
        starts = segment_starts(tokens, self.min_segment_tokens, self.max_segment_tokens)
        seen: Counter[str] = Counter()
        chunks = []
        for ordinal, segment_start in enumerate(starts):
            segment_end = starts[ordinal + 1] if ordinal + 1 < len(starts) else n
            first_token = max(0, segment_start - self.overlap_tokens)
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
                token_count=segment_end - first_token,
            ))
        return chunks
