"""`project-o status` says which sandbox layers hold, which not and why, and shouts when off."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from project_o.llm.config import LLMConfig
from project_o.runtime.confine import SandboxReport
from project_o.status_view import render_status
from project_o.supervisor.config import SupervisorConfig


def _printed(sandbox: object) -> str:
    out = io.StringIO()
    render_status({"supervisor_pid": 1, "heart_pid": 2, "version": "v", "restarts": 0,
                   "instances": [], "vault": {}, "events": [], "sandbox": sandbox},
                  Console(file=out, width=200))
    return out.getvalue()


def test_active_and_missing_layers_are_both_printed() -> None:
    report = SandboxReport()
    report.add("seccomp", True, "rules")
    report.add("cgroup", False, "no writable cgroup v2 here")
    text = _printed(report.to_dict())
    assert "sandbox: seccomp" in text
    assert "not applied cgroup: no writable cgroup v2 here" in text


def test_an_off_sandbox_is_said_loudly() -> None:
    assert "SANDBOX OFF" in _printed(SandboxReport(enabled=False).to_dict())


def test_the_supervisors_policy_hides_the_whole_vault(tmp_path: Path) -> None:
    config = SupervisorConfig(vault=tmp_path / "vault", agent=tmp_path / "a.py",
                              writable=(tmp_path / "out",))
    policy = config.sandbox_policy()
    assert policy.hidden == (str(tmp_path / "vault"),)
    assert policy.readonly == ()  # checkpoints reach instances as sealed in-memory copies
    assert policy.writable == (str(tmp_path / "out"),)
    assert policy.network is False and policy.enabled is True
    with_llm = SupervisorConfig(vault=tmp_path, agent=tmp_path,
                                llm=LLMConfig(base_url="http://127.0.0.1:9", api_key="k"))
    assert with_llm.sandbox_policy().network is False  # ctx.llm goes through the supervisor
    off = SupervisorConfig(vault=tmp_path, agent=tmp_path, sandbox=False, allow_network=True)
    assert off.sandbox_policy().enabled is False and off.sandbox_policy().network is True
