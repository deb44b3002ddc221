"""The outbox: what the instance's loop sends in one pass leaves in one write, in order.

Real sockets (a socketpair) and a real event loop; the far end reads what
arrived with the kernel's own boundaries, so "one write" is seen, not assumed.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from project_o.errors import ConnectionClosed, FrameTooLarge
from project_o.runtime.channel import Channel
from project_o.runtime.outbox import Outbox
from project_o.wire import FrameDecoder, Message

MAX_FRAME = 1 << 20


def _pair() -> tuple[Channel, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return Channel(ours, MAX_FRAME), theirs


def _received(peer: socket.socket) -> list[list[Message]]:
    """Each packet the peer got (one per write: SOCK_SEQPACKET keeps boundaries), decoded."""
    peer.setblocking(False)
    packets = []
    while True:
        try:
            packet = peer.recv(MAX_FRAME)
        except BlockingIOError:
            return packets
        packets.append(FrameDecoder(MAX_FRAME).feed(packet))


def _beat(n: int) -> Message:
    return Message("metrics", {"n": n})


def test_frames_sent_in_one_loop_pass_leave_in_one_write_in_call_order() -> None:
    channel, peer = _pair()
    outbox = Outbox(channel, on_broken=lambda exc: pytest.fail(f"broken: {exc}"))

    async def main() -> None:
        outbox.attach(asyncio.get_running_loop())
        for n in range(10):
            outbox.send(_beat(n))
        assert _received(peer) == []  # nothing left during the pass
        await asyncio.sleep(0)  # the next pass
        await asyncio.sleep(0)
        packets = _received(peer)
        assert len(packets) == 1
        assert [m.data["n"] for m in packets[0]] == list(range(10))

    asyncio.run(main())


def test_a_worker_threads_frame_goes_after_what_the_loop_queued() -> None:
    channel, peer = _pair()
    outbox = Outbox(channel, on_broken=lambda exc: pytest.fail(f"broken: {exc}"))

    async def main() -> None:
        outbox.attach(asyncio.get_running_loop())
        outbox.send(_beat(1))
        outbox.send(_beat(2))
        worker = threading.Thread(target=outbox.send, args=(_beat(3),))
        worker.start()
        worker.join()  # the loop has not yielded: its frames are still queued
        packets = _received(peer)
        assert [[m.data["n"] for m in p] for p in packets] == [[1, 2, 3]]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert _received(peer) == []  # the loop's flush found nothing left

    asyncio.run(main())


def test_detach_sends_what_is_queued_and_later_frames_go_at_once() -> None:
    channel, peer = _pair()
    outbox = Outbox(channel, on_broken=lambda exc: pytest.fail(f"broken: {exc}"))

    async def main() -> None:
        outbox.attach(asyncio.get_running_loop())
        outbox.send(_beat(1))
        outbox.detach()  # the loop ends: its last answer must not be lost
        assert [[m.data["n"] for m in p] for p in _received(peer)] == [[1]]
        outbox.send(_beat(2))
        assert [[m.data["n"] for m in p] for p in _received(peer)] == [[2]]

    asyncio.run(main())


def test_a_socket_that_broke_under_a_batch_is_reported_not_raised_into_the_loop() -> None:
    channel, peer = _pair()
    broken: list[ConnectionClosed] = []
    outbox = Outbox(channel, on_broken=broken.append)

    async def main() -> None:
        outbox.attach(asyncio.get_running_loop())
        peer.close()
        outbox.send(_beat(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert len(broken) == 1


def test_a_message_that_cannot_be_framed_raises_and_queues_nothing() -> None:
    channel, peer = _pair()
    outbox = Outbox(channel, on_broken=lambda exc: pytest.fail(f"broken: {exc}"))

    async def main() -> None:
        outbox.attach(asyncio.get_running_loop())
        with pytest.raises(FrameTooLarge):
            outbox.send(Message("metrics", {"blob": b"x" * (MAX_FRAME + 1)}))
        outbox.send(_beat(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [[m.data["n"] for m in p] for p in _received(peer)] == [[1]]

    asyncio.run(main())


def test_a_large_frame_among_small_ones_arrives_whole_and_in_order() -> None:
    ours, peer = socket.socketpair()  # a stream, as the instance's socket is
    channel = Channel(ours, 4 * MAX_FRAME)
    outbox = Outbox(channel, on_broken=lambda exc: pytest.fail(f"broken: {exc}"))
    state = "s" * (2 * MAX_FRAME)  # a checkpoint's state, say
    got: list[Message] = []

    def read() -> None:
        decoder = FrameDecoder(4 * MAX_FRAME)
        while len(got) < 3:
            got.extend(decoder.feed(peer.recv(1 << 16)))

    reader = threading.Thread(target=read)
    reader.start()

    async def main() -> None:
        outbox.attach(asyncio.get_running_loop())
        outbox.send(_beat(1))
        outbox.send(Message("checkpoint", {"state": state}))
        outbox.send(_beat(2))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    reader.join(10)
    assert [m.type for m in got] == ["metrics", "checkpoint", "metrics"]
    assert got[1].data["state"] == state and [got[0].data["n"], got[2].data["n"]] == [1, 2]
