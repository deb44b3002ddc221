"""LLM rewrite: a chat model proposes SEARCH/REPLACE edits to the agent's code.

::

    parent + RewriteBrief(hypothesis, metrics, failures)
           + the parent's artifacts (its score or failure, traceback, output, the
             failing cases its task reported; when the operator can look it up)
        │ build_prompt()          explicit inputs only, every piece through redact()
        ▼
    [system, user] ─► client.chat(messages) -> reply text
        │ parse_search_replace()  aider-style blocks (below)
        ▼
    [SearchReplace(path, search, replace), ...]
        │ apply_search_replace()  each SEARCH must occur exactly once, byte for byte
        ▼
    child sources ─► compile() ─► child genome (operator "llm_rewrite")

A block, as the model writes it (the file name on the line before; the
fences are optional)::

    memory.py
    ```python
    <<<<<<< SEARCH
    def search(items, query):
        return [i for i in items if query in i]
    =======
    def search(items, query):
        return [i for i in items if query in i][:10]
    >>>>>>> REPLACE
    ```

Anything wrong — no block, an unterminated block, a file that is not in
the genome, a SEARCH that matches nowhere or more than once, code that no
longer compiles — rejects the whole reply with the reason; nothing is
applied half-way.

With an accounting client (an :class:`~project_o.evolution.llm_ensemble.LLMEnsemble`:
several models, a bandit, a budget), the model, tokens and cost of the call
go into the child's details, and the client is told what the call gave.

Secrets: the prompt is built only from what the caller passes in (the
genome, the brief, the parent's artifacts), never from ``os.environ`` or
files, and token-shaped strings (API keys, bearer tokens, private keys)
are masked on the way, in case a traceback or a metric label carried one.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from project_o.errors import InvalidArgument
from project_o.evolution.artifacts import artifacts_of
from project_o.evolution.genome import Genome
from project_o.evolution.operators.base import NoChild, OperatorBase, syntax_problem
from project_o.evolution.operators.evolvables import find_evolvables
from project_o.evolution.operators.params import effective_params, param_specs

if TYPE_CHECKING:
    from project_o.evolution.task import Evaluation

__all__ = [
    "DEFAULT_MAX_PROMPT_CHARS",
    "AccountedChat",
    "ChatClient",
    "LLMRewrite",
    "RewriteBrief",
    "SearchReplace",
    "apply_search_replace",
    "build_prompt",
    "parse_search_replace",
    "redact",
]

#: prompt budget: ~30k tokens at ~4 characters a token, inside every current
#: chat model's context while leaving room for the answer
DEFAULT_MAX_PROMPT_CHARS = 120_000

#: failures shown (the most recent) and characters kept of each
MAX_FAILURES = 5
MAX_FAILURE_CHARS = 2_000

#: what replaces a masked secret
REDACTED = "[REDACTED]"

# Markers as aider writes them (5 to 9 characters, so near-misses still parse).
_HEAD = re.compile(r"^<{5,9} SEARCH>?\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_UPDATED = re.compile(r"^>{5,9} REPLACE\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")

#: token-shaped secrets, masked everywhere (source code included)
_TOKENS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),          # OpenAI-style API keys
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),      # GitHub tokens
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),   # Slack tokens
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),              # AWS access key ids
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{8,}=*"),
]
#: NAME=value where NAME says it is a secret; masked in free text (not in source code,
#: where ``api_key = settings.key`` is code the model must be able to quote back)
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Z0-9_]*(?:API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)[A-Z0-9_]*)"
    r"(\s*[=:]\s*)(['\"]?)[^\s'\",}]+"
)

_SYSTEM = """You improve the Python code of one agent that runs under Project O.
Make the smallest change that tests the hypothesis. Prefer editing functions
decorated with @agent.evolvable. Keep every name other code relies on: the
agent object, its handler, tools and params.

Answer with one or more SEARCH/REPLACE blocks, each preceded by the file's path:

path/to/file.py
<<<<<<< SEARCH
lines copied exactly from the current file
=======
the lines that replace them
>>>>>>> REPLACE

The SEARCH part must match the current file exactly, whitespace included, and
occur only once in it; include enough lines to make it unique. Do not rewrite
whole files. A short explanation outside the blocks is welcome."""


class ChatClient(Protocol):
    """Anything with ``chat(messages) -> str`` (the agent's LLM client fits)."""

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The assistant's reply to ``messages`` (``[{"role", "content"}, ...]``)."""
        ...


@runtime_checkable
class AccountedChat(Protocol):
    """A chat client that counts its calls and wants to know what each one gave."""

    @property
    def last_call(self) -> Any:
        """The unsettled call (with ``details()`` for the child), or None."""
        ...

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The assistant's reply to ``messages``."""
        ...

    def settle(self, parent_id: str, child_id: str | None, outcome: str) -> None:
        """What the last call gave: the child's id, or None and why not."""
        ...


@dataclass(frozen=True)
class RewriteBrief:
    """What the model is told besides the code: why, how it does, what went wrong."""

    hypothesis: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    failures: Sequence[str] = ()


@dataclass(frozen=True)
class SearchReplace:
    """One edit: replace the only occurrence of ``search`` in ``path`` by ``replace``."""

    path: str | None
    search: str
    replace: str


# -- prompt -------------------------------------------------------------


def redact(text: str, *, assignments: bool = True) -> str:
    """``text`` with token-shaped secrets (and, if ``assignments``, ``KEY=value``) masked."""
    for pattern in _TOKENS:
        text = pattern.sub(REDACTED, text)
    if assignments:
        text = _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}", text)
    return text


def build_prompt(
    genome: Genome, brief: RewriteBrief = RewriteBrief(), *,
    max_chars: int = DEFAULT_MAX_PROMPT_CHARS, artifacts: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """Chat messages asking for SEARCH/REPLACE edits to ``genome``.

    Built only from ``genome``, ``brief`` and ``artifacts`` (how this genome
    did when it was evaluated, see :func:`~project_o.evolution.artifacts.artifacts_of`).
    Files holding evolvable functions come first; files that do not fit in
    ``max_chars`` are named but left out.
    """
    sections = [
        ("Hypothesis", redact(brief.hypothesis.strip() or "(none given: find an improvement)")),
        ("Metrics", redact(_json(brief.metrics))),
        ("Recent failures", _failures(brief.failures)),
        ("Artifacts of this version (how it did when evaluated)", _artifacts(artifacts or {})),
        ("Params (name: current value, declaration)", _params(genome)),
        ("Evolvable functions", "\n".join(fn.key for fn in find_evolvables(genome)) or "(none)"),
    ]
    head = "\n\n".join(f"## {title}\n{body}" for title, body in sections)
    files = _files(genome, max_chars - len(_SYSTEM) - len(head))
    return [{"role": "system", "content": _SYSTEM},
            {"role": "user", "content": f"{head}\n\n## Files\n{files}"}]


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), indent=1, sort_keys=True, default=repr) if value else "(none)"


def _failures(failures: Sequence[str]) -> str:
    recent = [str(f)[-MAX_FAILURE_CHARS:] for f in list(failures)[-MAX_FAILURES:]]
    return "\n---\n".join(redact(f) for f in recent) or "(none)"


def _artifacts(artifacts: Mapping[str, str]) -> str:
    return "\n".join(f"### {name}\n{redact(text)}" for name, text in artifacts.items()) \
        or "(not evaluated yet)"


def _params(genome: Genome) -> str:
    specs = param_specs(genome)
    values = effective_params(genome, specs)
    lines = [f"{s.name}: {values[s.name]!r}  (default {s.default!r}, "
             + (f"choices {list(s.choices)!r})" if s.choices is not None
                else f"low {s.low!r}, high {s.high!r})") for s in specs]
    return redact("\n".join(lines)) or "(none)"


def _files(genome: Genome, budget: int) -> str:
    evolvable = {fn.path for fn in find_evolvables(genome)}
    order = sorted(genome.sources, key=lambda name: (name not in evolvable, name))
    shown, left_out = [], []
    for name in order:
        block = f"{name}\n```python\n{redact(genome.sources[name], assignments=False)}\n```\n"
        if len(block) <= budget:
            shown.append(block)
            budget -= len(block)
        else:
            left_out.append(name)
    if left_out:
        shown.append(f"(left out for length: {', '.join(left_out)}; do not edit them)\n")
    return "\n".join(shown)


# -- SEARCH/REPLACE -----------------------------------------------------


def parse_search_replace(reply: str) -> list[SearchReplace]:
    """The SEARCH/REPLACE blocks of a model's reply, in order.

    A block without a path on the line before it takes the previous block's
    path (``None`` for the first). Raises :class:`InvalidArgument` when there
    is no block or a block is not terminated.
    """
    lines = reply.replace("\r\n", "\n").replace("\r", "\n").splitlines(keepends=True)
    blocks: list[SearchReplace] = []
    path: str | None = None
    i = 0
    while i < len(lines):
        if not _HEAD.match(lines[i].rstrip("\n")):
            i += 1
            continue
        path = _path_before(lines, i) or path
        search, i = _collect(lines, i + 1, _DIVIDER, "=======", len(blocks) + 1)
        replace, i = _collect(lines, i + 1, _UPDATED, ">>>>>>> REPLACE", len(blocks) + 1)
        blocks.append(SearchReplace(path, search, replace))
        i += 1
    if not blocks:
        raise InvalidArgument(
            "the reply holds no SEARCH/REPLACE block; expected '<<<<<<< SEARCH', the old "
            "lines, '=======', the new lines, '>>>>>>> REPLACE'"
        )
    return blocks


def _collect(lines: list[str], start: int, end: re.Pattern[str], marker: str,
             number: int) -> tuple[str, int]:
    for j in range(start, len(lines)):
        bare = lines[j].rstrip("\n")
        if end.match(bare):
            return "".join(lines[start:j]), j
        if _HEAD.match(bare) or (end is _DIVIDER and _UPDATED.match(bare)):
            break
    raise InvalidArgument(
        f"SEARCH/REPLACE block {number} (line {start}) is not terminated: expected "
        f"{marker!r} before the next block or the end of the reply"
    )


def _path_before(lines: list[str], head: int) -> str | None:
    for j in range(head - 1, max(head - 4, -1), -1):
        text = lines[j].strip()
        if not text or _FENCE.match(text):
            continue
        candidate = text.strip("`*:'\" ").removeprefix("# ").strip().removeprefix("./")
        looks_like_path = candidate and " " not in candidate and (
            "." in candidate or "/" in candidate)
        return candidate if looks_like_path else None
    return None


def apply_search_replace(
    sources: Mapping[str, str], blocks: Sequence[SearchReplace]
) -> dict[str, str]:
    """``sources`` with every block applied in order; all or nothing.

    Raises :class:`InvalidArgument` naming the block and what did not match.
    """
    result = dict(sources)
    for number, block in enumerate(blocks, 1):
        path = _resolve(result, block, number)
        if not block.search:
            if path in result:
                raise InvalidArgument(
                    f"block {number}: empty SEARCH for the existing file {path!r}; quote the "
                    "lines to change (an empty SEARCH only creates a new file)"
                )
            result[path] = block.replace
            continue
        result[path] = _replace_once(result[path], block, path, number)
    return result


def _resolve(sources: Mapping[str, str], block: SearchReplace, number: int) -> str:
    if block.path is not None:
        if block.path in sources or not block.search:
            return block.path
        raise InvalidArgument(
            f"block {number} edits {block.path!r}, which is not one of the agent's files "
            f"{sorted(sources)}"
        )
    holders = [name for name, text in sources.items() if block.search in _with_newline(text)]
    if len(sources) == 1:
        return next(iter(sources))
    if len(holders) == 1:
        return holders[0]
    raise InvalidArgument(
        f"block {number} names no file and its SEARCH text is in {len(holders)} of the "
        "agent's files; put the file's path on the line before '<<<<<<< SEARCH'"
    )


def _replace_once(text: str, block: SearchReplace, path: str, number: int) -> str:
    padded = _with_newline(text)
    count = padded.count(block.search)
    if count != 1:
        first = block.search.splitlines()[0] if block.search.strip() else repr(block.search)
        problem = "matches nowhere" if count == 0 else f"matches {count} places"
        raise InvalidArgument(
            f"block {number}: the SEARCH text {problem} in {path!r} (it must match the file "
            f"exactly, whitespace included, and only once); its first line: {first[:80]!r}"
        )
    updated = padded.replace(block.search, block.replace, 1)
    added_newline = len(padded) != len(text)
    # Give back a missing final newline that _with_newline() added for matching.
    return updated[:-1] if added_newline and updated.endswith("\n") else updated


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


# -- the operator -------------------------------------------------------


class LLMRewrite(OperatorBase):
    """Ask a chat model for SEARCH/REPLACE edits and apply them."""

    name: ClassVar[str] = "llm_rewrite"

    def __init__(
        self,
        client: ChatClient | Callable[[list[dict[str, str]]], str],
        brief: RewriteBrief = RewriteBrief(),
        *,
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
        evaluations: Callable[[str], Evaluation | None] | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.brief = brief
        self.max_prompt_chars = max_prompt_chars
        #: looks up how a parent did, for its artifacts (None: the prompt has none)
        self.evaluations = evaluations
        #: the model's last reply, kept for the lineage and for debugging
        self.last_reply = ""

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        # rng is unused: a chat model's randomness is its own.
        evaluation = self.evaluations(parent.id) if self.evaluations is not None else None
        messages = build_prompt(parent, self.brief, max_chars=self.max_prompt_chars,
                                artifacts=artifacts_of(evaluation))
        self.last_reply = reply = self._chat(messages)
        call = self.client.last_call if isinstance(self.client, AccountedChat) else None
        try:
            child = self._child(parent, reply, call)
        except NoChild as exc:
            self._settle(parent, None, str(exc))
            raise
        self._settle(parent, child, "child")
        return child

    def _child(self, parent: Genome, reply: str, call: Any) -> Genome:
        try:
            blocks = parse_search_replace(reply)
            sources = apply_search_replace(parent.sources, blocks)
        except InvalidArgument as exc:
            raise NoChild(str(exc)) from exc
        problem = syntax_problem(sources)
        if problem is not None:
            raise NoChild(f"the edited code does not compile: {problem}")
        changed = sorted(k for k in sources if sources[k] != parent.sources.get(k))
        details = {"files": changed, "blocks": len(blocks),
                   "hypothesis": self.brief.hypothesis[:500], "rationale": _rationale(reply)}
        if call is not None:
            details.update(call.details())
        try:
            return parent.derive(operator=self.name, sources=sources, details=details)
        except InvalidArgument as exc:  # e.g. a new file with an unusable path
            raise NoChild(str(exc)) from exc

    def _settle(self, parent: Genome, child: Genome | None, outcome: str) -> None:
        if isinstance(self.client, AccountedChat):
            self.client.settle(parent.id, None if child is None else child.id, outcome)

    def _chat(self, messages: list[dict[str, str]]) -> str:
        client: Any = self.client
        call: Callable[[list[dict[str, str]]], Any] = getattr(client, "chat", client)
        try:
            reply = call(messages)
        except Exception as exc:  # any client failure is a rejected proposal, not a crash
            raise NoChild(f"the chat client failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(reply, str):
            raise NoChild(f"the chat client returned {type(reply).__name__}, expected str")
        return reply


def _rationale(reply: str, limit: int = 500) -> str:
    """The reply's prose before its first block: the model's own explanation."""
    match = re.search(r"^<{5,9} SEARCH", reply, re.MULTILINE)
    prose = reply[:match.start()] if match else reply
    prose = "\n".join(line for line in prose.splitlines() if not _FENCE.match(line)).strip()
    return prose[:limit]
