"""Tokenizers for the lexical index: split, then drop stop words, then stem.

A `Tokenizer` is a frozen, comparable description of the pipeline and is
callable (``text -> list[str]``). Splitters and stemmers are tiny pure
functions chosen by name from explicit registries:

- splitters (`SPLITTERS`):
  ``unicode_words``  -- the default: ``re.findall(r"\\w+", text.casefold())``,
  i.e. maximal runs of Unicode letters, digits and underscores after Unicode
  case folding (``"Straße"`` -> ``"strasse"``); punctuation separates words.
  ``whitespace``     -- ``text.casefold().split()``.
- stemmers (`STEMMERS`): ``porter`` -- Porter (1980), see `porter.py`. It is
  applied only to ASCII alphabetic tokens; other tokens (numbers, words in other
  scripts) pass unchanged, since the Porter rules are for English.

Stop words (`ENGLISH_STOPWORDS`) are removed before stemming, so they are
matched on the case-folded surface form.

Queries and documents must go through the same tokenizer; `spec` is what an
index stores to detect a mismatch when it is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from retrieval_svc.lexical.porter import porter_stem
from retrieval_svc.lexical.stopwords import ENGLISH_STOPWORDS

_WORD = re.compile(r"\w+", re.UNICODE)


def unicode_words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def whitespace(text: str) -> list[str]:
    return text.casefold().split()


def _porter_ascii(token: str) -> str:
    return porter_stem(token) if token.isascii() and token.isalpha() else token


SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "unicode_words": unicode_words,
    "whitespace": whitespace,
}
STEMMERS: dict[str, Callable[[str], str]] = {
    "porter": _porter_ascii,
}


@dataclass(frozen=True)
class Tokenizer:
    """Split with `SPLITTERS[name]`, optionally drop English stop words, optionally stem."""

    name: str = "unicode_words"
    stopwords: bool = False
    stemmer: str | None = None  # a key of STEMMERS, or None for no stemming
    _split: Callable[[str], list[str]] = field(init=False, repr=False, compare=False)
    _stem: Callable[[str], str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name not in SPLITTERS:
            raise ValueError(
                f"unknown tokenizer {self.name!r}; expected one of {sorted(SPLITTERS)}"
            )
        stemmer = self.stemmer or None  # "" (as settings spell "none") means no stemming
        if stemmer is not None and stemmer not in STEMMERS:
            raise ValueError(
                f"unknown stemmer {stemmer!r}; expected one of {sorted(STEMMERS)} or none"
            )
        object.__setattr__(self, "stemmer", stemmer)
        object.__setattr__(self, "stopwords", bool(self.stopwords))
        object.__setattr__(self, "_split", SPLITTERS[self.name])
        object.__setattr__(self, "_stem", STEMMERS[stemmer] if stemmer else None)

    def __call__(self, text: str) -> list[str]:
        tokens = self._split(text)
        if self.stopwords:
            tokens = [t for t in tokens if t not in ENGLISH_STOPWORDS]
        if self._stem is not None:
            stem = self._stem
            tokens = [stem(t) for t in tokens]
        return tokens

    @property
    def spec(self) -> dict[str, object]:
        """A JSON-able description that `Tokenizer(**spec)` turns back into an equal tokenizer."""
        return {"name": self.name, "stopwords": self.stopwords, "stemmer": self.stemmer}


def make_tokenizer(
    name: str = "unicode_words", stopwords: bool = False, stemmer: str | None = None
) -> Tokenizer:
    """The tokenizer registered as `name`; ValueError names an unknown name or stemmer."""
    return Tokenizer(name=name, stopwords=stopwords, stemmer=stemmer)
