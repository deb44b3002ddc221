"""The instance's end of the LLM proxy, on its own: what an instance's ``ctx.llm`` can do.

The link never reads a socket: whoever reads (the instance's event loop)
hands it the answers with ``dispatch``. Here a thread plays the loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import pytest

from project_o.errors import InvalidArgument, LLMError
from project_o.llm.remote import RemoteClient
from project_o.runtime.llm_link import LLMLink
from project_o.wire import Message, MessageType

HI = [{"role": "user", "content": "hi"}]


def _result(call_id: str, text: str) -> Message:
    return Message(MessageType.LLM_RESULT, {"id": call_id, "completion": {
        "text": text, "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}})


def _token(call_id: str, text: str) -> Message:
    return Message(MessageType.LLM_TOKEN, {"id": call_id, "text": text})


def test_a_sync_call_on_the_loops_thread_is_refused_and_sends_nothing() -> None:
    sent: list[Any] = []
    link = LLMLink(lambda kind, data: sent.append(kind), on_loop=lambda: True)
    with pytest.raises(InvalidArgument, match="achat"):
        RemoteClient(link).complete(HI)
    assert sent == [] and link.in_flight == 0


def test_a_sync_call_gets_its_own_tokens_and_answer_from_the_reader() -> None:
    sent: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    link = LLMLink(lambda kind, data: sent.put(data), slice_s=0.01)

    def reader() -> None:  # the event loop's part: routes frames, some for nobody
        call_id = sent.get(timeout=10)["id"]
        assert not link.dispatch(Message(MessageType.HEARTBEAT, {}))
        for message in (_result("someone-else", "no"), _token(call_id, "he"),
                        _token(call_id, "llo"), _result(call_id, "hello")):
            assert link.dispatch(message)

    thread = threading.Thread(target=reader)
    thread.start()
    pieces: list[str] = []
    completion = RemoteClient(link).complete(HI, stream=True, on_token=pieces.append)
    thread.join()
    assert (completion.text, completion.usage.total_tokens, pieces) == ("hello", 5,
                                                                        ["he", "llo"])
    assert link.in_flight == 0


def test_many_sync_calls_from_threads_each_get_their_own_answer() -> None:
    calls: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    link = LLMLink(lambda kind, data: calls.put(data), slice_s=0.01)
    count = 16

    def reader() -> None:  # answers in the reverse order of arrival, streaming first
        arrived = [calls.get(timeout=10) for _ in range(count)]
        for data in reversed(arrived):
            word = data["messages"][0]["content"]
            link.dispatch(_token(data["id"], word))
        for data in reversed(arrived):
            link.dispatch(_result(data["id"], "echo " + data["messages"][0]["content"]))

    thread = threading.Thread(target=reader)
    thread.start()
    answers: dict[str, tuple[str, list[str]]] = {}

    def ask(word: str) -> None:
        pieces: list[str] = []
        done = RemoteClient(link).complete([{"role": "user", "content": word}], stream=True,
                                           on_token=pieces.append)
        answers[word] = (done.text, pieces)

    askers = [threading.Thread(target=ask, args=(f"w{i}",)) for i in range(count)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    thread.join()
    assert answers == {f"w{i}": (f"echo w{i}", [f"w{i}"]) for i in range(count)}


def test_a_waiting_call_reports_progress_and_gives_up_when_waiting_raises() -> None:
    waits: list[int] = []

    def waiting() -> None:
        waits.append(1)
        if len(waits) >= 3:
            raise RuntimeError("the instance is dying")

    link = LLMLink(lambda kind, data: None, waiting=waiting, slice_s=0.01)
    with pytest.raises(RuntimeError, match="dying"):
        RemoteClient(link).complete(HI)
    assert len(waits) == 3 and link.in_flight == 0


def test_a_token_callback_that_raises_ends_its_call_and_later_answers_are_dropped() -> None:
    sent: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    link = LLMLink(lambda kind, data: sent.put(data), slice_s=0.01)

    def refuse(piece: str) -> None:
        raise ValueError(f"no {piece}")

    def reader() -> None:
        call_id = sent.get(timeout=10)["id"]
        link.dispatch(_token(call_id, "x"))

    thread = threading.Thread(target=reader)
    thread.start()
    with pytest.raises(ValueError, match="no x"):
        RemoteClient(link).complete(HI, stream=True, on_token=refuse)
    thread.join()
    assert link.in_flight == 0 and link.dispatch(_result("llm-1", "late"))


def test_async_calls_resolve_by_id_whatever_the_order() -> None:
    async def scenario() -> None:
        sent: list[dict[str, Any]] = []
        link = LLMLink(lambda kind, data: sent.append(data))
        client = RemoteClient(link)
        pieces: dict[str, list[str]] = {"a": [], "b": []}
        calls = [asyncio.create_task(client.complete_async(
            [{"role": "user", "content": word}], stream=True, on_token=pieces[word].append))
            for word in ("a", "b")]
        await asyncio.sleep(0)  # both send their llm_call (the tasks start)
        by_word = {data["messages"][0]["content"]: data["id"] for data in sent}
        link.dispatch(_token(by_word["b"], "B"))
        link.dispatch(_result(by_word["b"], "bee"))
        link.dispatch(_token(by_word["a"], "A"))
        link.dispatch(_result(by_word["a"], "ay"))
        done = await asyncio.gather(*calls)
        assert [c.text for c in done] == ["ay", "bee"]
        assert pieces == {"a": ["A"], "b": ["B"]} and link.in_flight == 0

    asyncio.run(scenario())


def test_an_error_result_is_an_llm_error() -> None:
    async def scenario() -> None:
        sent: list[dict[str, Any]] = []
        link = LLMLink(lambda kind, data: sent.append(data))
        call = asyncio.create_task(RemoteClient(link).complete_async(HI))
        await asyncio.sleep(0)
        link.dispatch(Message(MessageType.LLM_RESULT, {"id": sent[0]["id"], "error": {
            "message": "model down", "status": 503, "attempts": 2}}))
        with pytest.raises(LLMError, match="model down"):
            await call

    asyncio.run(scenario())


def test_an_async_call_on_a_loop_of_its_own_thread_is_answered_on_that_loop() -> None:
    sent: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    link = LLMLink(lambda kind, data: sent.put(data))
    pieces: list[tuple[str, str]] = []

    def on_token(text: str) -> None:
        pieces.append((text, threading.current_thread().name))

    def agent_code() -> str:  # a plain handler running asyncio on its worker thread
        async def ask() -> str:
            done = await RemoteClient(link).complete_async(HI, stream=True, on_token=on_token)
            return done.text
        return asyncio.run(ask())

    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(agent_code()), name="worker")
    worker.start()
    call_id = sent.get(timeout=10)["id"]  # the reader (this thread) has no loop running
    link.dispatch(_token(call_id, "t"))
    link.dispatch(_result(call_id, "done"))
    worker.join(timeout=10)
    assert result == ["done"] and pieces == [("t", "worker")]
