"""The pieces under semantic memory: the vector index, top-k and BM25."""

from __future__ import annotations

import math

import numpy as np
import pytest

from project_o.agent.embedding import DEFAULT_DIM
from project_o.agent.keyword import BM25_B, BM25_K1, KeywordIndex, terms
from project_o.agent.vectors import (
    CODE_BITS,
    CODE_WORDS,
    EXACT_MAX_ROWS,
    VectorIndex,
    code_planes,
    top_k,
)

DIM = 64


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _clustered(rng: np.random.Generator, count: int, clusters: int = 50) -> np.ndarray:
    """Unit vectors in tight-ish clusters, so many rows score alike (a hard case)."""
    centres = rng.standard_normal((clusters, DIM))
    members = centres[rng.integers(0, clusters, count)] + 0.6 * rng.standard_normal((count, DIM))
    return _unit(members)


def _exact(vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray) -> list[int]:
    scores = vectors.astype(np.float64) @ query
    scores[~allowed] = -np.inf
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def test_top_k_orders_best_first_and_breaks_ties_by_position() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.5], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 4, 0]
    assert top_k(scores, 4).tolist() == [1, 4, 0, 2]  # the tie at 4th place: lowest position
    assert top_k(scores, 10).tolist() == [1, 4, 0, 2, 5, 3]
    assert top_k(scores, 0).tolist() == []
    assert top_k(np.zeros(0, dtype=np.float32), 3).tolist() == []


def test_index_grows_by_doubling_and_keeps_every_row() -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng.standard_normal((3000, DIM)))
    index = VectorIndex(DIM)
    for start in range(0, 3000, 700):
        index.append(vectors[start : start + 700])
    assert len(index) == 3000
    np.testing.assert_array_equal(index.rows(), vectors)
    np.testing.assert_array_equal(index.codes(np.arange(3000)),
                                  _fresh_codes(vectors))  # appended in pieces = all at once


def _fresh_codes(vectors: np.ndarray) -> np.ndarray:
    index = VectorIndex(DIM)
    index.append(vectors)
    return index.codes(np.arange(len(vectors)))


def test_small_index_search_is_exact_and_respects_allowed() -> None:
    rng = np.random.default_rng(2)
    vectors = _clustered(rng, 2000)
    index = VectorIndex(DIM)
    index.append(vectors)
    allowed = rng.random(2000) < 0.5
    for query in _unit(rng.standard_normal((20, DIM))):
        rows, scores = index.search(query, 7, allowed)
        assert rows.tolist() == _exact(vectors, query, 7, allowed)
        assert all(allowed[rows])
        np.testing.assert_allclose(scores, vectors[rows] @ query, rtol=1e-6)


def test_large_index_two_stage_search_finds_the_exact_top_k() -> None:
    rng = np.random.default_rng(3)
    count = EXACT_MAX_ROWS + 10_000  # above the exact limit: SimHash, then rescoring
    vectors = _clustered(rng, count)
    index = VectorIndex(DIM)
    index.append(vectors)
    allowed = np.ones(count, dtype=bool)
    allowed[::3] = False
    queries = _unit(vectors[rng.integers(0, count, 30)] + 0.3 * rng.standard_normal((30, DIM)))
    found = 0
    for query in queries:
        rows, _ = index.search(query, 5, allowed)
        assert all(allowed[rows])
        found += len(set(rows.tolist()) & set(_exact(vectors, query, 5, allowed)))
    assert found / (5 * len(queries)) >= 0.95  # the recall@5 target (docs/design.md, "Targets")


def test_keep_compacts_rows_and_codes_in_order() -> None:
    rng = np.random.default_rng(4)
    vectors = _unit(rng.standard_normal((100, DIM)))
    index = VectorIndex(DIM)
    index.append(vectors)
    codes = index.codes(np.arange(100))
    keep = np.array([3, 10, 50, 99])
    index.keep(keep)
    assert len(index) == 4
    np.testing.assert_array_equal(index.rows(), vectors[keep])
    np.testing.assert_array_equal(index.codes(np.arange(4)), codes[keep])
    assert codes.shape == (100, CODE_WORDS)
    index.append(vectors[:1])
    assert len(index) == 5


def test_codes_given_on_append_are_used_as_they_are() -> None:
    rng = np.random.default_rng(5)
    vectors = _unit(rng.standard_normal((10, DIM)))
    codes = rng.integers(0, 2**63, (10, CODE_WORDS), dtype=np.uint64)
    index = VectorIndex(DIM)
    index.append(vectors, codes)
    np.testing.assert_array_equal(index.codes(np.arange(10)), codes)


# ------------------------------------------------------------------ BM25


DOCS = [
    "the cat sat on the mat",
    "the dog chased the cat around the garden",
    "dogs and cats and cats",
    "a report about quarterly revenue",
]


def _bm25_by_hand(query: str, docs: list[list[str]], row: int) -> float:
    """Lucene's BM25, straight from the formula."""
    average = sum(map(len, docs)) / len(docs)
    score = 0.0
    for term in set(terms(query)):
        df = sum(term in doc for doc in docs)
        if not df:
            continue
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        tf = docs[row].count(term)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(docs[row]) / average)
        score += idf * tf * (BM25_K1 + 1) / (tf + norm)
    return score


def test_bm25_scores_match_the_formula() -> None:
    index = KeywordIndex()
    docs = [terms(d) for d in DOCS]
    for row, doc in enumerate(docs):
        index.add(row, doc)
    allowed = np.ones(len(DOCS), dtype=bool)
    for query in ("cat", "cats dog", "quarterly report", "garden cat mat"):
        scores = index.search(terms(query), allowed)
        expected = [_bm25_by_hand(query, docs, row) for row in range(len(DOCS))]
        np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_bm25_removed_rows_leave_the_statistics() -> None:
    index = KeywordIndex()
    docs = [terms(d) for d in DOCS]
    for row, doc in enumerate(docs):
        index.add(row, doc)
    index.remove(1, docs[1])
    allowed = np.array([True, False, True, True])
    survivors = [docs[0], docs[2], docs[3]]
    scores = index.search(terms("cat dog"), allowed)
    assert scores[1] == 0.0
    expected = [_bm25_by_hand("cat dog", survivors, row) for row in range(3)]
    np.testing.assert_allclose(scores[[0, 2, 3]], expected, rtol=1e-5)


@pytest.mark.parametrize("query", ["", "the and of", "zebra"])
def test_bm25_without_matching_terms_scores_nothing(query: str) -> None:
    index = KeywordIndex()
    for row, doc in enumerate(DOCS):
        index.add(row, terms(doc))
    assert not index.search(terms(query), np.ones(len(DOCS), dtype=bool)).any()


def test_stores_share_one_read_only_copy_of_the_projections() -> None:
    # One copy per process: a zygote that makes it before forking shares it with its children.
    first, second = VectorIndex(DEFAULT_DIM), VectorIndex(DEFAULT_DIM)
    planes = code_planes(DEFAULT_DIM)
    assert first._planes is planes and second._planes is planes
    assert planes.shape == (CODE_BITS, DEFAULT_DIM)
    with pytest.raises(ValueError, match="read-only"):
        planes[0, 0] = 1.0
    assert code_planes(16).shape == (CODE_BITS, 16)
