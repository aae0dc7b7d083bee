"""The lexical (BM25) retriever: tokenization and an incrementally updated index."""

from retrieval_svc.lexical.bm25 import BM25Index
from retrieval_svc.lexical.porter import porter_stem
from retrieval_svc.lexical.stopwords import ENGLISH_STOPWORDS
from retrieval_svc.lexical.tokenization import Tokenizer, make_tokenizer

__all__ = ["BM25Index", "ENGLISH_STOPWORDS", "Tokenizer", "make_tokenizer", "porter_stem"]
