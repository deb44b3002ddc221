"""The instance protocol, driven by a test playing the supervisor against real processes."""

from __future__ import annotations

import signal
from pathlib import Path

from project_o.errors import ConnectionClosed
from project_o.runtime.confine.pids import inner_pid
from project_o.runtime.instance import EXIT_PROTOCOL, EXIT_RESTORE_FAILED
from project_o.vault.checkpoint import CheckpointStore
from project_o.wire import Message
from tests.runtime.harness import FAST_BEATS, run, spawn, zygote


def _checkpoint(directory: Path, kv: dict[str, object], last_sequence: int) -> Path:
    state = {
        "agent_state": {"kv": kv, "mood": "calm"},
        "tool_registry": {"t": 1},
        "metrics": {"requests": 7},
    }
    return CheckpointStore(directory).write(state, last_sequence).path


def test_hello_names_the_instance_and_request_gets_response() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, "main")
            assert peer.hello is not None
            # Its pid as it sees it: in the sandbox's PID namespace, the last NSpid.
            assert peer.hello.data["pid"] == inner_pid(peer.pid)
            assert peer.hello.data["role"] == "main"
            assert peer.hello.data["version"] == "v1"
            answer = await peer.call({"do": "echo", "input": {"x": [1, 2]}})
            assert answer.type == "response"
            assert answer.data["output"] == {"x": [1, 2]}

    run(scenario())


def test_memory_writes_survive_a_refork_via_checkpoint_and_entries(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, {"kept": "from-checkpoint", "gone": 1}, last_sequence=10)

    async def scenario() -> None:
        async with zygote(readable=(tmp_path,)) as z:
            first = await spawn(z, checkpoint=checkpoint, last_sequence=10)
            assert (await first.call({"do": "get", "key": "kept"})).data["output"] == {
                "value": "from-checkpoint"
            }
            await first.call({"do": "set", "key": "a", "value": {"n": 1}})
            await first.call({"do": "set", "key": "b", "value": [1, "two"]})
            await first.call({"do": "delete", "key": "gone"})
            assert [e["sequence"] for e in first.acked] == [11, 12, 13]
            first.kill()
            assert (await first.exited()).signal == signal.SIGKILL

            # An entry the checkpoint already covers must not be replayed.
            stale = {"sequence": 5, "operation": "memory_set", "data": {"key": "kept", "value": 0}}
            second = await spawn(
                z, checkpoint=checkpoint, entries=[stale, *first.acked], last_sequence=13
            )
            keys = (await second.call({"do": "keys"})).data["output"]["keys"]
            assert sorted(keys) == ["a", "b", "kept"]
            assert (await second.call({"do": "get", "key": "a"})).data["output"] == {
                "value": {"n": 1}
            }
            assert (await second.call({"do": "get", "key": "kept"})).data["output"] == {
                "value": "from-checkpoint"
            }

    run(scenario())


def test_checkpoint_on_request_round_trips_through_the_store(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with zygote(readable=(tmp_path,)) as z:
            first = await spawn(z, checkpoint=_checkpoint(tmp_path, {"x": 1}, 3), last_sequence=3)
            await first.call({"do": "set", "key": "y", "value": 2})
            await first.send("checkpoint", id="c1")
            snapshot = await first.expect("checkpoint")
            assert snapshot.data["id"] == "c1"
            assert snapshot.data["last_sequence"] == 4
            state = snapshot.data["state"]
            assert state["agent_state"]["kv"] == {"x": 1, "y": 2}
            assert state["agent_state"]["mood"] == "calm"  # unowned keys pass through
            assert state["tool_registry"]["t"] == 1
            assert state["metrics"]["requests"] == 8  # cumulative across instances
            await first.send("checkpoint_ack", id="c1", checkpoint_id="abc", last_sequence=4)

            again = CheckpointStore(tmp_path).write(state, snapshot.data["last_sequence"]).path
            second = await spawn(z, checkpoint=again, last_sequence=4)
            answer = await second.call({"do": "get", "key": "y"})
            assert answer.data["output"] == {"value": 2}

    run(scenario())


def test_periodic_checkpoint_after_n_acknowledged_writes() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, config={"checkpoint_every": 2})
            await peer.call({"do": "set", "key": "a", "value": 1})
            await peer.send("request", id="second", input={"do": "set", "key": "b", "value": 2})
            await peer.ack(await peer.expect("wal_entry"))
            # The checkpoint may come before or after the answer: the write is applied
            # (by the loop, in WAL order) before its request returns.
            got: dict[str, Message] = {}
            while set(got) != {"checkpoint", "response"}:
                message = await peer.read()
                if message.type in ("checkpoint", "response"):
                    got[message.type] = message
            snapshot = got["checkpoint"]
            assert snapshot.data["last_sequence"] == 2
            assert snapshot.data["state"]["agent_state"]["kv"] == {"a": 1, "b": 2}

    run(scenario())


def test_a_write_awaiting_its_ack_holds_only_its_own_request_and_beats_go_on() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, config=FAST_BEATS)
            await peer.send("request", id="w", input={"do": "set", "key": "k", "value": 1})
            entry = await peer.expect("wal_entry")
            await peer.send("request", id="e", input={"do": "echo", "input": "after"})
            # Served while "w" waits: requests run concurrently.
            echoed = await peer.expect("response")
            assert (echoed.data["id"], echoed.data["output"]) == ("e", "after")
            await peer.send("checkpoint", id="c")
            # The unacknowledged write is not in the state a checkpoint claims.
            early = await peer.expect("checkpoint")
            assert early.data["last_sequence"] == 0
            assert early.data["state"]["agent_state"]["kv"] == {}
            beats_before = len(peer.beats)
            waited = await peer.silence(0.5)  # the write is still unacknowledged
            assert {m.type for m in waited} == {"heartbeat"}
            assert len(peer.beats) > beats_before
            await peer.ack(entry)
            written = await peer.expect("response")
            assert written.data["id"] == "w"
            await peer.send("checkpoint", id="c2")
            snapshot = await peer.expect("checkpoint")
            assert snapshot.data["state"]["agent_state"]["kv"] == {"k": 1}
            assert snapshot.data["last_sequence"] == peer.sequence

    run(scenario())


def test_handler_exception_is_an_error_frame_and_the_instance_keeps_serving() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            error = await peer.call({"do": "raise", "input": "boom"})
            assert error.type == "error"
            assert error.data["kind"] == "ValueError"
            assert "boom" in error.data["message"]
            assert "chaos_agent.py" in error.data["traceback"]
            answer = await peer.call({"do": "echo", "input": "still here"})
            assert answer.data["output"] == "still here"

    run(scenario())


def test_unsendable_output_and_bad_memory_use_are_error_frames() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            unsendable = await peer.call({"do": "unsendable"})
            assert (unsendable.type, unsendable.data["kind"]) == ("error", "InvalidArgument")
            bad_key = await peer.call({"do": "set", "key": "", "value": 1})
            assert (bad_key.type, bad_key.data["kind"]) == ("error", "InvalidArgument")
            assert peer.acked == []  # nothing reached the journal
            assert (await peer.call({"do": "keys"})).data["output"] == {"keys": []}

    run(scenario())


def test_heartbeats_arrive_and_carry_the_last_sequence() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, config=FAST_BEATS, last_sequence=41)
            await peer.call({"do": "set", "key": "a", "value": 1})
            received = await peer.silence(0.6)
            beats = [m.data for m in received if m.type == "heartbeat"]
            assert len(beats) >= 3  # 12 expected at 50 ms; 3 leaves room for a slow box
            numbers = [b["beat"] for b in beats]
            assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
            assert beats[-1]["last_sequence"] == 42
            assert beats[-1]["rss_bytes"] > 1 << 20

    run(scenario())


def test_standby_tails_the_wal_and_serves_after_promote() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            standby = await spawn(z, "standby", config=FAST_BEATS)
            for sequence, value in ((1, "one"), (2, "two")):
                await standby.send(
                    "wal_entry",
                    sequence=sequence,
                    operation="memory_set",
                    data={"key": "k", "value": value},
                )
            await standby.send(
                "wal_entry",
                sequence=2,
                operation="memory_set",
                data={"key": "k", "value": "duplicate, ignored"},
            )
            while True:
                beat = await standby.expect("heartbeat")
                if beat.data["last_sequence"] == 2:
                    break
            await standby.send("promote", role="main")
            answer = await standby.call({"do": "get", "key": "k"})
            assert answer.data["output"] == {"value": "two"}

    run(scenario())


def test_shutdown_exits_zero() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            await peer.send("shutdown")
            assert isinstance(await peer.closed(), ConnectionClosed)
            status = await peer.exited()
            assert (status.exit_code, status.signal) == (0, None)

    run(scenario())


def test_unreadable_checkpoint_reports_and_exits(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ockpt"
    broken.write_bytes(b"not a checkpoint" * 32)

    async def scenario() -> None:
        async with zygote(readable=(tmp_path,)) as z:
            peer = await spawn(z, restore=False)
            await peer.send_checkpoint(broken, entries=[], last_sequence=0)
            error = await peer.expect("error")
            assert (error.data["id"], error.data["kind"]) == ("restore", "CheckpointCorrupt")
            assert (await peer.exited()).exit_code == EXIT_RESTORE_FAILED

    run(scenario())


def test_a_checkpoint_is_never_taken_by_path(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, {"x": 1}, 3)

    async def scenario() -> None:
        async with zygote() as z:
            by_path = await spawn(z, restore=False)
            await by_path.send("restore", checkpoint=str(path), entries=[], last_sequence=0)
            assert (await by_path.exited()).exit_code == EXIT_PROTOCOL
            no_copy = await spawn(z, restore=False)
            await no_copy.send("restore", checkpoint={"id": "c"}, entries=[], last_sequence=0)
            assert (await no_copy.exited()).exit_code == EXIT_PROTOCOL

    run(scenario())


def test_supervisor_protocol_violations_end_the_instance_with_ex_protocol() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            wrong_ack = await spawn(z)
            await wrong_ack.send("request", id="r", input={"do": "set", "key": "k", "value": 1})
            entry = await wrong_ack.expect("wal_entry")
            await wrong_ack.send("wal_ack", id=entry.data["id"] + 100, sequence=1)
            assert (await wrong_ack.exited()).exit_code == EXIT_PROTOCOL

            stale_ack = await spawn(z, last_sequence=5)
            await stale_ack.send("request", id="r", input={"do": "set", "key": "k", "value": 1})
            entry = await stale_ack.expect("wal_entry")
            await stale_ack.send("wal_ack", id=entry.data["id"], sequence=5)
            assert (await stale_ack.exited()).exit_code == EXIT_PROTOCOL

            wrong_type = await spawn(z)
            await wrong_type.send("hello", pid=1)
            assert (await wrong_type.exited()).exit_code == EXIT_PROTOCOL

            standby_request = await spawn(z, "standby")
            await standby_request.send("request", id="r", input={"do": "echo"})
            assert (await standby_request.exited()).exit_code == EXIT_PROTOCOL

            garbage = await spawn(z)
            garbage.forked.writer.write(b"\x00\x00\x00\x04junk")
            assert (await garbage.exited()).exit_code == EXIT_PROTOCOL

    run(scenario())
