"""The main's ``evolution_intent`` frames, answered by whoever decides on evolution.

The instance waits for the answer before it may send its next intent, so
the relay answers one at a time and registers for the next frame before
it replies. A listener that raises rejects the intent with the reason;
the agent gets an answer either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.wire import Message

__all__ = ["IntentListener", "relay_intents"]

#: answers an ``evolution_intent`` frame's data with ``{experiment_id, status, reason}``
IntentListener = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def relay_intents(
    instance: InstanceHandle, listener: IntentListener, still_main: Callable[[], bool],
) -> None:
    """Answer ``instance``'s intents with ``listener`` while it lives and ``still_main()``."""
    while instance.alive and still_main():
        try:
            message = await instance.waiter("evolution_intent")
        except InstanceDied:
            return
        try:
            answer = await listener(dict(message.data))
        except Exception as exc:  # noqa: BLE001 - the agent gets the reason, we go on
            answer = {"experiment_id": None, "status": "rejected", "reason": str(exc)}
        with contextlib.suppress(InstanceDied):
            await instance.send(Message("evolution_result",
                                        {"id": message.data.get("id"), **answer}))
