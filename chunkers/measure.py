"""How long a piece of text is, in the unit windows are measured in.

`WordCounter`: every `\\S+` run is one token (the chunkers' own tokens).
`EncoderTokenCounter`: tokens of the encoder's own tokenizer (wordpieces for BERT-like
models such as MiniLM), so a window of N tokens is what the encoder reads, not what a
whitespace split sees: scientific or code text runs 1.3-2x more wordpieces than words,
and an encoder silently drops everything past its max_seq_length.

For WordPiece tokenizers (BERT, MiniLM) a text's token count is the sum of its
whitespace runs' counts (the tokenizer splits on whitespace first and never merges
across it), so windows measured run by run are exact. BPE and SentencePiece tokenizers
can differ by about one token per run boundary; tests/chunkers checks the bound with the
packaged MiniLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence


class TokenCounter(Protocol):
    def counts(self, pieces: Sequence[str]) -> list[int]:
        """Tokens in each piece (no special tokens)."""


class WordCounter:
    """One token per whitespace run (pieces are runs)."""

    unit = "words"

    def counts(self, pieces: Sequence[str]) -> list[int]:
        return [1] * len(pieces)


class EncoderTokenCounter:
    """Counts of a Hugging Face tokenizer: the one in the encoder's model folder."""

    unit = "encoder"

    def __init__(self, model_path: str | Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        # [CLS] and [SEP] for BERT-like models: they take room in every encoder input.
        self.special_tokens = int(self.tokenizer.num_special_tokens_to_add(pair=False))

    def counts(self, pieces: Sequence[str]) -> list[int]:
        if not pieces:
            return []
        encoded = self.tokenizer(list(pieces), add_special_tokens=False, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]
