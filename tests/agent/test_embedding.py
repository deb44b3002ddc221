"""Embedders: the offline default, the spec parser and the optional adapters."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest

from project_o.agent.embedding import (
    DEFAULT_DIM,
    Embedder,
    HashingEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    check_vectors,
    embedder_from_spec,
    words,
)
from project_o.errors import InvalidArgument

TEXTS = ["Alice's favourite colour is teal.", "Bob is allergic to peanuts.", "ünïcödé ﬁle"]


def test_the_same_text_gives_the_same_bits_in_another_process() -> None:
    here = HashingEmbedder().embed(TEXTS).tobytes().hex()
    script = (
        "from project_o.agent.embedding import HashingEmbedder; "
        f"print(HashingEmbedder().embed({TEXTS!r}).tobytes().hex())"
    )
    for seed in ("1", "2"):  # Python's str hash differs per seed; ours must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        there = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        assert there == here


def test_rows_are_unit_float32_vectors_of_the_chosen_size() -> None:
    for dim in (DEFAULT_DIM, 128):
        vectors = HashingEmbedder(dim).embed(TEXTS)
        assert vectors.shape == (3, dim) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_a_text_without_words_is_the_zero_vector() -> None:
    vectors = HashingEmbedder().embed(["", "!!! ---", "ok"])
    assert not vectors[0].any() and not vectors[1].any() and vectors[2].any()
    assert HashingEmbedder().embed([]).shape == (0, DEFAULT_DIM)


def test_related_texts_are_closer_than_unrelated_ones() -> None:
    fact, question, other = HashingEmbedder().embed(
        ["Carol lives in Lisbon with her cats.", "Where does Carol live?",
         "The quarterly report is due in March."]
    )
    assert fact @ question > 0.3
    assert fact @ question > fact @ other + 0.2


def test_words_fold_case_and_unicode_and_strip_common_endings() -> None:
    assert words("The CATS' Lives, running!") == ["the", "cat", "live", "runn"]
    assert words("ﬁle Ünïcode 42 a") == ["file", "ünïcode", "42"]
    assert words("studies glass bus") == ["study", "glass", "bus"]


def test_the_default_embedder_satisfies_the_protocol() -> None:
    embedder = HashingEmbedder()
    assert isinstance(embedder, Embedder)
    assert embedder.deterministic is True
    assert embedder.name == f"hashing-v1:{DEFAULT_DIM}"


@pytest.mark.parametrize("dim", [0, 8, 10**6, 3.5, True])
def test_a_bad_size_is_refused(dim: Any) -> None:
    with pytest.raises(InvalidArgument, match="dim"):
        HashingEmbedder(dim)


def test_specs_name_embedders() -> None:
    assert embedder_from_spec(None).name == embedder_from_spec("").name == "hashing-v1:384"
    assert embedder_from_spec("hashing:256").dim == 256
    openai_embedder = embedder_from_spec("openai:text-embedding-3-small:512")
    assert isinstance(openai_embedder, OpenAIEmbedder) and openai_embedder.dim == 512
    sentence = embedder_from_spec("sentence-transformers:all-MiniLM-L6-v2")
    assert isinstance(sentence, SentenceTransformerEmbedder)
    assert sentence.name == "sentence-transformers:all-MiniLM-L6-v2"


@pytest.mark.parametrize("spec", ["word2vec", "openai", "hashing:big", "openai:m:x"])
def test_unknown_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        embedder_from_spec(spec)


def test_check_vectors_refuses_bad_shapes_and_nan() -> None:
    with pytest.raises(InvalidArgument, match="shape"):
        check_vectors(np.zeros((2, 3)), 2, 4, "model")
    with pytest.raises(InvalidArgument, match="NaN"):
        check_vectors(np.full((1, 4), np.nan), 1, 4, "model")


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None,
                    reason="sentence-transformers is installed")
def test_sentence_transformers_missing_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument, match="pip install sentence-transformers"):
        SentenceTransformerEmbedder().embed(["hello"])


# ------------------------------------------- OpenAI-compatible, on a local server


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    """POST /v1/embeddings: vector i = [i+1, 1, 0, ...], answered in reverse order."""

    dim = 8
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:  # the name http.server calls
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, **body})
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(i + 1), 1.0] + [0.0] * (self.dim - 2)}
                for i in range(len(body["input"]))]
        reply = json.dumps({"object": "list", "data": data[::-1], "model": body["model"],
                            "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    _EmbeddingsHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_embedder_against_a_local_server(embeddings_server: str) -> None:
    pytest.importorskip("openai")
    embedder = OpenAIEmbedder("text-embedding-3-small", dim=8, base_url=embeddings_server,
                              api_key="test-key")
    vectors = embedder.embed(["first", "second"])
    expected = np.array([[1, 1], [2, 1]], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[:, :2], expected, rtol=1e-6)  # reordered by index
    assert not vectors[:, 2:].any()
    (sent,) = _EmbeddingsHandler.requests
    assert sent["path"] == "/v1/embeddings" and sent["input"] == ["first", "second"]
    assert sent["model"] == "text-embedding-3-small" and sent["dimensions"] == 8
    assert embedder.deterministic is False  # so memory journals its vectors


def test_openai_embedder_refuses_vectors_of_the_wrong_size(embeddings_server: str) -> None:
    pytest.importorskip("openai")
    embedder = OpenAIEmbedder("my-model", dim=16, base_url=embeddings_server, api_key="k")
    with pytest.raises(InvalidArgument, match="expected"):
        embedder.embed(["x"])
    assert "dimensions" not in _EmbeddingsHandler.requests[0]  # only text-embedding-3 takes it


def test_openai_embedder_needs_the_size_of_a_model_it_does_not_know() -> None:
    with pytest.raises(InvalidArgument, match="dim="):
        OpenAIEmbedder("my-model")
    assert OpenAIEmbedder("text-embedding-3-large").dim == 3072
