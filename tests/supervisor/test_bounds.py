"""The supervisor is bounded against its instances: a hostile instance on a real socket.

The supervisor's side of one instance runs as its own process
(``bounded_host.py``: an InstanceHandle with a real Journal on a real
vault); this test is the instance's code, sending what agent code could
write on its socket. A ``sleep`` process stands in for the instance's
process, so the kill the supervisor sends is real. Each case asserts the
supervisor survived (it reports and exits 0), the instance was killed with
the reason, every write it saw acknowledged is in the vault, and the
supervisor's peak RSS stayed bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from project_o.errors import ConnectionClosed, ZygoteError
from project_o.runtime.zygote_client import ZygoteHandle
from project_o.vault import Vault
from project_o.wire import Message, encode_frame, read_message

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
#: what the supervisor's side may reach, peak, in any case here: its imports (~60 MB)
#: plus the object budget of one frame (4M objects, ~300 MB at worst). Unbounded, a
#: 256 MiB frame of empty maps would decode into ~18 GB.
RSS_BOUND_KB = 600 * 1024
#: a frame refused on its head never has its body read: the imports and little else
SMALL_RSS_BOUND_KB = 200 * 1024


class Host:
    """The supervisor's side (a process) and a stand-in for the instance's process."""

    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.vault = tmp_path / "vault"
        self.victim = subprocess.Popen(["sleep", "600"])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.supervisor.bounded_host", str(theirs.fileno()),
                 str(self.vault), json.dumps({"pid": self.victim.pid, **config})],
                pass_fds=[theirs.fileno()], cwd=ROOT, stdout=subprocess.PIPE)
        self.sock = ours
        self.sock.settimeout(120)  # a stuck test fails, it does not hang
        self.acked: dict[int, Any] = {}
        self.received: list[Message] = []
        self.gone = False

    # -- what an instance says -------------------------------------------

    def send(self, data: bytes) -> bool:
        """Send bytes; False once the supervisor has closed the socket (it killed us)."""
        if self.gone:
            return False
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.gone = True
        return not self.gone

    def say(self, kind: str, **data: Any) -> bool:
        return self.send(encode_frame(Message(kind, data)))

    def hello(self) -> None:
        self.say("hello", pid=self.victim.pid, version="v1", role="main", instance_id="fake-1")
        self.say("heartbeat", beat=1, rss_bytes=1, last_sequence=0)

    def write(self, key: str, value: Any) -> int:
        """One memory write, acknowledged: its sequence."""
        assert self.say("wal_entry", id=key, operation="memory_set",
                        data={"key": key, "value": value})
        while True:
            message = self.next()
            if message.type == "wal_ack" and message.data["id"] == key:
                self.acked[message.data["sequence"]] = {"key": key, "value": value}
                return int(message.data["sequence"])

    def next(self) -> Message:
        message = read_message(self.sock, max_frame_size=300 * MIB)
        self.received.append(message)
        return message

    def first(self, kind: str) -> Message:
        """The first frame of ``kind`` the supervisor sent (reading on until it comes)."""
        for message in self.received:
            if message.type == kind:
                return message
        while (message := self.next()).type != kind:
            pass
        return message

    def collect_acks(self) -> threading.Thread:
        """Read acks in the background while the test floods (until the socket closes)."""

        def run() -> None:
            with contextlib.suppress(Exception):
                while True:
                    message = self.next()
                    if message.type == "wal_ack":
                        self.acked[message.data["sequence"]] = message.data["id"]

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    # -- what the supervisor made of it ----------------------------------

    def report(self) -> dict[str, Any]:
        out, _ = self.process.communicate(timeout=240)
        assert self.process.returncode == 0, "the supervisor's side did not survive"
        self.sock.close()
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        assert self.victim.wait(timeout=30) == -9, "the instance was not killed"
        return report

    def vault_entries(self) -> dict[int, Any]:
        vault = Vault.open(self.vault)
        try:
            return {entry.sequence: entry.data for entry in vault.recover().entries}
        finally:
            vault.close()

    def close(self) -> None:
        for process in (self.process, self.victim):
            if process.poll() is None:
                process.kill()
                process.wait()
        self.sock.close()


@pytest.fixture
def host_factory(tmp_path: Path) -> Iterator[Any]:
    hosts: list[Host] = []

    def make(**config: Any) -> Host:
        host = Host(tmp_path / f"h{len(hosts)}", **config)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


def _frame_head(kind: str, size: int) -> bytes:
    """A length prefix announcing ``size`` payload bytes, and a frame map up to ``data``."""
    head = b"\x84" + msgpack.packb("type") + msgpack.packb(kind) + msgpack.packb("timestamp") \
        + msgpack.packb(1.0) + msgpack.packb("data")
    return struct.pack(">I", size) + head


def _empty_map_chunks(total: int) -> Iterator[bytes]:
    """``data``'s value: arrays of 10,000 empty maps, ``total`` bytes of them, in 1 MiB chunks."""
    inner = b"\xdd" + struct.pack(">I", 10_000) + b"\x80" * 10_000
    arrays = total // len(inner)
    yield b"\x81" + msgpack.packb("state") + b"\xdd" + struct.pack(">I", arrays)
    per_chunk = max(1, MIB // len(inner))
    for start in range(0, arrays, per_chunk):
        yield inner * min(per_chunk, arrays - start)


def _acked_writes_are_in_the_vault(host: Host) -> None:
    entries = host.vault_entries()
    assert host.acked, "the test acknowledged nothing: it proves nothing"
    for sequence, data in host.acked.items():
        assert sequence in entries, f"acknowledged write {sequence} was lost"
        if isinstance(data, dict):
            assert entries[sequence] == data


def test_a_256_mib_frame_of_empty_maps_kills_the_instance_not_the_supervisor(
        host_factory: Any) -> None:
    host = host_factory(checkpoint=True)
    host.hello()
    for index in range(5):
        host.write(f"k{index}", index)
    # it asked for our state: a large frame of that type is allowed
    assert any(message.type == "checkpoint" for message in host.received)
    size = 256 * MIB
    host.send(_frame_head("checkpoint", size))
    for chunk in _empty_map_chunks(size - 64):
        if not host.send(chunk):
            break
    report = host.report()
    assert "max_objects" in report["reason"] and report["reason"].startswith("protocol")
    assert report["max_rss_kb"] < RSS_BOUND_KB, report
    assert host.gone, "the supervisor read the whole frame instead of stopping early"
    _acked_writes_are_in_the_vault(host)


def test_a_large_frame_of_a_small_type_is_refused_before_its_body_is_read(
        host_factory: Any) -> None:
    host = host_factory()
    host.hello()
    host.write("before", 1)
    host.send(_frame_head("heartbeat", 256 * MIB))
    for chunk in _empty_map_chunks(16 * MIB):
        if not host.send(chunk):
            break
    report = host.report()
    assert "heartbeat frame of 268435456 bytes exceeds the maximum" in report["reason"]
    assert report["max_rss_kb"] < SMALL_RSS_BOUND_KB, report
    _acked_writes_are_in_the_vault(host)


def test_a_flood_of_shadow_writes_is_killed_at_its_quota_and_its_journal_stays_small(
        host_factory: Any) -> None:
    host = host_factory(role="shadow", quotas={"wal_writes_burst": 1000,
                                                "wal_writes_per_s": 1e-6})
    host.hello()
    reader = host.collect_acks()
    value = "x" * 64 * 1024
    sent = 0
    while host.say("wal_entry", id=f"w{sent}", operation="memory_set",
                   data={"key": f"w{sent}", "value": value}) and sent < 5000:
        sent += 1
    report = host.report()
    reader.join(timeout=30)
    assert report["reason"].startswith("quota exceeded: more than 1000 memory writes")
    # 1000 writes of 64 KiB were acknowledged; the journal kept at most its 16 MiB of them
    assert len(host.acked) == 1000
    assert report["shadow_kept_bytes"] <= 16 * MIB and report["shadow_kept"] < 1000
    assert report["last_sequence"] == 0  # a shadow's writes never reach the vault
    assert report["max_rss_kb"] < RSS_BOUND_KB, report


def test_a_flood_of_main_writes_is_killed_at_its_byte_quota_and_loses_nothing_acked(
        host_factory: Any) -> None:
    host = host_factory(quotas={"wal_bytes_burst": 2 * MIB, "wal_bytes_per_s": 1e-6})
    host.hello()
    with pytest.raises((AssertionError, ConnectionClosed)):  # it fails once we are killed
        for index in range(10_000):
            host.write(f"k{index}", "v" * 10_000)
    report = host.report()
    assert report["reason"].startswith("quota exceeded: a write of")
    assert 150 < len(host.acked) < 220  # 2 MiB of 10 kB writes, then the kill
    assert report["last_sequence"] == max(host.acked)  # the refused write was not stored
    _acked_writes_are_in_the_vault(host)


def test_a_flood_of_stream_events_is_killed_at_the_requests_stream_quota(
        host_factory: Any) -> None:
    host = host_factory(stream=True, quotas={"stream_bytes_per_request": MIB})
    host.hello()
    host.write("before", 1)
    request = host.first("request")
    assert request.data["stream"] is True
    event = {"token": "t" * 60_000}
    sent = 0
    while host.say("stream", id=request.data["id"], event=event) and sent < 10_000:
        sent += 1
    report = host.report()
    assert report["reason"].startswith("quota exceeded: request 'r1' streamed more than")
    assert 10 <= report["events"] <= MIB // 60_000  # what reached the client, bounded
    _acked_writes_are_in_the_vault(host)


@pytest.mark.parametrize(("forged", "reason"), [
    (Message("restore", {"checkpoint": None, "entries": [], "last_sequence": 0}),
     "'restore' may not be sent here"),
    (Message("forked", {"id": 1, "pid": 1}), "'forked' may not be sent here"),
    (Message("heartbeat", {"beat": "1", "rss_bytes": 0, "last_sequence": 0}),
     "heartbeat fields"),
    (Message("heartbeat", {"beat": 2, "rss_bytes": -1, "last_sequence": 0}),
     "heartbeat fields"),
])
def test_forged_frame_types_and_fields_kill_the_instance(
        host_factory: Any, forged: Message, reason: str) -> None:
    host = host_factory()
    host.hello()
    host.write("before", 1)
    host.send(_encode_unchecked(forged))
    report = host.report()
    assert reason in report["reason"], report["reason"]
    _acked_writes_are_in_the_vault(host)


@pytest.mark.parametrize(("depth", "reason"), [
    (300, "cannot be restored from"),  # decodes, but a restore frame could not carry it
    (5000, "StackError"),  # deeper than msgpack's unpacker stack (1024)
])
def test_deep_nesting_kills_the_instance(host_factory: Any, depth: int, reason: str) -> None:
    host = host_factory()
    host.hello()
    host.write("before", 1)
    data = (b"\x83" + msgpack.packb("id") + msgpack.packb("w") + msgpack.packb("operation")
            + msgpack.packb("memory_set") + msgpack.packb("data") + b"\x91" * depth + b"\xc0")
    payload = (b"\x84" + msgpack.packb("type") + msgpack.packb("wal_entry")
               + msgpack.packb("timestamp") + msgpack.packb(1.0) + msgpack.packb("data")
               + data + msgpack.packb("metadata") + b"\x80")
    host.send(struct.pack(">I", len(payload)) + payload)
    report = host.report()
    assert reason in report["reason"], report["reason"]
    _acked_writes_are_in_the_vault(host)


def _encode_unchecked(message: Message) -> bytes:
    """A frame as a hostile instance writes it: no packability check, any depth."""
    payload = msgpack.packb({"type": str(message.type), "timestamp": message.timestamp,
                             "data": message.data, "metadata": {}})
    return struct.pack(">I", len(payload)) + payload


# -- a zygote imported agent code: it is checked the same way ---------------

FAKE_ZYGOTE = """
import os, socket, sys
from project_o.wire import Message, encode_frame, read_message
sock = socket.socket(fileno=int(sys.argv[1]))
sock.sendall(encode_frame(Message("hello", {"pid": os.getpid()})))
if sys.argv[2] == "heartbeat":
    sock.sendall(encode_frame(Message("heartbeat", {"beat": 1, "rss_bytes": 0,
                                                    "last_sequence": 0})))
else:
    fork = read_message(sock)
    pid = os.getppid() if sys.argv[2] == "parent" else int(sys.argv[2])
    sock.sendall(encode_frame(Message("forked", {"id": fork.data["id"], "pid": pid})))
sock.recv(1)
"""


async def _fake_zygote(mode: str) -> tuple[ZygoteHandle, asyncio.subprocess.Process]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FAKE_ZYGOTE, str(theirs.fileno()), mode,
            pass_fds=(theirs.fileno(),), cwd=ROOT)
    ours.setblocking(False)
    return ZygoteHandle(process, ours, "v1", None), process


@pytest.mark.parametrize("mode", ["parent", "1", "bystander"])
def test_a_zygote_claiming_another_pid_as_its_fork_is_ended_and_nothing_is_killed(
        mode: str) -> None:
    bystander = subprocess.Popen(["sleep", "600"])

    async def scenario() -> int | None:
        handle, process = await _fake_zygote(str(bystander.pid) if mode == "bystander"
                                             else mode)
        with pytest.raises(ZygoteError, match="claims pid"):
            await handle.fork("main", "main-1")
        code = await asyncio.wait_for(process.wait(), 30)
        await handle.close()
        return code

    try:
        assert asyncio.run(scenario()) == -9  # the forging zygote was killed
        assert bystander.poll() is None  # and the process it named was not
        assert os.getpid() > 0  # we (its parent, the supervisor) are still here
    finally:
        bystander.kill()
        bystander.wait()


def test_a_zygote_sending_a_heartbeat_is_ended() -> None:
    async def scenario() -> tuple[bool, int | None]:
        handle, process = await _fake_zygote("heartbeat")
        code = await asyncio.wait_for(process.wait(), 30)
        alive = handle.alive
        await handle.close()
        return alive, code

    alive, code = asyncio.run(scenario())
    assert not alive and code == -9
