"""LLM rewrite: prompts without secrets, SEARCH/REPLACE parsing and exact application."""

from __future__ import annotations

import random
import secrets
from typing import Any

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome
from project_o.evolution.operators import (
    LLMRewrite,
    RewriteBrief,
    SearchReplace,
    apply_search_replace,
    build_prompt,
    parse_search_replace,
    redact,
)
from tests.evolution.samples import AGENT, sample

FIX = '''I will make long facts count less.

agent.py
```python
<<<<<<< SEARCH
    return hits / (len(fact.split()) + 1.0) * 2
=======
    return hits / (len(fact.split()) + 2.0) * 2
>>>>>>> REPLACE
```
'''


class ScriptedChat:
    """A chat client that answers from a script and keeps what it was sent."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.sent: list[list[dict[str, str]]] = []

    def chat(self, messages: list[dict[str, str]]) -> str:
        self.sent.append(messages)
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply  # type: ignore[no-any-return]


def _prompt_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages)


# -- parsing ------------------------------------------------------------


def test_parse_blocks_with_paths_fences_and_prose() -> None:
    reply = (
        "Two changes.\n\n**memory.py**\n```python\n<<<<<<< SEARCH\na = 1\n=======\na = 2\n"
        ">>>>>>> REPLACE\n```\n\nAnd then:\n\n```\n<<<<<<< SEARCH\nb = 1\nc = 1\n=======\n"
        ">>>>>>> REPLACE\n```\n`pkg/util.py`:\n<<<<<<< SEARCH\n=======\nNEW = True\n"
        ">>>>>>> REPLACE\n"
    )
    assert parse_search_replace(reply) == [
        SearchReplace("memory.py", "a = 1\n", "a = 2\n"),
        SearchReplace("memory.py", "b = 1\nc = 1\n", ""),  # path carried over; empty replace
        SearchReplace("pkg/util.py", "", "NEW = True\n"),
    ]


def test_parse_accepts_crlf_and_marker_lengths_from_five_to_nine() -> None:
    reply = "x.py\r\n<<<<< SEARCH\r\nold\r\n=========\r\nnew\r\n>>>>>>>>> REPLACE\r\n"
    assert parse_search_replace(reply) == [SearchReplace("x.py", "old\n", "new\n")]


def test_parse_without_a_path_leaves_it_open() -> None:
    reply = "Here is my fix:\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n"
    assert parse_search_replace(reply) == [SearchReplace(None, "old\n", "new\n")]


@pytest.mark.parametrize("reply, message", [
    ("Sorry, I cannot help with that.", "no SEARCH/REPLACE block"),
    ("<<<<<<< SEARCH\nold\n", "not terminated"),
    ("<<<<<<< SEARCH\nold\n=======\nnew\n", "not terminated"),
    ("<<<<<<< SEARCH\nold\n>>>>>>> REPLACE\n", "not terminated"),
    ("<<<<<<< SEARCH\nold\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "block 1"),
])
def test_malformed_replies_are_refused(reply: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_search_replace(reply)


# -- applying -----------------------------------------------------------


def test_apply_replaces_the_one_exact_match() -> None:
    sources = {"a.py": "x = 1\ny = 2\n", "b.py": "z = 3\n"}
    out = apply_search_replace(sources, [SearchReplace("a.py", "y = 2\n", "y = 20\n"),
                                         SearchReplace(None, "z = 3\n", "z = 30\n")])
    assert out == {"a.py": "x = 1\ny = 20\n", "b.py": "z = 30\n"}
    assert sources == {"a.py": "x = 1\ny = 2\n", "b.py": "z = 3\n"}  # input untouched


def test_later_blocks_see_earlier_edits() -> None:
    out = apply_search_replace({"a.py": "x = 1\n"}, [SearchReplace("a.py", "x = 1\n", "x = 2\n"),
                                                     SearchReplace("a.py", "x = 2\n", "x = 3\n")])
    assert out == {"a.py": "x = 3\n"}


def test_a_file_without_final_newline_matches_its_last_line() -> None:
    block = SearchReplace("a.py", "y = 2\n", "y = 3\n")
    out = apply_search_replace({"a.py": "x = 1\ny = 2"}, [block])
    assert out == {"a.py": "x = 1\ny = 3"}


@pytest.mark.parametrize("block, message", [
    (SearchReplace("a.py", "x = 9\n", "x = 0\n"), "matches nowhere"),
    (SearchReplace("a.py", "x = 1 \n", "x = 0\n"), "matches nowhere"),  # whitespace counts
    (SearchReplace("a.py", "pass\n", "return\n"), "matches 2 places"),
    (SearchReplace("c.py", "x = 1\n", ""), "not one of the agent's files"),
    (SearchReplace("a.py", "", "x = 0\n"), "empty SEARCH for the existing file"),
    (SearchReplace(None, "pass\n", ""), "names no file"),
])
def test_apply_refuses_what_does_not_match_exactly(block: SearchReplace, message: str) -> None:
    sources = {"a.py": "x = 1\nif x:\n    pass\nelse:\n    pass\n", "b.py": "pass\n"}
    with pytest.raises(InvalidArgument, match=message):
        apply_search_replace(sources, [block])


# -- prompts --------------------------------------------------------------


def test_prompt_never_carries_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    planted = {
        "OPENAI_API_KEY": "sk-" + secrets.token_hex(24),
        "PROJECT_O_PLANTED_SECRET": "planted-" + secrets.token_hex(16),
        "DATABASE_URL": "postgres://admin:" + secrets.token_hex(8) + "@db/prod",
        "HOME": "/home/planted-" + secrets.token_hex(6),
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    source = AGENT + '\nimport os\nKEY = os.environ["OPENAI_API_KEY"]\n'
    brief = RewriteBrief(
        hypothesis="search is slow; cache the word sets",
        metrics={"latency_p95_ms": 120.5, "error_rate": 0.02},
        failures=[f"RuntimeError: bad reply (OPENAI_API_KEY={planted['OPENAI_API_KEY']})",
                  "TimeoutError: deadline passed"],
    )
    text = _prompt_text(build_prompt(Genome({"agent.py": source}), brief))
    for value in planted.values():
        assert value not in text
    assert 'os.environ["OPENAI_API_KEY"]' in text  # code naming a variable is fine
    assert "cache the word sets" in text and "latency_p95_ms" in text
    assert "TimeoutError: deadline passed" in text


def test_the_prompt_shows_code_params_and_evolvable_functions() -> None:
    text = _prompt_text(build_prompt(sample(top_k=7)))
    assert AGENT in text
    assert "top_k: 7  (default 5, low 1, high 20)" in text
    assert "agent.py:score" in text and "agent.py:rank" in text
    assert "<<<<<<< SEARCH" in text  # the format is explained


def test_files_that_do_not_fit_are_named_not_sent() -> None:
    big = Genome({"agent.py": AGENT, "zdata.py": "X = 1\n" * 5000})
    text = _prompt_text(build_prompt(big, max_chars=12_000))
    assert AGENT in text and "X = 1\nX = 1" not in text
    assert "left out for length: zdata.py" in text


@pytest.mark.parametrize("secret", [
    "sk-proj-" + "a1B2" * 8,
    "ghp_" + "x" * 36,
    "AKIA" + "ABCDEFGHIJKLMNOP",
    "xoxb-123456789012-abcdef",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIabc\n-----END RSA PRIVATE KEY-----",
])
def test_token_shaped_secrets_are_masked(secret: str) -> None:
    assert secret not in redact(f"before {secret} after")
    assert "before" in redact(f"before {secret} after")


def test_secret_assignments_are_masked_in_text_but_code_is_left_quotable() -> None:
    assert redact("failed with API_KEY=hunter2hunter2 and password: 's3cret'") == \
        "failed with API_KEY=[REDACTED] and password: '[REDACTED]'"
    code = "api_key = settings.key\n"
    assert redact(code, assignments=False) == code


# -- the operator ---------------------------------------------------------


def test_rewrite_applies_the_models_edit() -> None:
    chat = ScriptedChat(FIX)
    operator = LLMRewrite(chat, RewriteBrief(hypothesis="long facts win too often"))
    parent = sample()
    child = operator.apply(parent, random.Random(0))
    assert child is not None, operator.last_reason
    assert "(len(fact.split()) + 2.0) * 2" in child.sources["agent.py"]
    assert child.parents == (parent.id,) and child.operator == "llm_rewrite"
    assert child.details["files"] == ["agent.py"] and child.details["blocks"] == 1
    assert child.details["rationale"].startswith("I will make long facts count less.")
    assert "long facts win too often" in _prompt_text(chat.sent[0])


def test_a_plain_callable_is_a_client_too() -> None:
    child = LLMRewrite(lambda messages: FIX).apply(sample(), random.Random(0))
    assert child is not None


@pytest.mark.parametrize("reply, reason", [
    (FIX.replace("+ 1.0) * 2\n=", "+ 1.5) * 2\n="), "matches nowhere"),
    (FIX.replace("+ 2.0) * 2", "+ 2.0) *"), "does not compile"),
    ("I think the code is fine.", "no SEARCH/REPLACE block"),
    (ConnectionError("model server down"), "chat client failed: ConnectionError"),
    (None, "returned NoneType"),
    (FIX.replace("+ 2.0) * 2", "+ 1.0) * 2"), "identical"),
    ("../../evil.py\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n", "plain relative path"),
])
def test_bad_replies_are_rejected_with_a_reason(reply: Any, reason: str) -> None:
    operator = LLMRewrite(ScriptedChat(reply))
    assert operator.apply(sample(), random.Random(0)) is None
    assert reason in operator.last_reason and operator.last_reason.startswith("llm_rewrite:")


def test_a_new_file_can_be_added() -> None:
    reply = ("helpers.py\n<<<<<<< SEARCH\n=======\ndef double(x):\n    return 2 * x\n"
             ">>>>>>> REPLACE\n")
    child = LLMRewrite(ScriptedChat(reply)).apply(sample(), random.Random(0))
    assert child is not None and child.sources["helpers.py"] == "def double(x):\n    return 2 * x\n"
