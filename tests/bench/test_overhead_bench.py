"""The overhead benchmark's load generator and a small run: real servers, wrk, no timing asserted.

wrk is a system package: without it (and without the rights to install it)
the run tests skip, and ``.ci/run`` installs it so CI runs them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from project_o.bench import BENCHMARKS, load, overhead
from project_o.bench.agents import WORK_AGENT
from project_o.bench.agents.work_agent import agent as work_agent
from project_o.bench.memory_sets import measure_sets
from project_o.bench.overhead_servers import ServerProcess
from project_o.bench.overhead_wrk import WrkResult, lua_script, parse_result, run_wrk
from project_o.bench.report import Report

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None,
                               reason="wrk is not installed (.ci/run installs it)")


def _quiet(_: str) -> None:
    pass


def test_overhead_is_registered() -> None:
    assert BENCHMARKS["overhead"] == "project_o.bench.overhead"
    assert load("overhead") is overhead.run


def test_the_work_agent_computes_and_waits() -> None:
    client = work_agent.test_client()
    assert client.call({"ms": 1}) == {"ok": True}
    assert client.call({"io_ms": 1}) == {"ok": True}


def test_only_flavours_whose_agent_answers_are_measured(tmp_path: Path) -> None:
    refusing = tmp_path / "refusing_agent.py"
    refusing.write_text(
        "from project_o import Agent\n"
        "agent = Agent('refusing')\n"
        "@agent.handler\n"
        "def handle(ctx, request):\n"
        "    raise RuntimeError('this handler style is not taken')\n")
    refused = overhead.Flavour("refused", refusing)
    supported = overhead.flavours_supported([*overhead.FLAVOURS, refused])
    assert overhead.FLAVOURS[0] in supported  # sync handlers always answer
    assert refused not in supported


def test_the_lua_script_quotes_the_body_and_token() -> None:
    script = lua_script(b'{"input": {"a": "x\\"y"}}', "tok-en_1")
    assert 'wrk.method = "POST"' in script
    assert '"Bearer tok-en_1"' in script
    assert "\\34" in script  # the body's quotes as decimal escapes, never a bare quote
    assert "latency:percentile(99)" in script


def test_parse_result_reads_the_done_line() -> None:
    out = 'Running 1s test\nPROJECT_O_WRK {"requests":200,"duration_us":2000000,' \
          '"errors":3,"p50_us":1500.0,"p99_us":9000.0}\n'
    result = parse_result(out, client_cpu_s=0.01)
    assert (result.requests, result.errors, result.rate) == (200, 3, 100.0)
    assert (result.p50_ms, result.p99_ms, result.client_cpu_us) == (1.5, 9.0, 50.0)
    with pytest.raises(RuntimeError, match="no result line"):
        parse_result("wrk: connection refused", 0.0)


def test_a_saturated_load_generator_is_named_as_the_limit() -> None:
    # two wrk threads busy 1.9 s of every second while the servers idle: wrk held the figure
    result = WrkResult(requests=1000, seconds=1.0, p50_ms=1.0, p99_ms=2.0, errors=0,
                       client_cpu_s=1.9)
    limit = overhead._limiter({"uvicorn": 0.3}, result, overhead.WORKS[0], overhead.Load(2, 32),
                              busy=0.5)
    assert limit.startswith("wrk CPU"), limit
    idle = WrkResult(requests=1000, seconds=1.0, p50_ms=1.0, p99_ms=2.0, errors=0,
                     client_cpu_s=0.2)
    limit = overhead._limiter({"uvicorn": 0.3}, idle, overhead.WORKS[0], overhead.Load(2, 32),
                              busy=0.5)
    assert limit.startswith("round trips"), limit


@needs_wrk
def test_wrk_drives_the_plain_app_with_the_token(tmp_path: Path) -> None:
    agent = WORK_AGENT
    with ServerProcess("plain", tmp_path, str(agent), token="right") as plain:
        body = b'{"input": {}}'
        ok = run_wrk("wrk", f"{plain.url}/v1/requests", body, "right", threads=1,
                     connections=2, seconds=1)
        refused = run_wrk("wrk", f"{plain.url}/v1/requests", body, "wrong", threads=1,
                          connections=2, seconds=1)
    assert ok.requests > 0 and ok.errors == 0 and ok.client_cpu_s > 0
    assert refused.requests > 0 and refused.errors == refused.requests  # 401 every time


@needs_wrk
@pytest.mark.slow
def test_a_small_run_compares_both_servers_and_says_what_limited_them() -> None:
    report = overhead.run_with(1, True, _quiet, works=overhead.WORKS[:2],
                               loads=overhead.LOADS[:1], flavours=overhead.FLAVOURS[:1],
                               dashboard_rounds=1, memory=False)
    servers = [(row["handler"], row.get("server")) for row in report.rows]
    assert servers == [("0 ms", "plain FastAPI"), ("0 ms", "Project O"),
                       ("1 ms CPU", "plain FastAPI"), ("1 ms CPU", "Project O"),
                       ("1 ms CPU", "Project O + dashboard"),
                       ("fixed reply", "trivial (wrk ceiling)")]
    for row in report.rows:
        assert row["errors"] == 0 and row["req/s"] > 0, row
    for row in report.rows[:4]:
        assert row["server CPU us/req"] > 0 and row["wrk CPU us/req"] > 0
        assert row["limited by"]
    ours = report.rows[1]
    assert ours["supervisor us/req"] > 0 and ours["instances us/req"] > 0
    assert ours["req/s ratio"] > 0
    assert report.rows[4]["live messages"] > 0
    names = [t.name for t in report.targets]
    assert "load generator ceiling / fastest server figure" in names
    assert any(name.startswith("req/s Project O / plain, sync 1 ms CPU") for name in names)


@needs_wrk
@pytest.mark.slow
def test_durable_sets_are_measured_against_sqlite() -> None:
    report = Report(name="memory", quick=True)
    measure_sets(report, 1, _quiet, concurrency=(1, 4))
    assert [row["measure"] for row in report.rows] == [
        "ctx.memory.set, 1 concurrent requests", "ctx.memory.set, 4 concurrent requests",
        "await ctx.memory.aset, 1 concurrent requests",
        "await ctx.memory.aset, 4 concurrent requests"]
    for row in report.rows:
        assert row["per s"] > 0 and row["errors"] == 0 and row["SQLite FULL per s"] > 0
        assert row["wrk CPU us/req"] > 0
        # each process serving the sets spent CPU on them (the supervisor, main, standby)
        assert row["supervisor CPU us/set"] > 0 and row["main CPU us/set"] > 0
        assert row["standby CPU us/set"] > 0
    assert [t.name for t in report.targets] == [
        "durable ctx.memory.set /s, 4 concurrent requests",
        "durable await ctx.memory.aset /s, 4 concurrent requests"]


def test_ci_installs_wrk() -> None:
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "wrk" in ci
    assert subprocess.run(["bash", "-n", str(Path(__file__).resolve().parents[2] / ".ci" / "run")],
                          check=False).returncode == 0


@pytest.mark.slow
def test_memory_counts_supervisor_main_and_standby_and_shows_the_zygote_apart(
        tmp_path: Path) -> None:
    row = overhead.measure_memory(tmp_path / "vault")
    roles = {key.removesuffix(" PSS MB") for key in row if key.endswith(" PSS MB")}
    assert roles == {"main", "standby", "supervisor"}
    parts = sum(row[f"{role} PSS MB"] for role in roles)
    assert row["PSS MB"] == pytest.approx(parts, abs=0.2) and row["PSS MB"] > 0
    assert row["zygote PSS MB (apart)"] > 0
    assert 0 < row["PSS anon MB"] <= row["PSS MB"]
