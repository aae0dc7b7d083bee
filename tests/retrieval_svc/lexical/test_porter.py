"""The Porter stemmer against the examples printed in Porter (1980), and the PyStemmer-backed
`porter_stem` against the Python implementation of the paper (`paper_porter_stem`)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from retrieval_svc.lexical.porter import paper_porter_stem, porter_stem

# Every example of the paper, step by step, run through the whole algorithm.
PAPER_EXAMPLES = {
    # step 1a
    "caresses": "caress", "ponies": "poni", "ties": "ti", "caress": "caress", "cats": "cat",
    # step 1b
    "feed": "feed", "agreed": "agre", "plastered": "plaster", "bled": "bled",
    "motoring": "motor", "sing": "sing", "conflated": "conflat", "troubled": "troubl",
    "sized": "size", "hopping": "hop", "tanned": "tan", "falling": "fall",
    "hissing": "hiss", "fizzed": "fizz", "failing": "fail", "filing": "file",
    # step 1c
    "happy": "happi", "sky": "sky",
    # step 2
    "relational": "relat", "conditional": "condit", "rational": "ration",
    "valenci": "valenc", "hesitanci": "hesit", "digitizer": "digit",
    "conformabli": "conform", "radicalli": "radic", "differentli": "differ",
    "vileli": "vile", "analogousli": "analog", "vietnamization": "vietnam",
    "predication": "predic", "operator": "oper", "feudalism": "feudal",
    "decisiveness": "decis", "hopefulness": "hope", "callousness": "callous",
    "formaliti": "formal", "sensitiviti": "sensit", "sensibiliti": "sensibl",
    # step 3
    "triplicate": "triplic", "formative": "form", "formalize": "formal",
    "electriciti": "electr", "electrical": "electr", "hopeful": "hope", "goodness": "good",
    # step 4
    "revival": "reviv", "allowance": "allow", "inference": "infer", "airliner": "airlin",
    "gyroscopic": "gyroscop", "adjustable": "adjust", "defensible": "defens",
    "irritant": "irrit", "replacement": "replac", "adjustment": "adjust",
    "dependent": "depend", "adoption": "adopt", "homologou": "homolog",
    "communism": "commun", "activate": "activ", "angulariti": "angular",
    "homologous": "homolog", "effective": "effect", "bowdlerize": "bowdler",
    # step 5
    "probate": "probat", "rate": "rate", "cease": "ceas", "controll": "control", "roll": "roll",
    # the paper's worked examples
    "generalizations": "gener", "oscillators": "oscil",
}


@pytest.mark.parametrize("stem", [porter_stem, paper_porter_stem], ids=["pystemmer", "paper"])
@pytest.mark.parametrize("word", sorted(PAPER_EXAMPLES))
def test_paper_examples(stem, word):
    assert stem(word) == PAPER_EXAMPLES[word]


def test_longest_suffix_rule_blocks_shorter_ones():
    # "-ement" matches but its stem "c" has m = 0; the shorter "-ment"/"-ent"
    # rules must not be tried then.
    assert porter_stem("cement") == "cement"


def test_short_words_unchanged():
    assert [porter_stem(w) for w in ("a", "is", "as", "us")] == ["a", "is", "as", "us"]
    assert [paper_porter_stem(w) for w in ("a", "is", "as", "us")] == ["a", "is", "as", "us"]


# English words whose step 1b stem ends in a double Snowball keeps: the paper undoubles it.
SNOWBALL_KEEPS_DOUBLE = {"trekking": "trek", "trekked": "trek", "revving": "rev", "revved": "rev",
                         "grokked": "grok", "specced": "spec", "yakking": "yak", "trekkings": "trek"}


@pytest.mark.parity
def test_words_where_snowball_parts_from_the_paper():
    import Stemmer

    snowball = Stemmer.Stemmer("porter")
    for word, expected in SNOWBALL_KEEPS_DOUBLE.items():
        assert snowball.stemWord(word) != expected  # so the fallback is what makes these right
        assert porter_stem(word) == paper_porter_stem(word) == expected


def _random_words(count: int, seed: int) -> list[str]:
    """Random strings built on the paper's suffixes, y and doubles included (the parts where
    implementations differ); bench/porter_parity.py runs a million of them."""
    rng = random.Random(seed)
    letters = "aeiouy" * 3 + "bcdfghjklmnpqrstvwxz" + "sley"
    suffixes = ["ational", "tional", "enci", "izer", "abli", "alli", "entli", "ousli", "ization", "ator",
                "alism", "iveness", "biliti", "icate", "ative", "iciti", "ical", "ful", "ness", "al", "ence",
                "er", "ic", "ible", "ement", "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize", "e", "ll",
                "sses", "ies", "s", "eed", "ed", "ing", "y", "bli", "logi", "yed", "ying", "ings"]
    words = set()
    while len(words) < count:
        stem = "".join(rng.choice(letters) for _ in range(rng.randint(1, 8)))
        words.add(stem + rng.choice(suffixes) if rng.random() < 0.8 else stem + stem[:2])
    return sorted(w for w in words if len(w) > 2)


@pytest.mark.parity
def test_pystemmer_agrees_with_the_paper_on_random_words():
    words = _random_words(30_000, seed=3)
    differ = [w for w in words if porter_stem(w) != paper_porter_stem(w)]
    assert differ == []


def test_threads_stem_concurrently():
    # Each thread has its own Snowball stemmer (their state must not be shared).
    words = _random_words(4_000, seed=5)
    porter_stem.cache_clear()
    with ThreadPoolExecutor(4) as pool:
        stems = list(pool.map(porter_stem, words, chunksize=16))
    assert stems == [paper_porter_stem(w) for w in words]


def test_long_runs_of_y_do_not_recurse():
    assert porter_stem("y" * 5000).startswith("y")
