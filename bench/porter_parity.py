"""Porter stems: `porter_stem` (PyStemmer, with the paper's code for the words where
Snowball parts) against `paper_porter_stem` (Python, the paper), and plain Snowball.

Word sets: the distinct ASCII words of the SciFact and Cranfield corpora and queries
(/work/shared/data, or --data), a word list (--words, default Debian's wamerican-large
/usr/share/dict/american-english-large when present) and --random distinct random strings
built on Porter's suffixes (seeded). Only words over two letters count: both leave shorter
ones alone by design. Then the cost of a word not seen before, and of tokenizing SciFact's
corpus with a cold and a warm cache. Prints tables; asserts nothing.

    .venv/bin/python bench/porter_parity.py [--random 1000000]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import time
from pathlib import Path

from retrieval_svc.lexical import porter
from retrieval_svc.lexical import tokenization
from retrieval_svc.lexical.porter import paper_porter_stem, porter_stem

DEFAULT_WORDS = Path("/usr/share/dict/american-english-large")
SUFFIXES = (
    "ational tional enci anci izer abli alli entli eli ousli ization ation ator alism iveness fulness "
    "ousness aliti iviti biliti icate ative alize iciti ical ful ness al ance ence er ic able ible ant "
    "ement ment ent ion sion tion ou ism ate iti ous ive ize e ll sses ies ss s eed ed ing y bli logi ly "
    "yed ying ings eds ys"
).split()
LETTERS = "aeiouy" * 3 + "bcdfghjklmnpqrstvwxz" + "sley"


def corpus_words(data: Path) -> set[str]:
    words: set[str] = set()
    for name in ("scifact", "cranfield"):
        for file in ("corpus.jsonl", "queries.jsonl"):
            path = data / name / file
            if not path.exists():
                continue
            for line in path.open(encoding="utf-8"):
                if line.strip():
                    record = json.loads(line)
                    text = f"{record.get('title') or ''} {record.get('text') or ''}"
                    words.update(t for t in tokenization.unicode_words(text) if t.isascii() and t.isalpha())
    return words


def random_words(count: int, seed: int = 11) -> set[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < count:
        stem = "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 9)))
        roll = rng.random()
        if roll < 0.6:
            word = stem + rng.choice(SUFFIXES)
        elif roll < 0.8:
            word = stem + rng.choice(SUFFIXES) + rng.choice(SUFFIXES)
        else:
            word = stem + stem[: rng.randint(0, 3)]
        if len(word) > 2:
            words.add(word)
    return words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--words", type=Path, default=DEFAULT_WORDS)
    parser.add_argument("--random", type=int, default=1_000_000)
    args = parser.parse_args()

    sets = {"SciFact + Cranfield": corpus_words(args.data)}
    if args.words.exists():
        sets[args.words.name] = {w.strip().casefold() for w in args.words.open(encoding="utf-8")
                                 if w.strip().isascii() and w.strip().isalpha()}
    sets["random (seed 11)"] = random_words(args.random)
    snowball = porter._snowball_porter()
    print("| words | over 2 letters | porter_stem != paper | plain Snowball != paper | sent to the paper code |")
    print("|---|---|---|---|---|")
    for label, found in sets.items():
        words = sorted(w for w in found if len(w) > 2)
        differ = [w for w in words if porter_stem(w) != paper_porter_stem(w)]
        snowball_differ = [w for w in words if snowball.stemWord(w) != paper_porter_stem(w)]
        routed = sum(porter._undoubles_beyond_snowball(w) for w in words)
        print(f"| {label} | {len(words):,} | {len(differ)} {differ[:5]} | {len(snowball_differ)} "
              f"{snowball_differ[:8]} | {routed} |")

    vocabulary = sorted(w for w in sets["SciFact + Cranfield"] if len(w) > 2)
    if not vocabulary:
        return
    paper_cached = functools.lru_cache(maxsize=1 << 18)(paper_porter_stem)
    texts = []
    scifact = args.data / "scifact" / "corpus.jsonl"
    for line in scifact.open(encoding="utf-8"):
        record = json.loads(line)
        texts.append(f"{record.get('title') or ''}\n{record.get('text') or ''}")
    tokenizer = tokenization.Tokenizer(stopwords=True, stemmer="porter")
    print("\n| stemmer | us per unseen word | SciFact tokenized, cold cache (s) | warm (s) |")
    print("|---|---|---|---|")
    for label, stem in (("paper_porter_stem (Python)", paper_cached), ("porter_stem (PyStemmer)", porter_stem)):
        stem.cache_clear()
        start = time.perf_counter()
        for word in vocabulary:
            stem(word)
        per_word = (time.perf_counter() - start) / len(vocabulary) * 1e6
        stem.cache_clear()
        tokenization.porter_stem = stem  # what _porter_ascii calls
        start = time.perf_counter()
        for text in texts:
            tokenizer(text)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        for text in texts:
            tokenizer(text)
        warm = time.perf_counter() - start
        print(f"| {label} | {per_word:.2f} | {cold:.2f} | {warm:.2f} |")
    tokenization.porter_stem = porter_stem


if __name__ == "__main__":
    main()
