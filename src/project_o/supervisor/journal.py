"""The journal: the one durable write path of every instance's memory.

::

    a main ───────── wal_entry {id, operation, data} ──► Journal.write
                                                            │ the WAL's committer thread
                                                            │ writes (and fsyncs): not the loop
    every other follower ◄── wal_entry {sequence, operation, data}   (the other mains, the
                             standby) the same packed bytes as the WAL record's: data is
                             packed once, never decoded or packed again on its way
    the writer ◄──────────── wal_ack {id, sequence}   after the tails, on the same queue

    main ── checkpoint {state, last_sequence} ──► Journal.checkpoint ──► checkpoint_ack
    Journal.restore(instance, follow=...) ──► restore {checkpoint, entries, last_sequence}

The main and its standby go through one :class:`Journal`. A canary's
writes are durable too, but kept apart in an overlay
(:class:`OverlayJournal`, :mod:`project_o.vault.quarantine`): they reach
the agent's WAL only if the canary is promoted. A shadow acks into a
:class:`ShadowJournal` that never reaches the disk.
A write is acknowledged only once the vault has it (fsynced; in batch
durability, written). When the vault fails
(:class:`~project_o.errors.WALFatalError`: a write or fsync error, after
which nothing more can be acknowledged) the journal says so to its owner
(``on_fatal``) and kills the writer with a reason that starts with
``"vault failure"`` -- it is never blamed on the instance as a protocol
violation.

Every write is charged to the writer's quota first
(:class:`~.bounds.InstanceQuota`: bytes and writes, a burst then a rate);
a write past it, or one that could not travel back (nested deeper than
:data:`MAX_WRITE_DEPTH`: a restore frame carries it, and a frame's depth
is capped), is not acknowledged and kills the instance with the
reason. What it wrote before stays acknowledged and durable. A shadow's
writes are charged the same way; its journal keeps at most
:data:`SHADOW_JOURNAL_BYTES` of them, dropping the oldest.

Writes are settled in batches. :meth:`Journal.submit` only queues the
record in the WAL (no task, no future per write); once per group commit
the WAL's thread says how far it got, and one pass on the loop
(:meth:`Journal._settle`) tails and acks every write that round covered,
in sequence order, with one socket write per instance::

    wal_entry x N ──► submit: sequence, queued ──► WAL round: write + fdatasync
                                                       │ watch(): one wake-up
    one write per instance ◄── tails, then acks ◄── _settle(through=sequence)

Every main and the standby follow the WAL: every entry a main journals
is tailed to the others (never back to its writer). Tails and acks are
queued on the sockets in WAL order, so each instance reads the other
mains' entries and its own acks in one order, the WAL's, and applies
them in it (:mod:`project_o.runtime.write_order`). And anything sent to
another main after the writer heard its ack reaches that main behind the
write: the settle queues every socket's frames before the loop runs
anything else, and whatever the writer does next passes through this
loop. While a follower restores (it reads the checkpoint and the WAL as of
some sequence), entries are buffered and the ones past its restore point
are sent once it is done, so it misses none and applies none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import msgpack

from project_o.errors import InvalidArgument, WALFatalError
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.instance_start import send_restore
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.vault import Vault
from project_o.vault.quarantine import Overlay
from project_o.vault.sealed import SealedCopies
from project_o.vault.vault import RestorePoint
from project_o.vault.wal_record import Payload, pack_payload
from project_o.wire import MAX_NESTING_DEPTH, Message, MessageType
from project_o.wire.framing import encode_forwarded_frame, encode_frame
from project_o.wire.packable import nested_deeper_than

__all__ = [
    "MAX_OPERATION_LENGTH",
    "MAX_WRITE_DEPTH",
    "SHADOW_JOURNAL_BYTES",
    "VAULT_FAILURE",
    "Journal",
    "OverlayJournal",
    "ShadowJournal",
]

#: operation names an instance may journal (anything else is a violation)
MAX_OPERATION_LENGTH: Final = 128
#: how an instance's death reason starts when the vault, not the instance, failed
VAULT_FAILURE: Final = "vault failure"
#: writes a shadow's throwaway journal keeps (only for inspection; nothing reads them back)
SHADOW_JOURNAL_KEPT: Final = 10_000
#: lists/maps a write's data may nest: a restore frame wraps it in three more levels
#: (its data map, the entries list, the entry's map), and a frame holds MAX_NESTING_DEPTH
MAX_WRITE_DEPTH: Final = MAX_NESTING_DEPTH - 3
#: bytes (packed operation + data) of the writes a shadow's journal keeps, newest first
SHADOW_JOURNAL_BYTES: Final = 16 * 1024 * 1024

FatalCallback = Callable[[WALFatalError], None]


class _Unsettled(NamedTuple):
    """A write queued in the WAL and not yet acknowledged to its writer."""

    sequence: int
    writer: InstanceHandle
    write_id: Any
    payload: Payload
    tail: bool
    started: float


class Journal:
    """Journals instances' writes in the vault, tails them to followers, writes checkpoints."""

    def __init__(self, vault: Vault, metrics: SupervisorMetrics, on_fatal: FatalCallback) -> None:
        self.vault = vault
        self.metrics = metrics
        self._on_fatal = on_fatal
        #: follower -> (sequence, frame) tails buffered while it restores (None once live)
        self._followers: dict[InstanceHandle, list[tuple[int, bytes]] | None] = {}
        #: held while an instance reads a checkpoint, so none is pruned meanwhile
        self.restore_lock = asyncio.Lock()
        #: the newest checkpoint's sealed copy, what restores hand to instances; of a vault
        #: sealed at rest, an unsealed image (instances never hold the vault's key)
        store = vault.checkpoints
        self.copies = SealedCopies(store.plain_image if store.keyring is not None else None)
        #: the newest checkpoint written: {id, last_sequence, timestamp_ns}
        self.last_checkpoint: dict[str, Any] | None = None
        #: writes queued in the WAL, not yet acked, in sequence order
        self._unsettled: deque[_Unsettled] = deque()
        self._settled_through = 0
        #: (sequence, future) of write() calls waiting for their settle
        self._settle_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._settle_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unwatch: Callable[[], None] | None = None

    # -- writes ---------------------------------------------------------

    def submit(self, instance: InstanceHandle, message: Message, *, tail: bool) -> int | None:
        """Journal one ``wal_entry`` now; its ack (and tails, with ``tail``) go once it is durable.

        Returns its sequence, or None if the write was refused (its writer is
        killed). Nothing awaits per write: the WAL says once per group commit
        how far it got (:meth:`Vault.watch`), and :meth:`_settle` then tails
        and acks every write it covered, in sequence order, one socket write
        per instance. Writes get their sequences in the order of the calls:
        an instance's writes in the order it sent them.
        """
        payload = _charged_payload(instance, message)  # packed once: WAL record and tail
        if payload is None:
            return None
        try:
            sequence = self.vault.enqueue_payload(payload)
        except WALFatalError as exc:
            self._vault_failed(instance, exc)
            return None
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._unwatch = self.vault.watch(self._on_acknowledged)
        self._unsettled.append(_Unsettled(sequence, instance, message.data.get("id"), payload,
                                          tail, time.perf_counter()))
        return sequence

    async def write(self, instance: InstanceHandle, message: Message, *, tail: bool) -> None:
        """:meth:`submit`, returning once the write is acked (or refused, or the vault failed)."""
        sequence = self.submit(instance, message, tail=tail)
        if sequence is not None and sequence > self._settled_through:
            settled = asyncio.get_running_loop().create_future()
            self._settle_waiters.append((sequence, settled))
            await settled

    def close(self) -> None:
        """Stop watching the vault (the owner closes it next)."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _on_acknowledged(self) -> None:
        """The WAL's thread: schedule one :meth:`_settle`, unless one is already due."""
        # Racy but safe: _settle clears the flag before it reads how far the WAL got,
        # and the WAL moved that mark before calling us, so no progress is missed.
        if self._settle_due or self._loop is None:
            return
        self._settle_due = True
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody to ack
            self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        """Tail and ack every write the WAL acknowledged, in sequence order."""
        self._settle_due = False
        through = self.vault.acknowledged_sequence
        unsettled = self._unsettled
        frames: dict[InstanceHandle, list[bytes]] = {}
        now = time.perf_counter()
        while unsettled and unsettled[0].sequence <= through:
            write = unsettled.popleft()
            if write.tail and self._followers:
                self._tail(write.sequence, write.payload, write.writer, frames)
            frames.setdefault(write.writer, []).append(encode_frame(Message(
                MessageType.WAL_ACK, {"id": write.write_id, "sequence": write.sequence})))
            self.metrics.observe_wal_append(now - write.started)
        # One write per socket. Tails come before acks in each one's list (WAL
        # order); and across sockets nothing can react to an ack before this
        # returns, since everything an instance sends passes through this loop.
        for instance, batch in frames.items():
            instance.send_frame_now(b"".join(batch))
        self._settled_through = through
        failure = self.vault.failure if unsettled else None
        if failure is not None:
            while unsettled:
                self._vault_failed(unsettled.popleft().writer, failure)
            self._settled_through = self.vault.last_sequence
        self._wake_settled()

    def _wake_settled(self) -> None:
        waiters = self._settle_waiters
        while waiters and waiters[0][0] <= self._settled_through:
            _, settled = waiters.popleft()
            if not settled.done():
                settled.set_result(None)

    def _vault_failed(self, writer: InstanceHandle, error: WALFatalError) -> None:
        self._on_fatal(error)
        writer.kill(f"{VAULT_FAILURE}: {error}; nothing more can be acknowledged")

    def _tail(self, sequence: int, payload: Payload, writer: InstanceHandle,
              frames: dict[InstanceHandle, list[bytes]]) -> None:
        operation, data = payload
        frame = encode_forwarded_frame(MessageType.WAL_ENTRY, {
            "sequence": _packed_int(sequence), "operation": operation, "data": data,
        })
        for follower, buffer in self._followers.items():
            if follower is writer:
                continue  # it applies its own write when the ack comes
            if buffer is not None:
                buffer.append((sequence, frame))
            else:
                frames.setdefault(follower, []).append(frame)

    # -- followers and restores -----------------------------------------

    async def restore(
        self, instance: InstanceHandle, *, follow: bool,
        on_point: Callable[[RestorePoint], None] | None = None,
    ) -> RestorePoint:
        """Restore ``instance`` from the vault; with ``follow``, tail every later write to it.

        ``on_point`` gets the restore point before it is sent: the instance
        may write (and expect acks numbered after it) as soon as it applied it.
        """
        if follow:
            self._followers[instance] = []  # buffer tails while it restores
        async with self.restore_lock:  # no checkpoint is pruned while one is read
            point = await asyncio.to_thread(self.vault.recover)
            if on_point is not None:
                on_point(point)
            await send_restore(instance, point, self.copies)
        buffered = self._followers.get(instance)
        if buffered is not None:
            # At once, before later tails: the follower must see them in order.
            for sequence, frame in buffered:
                if sequence > point.last_sequence:
                    instance.send_frame_now(frame)
            self._followers[instance] = None
        return point

    def unfollow(self, instance: InstanceHandle) -> None:
        """Stop tailing writes to ``instance`` (it died)."""
        self._followers.pop(instance, None)

    # -- checkpoints ----------------------------------------------------

    async def request_checkpoint(self, instance: InstanceHandle, timeout: float) -> None:
        """Ask ``instance`` for its state and wait until it is written (or skipped)."""
        done = instance.waiter("checkpoint_sent")
        await instance.send(Message("checkpoint", {"id": uuid.uuid4().hex}))
        await asyncio.wait_for(done, timeout)

    async def checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        """Write the state ``instance`` sent as a checkpoint, then acknowledge it."""
        data = message.data
        state, covered = data.get("state"), data.get("last_sequence")
        if not isinstance(state, dict) or not isinstance(covered, int) or not (
            0 <= covered <= self.vault.last_sequence
        ):
            instance.kill("protocol violation: malformed checkpoint")
            return
        async with self.restore_lock:
            info = await self.vault.checkpoint_async(state, last_sequence=covered)
        # Made now, so the next restart does not wait for it; a failure here is
        # not the checkpoint's (the restore makes the copy itself, or reports it).
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.copies.prepare, info)
        self.metrics.checkpoint_written()
        self.last_checkpoint = {"id": str(info.id), "last_sequence": info.last_sequence,
                                "timestamp_ns": info.timestamp_ns}
        with contextlib.suppress(InstanceDied):
            await instance.send(Message("checkpoint_ack", {
                "id": data.get("id"), "checkpoint_id": str(info.id), "last_sequence": covered,
            }))
        instance.notify("checkpoint_sent", message)


class ShadowJournal:
    """A shadow's journal: writes are acked in memory and never reach the vault.

    A shadow serves copies of real requests; its memory diverges from the
    agent's on purpose and is thrown away with it.
    """

    def __init__(self, start_sequence: int = 0, *,
                 max_bytes: int = SHADOW_JOURNAL_BYTES) -> None:
        self.sequence = start_sequence
        #: (sequence, operation, data) of the newest writes, for inspection only
        self.entries: deque[tuple[int, str, Any]] = deque()
        #: bytes the kept entries took packed (at most ``max_bytes``)
        self.kept_bytes = 0
        self._sizes: deque[int] = deque()
        self._max_bytes = max_bytes

    async def write(self, instance: InstanceHandle, message: Message) -> None:
        """Ack one ``wal_entry`` at once, numbered after the shadow's restore point."""
        payload = _charged_payload(instance, message)
        if payload is None:
            return
        self.sequence += 1
        self._keep((self.sequence, message.data["operation"], message.data.get("data")),
                   len(payload[0]) + len(payload[1]))
        await _ack(instance, message, self.sequence)

    def _keep(self, entry: tuple[int, str, Any], size: int) -> None:
        self.entries.append(entry)
        self._sizes.append(size)
        self.kept_bytes += size
        while self.entries and (self.kept_bytes > self._max_bytes
                                or len(self.entries) > SHADOW_JOURNAL_KEPT):
            self.entries.popleft()
            self.kept_bytes -= self._sizes.popleft()

class OverlayJournal:
    """A canary's journal: each write durable in its overlay before it is acknowledged.

    Each write is tagged with the requests its writer is serving (its
    handle's ``in_flight``): the ones that made it.
    """

    def __init__(self, overlay: Overlay) -> None:
        self.overlay = overlay

    async def write(self, instance: InstanceHandle, message: Message) -> None:
        """Append one ``wal_entry`` to the overlay; ack it once durable."""
        payload = _charged_payload(instance, message)  # packed once, as the main's are
        if payload is None:
            return
        try:
            sequence = await self.overlay.append_payload(payload, instance.in_flight)
        except WALFatalError as exc:
            instance.kill(f"{VAULT_FAILURE}: {exc}; nothing more can be acknowledged")
            return
        except InvalidArgument as exc:  # e.g. a record over the WAL's size limit
            instance.kill(f"protocol violation: {exc}")
            return
        await _ack(instance, message, sequence)


def _charged_payload(instance: InstanceHandle, message: Message) -> Payload | None:
    """A ``wal_entry`` packed and charged to its writer's quota; None if it was killed.

    Killed for a malformed entry (the operation), data the vault cannot
    store, or a write past its quota: the write is not acknowledged.
    """
    operation = message.data.get("operation")
    if not isinstance(operation, str) or not 0 < len(operation) <= MAX_OPERATION_LENGTH:
        instance.kill("protocol violation: wal_entry needs a short string operation")
        return None
    data = message.data.get("data")
    if nested_deeper_than(data, MAX_WRITE_DEPTH):
        instance.kill(f"protocol violation: wal_entry data nested deeper than "
                      f"{MAX_WRITE_DEPTH} lists/maps cannot be restored from")
        return None
    try:
        payload = pack_payload(operation, data)
    except InvalidArgument as exc:
        instance.kill(f"protocol violation: wal_entry data cannot be stored: {exc}"[:500])
        return None
    over = instance.quota.charge_write(len(payload[0]) + len(payload[1]))
    if over is not None:
        instance.kill(over)
        return None
    return payload


def _packed_int(value: int) -> bytes:
    return msgpack.packb(value)  # type: ignore[no-any-return]


async def _ack(instance: InstanceHandle, message: Message, sequence: int) -> None:
    with contextlib.suppress(InstanceDied):
        await instance.send(Message("wal_ack", {"id": message.data.get("id"),
                                                "sequence": sequence}))
