"""LLMConfig: from the environment, handed over explicitly, the key kept out of sight."""

from __future__ import annotations

import pytest

from project_o.errors import InvalidArgument
from project_o.llm.config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    LLMConfig,
)
from project_o.runtime.sandbox import scrubbed_env

KEY = "sk-config-secret-42"


def test_nothing_configured_is_none() -> None:
    assert LLMConfig.from_env({}) is None
    assert LLMConfig.from_env({"PROJECT_O_LLM_BASE_URL": "  ", "PATH": "/bin"}) is None


def test_project_variables_are_read() -> None:
    config = LLMConfig.from_env({
        "PROJECT_O_LLM_BASE_URL": "http://127.0.0.1:8000/v1",
        "PROJECT_O_LLM_API_KEY": KEY,
        "PROJECT_O_LLM_MODEL": "llama-3",
        "PROJECT_O_LLM_TIMEOUT": "2.5",
        "PROJECT_O_LLM_MAX_RETRIES": "0",
    })
    assert config == LLMConfig(model="llama-3", base_url="http://127.0.0.1:8000/v1",
                               api_key=KEY, timeout=2.5, max_retries=0)


def test_openai_variables_are_fallbacks_and_ours_win() -> None:
    only_openai = LLMConfig.from_env({"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "https://x/v1"})
    assert only_openai is not None
    assert (only_openai.api_key, only_openai.base_url) == (KEY, "https://x/v1")
    assert only_openai.model == DEFAULT_MODEL
    assert (only_openai.timeout, only_openai.max_retries) == (DEFAULT_TIMEOUT,
                                                              DEFAULT_MAX_RETRIES)
    both = LLMConfig.from_env({"OPENAI_API_KEY": "theirs", "PROJECT_O_LLM_API_KEY": KEY})
    assert both is not None and both.api_key == KEY


@pytest.mark.parametrize("env", [
    {"PROJECT_O_LLM_BASE_URL": "ftp://nope"},
    {"PROJECT_O_LLM_MODEL": "m", "PROJECT_O_LLM_TIMEOUT": "soon"},
    {"PROJECT_O_LLM_MODEL": "m", "PROJECT_O_LLM_TIMEOUT": "-1"},
    {"PROJECT_O_LLM_MODEL": "m", "PROJECT_O_LLM_MAX_RETRIES": "-2"},
], ids=["scheme", "timeout-text", "timeout-negative", "retries-negative"])
def test_bad_settings_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument, match="PROJECT_O_LLM|LLM"):
        LLMConfig.from_env(env)


def test_the_key_is_not_in_repr_or_describe_but_survives_a_handover() -> None:
    config = LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    assert KEY not in repr(config)
    assert KEY not in str(config.describe()) and config.describe()["api_key"] == "set"
    assert LLMConfig.from_dict(config.to_dict()) == config
    assert LLMConfig.from_env(config.to_env()) == config
    assert config.redact(f"key={KEY}!") == "key=***!"


def test_the_scrubbed_instance_environment_drops_it_unless_handed_over() -> None:
    config = LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    parent = {"PATH": "/bin", **config.to_env()}
    assert LLMConfig.from_env(scrubbed_env(source=parent)) is None
    handed = scrubbed_env(source=parent, extra=config.to_env())
    assert LLMConfig.from_env(handed) == config


def test_from_dict_rejects_unknown_settings() -> None:
    with pytest.raises(InvalidArgument, match="unknown LLM settings"):
        LLMConfig.from_dict({"model": "m", "temperature": 0.1})
