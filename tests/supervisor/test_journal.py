"""The journal: one durable write path for the main, the standby's tail and candidates.

Unit tests on a real vault in a temporary directory, with fake instances
(what the journal calls on an instance: send, kill, notify, waiter); the
last test drives a real InstanceHandle over a real socket, as a canary's
writes arrive in a running supervisor, with the vault's fsync failing.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from project_o.errors import WALFatalError
from project_o.supervisor.bounds import InstanceQuota
from project_o.supervisor.candidate import CandidateHost
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.journal import VAULT_FAILURE, Journal, OverlayJournal, ShadowJournal
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.vault import Vault
from project_o.vault.checkpoint import CheckpointStore
from project_o.vault.fileio import FileLayer
from project_o.vault.quarantine import Overlay, OverlayInfo
from project_o.vault.wal import WAL
from project_o.wire import FrameDecoder, Message, decode_payload, encode_frame
from project_o.wire.framing import PREFIX_SIZE

PATIENCE_S = 10.0


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop, under a deadlock guard."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 6 * PATIENCE_S))

    return wrapper


class FailingSync(FileLayer):
    """Real file I/O whose fdatasync fails with EIO (a dying disk)."""

    def fdatasync(self, fd: int) -> None:
        raise OSError(errno.EIO, "injected EIO in fdatasync")


def failing_vault(path: Path) -> Vault:
    wal = WAL.open(path / "wal", file_layer=FailingSync())
    return Vault(path, wal, CheckpointStore(path / "checkpoints"))


class FakeInstance:
    """Records what the journal sends it; ``kill`` ends it like a real handle."""

    def __init__(self, role: str = "main") -> None:
        self.role = role
        self.alive = True
        self.sent: list[Message] = []
        self.killed: str | None = None
        self.notified: list[str] = []
        self.waiters: dict[str, asyncio.Future[Message]] = {}
        self.quota = InstanceQuota()
        #: the requests it serves (what a canary's writes are tagged with)
        self.in_flight: list[str] = []
        #: send_frame_now calls: each is one write to the socket
        self.socket_writes = 0

    async def send(self, message: Message) -> None:
        if not self.alive:
            raise InstanceDied(self.killed or "dead")
        self.sent.append(message)
        if message.type == "restore":  # a real instance answers its restore with a heartbeat
            self.notify("heartbeat", Message("heartbeat", {}))

    async def send_frame(self, frame: bytes) -> None:
        # What a forwarded frame turns into on the instance's side, checked as strictly.
        await self.send(decode_payload(frame[PREFIX_SIZE:]))

    def send_frame_now(self, frames: bytes) -> None:
        # Tails and acks: queued at once, in call order, several frames to one socket
        # write; a dead instance gets nothing.
        if self.alive:
            self.socket_writes += 1
            self.sent.extend(FrameDecoder().feed(frames))

    def kill(self, reason: str) -> None:
        if self.alive:
            self.alive, self.killed = False, reason

    def notify(self, name: str, message: Message) -> None:
        self.notified.append(name)
        future = self.waiters.pop(name, None)
        if future is not None and not future.done():
            future.set_result(message)

    def waiter(self, name: str) -> asyncio.Future[Message]:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiters[name] = future
        return future

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m.data for m in self.sent if m.type == kind]


def entry(request_id: str, operation: Any = "memory_set", data: Any = None) -> Message:
    return Message("wal_entry", {"id": request_id, "operation": operation, "data": data})


@pytest.fixture
def vault(tmp_path: Path) -> Any:
    opened = Vault.open(tmp_path / "vault")
    yield opened
    opened.close()


def journal_of(vault: Vault, fatal: list[WALFatalError] | None = None) -> Journal:
    return Journal(vault, SupervisorMetrics(), (fatal if fatal is not None else []).append)


@async_test
async def test_a_write_is_durable_before_it_is_acked_and_tailed_to_followers(
    vault: Vault,
) -> None:
    journal = journal_of(vault)
    main, standby = FakeInstance(), FakeInstance("standby")
    await journal.restore(standby, follow=True)
    await journal.write(main, entry("r1", data={"key": "k", "value": [1, 2]}), tail=True)
    await journal.write(main, entry("r2", "memory_delete", {"key": "k"}), tail=True)
    assert main.of_type("wal_ack") == [{"id": "r1", "sequence": 1}, {"id": "r2", "sequence": 2}]
    assert vault.wal.durable_sequence == 2
    assert [(e.operation, e.data) for e in vault.wal.replay()] == [
        ("memory_set", {"key": "k", "value": [1, 2]}), ("memory_delete", {"key": "k"})]
    assert standby.of_type("wal_entry") == [
        {"sequence": 1, "operation": "memory_set", "data": {"key": "k", "value": [1, 2]}},
        {"sequence": 2, "operation": "memory_delete", "data": {"key": "k"}},
    ]


@async_test
async def test_without_tail_a_write_reaches_the_vault_but_no_follower(vault: Vault) -> None:
    journal = journal_of(vault)
    canary, standby = FakeInstance("canary"), FakeInstance("standby")
    await journal.restore(standby, follow=True)
    await journal.write(canary, entry("c1", data=7), tail=False)
    assert canary.of_type("wal_ack") == [{"id": "c1", "sequence": 1}]
    assert standby.of_type("wal_entry") == []
    assert [e.data for e in vault.wal.replay()] == [7]


@pytest.mark.parametrize("operation", [None, "", 5, "x" * 129])
@async_test
async def test_a_malformed_operation_kills_the_writer_and_writes_nothing(
    vault: Vault, operation: Any
) -> None:
    journal = journal_of(vault)
    main = FakeInstance()
    await journal.write(main, entry("r1", operation), tail=True)
    assert main.killed is not None and main.killed.startswith("protocol violation")
    assert main.sent == []
    assert vault.last_sequence == 0


@async_test
async def test_a_follower_restoring_gets_exactly_the_writes_past_its_restore_point(
    vault: Vault,
) -> None:
    journal = journal_of(vault)
    main = FakeInstance()
    await journal.write(main, entry("before"), tail=True)

    class SlowRestore(FakeInstance):
        """Holds its restore until the test lets it go, as a big checkpoint would."""

        def __init__(self) -> None:
            super().__init__("standby")
            self.gate = asyncio.Event()

        async def send(self, message: Message) -> None:
            if message.type == "restore":
                self.sent.append(message)
                await self.gate.wait()
                self.notify("heartbeat", Message("heartbeat", {}))
                return
            await super().send(message)

    standby = SlowRestore()
    restoring = asyncio.create_task(journal.restore(standby, follow=True))
    await asyncio.sleep(0)  # the restore has read the vault and is sending
    for index in range(3):
        await journal.write(main, entry(f"during-{index}", data=index), tail=True)
    assert standby.of_type("wal_entry") == []  # buffered while it restores
    standby.gate.set()
    point = await asyncio.wait_for(restoring, PATIENCE_S)
    restored = standby.of_type("restore")[0]
    tailed = [e["sequence"] for e in standby.of_type("wal_entry")]
    assert restored["last_sequence"] == point.last_sequence
    # Everything after the restore point, once, in order: nothing missed, nothing twice.
    assert tailed == list(range(point.last_sequence + 1, 5))
    await journal.write(main, entry("after"), tail=True)
    assert standby.of_type("wal_entry")[-1]["sequence"] == 5


@async_test
async def test_an_unfollowed_instance_gets_no_more_tails(vault: Vault) -> None:
    journal = journal_of(vault)
    main, standby = FakeInstance(), FakeInstance("standby")
    await journal.restore(standby, follow=True)
    journal.unfollow(standby)
    await journal.write(main, entry("r1"), tail=True)
    assert standby.of_type("wal_entry") == []


@async_test
async def test_a_vault_failure_is_reported_as_one_and_nothing_is_acked(tmp_path: Path) -> None:
    vault = failing_vault(tmp_path)
    fatal: list[WALFatalError] = []
    journal = journal_of(vault, fatal)
    main, standby = FakeInstance(), FakeInstance("standby")
    await journal.restore(standby, follow=True)
    await journal.write(main, entry("r1", data="lost"), tail=True)
    assert len(fatal) == 1 and isinstance(fatal[0], WALFatalError)
    assert main.killed is not None and main.killed.startswith(VAULT_FAILURE)
    assert main.of_type("wal_ack") == [] and standby.of_type("wal_entry") == []
    with pytest.raises(WALFatalError):
        vault.close()


@async_test
async def test_a_checkpoint_is_written_acked_and_remembered(vault: Vault) -> None:
    journal = journal_of(vault)
    main = FakeInstance()
    await journal.write(main, entry("r1", data=1), tail=True)
    await journal.checkpoint(main, Message("checkpoint", {
        "id": "c1", "state": {"agent_state": {"k": 1}}, "last_sequence": 1}))
    [ack] = main.of_type("checkpoint_ack")
    assert ack["id"] == "c1" and ack["last_sequence"] == 1
    assert journal.last_checkpoint is not None
    assert journal.last_checkpoint["id"] == ack["checkpoint_id"]
    point = vault.recover()
    assert point.last_sequence == 1 and point.entries == []
    assert main.notified[-1] == "checkpoint_sent"


@pytest.mark.parametrize("data", [
    {"id": "c", "state": [], "last_sequence": 0},
    {"id": "c", "state": {}, "last_sequence": "0"},
    {"id": "c", "state": {}, "last_sequence": 99},  # beyond what the WAL holds
    {"id": "c", "state": {}, "last_sequence": -1},
])
@async_test
async def test_a_malformed_checkpoint_kills_the_instance(vault: Vault, data: Any) -> None:
    journal = journal_of(vault)
    main = FakeInstance()
    await journal.checkpoint(main, Message("checkpoint", data))
    assert main.killed == "protocol violation: malformed checkpoint"
    assert vault.recover().checkpoint is None


@async_test
async def test_request_checkpoint_asks_and_waits_for_the_answer(vault: Vault) -> None:
    journal = journal_of(vault)

    class Answers(FakeInstance):
        async def send(self, message: Message) -> None:
            await super().send(message)
            if message.type == "checkpoint":
                reply = Message("checkpoint", {"id": message.data["id"], "state": {"agent_state": 1},
                                               "last_sequence": 0})
                asyncio.get_running_loop().call_soon(
                    asyncio.ensure_future, journal.checkpoint(self, reply))

    main = Answers()
    await journal.request_checkpoint(main, PATIENCE_S)
    assert journal.last_checkpoint is not None
    assert journal.last_checkpoint["last_sequence"] == 0


@async_test
async def test_a_shadow_journal_acks_in_memory_after_its_restore_point(vault: Vault) -> None:
    shadow = ShadowJournal(start_sequence=41)
    instance = FakeInstance("shadow")
    await shadow.write(instance, entry("s1", data="x"))
    await shadow.write(instance, entry("s2", "memory_delete", "y"))
    assert instance.of_type("wal_ack") == [{"id": "s1", "sequence": 42},
                                           {"id": "s2", "sequence": 43}]
    assert list(shadow.entries) == [(42, "memory_set", "x"), (43, "memory_delete", "y")]
    await shadow.write(instance, entry("s3", ""))
    assert instance.killed is not None and instance.killed.startswith("protocol violation")
    assert vault.last_sequence == 0


# -- a canary's write when the vault fails, through a real handle ----------


class _Host:
    """What a CandidateHost uses of its agent host for a canary's writes."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal


@async_test
async def test_a_vault_failure_during_a_canary_write_is_a_vault_failure(tmp_path: Path) -> None:
    vault = Vault.open(tmp_path / "vault")
    failures: list[str] = []
    failed = asyncio.Event()

    def on_failure(reason: str) -> None:
        failures.append(reason)
        failed.set()

    candidate = CandidateHost(_Host(journal_of(vault)), on_failure)  # type: ignore[arg-type]
    # The canary's overlay sits on a dying disk; the agent's own WAL is sound.
    info = OverlayInfo(id="o1", version="v2", experiment_id="e1", base_sequence=0,
                       created_ns=0)
    dying = WAL.open(tmp_path / "overlay", file_layer=FailingSync())
    candidate.overlay = OverlayJournal(Overlay(tmp_path, info, dying))
    # A real process stands for the canary (killing it is real), a real socket for its channel.
    stand_in = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    ours, theirs = socket.socketpair()
    try:
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        canary = InstanceHandle(pid=stand_in.pid, role="canary", version="v2",
                                instance_id="canary-1", reader=reader, writer=writer,
                                owner=candidate, max_frame_size=1 << 20)
        candidate.instance = canary
        canary.start_reading()
        theirs.sendall(encode_frame(entry("w1", data={"key": "k"})))
        await asyncio.wait_for(failed.wait(), PATIENCE_S)
        assert failures and failures[0].startswith(VAULT_FAILURE), failures
        assert "protocol violation" not in failures[0]
        assert await asyncio.wait_for(stand_in.wait(), PATIENCE_S) == -9  # really killed
        await canary.close()
    finally:
        theirs.close()
        if stand_in.returncode is None:
            stand_in.kill()
            await stand_in.wait()
        with pytest.raises(WALFatalError):
            dying.close()
        vault.close()
    assert vault.last_sequence == 0  # nothing reached the agent's WAL


@async_test
async def test_a_canary_write_is_acked_once_durable_in_its_overlay_not_the_wal(
        vault: Vault) -> None:
    overlay = vault.quarantine.create("v2", "e1", base_sequence=41)
    journal = OverlayJournal(overlay)
    canary = FakeInstance("canary")
    canary.in_flight = ["req-7"]
    await journal.write(canary, entry("w1", data={"key": "a", "value": 1}))
    canary.in_flight = ["req-8", "req-9"]
    await journal.write(canary, entry("w2", "memory_delete", {"key": "b"}))
    assert canary.of_type("wal_ack") == [{"id": "w1", "sequence": 42},
                                         {"id": "w2", "sequence": 43}]
    assert vault.last_sequence == 0  # the agent's WAL never saw them
    overlay.settle("quarantined", "rolled back")
    writes = [w.to_dict() for w in vault.quarantine.writes(overlay.info.id)]
    assert writes == [
        {"sequence": 42, "operation": "memory_set", "data": {"key": "a", "value": 1},
         "requests": ["req-7"]},
        {"sequence": 43, "operation": "memory_delete", "data": {"key": "b"},
         "requests": ["req-8", "req-9"]},
    ]
    await journal.write(canary, entry("w3", ""))  # a malformed write is still a violation
    assert canary.killed is not None and canary.killed.startswith("protocol violation")


@async_test
async def test_a_shadow_writing_the_moment_it_is_restored_is_acked_after_its_point(
    vault: Vault,
) -> None:
    """The shadow's numbering is set before its restore is sent, not after it returns."""
    journal = journal_of(vault)
    main = FakeInstance()
    for index in range(3):
        await journal.write(main, entry(f"m{index}"), tail=True)
    candidate = CandidateHost(_Host(journal), lambda reason: None)  # type: ignore[arg-type]

    class EagerShadow(FakeInstance):
        """Writes as soon as it has its restore, before the supervisor's await returns."""

        async def send(self, message: Message) -> None:
            await super().send(message)
            if message.type == "restore":
                await candidate.on_wal_entry(self, entry("s1", data="first"))

    shadow = EagerShadow("shadow")
    await candidate._restore(shadow)  # type: ignore[arg-type]
    assert shadow.killed is None
    assert shadow.of_type("wal_ack") == [{"id": "s1", "sequence": 4}]
    assert vault.last_sequence == 3  # a shadow's writes never reach the vault


class GatedSync(FileLayer):
    """Real file I/O whose fdatasync waits until the test opens ``gate``."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def fdatasync(self, fd: int) -> None:
        assert self.gate.wait(PATIENCE_S), "the test never opened the gate"
        super().fdatasync(fd)


def gated_vault(path: Path) -> tuple[Vault, GatedSync]:
    layer = GatedSync()
    layer.gate.set()  # opening the WAL syncs once
    wal = WAL.open(path / "wal", file_layer=layer)
    layer.gate.clear()
    return Vault(path, wal, CheckpointStore(path / "checkpoints")), layer


@async_test
async def test_writes_that_share_a_group_commit_are_acked_in_one_socket_write(
    tmp_path: Path,
) -> None:
    vault, layer = gated_vault(tmp_path / "vault")
    journal = journal_of(vault)
    main, standby = FakeInstance(), FakeInstance("standby")
    layer.gate.set()
    await journal.restore(standby, follow=True)
    layer.gate.clear()
    # 20 writes queued while the disk is held: at most the first is in the round
    # that waits, so at most two rounds cover them all.
    sequences = [journal.submit(main, entry(f"w{n}", data=n), tail=True) for n in range(20)]
    layer.gate.set()
    await journal.write(main, entry("last", data=20), tail=True)
    acks = main.of_type("wal_ack")
    assert [a["id"] for a in acks] == [*(f"w{n}" for n in range(20)), "last"]
    assert [a["sequence"] for a in acks[:20]] == sequences
    assert main.socket_writes <= 3  # two rounds at most, and the last write's own
    tails = standby.of_type("wal_entry")
    assert [t["sequence"] for t in tails] == [a["sequence"] for a in acks]
    assert standby.socket_writes <= 3
    journal.close()
    vault.close()


@async_test
async def test_two_writers_each_see_acks_and_the_others_tails_in_wal_order(
    vault: Vault,
) -> None:
    journal = journal_of(vault)
    first, second = FakeInstance(), FakeInstance()
    await journal.restore(first, follow=True)
    await journal.restore(second, follow=True)
    for n in range(30):
        writer = first if n % 3 else second
        journal.submit(writer, entry(f"w{n}", data=n), tail=True)
    await journal.write(first, entry("last"), tail=True)
    for instance in (first, second):
        seen = [m.data["sequence"] for m in instance.sent if m.type in ("wal_ack", "wal_entry")]
        assert seen == sorted(seen)
        assert len(seen) == 31  # its own acks and the other's tails: every write once
    journal.close()


@async_test
async def test_a_failed_group_commit_kills_every_writer_waiting_on_it(tmp_path: Path) -> None:
    fatal: list[WALFatalError] = []
    journal = journal_of(failing_vault(tmp_path / "vault"), fatal)
    writers = [FakeInstance(), FakeInstance()]
    for n in range(6):
        journal.submit(writers[n % 2], entry(f"w{n}", data=n), tail=True)
    await journal.write(writers[0], entry("last"), tail=True)
    for writer in writers:
        assert writer.killed is not None and writer.killed.startswith(VAULT_FAILURE)
        assert writer.of_type("wal_ack") == []  # nothing acknowledged
    assert fatal and isinstance(fatal[0], WALFatalError)
    journal.close()
