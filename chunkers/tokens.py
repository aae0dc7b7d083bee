"""Whitespace tokenization that keeps character offsets.

A token is a maximal run of non-whitespace characters (`\\S+`), so the text
between two consecutive tokens is pure whitespace. Offsets are Python `str`
indexes (code points), end exclusive, so `text[starts[i]:ends[i]]` is token `i`.
Token counts reported by the chunkers are counts of these runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN_PATTERN = re.compile(r"\S+")


@dataclass(frozen=True)
class Tokens:
    """The tokens of one text, as parallel lists of start and end offsets."""

    text: str
    starts: list[int]
    ends: list[int]

    def __len__(self) -> int:
        return len(self.starts)

    def token(self, index: int) -> str:
        return self.text[self.starts[index]:self.ends[index]]


def tokenize(text: str) -> Tokens:
    """Split `text` into `\\S+` runs with their code-point offsets."""
    starts: list[int] = []
    ends: list[int] = []
    for match in TOKEN_PATTERN.finditer(text):
        starts.append(match.start())
        ends.append(match.end())
    return Tokens(text, starts, ends)
