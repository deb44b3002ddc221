"""Embedders: text in, unit vectors out, for semantic recall.

::

    "Alice's cat is named Tom"
        │ words()        nfkc, lower, split on non-letters, light stemming
        ▼
    alice cat is name tom
        │ features       w:alice  w:cat ...            word unigrams      (weight 1.0)
        │                b:alice cat  b:cat is ...     word bigrams       (weight 0.5)
        │                c:#al c:ali c:lic ...         char trigrams      (weight 0.2)
        ▼
    blake2b(feature) ─► bucket = h mod dim, sign = top bit    (feature hashing)
        ▼
    float32[dim], L2-normalised: cosine similarity is a dot product

:class:`HashingEmbedder` is the default: offline, no download, and the same
text gives the same vector in every process (a keyed hash would not, which is
why Python's salted ``hash()`` is never used). Other embedders plug in through
the :class:`Embedder` protocol; two adapters ship here, each importing its
library only when first used:

* :class:`SentenceTransformerEmbedder` (``pip install sentence-transformers``)
* :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint
  (``pip install 'project-o[llm]'``)

An embedder whose vectors a replay could not reproduce exactly and cheaply
(a remote model, a GPU) says ``deterministic = False``; the memory then
journals each vector with its text, so a replay never calls the model.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from project_o.errors import InvalidArgument

__all__ = [
    "DEFAULT_DIM",
    "STOPWORDS",
    "Embedder",
    "HashingEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "check_vectors",
    "embedder_from_spec",
    "normalise",
    "words",
]

#: Dimensions of the default embedder: the size of the small sentence-transformer
#: models (all-MiniLM-L6-v2), so either fills the same 1.5 KB per memory.
DEFAULT_DIM: Final = 384

# Feature weights: whole words carry the meaning, bigrams add word order,
# character trigrams catch inflections and typos the stemmer misses without
# drowning the words. On the labelled set (project_o.bench.memory_corpus)
# other choices in the same spirit changed top-5 recall by at most one question.
UNIGRAM_WEIGHT: Final = 1.0
BIGRAM_WEIGHT: Final = 0.5
TRIGRAM_WEIGHT: Final = 0.2
#: Stopwords still count (so "who" and "where" differ), but barely.
STOPWORD_WEIGHT: Final = 0.15
#: distinct features whose hash is kept; covers a large vocabulary at ~100 B each
FEATURE_CACHE_SIZE: Final = 1 << 18

#: Frequent English words that say little about what a memory is about.
STOPWORDS: Final = frozenset(
    str.split("""a about an and are as at be been but by can could did do does for from had has
    have he her him his how i if in into is it its me my of on or our she so than that
    the their them then there these they this those to was we were what when where which
    who whom why will with would you your""")
)

_WORD: Final = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """``text`` as lower-case, lightly stemmed words (one-letter words dropped)."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return [_stem(w) for w in _WORD.findall(folded) if len(w) > 1 or w.isdigit()]


def _stem(word: str) -> str:
    """Strip the commonest English inflections, so "lives" and "live" meet.

    Deliberately tiny (no Porter): a wrong stem costs a little recall, never
    correctness, and the character trigrams cover much of what it misses.
    """
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors for recall.

    ``name`` identifies the model (it is recorded in checkpoints, so vectors
    from another model are never mixed in); ``dim`` is the vector size;
    ``embed`` returns a ``(len(texts), dim)`` float32 array of L2-normalised
    rows. ``deterministic`` says a replay may re-embed instead of storing
    the vector.
    """

    @property
    def name(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def deterministic(self) -> bool: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class HashingEmbedder:
    """The offline default: feature hashing of words, word pairs and trigrams.

    Same text, same vector, in any process on any machine. It knows no
    synonyms ("car" and "automobile" do not meet); swap in a neural embedder
    where that matters. There is no IDF weighting on purpose: a vector must
    not depend on what else was remembered, or a replay would change it;
    corpus statistics live in keyword search (BM25).
    """

    deterministic: Final = True

    def __init__(self, dim: int = DEFAULT_DIM) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or not 16 <= dim <= 65_536:
            raise InvalidArgument(f"embedding dim must be an int in [16, 65536], got {dim!r}")
        self.dim = dim
        self.name = f"hashing-v1:{dim}"

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit row per text (an empty text gives the zero vector)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for bucket, value in self._features(text).items():
                out[row, bucket] = value
        return normalise(out)

    def _features(self, text: str) -> dict[int, float]:
        tokens = words(text)
        acc: dict[int, float] = {}
        for token in tokens:
            weight = STOPWORD_WEIGHT if token in STOPWORDS else UNIGRAM_WEIGHT
            _add(acc, _slot("w:" + token, self.dim), weight)
            padded = f"#{token}#"
            for i in range(len(padded) - 2):
                _add(acc, _slot("c:" + padded[i : i + 3], self.dim), TRIGRAM_WEIGHT)
        for first, second in itertools.pairwise(tokens):
            _add(acc, _slot(f"b:{first} {second}", self.dim), BIGRAM_WEIGHT)
        return acc


def _add(acc: dict[int, float], slot: tuple[int, float], weight: float) -> None:
    bucket, sign = slot
    acc[bucket] = acc.get(bucket, 0.0) + sign * weight


@lru_cache(maxsize=FEATURE_CACHE_SIZE)
def _slot(feature: str, dim: int) -> tuple[int, float]:
    """The bucket and sign of one feature: stable across processes (blake2b)."""
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    # The sign bit keeps colliding features from piling up in one direction,
    # so collisions add noise instead of bias (Weinberger et al., 2009).
    return digest % dim, -1.0 if digest >> 63 else 1.0


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    unit: np.ndarray = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return unit


def check_vectors(vectors: Any, count: int, dim: int, source: str) -> np.ndarray:
    """``vectors`` as a C-contiguous ``(count, dim)`` float32 array, or InvalidArgument."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.shape != (count, dim):
        raise InvalidArgument(
            f"{source} returned vectors of shape {array.shape}, expected ({count}, {dim})"
        )
    if not np.isfinite(array).all():
        raise InvalidArgument(f"{source} returned a vector with NaN or infinity")
    return array


class SentenceTransformerEmbedder:
    """A local `sentence-transformers` model (imported and loaded on first use)."""

    deterministic: Final = False  # GPU kernels and library versions may change the bits

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, device: str | None = None) -> None:
        self.model = model
        self.device = device
        self.name = f"sentence-transformers:{model}"
        self._model: Any = None

    @property
    def dim(self) -> int:
        """The model's output size (loads the model)."""
        return int(self._load().get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` with the model; unit rows."""
        raw = self._load().encode(list(texts), convert_to_numpy=True, show_progress_bar=False)
        return normalise(check_vectors(raw, len(texts), self.dim, self.name))

    def _load(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise InvalidArgument(
                    "SentenceTransformerEmbedder needs the sentence-transformers package: "
                    "pip install sentence-transformers (or use the default HashingEmbedder)"
                ) from exc
            self._model = SentenceTransformer(self.model, device=self.device)
        return self._model


#: output sizes of OpenAI's embedding models, so ``dim`` is known without a call
OPENAI_MODEL_DIMS: Final = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint, through the ``openai`` SDK.

    ``dim`` is required for models not in :data:`OPENAI_MODEL_DIMS`; for the
    ``text-embedding-3`` models it is also sent as ``dimensions`` to shorten
    the vectors. ``client`` may be a ready ``openai.OpenAI``; otherwise one
    is made from ``base_url``/``api_key`` (the SDK falls back to
    ``OPENAI_BASE_URL``/``OPENAI_API_KEY``).
    """

    deterministic: Final = False  # a remote model: a replay must not depend on it

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        dim: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        client: Any = None,
    ) -> None:
        known = OPENAI_MODEL_DIMS.get(model)
        if dim is None and known is None:
            raise InvalidArgument(
                f"OpenAIEmbedder does not know the size of {model!r}; pass dim=<its output size>"
            )
        self.model = model
        self.dim = int(dim if dim is not None else known)  # type: ignore[arg-type]
        self.name = f"openai:{model}:{self.dim}"
        self._shorten = dim is not None and model.startswith("text-embedding-3")
        self._base_url, self._api_key, self._timeout_s = base_url, api_key, timeout_s
        self._client = client

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One request for all ``texts``; unit rows in input order."""
        extra = {"dimensions": self.dim} if self._shorten else {}
        reply = self._load().embeddings.create(model=self.model, input=list(texts), **extra)
        ordered = sorted(reply.data, key=lambda item: item.index)
        raw = [item.embedding for item in ordered]
        return normalise(check_vectors(raw, len(texts), self.dim, f"{self.name} endpoint"))

    def _load(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise InvalidArgument(
                    "OpenAIEmbedder needs the openai package: pip install 'project-o[llm]'"
                ) from exc
            self._client = openai.OpenAI(base_url=self._base_url, api_key=self._api_key,
                                         timeout=self._timeout_s)
        return self._client


def embedder_from_spec(spec: str | None) -> Embedder:
    """An embedder from a short text spec (for config files and the CLI).

    ``None``/``"hashing"``/``"hashing:256"``: :class:`HashingEmbedder`;
    ``"sentence-transformers:MODEL"``; ``"openai:MODEL"`` or
    ``"openai:MODEL:DIM"`` (endpoint and key from ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY``).
    """
    kind, _, rest = (spec or "hashing").partition(":")
    if kind == "hashing":
        return HashingEmbedder(_int(rest, spec) if rest else DEFAULT_DIM)
    if kind == "sentence-transformers" and rest:
        return SentenceTransformerEmbedder(rest)
    if kind == "openai" and rest:
        model, _, dim = rest.partition(":")
        return OpenAIEmbedder(model, dim=_int(dim, spec) if dim else None)
    raise InvalidArgument(
        f"unknown embedder spec {spec!r}; expected 'hashing[:DIM]', "
        "'sentence-transformers:MODEL' or 'openai:MODEL[:DIM]'"
    )


def _int(text: str, spec: str | None) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"embedder spec {spec!r}: {text!r} is not a size") from None

