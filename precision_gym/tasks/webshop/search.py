"""BM25 product search: the tokeniser (stop words, light stemmer) and a lazily built index.

BM25 (``bm25s``, Lucene variant, k1=1.5, b=0.75) over one document per product: lower-cased
title + description + first bullet + option text, tokenised into words with English stop
words removed and a light plural stemmer (the original uses pyserini/Lucene with Porter
stemming; rankings differ in detail). Only documents with a positive score are hits.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from precision_gym.tasks.webshop_reward import WebShopProduct

__all__ = ["TOP_K", "SearchIndex", "option_text", "tokenise"]

#: most hits a search returns (the benchmark's 5 result pages)
TOP_K = 50

_SEARCH_STOP_TEXT = """a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with i me my im want need looking find get"""
_SEARCH_STOP = frozenset(_SEARCH_STOP_TEXT.split())
_WORD_RE = re.compile(r"\w\w+")


def _stem(token: str) -> str:
    if len(token) > 3 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenise(text: str) -> list[str]:
    """Lower-cased words of 2+ characters, stop words removed, plurals stemmed."""
    return [_stem(t) for t in _WORD_RE.findall(text.lower()) if t not in _SEARCH_STOP]


def option_text(options: dict[str, tuple[str, ...]]) -> str:
    """``"name: v1, v2, and name2: v3"``: a product's options as one phrase."""
    return ", and ".join(f"{name}: {', '.join(values)}" for name, values in options.items())


def _document(product: WebShopProduct) -> list[str]:
    text = " ".join(
        [
            product.title,
            product.description,
            product.bullets[0] if product.bullets else "",
            option_text(dict(product.options)),
        ]
    )
    return tokenise(text) or ["_empty_"]


class SearchIndex:
    """BM25 over ``products``, built on the first search (thread-safe)."""

    def __init__(self, products: Sequence[WebShopProduct]) -> None:
        self._products = products
        self._index: Any = None
        self._lock = threading.Lock()

    def search(self, query: str, k: int = TOP_K) -> list[str]:
        """ASINs of the top ``k`` BM25 hits (positive score only), best first."""
        index = self._built()
        tokens = tokenise(query)
        if not tokens:
            return []
        scores = np.asarray(index.get_scores(tokens), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:k]
        return [self._products[i].asin for i in order if scores[i] > 0.0]

    def _built(self) -> Any:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    import bm25s

                    index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
                    index.index([_document(p) for p in self._products], show_progress=False)
                    self._index = index
        return self._index
