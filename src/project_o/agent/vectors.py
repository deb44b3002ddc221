"""Memory vectors and how recall searches them: exact when small, two-stage when large.

::

    vectors  float32[capacity, dim]     row r = the unit vector of store row r;
                                        doubles when full (n appends: O(n) copies)
    codes    uint64[words, capacity]    row r's 768-bit SimHash, one 64-bit word per
                                        line (sign of 768 fixed random projections)

    search(query, k, allowed):
      allowed rows <= EXACT_MAX_ROWS:   scores = vectors[allowed] @ query       exact
      more:                             1. hamming = popcount(codes ^ code(query)),
                                           word by word over all rows          ~1 ms / 100k
                                        2. the RERANK rows nearest in hamming
                                        3. their exact scores (rows gathered) ─► top k

Why two stages: an exact scan reads every vector, 150 MB for 100k memories
of 384 dims, so memory bandwidth bounds it at 6-20 ms on a 2-core machine,
and far worse when other processes share the cores. The codes are 96
bytes per memory (10 MB per 100k) and the hamming distance between two
codes estimates the angle between their vectors (Charikar 2002: each bit
differs with probability angle/pi), well enough that the true top 5 is
almost always among the 1,000 nearest codes; the exact rerank then orders
them. ``project-o bench memory`` measures recall@5 against an exact search
in the same run. The projections come from a fixed seed, so a store and
its replay hold the same codes and give the same answers.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np

__all__ = [
    "CODE_BITS",
    "CODE_WORDS",
    "EXACT_MAX_ROWS",
    "RERANK",
    "VectorIndex",
    "code_planes",
    "code_scheme",
    "top_k",
]

#: rows allocated at first (1.5 MB at 384 dims): small agents stay small
INITIAL_CAPACITY: Final = 1024
#: SimHash bits per memory. 384 bits missed ~1% of true top-5 results on the
#: bench's queries at 100k, 768 none; each 64 bits cost ~0.1 ms per 100k rows.
CODE_BITS: Final = 768
CODE_WORDS: Final = CODE_BITS // 64
#: seed of the random projections (changing it changes every stored code)
CODE_SEED: Final = 0x0_0C0DE5
#: at most this many candidate rows, an exact scan is as fast as two stages
EXACT_MAX_ROWS: Final = 20_000
#: rows the second stage rescores exactly (a gather of 1.5 MB at 384 dims)
RERANK: Final = 1000
#: below this share of rows, gather the allowed rows instead of scanning all
GATHER_SHARE: Final = 1 / 4


class VectorIndex:
    """Unit vectors by row, with their SimHash codes."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._planes = code_planes(dim)
        self._vectors = np.zeros((INITIAL_CAPACITY, dim), dtype=np.float32)
        self._codes = np.zeros((CODE_WORDS, INITIAL_CAPACITY), dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, vectors: np.ndarray, codes: np.ndarray | None = None) -> None:
        """Add ``vectors`` (``(m, dim)``) as the next ``m`` rows.

        ``codes`` (``(m, CODE_WORDS)`` uint64, as :meth:`codes` returned them
        under the same :func:`code_scheme`) saves computing them again.
        """
        needed = self._count + len(vectors)
        if needed > len(self._vectors):
            self._grow(max(needed, 2 * len(self._vectors)))
        self._vectors[self._count : needed] = vectors
        self._codes[:, self._count : needed] = self._code(vectors) if codes is None else codes.T
        self._count = needed

    def codes(self, which: np.ndarray) -> np.ndarray:
        """The codes of rows ``which`` as ``(m, CODE_WORDS)`` uint64."""
        return np.ascontiguousarray(self._codes[:, which].T)

    def _grow(self, capacity: int) -> None:
        vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        vectors[: self._count] = self._vectors[: self._count]
        codes = np.zeros((len(self._codes), capacity), dtype=np.uint64)
        codes[:, : self._count] = self._codes[:, : self._count]
        self._vectors, self._codes = vectors, codes

    def _code(self, vectors: np.ndarray) -> np.ndarray:
        """SimHash codes of ``vectors`` as ``(words, m)`` uint64."""
        bits = np.packbits(vectors @ self._planes.T > 0, axis=1)
        return np.ascontiguousarray(bits).view(np.uint64).T

    def zero(self, row: int) -> None:
        """Clear one vector (a forgotten memory keeps its row until compaction)."""
        self._vectors[row] = 0.0

    def rows(self, which: np.ndarray | None = None) -> np.ndarray:
        """The vectors (all, or those at ``which``) as a ``(m, dim)`` copy."""
        return self._vectors[: self._count].copy() if which is None else self._vectors[which]

    def keep(self, which: np.ndarray) -> None:
        """Keep only the rows ``which`` (in that order), releasing the rest."""
        vectors, codes = self._vectors[which], self._codes[:, which]
        self._count = 0
        self._vectors = np.zeros((max(INITIAL_CAPACITY, 2 * len(which)), self.dim), np.float32)
        self._codes = np.zeros((len(codes), len(self._vectors)), dtype=np.uint64)
        self._vectors[: len(which)], self._codes[:, : len(which)] = vectors, codes
        self._count = len(which)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        """The ``k`` best rows among ``allowed`` (bool per row), best first: (rows, scores)."""
        count = int(np.count_nonzero(allowed))
        if count == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if count <= EXACT_MAX_ROWS:
            candidates = np.flatnonzero(allowed) if count < GATHER_SHARE * self._count else None
        else:
            candidates = self._nearest_codes(query, max(RERANK, k), allowed)
        if candidates is None:  # most rows are allowed: one streamed scan, then mask
            scores = self._vectors[: self._count] @ query
            scores[~allowed] = -np.inf
            best = top_k(_settled(scores), min(k, count))
            return best, scores[best]
        scores = self._vectors[candidates] @ query
        best = top_k(_settled(scores), k)
        return candidates[best], scores[best]

    def _nearest_codes(self, query: np.ndarray, count: int, allowed: np.ndarray) -> np.ndarray:
        """The ``count`` allowed rows whose codes are nearest the query's (sorted rows)."""
        code = self._code(query[None, :])[:, 0]
        distance = np.zeros(self._count, dtype=np.uint16)
        scratch = np.empty(self._count, dtype=np.uint64)
        for word, value in zip(self._codes[:, : self._count], code, strict=True):
            # word by word over contiguous lines: no (rows x words) temporary
            np.bitwise_xor(word, value, out=scratch)
            distance += np.bitwise_count(scratch)
        distance[~allowed] = CODE_BITS + 1
        return np.sort(top_k(-distance.astype(np.int32), count))


@functools.cache
def code_planes(dim: int) -> np.ndarray:
    """The ``(CODE_BITS, dim)`` SimHash projections: one read-only copy per process.

    1.2 MB at 384 dims, the same in every store (a fixed seed). Made once
    and never written, so a process that makes them before it forks (the
    zygote does) shares its copy with every child instead of each child
    drawing its own (and importing ``numpy.random`` to do it).
    """
    rng = np.random.default_rng(CODE_SEED)
    planes = rng.standard_normal((CODE_BITS, dim)).astype(np.float32)
    planes.flags.writeable = False
    return planes


def code_scheme(dim: int) -> str:
    """Names how codes are made for ``dim``: saved codes of another scheme are remade."""
    return f"simhash-{CODE_BITS}-{CODE_SEED}-{dim}"


#: decimals kept of a similarity before ranking
SCORE_DECIMALS = 5


def _settled(scores: np.ndarray) -> np.ndarray:
    """Scores rounded below float32 noise, to rank by (the exact ones are returned).

    BLAS may sum a row in a different order depending on where the row sits
    in memory, so equal vectors can score a few ulps apart; rounding lets
    ties fall back to row order (insertion order) wherever the row lives,
    so a live store, a replayed one and a restored one rank alike.
    """
    return np.round(scores, SCORE_DECIMALS)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest ``scores``, best first; ties go to the lower position.

    Ties are settled by position even across the k-th place (argpartition
    alone picks among equal scores arbitrarily), so a store and its replay
    answer alike.
    """
    if k <= 0 or len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    if k < len(scores):
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        above = np.flatnonzero(scores > kth)
        picked = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    else:
        picked = np.arange(len(scores))
    return picked[np.lexsort((picked, -scores[picked]))]
