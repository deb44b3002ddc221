"""Workflows in-process: order, inputs, retries, failure, and resuming from the journal."""

from __future__ import annotations

from typing import Any

import pytest

from project_o.agent import Agent
from project_o.agent import workflow as workflow_module
from project_o.agent.dsl import TestClient
from project_o.agent.workflow import (
    WORKFLOW_FINISHED,
    WORKFLOW_STARTED,
    WORKFLOW_STEP_DONE,
    Workflow,
    WorkflowFailed,
)
from project_o.errors import InvalidArgument


class Crash(BaseException):
    """Stands in for the process dying mid-step (nothing after it runs)."""


def _ops(client: TestClient) -> list[tuple[str, Any]]:
    return [(op, data.get("step")) for op, data in client.journal]


def _pipeline(calls: list[str], crash_once: set[str] | None = None) -> Agent:
    agent = Agent("pipeline")
    wf = agent.workflow("etl")
    crash_once = crash_once if crash_once is not None else set()

    @wf.step
    def fetch(ctx: Any, inputs: dict[str, Any]) -> list[int]:
        calls.append("fetch")
        return list(range(inputs["input"]["n"]))

    @wf.step
    def square(ctx: Any, inputs: dict[str, Any]) -> list[int]:
        calls.append("square")
        if "square" in crash_once:
            crash_once.discard("square")
            raise Crash
        return [x * x for x in inputs["fetch"]]

    @wf.step
    def total(ctx: Any, inputs: dict[str, Any]) -> int:
        calls.append("total")
        return sum(inputs["square"])

    @agent.handler
    def handle(ctx: Any, request: Any) -> Any:
        return ctx.workflows.run("etl", input=request)

    return agent


def test_sequence_runs_in_order_and_passes_results() -> None:
    calls: list[str] = []
    client = _pipeline(calls).test_client()
    assert client.call({"n": 4}) == 0 + 1 + 4 + 9
    assert calls == ["fetch", "square", "total"]
    assert _ops(client) == [(WORKFLOW_STARTED, None), (WORKFLOW_STEP_DONE, "fetch"),
                            (WORKFLOW_STEP_DONE, "square"), (WORKFLOW_STEP_DONE, "total"),
                            (WORKFLOW_FINISHED, None)]
    started = client.journal[0][1]
    assert started["run_id"] == "test-1:etl:1" and started["input"] == {"n": 4}
    assert client.journal[-1][1]["status"] == "succeeded"


def test_dag_order_is_topological_with_ties_in_declaration_order() -> None:
    wf = Workflow("dag")
    for name, after in [("d", ["b", "c"]), ("b", ["a"]), ("c", ["a"]), ("a", []),
                        ("e", []), ("f", ["d", "e"])]:
        wf.step(name=name, after=after)(lambda ctx, inputs: None)
    assert [s.name for s in wf.order()] == ["a", "b", "c", "d", "e", "f"]


def test_dag_inputs_and_several_final_steps() -> None:
    agent = Agent("fan")
    wf = agent.workflow("fan")
    wf.step(name="root", after=[])(lambda ctx, inputs: inputs["input"] + 1)
    wf.step(name="left", after=["root"])(lambda ctx, inputs: sorted(inputs))
    wf.step(name="right", after=["root"])(lambda ctx, inputs: inputs["root"] * 10)
    ctx = agent.test_client().context("r")
    assert ctx.workflows.run("fan", 1) == {"left": ["input", "root"], "right": 20}


@pytest.mark.parametrize(
    ("steps", "needle"),
    [
        ([("a", ["b"]), ("b", ["a"])], "cycle"),
        ([("a", ["zzz"])], "unknown steps"),
        ([], "no steps"),
    ],
)
def test_bad_graphs_are_refused(steps: list[tuple[str, list[str]]], needle: str) -> None:
    wf = Workflow("bad")
    for name, after in steps:
        wf.step(name=name, after=after)(lambda ctx, inputs: None)
    with pytest.raises(InvalidArgument, match=needle):
        wf.order()


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"name": "input"}, "other than"), ({"retries": -1}, "retries"),
     ({"backoff": -1.0}, "backoff"), ({"after": "a"}, "list of step names")],
)
def test_bad_steps_are_refused(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        Workflow("w").step(**options)(lambda ctx, inputs: None)


def test_retries_then_success_records_attempts_and_idles_while_backing_off() -> None:
    agent = Agent("flaky")
    wf = agent.workflow("flaky")
    attempts: list[dict[str, Any]] = []

    @wf.step(retries=2, backoff=0.15)
    def flaky(ctx: Any, inputs: dict[str, Any]) -> str:
        attempts.append(dict(inputs["input"]))
        inputs["input"]["poisoned"] = True  # a failed attempt's mutation must not leak
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    client = agent.test_client()
    idles: list[int] = []
    client.kit.idle = lambda: idles.append(1)
    assert client.context("r").workflows.run("flaky", {"x": 1}) == "ok"
    assert len(attempts) == 3
    assert attempts == [{"x": 1}] * 3
    step_done = next(data for op, data in client.journal if op == WORKFLOW_STEP_DONE)
    assert step_done["attempts"] == 3
    assert idles  # the runtime's heartbeat hook ran during the backoff


def test_exhausted_retries_fail_the_run_durably() -> None:
    agent = Agent("doomed")
    wf = agent.workflow("doomed")
    runs: list[int] = []

    @wf.step(retries=1)
    def boom(ctx: Any, inputs: dict[str, Any]) -> None:
        runs.append(1)
        raise ValueError("bad data")

    client = agent.test_client()
    workflows = client.context("r").workflows
    with pytest.raises(WorkflowFailed, match="bad data") as caught:
        workflows.run("doomed", run_id="run-1")
    assert isinstance(caught.value.__cause__, ValueError)
    assert caught.value.error == {"step": "boom", "type": "ValueError",
                                  "message": "bad data", "attempts": 2}
    assert client.journal[-1][1]["status"] == "failed"
    with pytest.raises(WorkflowFailed):  # a failed run stays failed ...
        workflows.run("doomed", run_id="run-1")
    assert len(runs) == 2  # ... without running the step again
    with pytest.raises(WorkflowFailed):
        workflows.run("doomed", run_id="run-2")  # a new id starts over
    assert len(runs) == 4


def test_unstorable_result_fails_without_retrying() -> None:
    agent = Agent("sets")
    wf = agent.workflow("sets")
    runs: list[int] = []

    @wf.step(retries=3)
    def make(ctx: Any, inputs: dict[str, Any]) -> set[int]:
        runs.append(1)
        return {1, 2}

    with pytest.raises(WorkflowFailed, match="set"):
        agent.test_client().context("r").workflows.run("sets")
    assert runs == [1]


def test_crash_mid_step_resumes_from_the_journal_without_rerunning_done_steps() -> None:
    calls: list[str] = []
    agent = _pipeline(calls, crash_once={"square"})
    first = agent.test_client()
    with pytest.raises(Crash):
        first.call({"n": 3}, request_id="req-7")
    assert calls == ["fetch", "square"]
    assert _ops(first) == [(WORKFLOW_STARTED, None), (WORKFLOW_STEP_DONE, "fetch")]

    # A new process: replay the WAL, then the same request is re-dispatched.
    second = agent.test_client()
    for operation, data in first.journal:
        second.kit.state.apply(operation, data)
    assert second.call({"n": 3}, request_id="req-7") == 0 + 1 + 4
    assert calls == ["fetch", "square", "square", "total"]  # fetch ran once
    assert _ops(second)[0] == (WORKFLOW_STEP_DONE, "square")


def test_resume_from_a_checkpoint_payload() -> None:
    calls: list[str] = []
    agent = _pipeline(calls, crash_once={"square"})
    first = agent.test_client()
    with pytest.raises(Crash):
        first.call({"n": 2}, request_id="req-1")
    second = agent.test_client()
    second.kit.state.load(first.kit.state.payload())
    assert second.call({"n": 2}, request_id="req-1") == 1
    assert calls.count("fetch") == 1


def test_a_finished_run_returns_its_output_without_running_again() -> None:
    calls: list[str] = []
    client = _pipeline(calls).test_client()
    assert client.call({"n": 2}, request_id="same") == 1
    journaled = len(client.journal)
    assert client.call({"n": 99}, request_id="same") == 1  # the stored run wins
    assert calls == ["fetch", "square", "total"] and len(client.journal) == journaled


def test_derived_run_ids_count_runs_within_a_request() -> None:
    calls: list[str] = []
    client = _pipeline(calls).test_client()
    workflows = client.context("req").workflows
    assert workflows.run("etl", {"n": 2}) == 1
    assert workflows.run("etl", {"n": 3}) == 5
    assert workflows.runs() == ["req:etl:1", "req:etl:2"]
    status = workflows.status("req:etl:2")
    assert status is not None and status["status"] == "succeeded"
    assert status["results"]["fetch"] == [0, 1, 2]


def test_run_id_of_another_workflow_and_unknown_workflow_are_refused() -> None:
    calls: list[str] = []
    agent = _pipeline(calls)
    agent.workflow("other").step(lambda ctx, inputs: None)
    workflows = agent.test_client().context("r").workflows
    workflows.run("etl", {"n": 1}, run_id="shared")
    with pytest.raises(InvalidArgument, match="belongs to workflow 'etl'"):
        workflows.run("other", run_id="shared")
    with pytest.raises(InvalidArgument, match="no workflow 'nope'"):
        workflows.run("nope")
    with pytest.raises(InvalidArgument, match="packable|MessagePack"):
        workflows.run("etl", {1, 2}, run_id="unpackable")


def test_finished_runs_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow_module, "MAX_FINISHED_RUNS", 2)
    calls: list[str] = []
    client = _pipeline(calls).test_client()
    workflows = client.context("r").workflows
    for n in range(4):
        workflows.run("etl", {"n": n}, run_id=f"run-{n}")
    assert workflows.runs() == ["run-2", "run-3"]
    payload = client.kit.state.payload()
    assert list(payload["agent_state"]["workflows"]) == ["run-2", "run-3"]


def test_store_rejects_operations_it_cannot_apply() -> None:
    store = workflow_module.WorkflowStore()
    with pytest.raises(InvalidArgument, match="never started"):
        store.apply(WORKFLOW_STEP_DONE, {"run_id": "x", "step": "a", "result": 1})
    with pytest.raises(InvalidArgument, match="run_id"):
        store.apply(WORKFLOW_STARTED, {"workflow": "w"})
    with pytest.raises(InvalidArgument, match="not a workflow operation"):
        store.apply("memory_set", {"run_id": "x"})
