"""The agent host's parts, one at a time, on fake instances and a fake clock.

No subprocess, no socket, no sleep: what a real supervisor does over
seconds (a death, a takeover, a crash loop, a reload) is replayed here in
a few event-loop turns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from project_o.errors import NoInstanceAvailable, RequestTimeout, ZygoteError
from project_o.supervisor.agent_host import AgentHost
from project_o.supervisor.agent_tree import SlotChild, ZygoteSlot, stopped_by_tree
from project_o.supervisor.answers import AnswerBook
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.feedback_delivery import deliver_feedback, failed_hooks
from project_o.supervisor.hot_reload import HotReload
from project_o.supervisor.instance_handle import InstanceDied
from project_o.supervisor.instance_pool import InstancePool
from project_o.supervisor.intents import relay_intents
from project_o.supervisor.nursery import Nursery, NurseryClosed
from project_o.supervisor.poison import PoisonTracker
from project_o.supervisor.restart_policy import MAX_BACKOFF, RestartPolicy
from project_o.wire import Message
from tests.supervisor.fakes import (
    PENDING,
    FakeBook,
    FakeClock,
    FakeFactory,
    FakeInstance,
    FakeVault,
    FakeZygote,
    Sleeps,
    async_test,
    handler_error,
)


def _config(**overrides: Any) -> SupervisorConfig:
    return SupervisorConfig(vault=Path("/nonexistent/vault"), agent=Path("/agents/a.py"),
                            **overrides)


# -- restart policy -----------------------------------------------------------


def test_the_backoff_doubles_while_trees_give_up_soon_and_resets_after_a_quiet_spell() -> None:
    clock = FakeClock()
    policy = RestartPolicy(1, 10.0, clock=clock)
    delays = []
    for _ in range(8):
        policy.started()
        delays.append(policy.back_off())
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert delays[-1] == MAX_BACKOFF and delays == sorted(delays)
    policy.started()
    clock.advance(10.5)  # this tree served a whole window before it gave up
    assert policy.back_off() == 0.1


def test_clear_starts_the_backoff_afresh_for_a_new_version() -> None:
    policy = RestartPolicy(0, 10.0, clock=FakeClock())
    assert [policy.back_off() for _ in range(2)] == [0.1, 0.2]
    policy.clear()
    assert policy.back_off() == 0.1


# -- poison, answers ------------------------------------------------------------


def test_a_request_is_quarantined_on_its_second_kill_and_forgiven_when_answered() -> None:
    tracker = PoisonTracker(threshold=2)
    assert tracker.blame("r1") is None
    assert tracker.blame("r1") == 2
    assert tracker.blame("r1") is None  # quarantine resets the count
    tracker.forgive("r1")
    assert tracker.blame("r1") is None


def test_the_answer_book_forgets_the_oldest_and_proves_each_version_once() -> None:
    book = AnswerBook(capacity=2)
    for n in range(3):
        book.remember(f"r{n}", f"v{n}")
    assert [book.version_of(f"r{n}") for n in range(3)] == [None, "v1", "v2"]
    assert book.prove("v1") and not book.prove("v1")
    book.trust("v9")
    assert not book.prove("v9")


# -- the pool -------------------------------------------------------------------


@async_test
async def test_wait_for_main_wakes_when_a_main_is_promoted() -> None:
    pool = InstancePool()
    waiting = asyncio.create_task(pool.wait_for_main(60.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    standby = FakeInstance("standby")
    await pool.promote(standby)
    assert await waiting is standby
    assert standby.role == "main" and standby.types_sent() == ["promote"]


@async_test
async def test_wait_for_main_with_no_time_left_is_a_request_timeout() -> None:
    with pytest.raises(RequestTimeout):
        await InstancePool().wait_for_main(0.0)


@async_test
async def test_wait_for_main_with_no_main_coming_says_it_is_restarting() -> None:
    with pytest.raises(NoInstanceAvailable, match="restarting"):
        await InstancePool().wait_for_main(0.001)


@async_test
async def test_a_dead_main_leaves_its_slot_at_once_and_requests_wait() -> None:
    pool = InstancePool()
    main, standby = FakeInstance("main"), FakeInstance("standby")
    await pool.promote(main)
    pool.standby = standby
    assert pool.vacate(main) == "main" and pool.main is None
    assert pool.take_standby() is standby and pool.standby is None
    assert pool.vacate(FakeInstance("main")) is None  # held no slot


@async_test
async def test_retired_instances_hold_no_slot_and_can_be_reinstated() -> None:
    pool = InstancePool()
    main, standby = FakeInstance("main"), FakeInstance("standby")
    await pool.promote(main)
    pool.standby = standby
    assert pool.retire() == ({"main": main}, standby)
    assert pool.main is None and pool.vacate(main) is None
    standby.kill("gone")
    pool.reinstate({"main": main}, standby)
    assert pool.retired == set() and pool.standby is None  # only the living come back


# -- feedback and intents ---------------------------------------------------------


@async_test
async def test_feedback_reports_failed_hooks_and_records_them() -> None:
    reports = [{"hook": "learn", "ok": False, "error": {"type": "KeyError", "message": "x"}},
               {"hook": "log", "ok": True}]
    pool, events = InstancePool(), EventLog()
    await pool.promote(FakeInstance("main", answer=lambda _id, _fb: reports))
    reason = await deliver_feedback(pool, {"request_id": "r1", "score": 1.0}, 5.0, events)
    assert reason == "feedback hooks raised: learn: KeyError: x"
    assert events.of_kind("feedback_hook_failed")[0]["subject"] == "r1"
    assert failed_hooks("not a list") == []


@pytest.mark.parametrize(("answer", "expected"), [
    (lambda _id, _fb: [{"hook": "learn", "ok": True}], None),
    (lambda _id, _fb: handler_error("TypeError", "bad"), ("the agent refused the feedback: "
                                                         "TypeError: bad")),
    (lambda _id, _fb: InstanceDied("boom"), ("the instance died before its feedback hooks "
                                            "finished: boom")),
])
@async_test
async def test_feedback_outcomes(answer: Any, expected: str | None) -> None:
    pool = InstancePool()
    await pool.promote(FakeInstance("main", answer=answer))
    assert await deliver_feedback(pool, {"request_id": "r"}, 5.0, EventLog()) == expected


@async_test
async def test_feedback_with_no_main_says_so() -> None:
    reason = await deliver_feedback(InstancePool(), {"request_id": "r"}, 0.0, EventLog())
    assert reason == "no instance of the agent was ready to take it"


@async_test
async def test_intents_are_answered_one_at_a_time_and_a_failing_listener_rejects() -> None:
    main = FakeInstance("main")
    answers = iter([{"experiment_id": "e1", "status": "started", "reason": ""}])

    async def listener(intent: dict[str, Any]) -> dict[str, Any]:
        try:
            return next(answers)
        except StopIteration:
            raise ValueError("no more experiments") from None

    relay = asyncio.create_task(relay_intents(main, listener, lambda: True))
    for n in (1, 2):
        await asyncio.sleep(0)
        main.notify("evolution_intent", Message("evolution_intent", {"id": n}))
        for _ in range(3):
            await asyncio.sleep(0)
    results = [m.data for m in main.sent if m.type == "evolution_result"]
    assert results == [
        {"id": 1, "experiment_id": "e1", "status": "started", "reason": ""},
        {"id": 2, "experiment_id": None, "status": "rejected", "reason": "no more experiments"},
    ]
    main.kill("bye")
    await relay  # ends on its own when the instance dies


# -- the agent's tree: what restarts the zygote, the main and the standby -----------


async def _host(book: FakeBook | None = None,
                **config: Any) -> tuple[AgentHost, FakeFactory, Sleeps]:
    factories: list[FakeFactory] = []

    def make_factory(cfg: SupervisorConfig, version: str, events: EventLog, owner: Any,
                     restore: Any) -> FakeFactory:
        factories.append(FakeFactory(cfg, version, owner))
        return factories[-1]

    clock = FakeClock()
    sleeps = Sleeps(clock)
    host = AgentHost(_config(**config), FakeVault(), EventLog(), "v1", book,  # type: ignore[arg-type]
                     clock=clock, sleep=sleeps, make_factory=make_factory)
    await host.start()
    return host, factories[0], sleeps


async def _settle() -> None:
    for _ in range(40):
        await asyncio.sleep(0)


def _restarts(host: AgentHost) -> dict[str, int]:
    return {c["id"]: c["restarts"] for c in host.tree.describe()}


@async_test
async def test_a_dead_main_is_replaced_by_its_standby_and_a_new_standby_follows() -> None:
    host, factory, sleeps = await _host()
    main, standby = factory.spawned
    main.kill("socket closed")
    await _settle()
    assert host.pool.main is standby and standby.types_sent() == ["promote"]
    assert host.pool.standby is not None and host.pool.standby not in (main, standby)
    assert main.closed and factory.restarts == 1
    assert sorted(e["kind"] for e in host.events.recent()) == ["crash", "start", "takeover"]
    assert sleeps.asked == [0.1]  # the pause before forking the next standby
    # a takeover is no restart of the main's slot; the standby's is restarted by the tree
    assert _restarts(host) == {"zygote": 0, "main": 0, "standby": 1}
    await host.stop()


@async_test
async def test_with_no_standby_a_new_main_is_forked() -> None:
    host, factory, _ = await _host(standby=False)
    main = factory.spawned[0]
    main.kill("hang: no heartbeat")
    await _settle()
    assert host.pool.main is not None and host.pool.main is not main
    assert host.events.of_kind("hang")[0]["subject"] == main.instance_id
    await host.stop()


@async_test
async def test_a_failed_fork_is_retried_by_the_tree() -> None:
    host, factory, _ = await _host(standby=False)
    factory.fail_next = [ZygoteError("fork failed"), ZygoteError("fork failed")]
    factory.spawned[0].kill("crash")
    await _settle()
    assert host.pool.main is factory.spawned[1]
    assert len(host.events.of_kind("spawn_failed")) == 2
    await host.stop()


@async_test
async def test_past_the_limit_the_takeover_still_happens_and_the_refill_gives_up() -> None:
    host, _factory, sleeps = await _host(max_restarts=2)
    for _ in range(3):  # the clock stands still: every death is in one window
        host.pool.main.kill("crash")  # type: ignore[union-attr]
        await _settle()
    # deaths 1, 2: takeover, standby refilled; 3: takeover, and the refill is one restart
    # too many: the tree gives up, the host backs off and starts a new tree
    assert len(host.events.of_kind("takeover")) == 3
    assert len(host.events.of_kind("escalate")) == 1 and sleeps.asked[-1] == 0.1
    assert host.pool.main is not None and host.pool.main.alive
    assert host.pool.standby is not None and host.pool.standby.alive
    await host.stop()


@async_test
async def test_a_crash_loop_makes_the_tree_give_up_and_the_host_back_off() -> None:
    host, factory, sleeps = await _host(standby=False, max_restarts=2)
    for _ in range(6):  # the clock stands still: every death is in one window
        host.pool.main.kill("crash")  # type: ignore[union-attr]
        await _settle()
    # deaths 1, 2: restarted; 3: over the limit, the tree gives up; a new tree after a
    # pause, and again at death 6, with a pause twice as long
    assert [e["reason"].split(";")[-1] for e in host.events.of_kind("escalate")] == [
        " backing off 0.10 s", " backing off 0.20 s"]
    assert sleeps.asked == [0.1, 0.2]
    assert host.pool.main is not None and host.pool.main.alive
    assert len(factory.spawned) == 7  # the first main and one per death
    await host.stop()


@async_test
async def test_past_the_limit_the_version_is_given_up_for_the_previous_good_one() -> None:
    book = FakeBook(previous="v0")
    host, factory, _ = await _host(book=book, standby=False, max_restarts=0)
    old_zygote = factory.zygote
    fell_back: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def seen(event: dict[str, Any]) -> None:
        if event["kind"] == "fallback" and not fell_back.done():
            fell_back.set_result(None)

    host.events.subscribe(seen)
    factory.spawned[0].kill("crash")
    await fell_back  # the catalog is asked in threads: real time passes
    await _settle()
    assert factory.version == "v0" and book.rejected[0][0] == "v1"
    assert old_zygote is not None and old_zygote.closed
    assert host.pool.main is not None and host.pool.main.version == "v0"
    assert host.events.of_kind("fallback")[0]["to"] == "v0"
    await host.stop()


@async_test
async def test_a_replacement_that_dies_before_promotion_is_replaced_again() -> None:
    host, factory, _ = await _host(standby=False)
    original = factory.spawn

    async def dies_once(role: str) -> FakeInstance:
        instance = await original(role)
        if len(factory.spawned) == 2:
            instance.alive = False  # dead before promote() reaches it
        return instance

    factory.spawn = dies_once  # type: ignore[method-assign]
    factory.spawned[0].kill("crash")
    await _settle()
    assert host.pool.main is factory.spawned[2]
    await host.stop()


@async_test
async def test_a_dead_zygote_is_restarted_by_the_tree() -> None:
    host, factory, _ = await _host()
    old = factory.zygote
    assert old is not None
    old.die()
    await _settle()
    assert factory.zygote is not None and factory.zygote is not old and factory.zygote.alive
    assert _restarts(host)["zygote"] == 1
    assert host.tree.describe()[0]["last_exit"] == "the zygote is gone: killed by SIGKILL"
    await host.stop()


@async_test
async def test_stopping_the_host_stops_its_tree_and_restarts_nothing() -> None:
    host, factory, _ = await _host()
    main, standby = factory.spawned
    await host.stop()
    assert not main.alive and not standby.alive and factory.spawned == [main, standby]
    assert [c["status"] for c in host.tree.describe()] == ["stopped"] * 3
    assert host.events.of_kind("crash") == []  # stopped on purpose: no crash


@async_test
async def test_a_reload_keeps_the_slots_and_the_tree_refills_the_standby() -> None:
    host, factory, _ = await _host()
    old_main, old_standby = factory.spawned
    old_zygote = factory.zygote
    await host.reloads.reload(Path("/b.py"), "v2", "promoted")
    await _settle()
    main, standby = host.pool.main, host.pool.standby
    assert main is not None and main.version == "v2" and main is not old_main
    assert standby is not None and standby.version == "v2" and standby is not old_standby
    assert not old_main.alive and not old_standby.alive  # retired: shut down, not replaced
    assert _restarts(host) == {"zygote": 0, "main": 0, "standby": 1}
    assert host.events.of_kind("crash") == []
    assert old_zygote is not None and old_zygote.closed  # its end is no crash of the slot
    assert [c["status"] for c in host.tree.describe()] == ["running"] * 3
    await host.stop()


@async_test
async def test_the_zygote_slot_follows_the_zygote_that_serves() -> None:
    current: list[FakeZygote] = [FakeZygote("v1")]
    slot = ZygoteSlot(lambda: current[0])  # type: ignore[arg-type,return-value]
    replaced = current[0]
    current[0] = FakeZygote("v2")  # a reload put another zygote in its place
    replaced.die("closed by the reload")
    await asyncio.sleep(0)
    assert not slot.ended and slot.handle == current[0].pid
    current[0].die("killed by SIGKILL")
    await asyncio.sleep(0)
    assert (await slot.wait()).detail == "the zygote is gone: killed by SIGKILL"


@async_test
async def test_stopping_a_slot_kills_its_occupant_as_no_crash() -> None:
    pool = InstancePool()
    main = FakeInstance("main")
    await pool.promote(main)  # type: ignore[arg-type]
    slot = SlotChild("main", pool)
    assert slot.handle == main.pid
    slot.kill()
    assert not main.alive and stopped_by_tree(main.death_reason or "")
    assert (await slot.wait()).normal


class _Host:
    """The pool, factory and events a hot reload works with; deaths are only recorded."""

    def __init__(self, config: SupervisorConfig, mains: int = 1) -> None:
        self.events, self.pool = EventLog(), InstancePool(mains)
        self.factory = FakeFactory(config, owner=self)
        self.deaths: list[str] = []

    def on_death(self, instance: Any, reason: str) -> None:
        self.deaths.append(instance.instance_id)

    async def start(self) -> tuple[FakeInstance, FakeInstance]:
        await self.factory.ensure_zygote()
        main, standby = await self.factory.spawn("main"), await self.factory.spawn("standby")
        await self.pool.promote(main)
        self.pool.standby = standby
        return main, standby


# -- hot reload ------------------------------------------------------------------------


def _reloader(host: _Host, refilled: list[str]) -> HotReload:
    return HotReload(host.pool, host.factory, host.events,  # type: ignore[arg-type]
                     promote=host.pool.promote, refill=refilled.append,
                     drain_timeout=5.0, standby=True)


@async_test
async def test_a_reload_drains_the_old_main_then_serves_the_new_version() -> None:
    host = _Host(_config())
    main, standby = await host.start()
    host.factory.answer = None
    main.answer = lambda _id, _payload: PENDING
    in_flight = asyncio.create_task(main.request("r1", "q", 5.0))
    await asyncio.sleep(0)
    refilled: list[str] = []
    reload = asyncio.create_task(_reloader(host, refilled).reload(Path("/b.py"), "v2", "promote"))
    await asyncio.sleep(0)
    assert not reload.done()  # waiting for r1
    main.answer_pending("r1", "done")
    await reload
    assert await in_flight == "done"
    assert host.pool.main is not None and host.pool.main.version == "v2"
    assert main.types_sent()[-1] == "shutdown" and not main.alive and not standby.alive
    assert host.pool.retired == set() and refilled == ["standby"]
    assert host.events.of_kind("reload")[0]["previous"] == "v1"


@async_test
async def test_a_reload_whose_new_main_fails_serves_the_old_version_again() -> None:
    host = _Host(_config())
    main, standby = await host.start()
    host.factory.fail_next = [ZygoteError("the new version does not start")]
    with pytest.raises(ZygoteError):
        await _reloader(host, []).reload(Path("/b.py"), "v2", "promote")
    assert host.pool.main is main and host.pool.standby is standby
    assert host.factory.version == "v1" and host.factory.config.agent == Path("/agents/a.py")
    assert host.pool.retired == set()


# -- nursery ----------------------------------------------------------------------------


@async_test
async def test_a_failing_task_reaches_the_owner_and_closes_the_nursery() -> None:
    nursery = Nursery("test")
    await nursery.open()
    sibling = nursery.spawn(asyncio.Event().wait(), "waits forever")

    async def bug() -> None:
        raise KeyError("bug")

    nursery.spawn(bug(), "bug")
    error = await nursery.failed
    assert isinstance(error, BaseExceptionGroup) and error.subgroup(KeyError) is not None
    assert sibling.cancelled()
    with pytest.raises(NurseryClosed):
        nursery.spawn(asyncio.sleep(0), "late")
    await nursery.close()


@async_test
async def test_close_cancels_and_awaits_what_still_runs() -> None:
    nursery = Nursery("test")
    await nursery.open()
    task = nursery.spawn(asyncio.Event().wait(), "forever")
    await nursery.close()
    assert task.cancelled() and not nursery.failed.done() and not nursery.open_for_tasks


# -- a pool of mains -------------------------------------------------------------------


@async_test
async def test_choose_main_takes_the_least_loaded_and_equals_in_turn() -> None:
    pool = InstancePool(3)
    first, second, third = (FakeInstance("main") for _ in range(3))
    for slot, main in zip(("main", "main-1", "main-2"), (first, second, third), strict=True):
        await pool.promote(main, slot)  # type: ignore[arg-type]
    load = {first.pid: 2, second.pid: 0, third.pid: 1}
    assert await pool.choose_main(1.0, lambda m: load[m.pid]) is second
    ties = [await pool.choose_main(1.0, lambda _m: 0) for _ in range(6)]
    assert ties == [second, third, first, second, third, first]  # in turn, each once a round


@async_test
async def test_a_dead_main_leaves_its_slot_and_the_others_go_on_serving() -> None:
    pool = InstancePool(2)
    first, second = FakeInstance("main"), FakeInstance("main")
    await pool.promote(first)  # type: ignore[arg-type]
    await pool.promote(second, "main-1")  # type: ignore[arg-type]
    first.kill("gone")
    assert pool.vacate(first) == "main" and pool.main is None  # type: ignore[arg-type]
    assert await pool.choose_main(0.0, lambda _m: 0) is second  # no wait: one is live
    assert pool.empty_mains() == ["main"] and pool.is_main(second)  # type: ignore[arg-type]
    second.kill("gone too")
    assert pool.vacate(second) == "main-1"  # type: ignore[arg-type]
    with pytest.raises(RequestTimeout):
        await pool.choose_main(0.0, lambda _m: 0)


def test_a_pool_holds_one_to_max_instances_mains() -> None:
    with pytest.raises(ValueError, match="1 to 64 mains"):
        InstancePool(0)


@async_test
async def test_a_reload_of_a_pool_drains_every_main_and_the_tree_refills_the_others() -> None:
    host = _Host(_config(), mains=2)
    first, standby = await host.start()
    second = await host.factory.spawn("main")
    await host.pool.promote(second, "main-1")
    assert second.types_sent()[-1] == "promote"  # told it is no checkpointing primary
    assert second.sent[-1].data == {"role": "main", "checkpoints": False}
    host.factory.answer = None
    refilled: list[str] = []
    await _reloader(host, refilled).reload(Path("/b.py"), "v2", "promote")
    assert host.pool.main is not None and host.pool.main.version == "v2"
    assert not first.alive and not second.alive and not standby.alive
    assert host.pool.retired == set() and refilled == ["main-1", "standby"]
