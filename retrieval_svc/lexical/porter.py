"""The Porter stemmer, as published: M.F. Porter, "An algorithm for suffix
stripping", Program 14(3), 1980, pp. 130-137.

This is the original algorithm of the paper (what NLTK calls
``PorterStemmer.ORIGINAL_ALGORITHM``), not Porter's later reference code with
its few departures (``bli -> ble``, ``logi -> log``) nor Snowball's "Porter2".
Words of one or two letters are left alone, as in Porter's own code.

Notation of the paper: a word is ``[C](VC){m}[V]``, where C is a run of
consonants and V a run of vowels; ``m`` is the word's *measure*. A vowel is
a, e, i, o, u, or a y that follows a consonant. Within each step only the rule
with the longest matching suffix is considered; if its condition fails the step
does nothing.

`porter_stem` is a pure function of its argument with a bounded cache, so
repeated words (most words of a corpus) cost one dictionary lookup.
"""

from __future__ import annotations

from functools import lru_cache

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


@lru_cache(maxsize=1 << 18)
def porter_stem(word: str) -> str:
    """Porter (1980) stem of a lower-case word, e.g. ``generalizations -> gener``."""
    if len(word) <= 2:
        return word
    word = _step1ab(word)
    word = _step1c(word)
    word = _apply(word, _STEP2, 0)
    word = _apply(word, _STEP3, 0)
    word = _apply(word, _STEP4, 1)
    return _step5(word)
