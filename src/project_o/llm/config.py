"""Where the LLM is and how patiently to talk to it: :class:`LLMConfig`.

::

    environment (supervisor side)            LLMConfig (supervisor)       instance
    PROJECT_O_LLM_BASE_URL | OPENAI_BASE_URL ─► base_url    (stays here)
    PROJECT_O_LLM_API_KEY  | OPENAI_API_KEY  ─► api_key     (stays here)
    PROJECT_O_LLM_MODEL                      ─► model       ─ for_instances() ─► the fork config:
    PROJECT_O_LLM_TIMEOUT, _MAX_RETRIES      ─► timeout, max_retries              model, tool rounds

Nothing configured (no base URL, no key, no model) means no LLM:
:meth:`LLMConfig.from_env` returns None, ``ctx.llm`` is None and agents
say so plainly instead of inventing an answer.

Instances never get the endpoint or the key: their ``ctx.llm`` sends each
completion to the supervisor, which makes it with this configuration
(``supervisor/llm_proxy.py``). The key is kept out of ``repr`` and out of
every error message and journal entry.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

from project_o.errors import InvalidArgument

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_TOOL_STEPS",
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_MAX_RETRIES",
    "ENV_MODEL",
    "ENV_TIMEOUT",
    "LLMConfig",
]

ENV_BASE_URL: Final = "PROJECT_O_LLM_BASE_URL"
ENV_API_KEY: Final = "PROJECT_O_LLM_API_KEY"
ENV_MODEL: Final = "PROJECT_O_LLM_MODEL"
ENV_TIMEOUT: Final = "PROJECT_O_LLM_TIMEOUT"
ENV_MAX_RETRIES: Final = "PROJECT_O_LLM_MAX_RETRIES"
#: what the openai SDK itself reads, honoured when ours are not set
_FALLBACKS: Final = {ENV_BASE_URL: "OPENAI_BASE_URL", ENV_API_KEY: "OPENAI_API_KEY"}

#: used when only a key is given (the OpenAI API itself): a small, cheap chat
#: model. Local servers name their models freely: set PROJECT_O_LLM_MODEL.
DEFAULT_MODEL: Final = "gpt-4o-mini"
#: seconds per HTTP operation (connect, each read). The SDK's own default is
#: 600 s, which hides a hung server from a request with a deadline.
DEFAULT_TIMEOUT: Final = 60.0
#: retries after the first attempt: the openai SDK's own default
DEFAULT_MAX_RETRIES: Final = 2
#: first backoff (seconds); doubles per retry, with jitter, up to the maximum
DEFAULT_BACKOFF_BASE: Final = 0.5
#: longest wait between two attempts, Retry-After headers included
DEFAULT_BACKOFF_MAX: Final = 8.0
#: tool rounds (model asks, tools answer) before a chat gives up: enough for
#: look-up-then-compute chains, short of a model stuck calling in a loop
DEFAULT_MAX_TOOL_STEPS: Final = 8
#: sent as the key to servers that want none (the SDK insists on some key)
NO_KEY: Final = "no-key"


@dataclass(frozen=True)
class LLMConfig:
    """An OpenAI-compatible chat endpoint and the client's patience with it.

    ``base_url`` None means the OpenAI API; ``api_key`` None means the
    server wants none. The key never shows in ``repr``.
    """

    model: str = DEFAULT_MODEL
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_MAX
    max_tool_steps: int = DEFAULT_MAX_TOOL_STEPS

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidArgument(f"the LLM model must be a non-empty str, got {self.model!r}; "
                                  f"set {ENV_MODEL}")
        if self.base_url is not None and not _is_http_url(self.base_url):
            raise InvalidArgument(f"the LLM base URL must start with http:// or https://, got "
                                  f"{self.base_url!r}; set {ENV_BASE_URL}")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise InvalidArgument("the LLM API key must be a str")
        _check_positive("timeout", self.timeout)
        _check_positive("backoff_base", self.backoff_base)
        _check_positive("backoff_max", self.backoff_max)
        _check_count("max_retries", self.max_retries, minimum=0)
        _check_count("max_tool_steps", self.max_tool_steps, minimum=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LLMConfig | None:
        """The configuration in ``env`` (default ``os.environ``), or None if there is none."""
        env = os.environ if env is None else env
        base_url = _lookup(env, ENV_BASE_URL)
        api_key = _lookup(env, ENV_API_KEY)
        model = _lookup(env, ENV_MODEL)
        if base_url is None and api_key is None and model is None:
            return None
        return cls(
            model=model or DEFAULT_MODEL,
            base_url=base_url,
            api_key=api_key,
            timeout=_parse(env, ENV_TIMEOUT, float, DEFAULT_TIMEOUT),
            max_retries=_parse(env, ENV_MAX_RETRIES, int, DEFAULT_MAX_RETRIES),
        )

    def to_env(self) -> dict[str, str]:
        """The ``PROJECT_O_LLM_*`` variables :meth:`from_env` reads back (key included)."""
        env = {ENV_MODEL: self.model, ENV_TIMEOUT: repr(self.timeout),
               ENV_MAX_RETRIES: str(self.max_retries)}
        if self.base_url is not None:
            env[ENV_BASE_URL] = self.base_url
        if self.api_key is not None:
            env[ENV_API_KEY] = self.api_key
        return env

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LLMConfig:
        """Build from :meth:`to_dict`'s output; unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgument(f"unknown LLM settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every setting, the key included: for a private channel, never for a log."""
        return asdict(self)

    def for_instances(self) -> dict[str, Any]:
        """What an instance is told: the model and its tool rounds, no endpoint and no key.

        Instances reach the model only through the supervisor
        (``llm_call`` frames), so agent code never holds the key.
        """
        return {"model": self.model, "max_tool_steps": self.max_tool_steps}

    def describe(self) -> dict[str, Any]:
        """The settings safe to show (status pages, logs): the key only as present or not."""
        shown = self.to_dict()
        shown["api_key"] = "set" if self.api_key else None
        return shown

    @property
    def sdk_api_key(self) -> str:
        """The key to give the SDK (a placeholder for servers that want none)."""
        return self.api_key or NO_KEY

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the API key replaced by ``***``."""
        key = self.api_key
        return text.replace(key, "***") if key else text


def _lookup(env: Mapping[str, str], name: str) -> str | None:
    for candidate in (name, _FALLBACKS.get(name)):
        value = env.get(candidate) if candidate else None
        if value is not None and value.strip():
            return value.strip()
    return None


def _parse(env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InvalidArgument(
            f"{name} must be a {kind.__name__}, got {raw!r}; fix or unset it") from None


def _is_http_url(url: object) -> bool:
    return isinstance(url, str) and url.startswith(("http://", "https://"))


def _check_positive(name: str, value: object) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise InvalidArgument(f"LLM {name} must be a positive number of seconds, got {value!r}")


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"LLM {name} must be an int >= {minimum}, got {value!r}")
