"""The Porter stemmer: M.F. Porter, "An algorithm for suffix stripping",
Program 14(3), 1980, pp. 130-137.

`porter_stem` runs Snowball's ``porter`` algorithm in C (PyStemmer) and gives
the same stems as this module's Python implementation of the paper
(`paper_porter_stem`), which stays as the reference and for the few words where
the two part:

- Step 1b of the paper undoubles any double consonant but l, s and z left by
  removing -ed or -ing (``trekking -> trek``); Snowball only bb, dd, ff, gg, mm,
  nn, pp, rr and tt (``trekking -> trekk``). Words whose step 1b stem ends in a
  doubled c, h, j, k, q, v, w, x or y go to `paper_porter_stem`.
- Snowball stems words of one or two letters (``is -> i``); Porter's own code,
  and so this one, leaves them alone.

Stored BM25 indexes name the stemmer ``porter`` (`Tokenizer.spec`) and stay
valid, because the stems are the same. bench/porter_parity.py measures it; on
2026-12-02 it found no difference on any word over two letters of the SciFact
and Cranfield corpora and queries (31,635 distinct words), of a 130,070-word
English dictionary (Debian's wamerican-large, where plain Snowball parts on 14:
grokked, revved, sicced, specced, trekked, yakked, yukked and their -ing forms)
or of 1,000,000 distinct random strings built on Porter's suffixes (plain
Snowball parts on 1,393). A word not seen before costs about 4 us instead of
15 us; over a corpus the cache below hides most of that (SciFact's 1.17 million
tokens: about 1.0 s instead of 1.3 s on a cold cache, the same once warm).

This is the original algorithm of the paper (what NLTK calls
``PorterStemmer.ORIGINAL_ALGORITHM``, which agrees with `paper_porter_stem`
on the dictionary above), not Porter's later reference code with its few
departures (``bli -> ble``, ``logi -> log``) nor Snowball's "Porter2".

Notation of the paper: a word is ``[C](VC){m}[V]``, where C is a run of
consonants and V a run of vowels; ``m`` is the word's *measure*. A vowel is
a, e, i, o, u, or a y that follows a consonant. Within each step only the rule
with the longest matching suffix is considered; if its condition fails the step
does nothing.

`porter_stem` is a pure function of its argument with a bounded cache, so
repeated words (most words of a corpus) cost one dictionary lookup.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

_VOWELS = frozenset("aeiou")


def _consonant_flags(word: str) -> list[bool]:
    flags: list[bool] = []
    for i, ch in enumerate(word):
        if ch in _VOWELS:
            flags.append(False)
        elif ch == "y":
            flags.append(i == 0 or not flags[i - 1])
        else:
            flags.append(True)
    return flags


def _measure(stem: str) -> int:
    """m in [C](VC){m}[V]: the number of vowel-to-consonant transitions."""
    m = 0
    after_vowel = False
    for is_consonant in _consonant_flags(stem):
        if not is_consonant:
            after_vowel = True
        elif after_vowel:
            m += 1
            after_vowel = False
    return m


def _has_vowel(stem: str) -> bool:
    """*v*: the stem contains a vowel."""
    return not all(_consonant_flags(stem))


def _ends_double_consonant(stem: str) -> bool:
    """*d: the stem ends with a double consonant."""
    return len(stem) >= 2 and stem[-1] == stem[-2] and _consonant_flags(stem)[-1]


def _ends_cvc(stem: str) -> bool:
    """*o: the stem ends consonant-vowel-consonant, the last not w, x or y."""
    if len(stem) < 3 or stem[-1] in "wxy":
        return False
    flags = _consonant_flags(stem)
    return flags[-3] and not flags[-2] and flags[-1]


def _longest_rule(word: str, rules: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    # `rules` are sorted longest suffix first, so the first match is the longest.
    for suffix, replacement in rules:
        if word.endswith(suffix):
            return suffix, replacement
    return None


def _by_length(rules: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(rules, key=lambda rule: -len(rule[0])))


_STEP2 = _by_length([
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"),
    ("izer", "ize"), ("abli", "able"), ("alli", "al"), ("entli", "ent"), ("eli", "e"),
    ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"),
    ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"),
    ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"),
])
_STEP3 = _by_length([
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"),
    ("ful", ""), ("ness", ""),
])
_STEP4 = _by_length([
    (suffix, "") for suffix in (
        "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent",
        "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize",
    )
])


def _step1ab(word: str) -> str:
    if word.endswith("sses") or word.endswith("ies"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]

    if word.endswith("eed"):
        return word[:-1] if _measure(word[:-3]) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            if not _has_vowel(stem):
                return word
            # Tidy-up after removing -ed/-ing: restore an e or undouble a consonant.
            if stem.endswith(("at", "bl", "iz")):
                return stem + "e"
            if _ends_double_consonant(stem) and stem[-1] not in "lsz":
                return stem[:-1]
            if _measure(stem) == 1 and _ends_cvc(stem):
                return stem + "e"
            return stem
    return word


def _step1c(word: str) -> str:
    if word.endswith("y") and _has_vowel(word[:-1]):
        return word[:-1] + "i"
    return word


def _apply(word: str, rules: tuple[tuple[str, str], ...], min_measure: int) -> str:
    rule = _longest_rule(word, rules)
    if rule is None:
        return word
    suffix, replacement = rule
    stem = word[: -len(suffix)]
    if _measure(stem) <= min_measure:
        return word
    if suffix == "ion" and not stem.endswith(("s", "t")):
        return word
    return stem + replacement


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        m = _measure(stem)
        if m > 1 or (m == 1 and not _ends_cvc(stem)):
            word = stem
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


def paper_porter_stem(word: str) -> str:
    """Porter (1980) stem of a lower-case word, e.g. ``generalizations -> gener``, in
    Python: the reference `porter_stem` agrees with."""
    if len(word) <= 2:
        return word
    word = _step1ab(word)
    word = _step1c(word)
    word = _apply(word, _STEP2, 0)
    word = _apply(word, _STEP3, 0)
    word = _apply(word, _STEP4, 1)
    return _step5(word)


# Doubles that the paper's step 1b undoubles and Snowball's does not.
_PAPER_ONLY_DOUBLES = tuple(letter * 2 for letter in "chjkqvwxy")
# Stemmer objects keep state between calls ("must not be called concurrently"): one per thread.
_snowball = threading.local()


def _undoubles_beyond_snowball(word: str) -> bool:
    """True when step 1b may undouble a letter Snowball keeps (a superset: the paper's
    conditions on the stem are left to `paper_porter_stem`)."""
    if word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]  # step 1a; -sses and -ies leave no -ed or -ing behind
    for suffix in ("ed", "ing"):
        if word.endswith(suffix):
            return word[: -len(suffix)].endswith(_PAPER_ONLY_DOUBLES)
    return False


def _snowball_porter() -> Any:
    stemmer = getattr(_snowball, "stemmer", None)
    if stemmer is None:
        import Stemmer  # PyStemmer, of the server extra

        # No PyStemmer cache: porter_stem's lru_cache is in front of it.
        stemmer = _snowball.stemmer = Stemmer.Stemmer("porter", 0)
    return stemmer


@lru_cache(maxsize=1 << 18)
def porter_stem(word: str) -> str:
    """Porter (1980) stem of a lower-case word, e.g. ``generalizations -> gener``:
    Snowball's C code, or `paper_porter_stem` where the two part (see the module)."""
    if len(word) <= 2:
        return word
    if _undoubles_beyond_snowball(word):
        return paper_porter_stem(word)
    return str(_snowball_porter().stemWord(word))
