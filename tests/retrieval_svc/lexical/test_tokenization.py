from __future__ import annotations

import pytest

from retrieval_svc.lexical import ENGLISH_STOPWORDS, Tokenizer, make_tokenizer


def test_default_is_casefolded_unicode_words():
    tokenize = make_tokenizer()
    assert tokenize("The quick-brown FOX, v2.0 snake_case!") == [
        "the", "quick", "brown", "fox", "v2", "0", "snake_case",
    ]
    assert tokenize("Straße ÜBER Ωμέγα 東京") == ["strasse", "über", "ωμέγα", "東京"]
    assert tokenize("  ...  ") == []


def test_whitespace_splitter_keeps_punctuation():
    assert make_tokenizer("whitespace")("Hello, World!  x") == ["hello,", "world!", "x"]


def test_stopwords_are_optional():
    text = "The cat and the hat are in a box"
    assert make_tokenizer()(text) == ["the", "cat", "and", "the", "hat", "are", "in", "a", "box"]
    assert make_tokenizer(stopwords=True)(text) == ["cat", "hat", "box"]
    assert {"the", "and", "don", "t"} <= ENGLISH_STOPWORDS


def test_porter_stemming_is_optional():
    text = "Connected connections connecting"
    assert make_tokenizer()(text) == ["connected", "connections", "connecting"]
    assert make_tokenizer(stemmer="porter")(text) == ["connect", "connect", "connect"]


def test_stop_words_are_removed_before_stemming():
    # "this" is a stop word; stemmed first it would become "thi" and survive.
    assert make_tokenizer(stopwords=True, stemmer="porter")("this ponies") == ["poni"]


def test_stemmer_leaves_numbers_and_non_ascii_words_alone():
    assert make_tokenizer(stemmer="porter")("running 1990s naïveties") == [
        "run", "1990s", "naïveties",
    ]


def test_empty_stemmer_name_means_none():
    assert make_tokenizer(stemmer="") == make_tokenizer(stemmer=None) == Tokenizer()


def test_unknown_names_are_named_in_the_error():
    with pytest.raises(ValueError, match="'wordpiece'"):
        make_tokenizer("wordpiece")
    with pytest.raises(ValueError, match="'lancaster'"):
        make_tokenizer(stemmer="lancaster")


def test_spec_round_trips_and_tokenizers_compare_by_value():
    tokenizer = make_tokenizer("unicode_words", stopwords=True, stemmer="porter")
    assert Tokenizer(**tokenizer.spec) == tokenizer
    assert hash(Tokenizer(**tokenizer.spec)) == hash(tokenizer)
    assert tokenizer != make_tokenizer(stopwords=True)
