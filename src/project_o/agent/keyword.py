"""Keyword search over memories: BM25 on an inverted index, no vectors.

::

    add(row, terms)         terms: words() of the text, stopwords dropped
      "cat"  ─► Posting  rows  [ 3, 17, 40, ...]  int64, grows by doubling
                         tf    [ 1,  2,  1, ...]  float32 (term count in that row)
      lengths[row] = number of terms

    search(terms):   for each distinct query term t with postings P(t):
        score[P.rows] += idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))
        idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))          (Lucene's BM25)

A removed row stays in its postings (it is masked at search time through
the store's ``alive`` array) but leaves the document frequencies, so
scores match an index built from the live rows only. The store rebuilds
the index when it compacts its rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import numpy as np

from project_o.agent.embedding import STOPWORDS, words

__all__ = ["BM25_B", "BM25_K1", "KeywordIndex", "terms"]

#: term-frequency saturation and length normalisation: the usual defaults
#: (Robertson & Zaragoza 2009; Lucene and Elasticsearch ship the same)
BM25_K1: Final = 1.2
BM25_B: Final = 0.75


def terms(text: str) -> list[str]:
    """The indexed words of ``text``: stemmed, stopwords dropped."""
    return [word for word in words(text) if word not in STOPWORDS]


class _Posting:
    """The rows that hold one term, with the term's count in each."""

    __slots__ = ("count", "df", "rows", "tf")

    def __init__(self) -> None:
        self.rows = np.zeros(4, dtype=np.int64)
        self.tf = np.zeros(4, dtype=np.float32)
        self.count = 0  # entries used, removed rows included
        self.df = 0  # live rows holding the term

    def add(self, row: int, tf: int) -> None:
        if self.count == len(self.rows):
            self.rows = np.resize(self.rows, 2 * self.count)
            self.tf = np.resize(self.tf, 2 * self.count)
        self.rows[self.count], self.tf[self.count] = row, tf
        self.count += 1
        self.df += 1


class KeywordIndex:
    """BM25 over the rows of a store; rows are the store's row numbers."""

    def __init__(self) -> None:
        self._postings: dict[str, _Posting] = {}
        self._lengths = np.zeros(1024, dtype=np.float32)
        self._docs = 0
        self._total_length = 0

    def add(self, row: int, row_terms: Iterable[str]) -> None:
        """Index ``row_terms`` (the :func:`terms` of its text) under ``row``."""
        counts: dict[str, int] = {}
        for term in row_terms:
            counts[term] = counts.get(term, 0) + 1
        for term, tf in counts.items():
            self._postings.setdefault(term, _Posting()).add(row, tf)
        if row >= len(self._lengths):
            self._lengths = np.resize(self._lengths, max(row + 1, 2 * len(self._lengths)))
        length = sum(counts.values())
        self._lengths[row] = length
        self._docs += 1
        self._total_length += length

    def remove(self, row: int, row_terms: Iterable[str]) -> None:
        """Take ``row`` out of the statistics (its postings are masked, not rewritten)."""
        distinct = set(row_terms)
        for term in distinct:
            posting = self._postings.get(term)
            if posting is not None:
                posting.df -= 1
        self._docs -= 1
        self._total_length -= int(self._lengths[row])

    def search(self, query_terms: Iterable[str], allowed: np.ndarray) -> np.ndarray:
        """BM25 score of every row (0 where no term matches or ``allowed`` is False).

        ``allowed`` is a bool array over the store's rows: live rows that
        pass the caller's filter.
        """
        scores = np.zeros(len(allowed), dtype=np.float32)
        if self._docs <= 0:
            return scores
        average = self._total_length / self._docs
        for term in set(query_terms):
            posting = self._postings.get(term)
            if posting is None or posting.df <= 0:
                continue
            rows, tf = posting.rows[: posting.count], posting.tf[: posting.count]
            idf = math.log(1.0 + (self._docs - posting.df + 0.5) / (posting.df + 0.5))
            norm = BM25_K1 * (1.0 - BM25_B + BM25_B * self._lengths[rows] / average)
            # rows are distinct within one posting, so a fancy-index add is exact
            scores[rows] += idf * tf * (BM25_K1 + 1.0) / (tf + norm)
        scores[~allowed] = 0.0
        return scores
