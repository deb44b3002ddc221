"""Which threads an instance runs: none but its loop's until a plain handler needs one."""

from __future__ import annotations

import psutil

from tests.runtime.harness import FAST_BEATS, run, spawn, zygote


def test_a_standby_runs_no_worker_thread_and_a_promoted_one_serves_plain_handlers() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            standby = await spawn(z, "standby", config=FAST_BEATS)
            await standby.send("wal_entry", sequence=1, operation="memory_set",
                               data={"key": "k", "value": "one"})
            while (await standby.expect("heartbeat")).data["last_sequence"] != 1:
                pass
            # Following writes takes no thread: only the event loop's runs.
            assert psutil.Process(standby.pid).num_threads() == 1
            await standby.send("promote", role="main")
            answer = await standby.call({"do": "get", "key": "k"})
            assert answer.data["output"] == {"value": "one"}
            # The plain handler ran on a worker, started for it.
            assert psutil.Process(standby.pid).num_threads() == 2

    run(scenario())
