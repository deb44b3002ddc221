"""Every memory operation survives kill -9, under a real supervisor.

The agent (``memory_agent.py``) writes semantic memories, forgets one,
defines and fills memory blocks and records history. Its ``digest`` action
returns everything a handler can observe (recall and search answers,
filtered recall, rendered blocks and limits, the history), and each
failure below must leave the digest unchanged:

1. kill -9 of the main: the standby, which tailed the WAL, takes over;
2. 1,000 more writes (the instance checkpoints every 1,000), a few after
   the checkpoint, then kill -9 again: the new main restored from the
   checkpoint file plus the WAL after it;
3. the whole stack stopped and started again on the same vault.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from project_o.bench.memory_corpus import LABELLED
from project_o.runtime.confine.pids import inner_pid
from project_o.vault.checkpoint import CheckpointStore
from tests.supervisor.harness import FAST_HEARTBEAT, Stack

pytestmark = pytest.mark.slow

AGENT = Path(__file__).with_name("memory_agent.py")
QUESTIONS = [question for _, question in LABELLED[:8]] + ["wifi password", "Frank"]
#: writes that make the instance checkpoint (runtime.config.DEFAULT_CHECKPOINT_EVERY)
CHECKPOINT_EVERY = 1000


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def stack(vault: Path) -> Iterator[Stack]:
    running = Stack(vault, ["--agent", str(AGENT), *FAST_HEARTBEAT])
    yield running
    running.stop()


def _do(stack: Stack, action: str, **fields: Any) -> Any:
    response = stack.do(action, **fields)
    assert response.status_code == 200, response.text
    return response.json()["output"]


def _digest(stack: Stack) -> dict[str, Any]:
    return dict(_do(stack, "digest", questions=QUESTIONS))


def _write_everything(stack: Stack) -> str:
    ids = [_do(stack, "remember", text=fact, metadata={"kind": "fact", "n": n})
           for n, (fact, _) in enumerate(LABELLED)]
    _do(stack, "remember", text="A note that is not a fact", metadata={"kind": "note"})
    assert _do(stack, "forget", id=ids[3]) is True
    _do(stack, "define", name="persona", limit=300, description="who I am")
    _do(stack, "block_set", name="persona", text="I am a careful assistant.")
    _do(stack, "block_append", name="human", text="Prefers short answers.")
    _do(stack, "block_append", name="human", text="Lives in Lisbon.")
    _do(stack, "record", role="user", content="hello", metadata={"channel": "test"})
    _do(stack, "record", role="assistant", content={"text": "hi", "cites": ids[:2]})
    return str(ids[3])


def _kill_main(stack: Stack) -> int:
    victim = stack.main_pid()
    seen_as = inner_pid(victim)  # the agent answers with its PID namespace's number
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the next request waits for a new main anyway
        if _do(stack, "pid") != seen_as:
            return victim
        time.sleep(0.05)
    raise AssertionError(f"main {victim} was not replaced")


def _checkpointed_memories(vault: Path) -> int:
    """Memories in the newest checkpoint (waiting for the first to be written)."""
    deadline = time.monotonic() + 30
    while (newest := CheckpointStore(vault / "checkpoints").latest_valid()) is None:
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    _, payload = newest
    return len(payload["agent_state"]["semantic"]["ids"])


def test_every_memory_operation_survives_kill_9_checkpoint_and_restart(
    stack: Stack, vault: Path
) -> None:
    forgotten = _write_everything(stack)
    before = _digest(stack)
    assert before["count"] == len(LABELLED)  # 32 facts + 1 note - 1 forgotten
    assert before["recall"][QUESTIONS[0]][0][0] == "mem-1"  # Alice's colour
    assert all(forgotten not in [hit[0] for hit in hits] for hits in before["recall"].values())
    assert "chars_limit=300" in before["blocks"] and "Lives in Lisbon." in before["blocks"]
    assert before["limits"] == {"persona": 300, "human": 2000}
    assert [e["content"] for e in before["history"]] == ["hello", {"text": "hi",
                                                                   "cites": ["mem-1", "mem-2"]}]

    _kill_main(stack)  # 1: the standby takes over
    assert _digest(stack) == before

    bulk = _do(stack, "bulk", count=CHECKPOINT_EVERY)  # 2: the instance checkpoints
    assert len(bulk) == CHECKPOINT_EVERY
    _do(stack, "record", role="user", content="after the checkpoint")
    late = _do(stack, "remember", text="Written after the checkpoint", metadata={"kind": "fact"})
    assert _checkpointed_memories(vault) >= CHECKPOINT_EVERY  # vectors and all
    after_bulk = _digest(stack)
    assert after_bulk["count"] == before["count"] + CHECKPOINT_EVERY + 1
    _kill_main(stack)
    _kill_main(stack)  # the main now restored from checkpoint + WAL, at least once
    assert _digest(stack) == after_bulk
    assert _do(stack, "forget", id=late) is True

    final = _digest(stack)
    stack.stop()  # 3: a new supervisor on the same vault
    restarted = Stack(vault, ["--agent", str(AGENT), *FAST_HEARTBEAT])
    try:
        assert _digest(restarted) == final
        assert _do(restarted, "remember", text="One more") == f"mem-{CHECKPOINT_EVERY + 35}"
    finally:
        restarted.stop()
