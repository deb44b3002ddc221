"""The supervisor's parts as tree children, and how a failed start is told, without processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from project_o.errors import AgentLoadError, GatewayError, VaultError
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.parts import Part
from project_o.supervisor.service import Supervisor
from project_o.supervisor.spec import ChildSpec, EventKind
from project_o.supervisor.startup import (
    EXIT_AGENT_BROKEN,
    EXIT_PORT_UNAVAILABLE,
    EXIT_START_FAILED,
    EXIT_VAULT_UNAVAILABLE,
    StartupError,
    start_failure,
)
from project_o.supervisor.tree import SupervisionTree
from tests.supervisor.fakes import async_test


@async_test
async def test_a_part_stops_once_and_reports_a_normal_end() -> None:
    stops: list[str] = []

    async def stop() -> None:
        stops.append("stopped")

    part = Part("thing", stop=stop)
    part.terminate()
    part.kill()  # a second request while stopping: still one stop
    reason = await part.wait()
    assert reason.normal and stops == ["stopped"]
    assert part.handle == "thing"


@async_test
async def test_a_part_whose_failure_resolves_ends_abnormally_with_the_reason() -> None:
    failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def stop() -> None:
        pass

    part = Part("vault", stop=stop, failure=failure)
    failure.set_result(OSError("fsync failed"))
    reason = await part.wait()
    assert not reason.normal and reason.detail == "fsync failed"


@async_test
async def test_a_part_asked_to_stop_ends_as_its_stop_does_whatever_resolves_meanwhile() -> None:
    failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def stop() -> None:
        failure.set_result(GatewayError("the server task ended"))  # as a stopping gateway's

    part = Part("gateway", stop=stop, failure=failure)
    part.terminate()
    reason = await part.wait()
    assert reason.normal and reason.detail == "shutdown"


class FakeFront:
    """A gateway that serves until told, or until the test ends it (its server died)."""

    def __init__(self) -> None:
        self.port = 8765
        self.served = asyncio.get_running_loop().create_future()
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True
        if not self.served.done():
            self.served.set_result(None)

    def ended(self) -> asyncio.Future[None]:
        return self.served


@async_test
async def test_the_gateway_part_fails_when_its_server_stops_serving_on_its_own(
        tmp_path: Path) -> None:
    front = FakeFront()
    config = SupervisorConfig(vault=tmp_path, agent=tmp_path / "a.py")
    supervisor = Supervisor(config, lambda _service, _config: front)
    part = await supervisor._start_gateway()
    front.served.set_exception(OSError("the event loop's server socket broke"))
    reason = await part.wait()
    assert not reason.normal
    assert reason.detail == "the gateway stopped serving: the event loop's server socket broke"
    assert not front.stopped  # the tree stops what failed; the part only reports it


@async_test
async def test_a_gateway_stopped_by_the_tree_ends_normally(tmp_path: Path) -> None:
    front = FakeFront()
    config = SupervisorConfig(vault=tmp_path, agent=tmp_path / "a.py")
    supervisor = Supervisor(config, lambda _service, _config: front)
    part = await supervisor._start_gateway()
    part.terminate()
    assert (await part.wait()).normal and front.stopped


@async_test
async def test_a_part_whose_stop_raises_ends_abnormally() -> None:
    async def stop() -> None:
        raise RuntimeError("could not close")

    part = Part("gateway", stop=stop)
    part.terminate()
    reason = await part.wait()
    assert not reason.normal and "could not close" in reason.detail


@async_test
async def test_a_failing_part_escalates_a_tree_that_allows_no_restart() -> None:
    failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    stopped: list[str] = []
    escalations: list[str] = []
    events: list[tuple[EventKind, str | None]] = []

    def spec(name: str, fail: asyncio.Future[BaseException] | None = None) -> ChildSpec:
        async def stop() -> None:
            stopped.append(name)

        async def start() -> Part:
            return Part(name, stop=stop, failure=fail)

        return ChildSpec(name, start, shutdown="infinity")

    tree = SupervisionTree([spec("vault", failure), spec("agent"), spec("gateway")],
                           strategy="rest_for_one", max_restarts=0, max_seconds=1.0,
                           on_event=lambda kind, child, _why: events.append((kind, child)),
                           on_escalate=escalations.append)
    await tree.start()
    failure.set_result(OSError("disk gone"))
    reason = await tree.wait()
    assert not reason.normal and len(escalations) == 1
    assert stopped == ["gateway", "agent"]  # the others, in reverse; the failed one is down
    assert (EventKind.ESCALATE, "vault") in events


def test_each_part_that_fails_to_start_has_its_own_exit_status() -> None:
    cases = [
        ("vault", VaultError("locked"), EXIT_VAULT_UNAVAILABLE),
        ("gateway", GatewayError("cannot listen on 127.0.0.1:1: in use"), EXIT_PORT_UNAVAILABLE),
        ("agent", AgentLoadError("importing a.py raised SyntaxError"), EXIT_AGENT_BROKEN),
        ("evolution", RuntimeError("catalog"), EXIT_START_FAILED),
    ]
    for child, exc, status in cases:
        failure = start_failure(child, exc)
        assert failure.exit_code == status
        name = "evolution control" if child == "evolution" else child
        assert str(failure).startswith(f"cannot start the {name}: ")
    told = StartupError("already said", 66)
    assert start_failure("agent", told) is told


def test_an_agent_import_failure_shows_the_agent_s_frames_only() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/x/project_o/runtime/loader.py", line 146, in _execute\n'
        "    run()\n"
        '  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed\n'
        '  File "/home/me/agent.py", line 3, in <module>\n'
        "    undefined()\n"
        "NameError: name 'undefined' is not defined\n"
    )
    message = str(start_failure("agent", AgentLoadError("importing agent.py raised NameError",
                                                        traceback)))
    assert 'File "/home/me/agent.py", line 3' in message and "undefined()" in message
    assert "loader.py" not in message and "frozen" not in message
