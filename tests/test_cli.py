"""The `project-o` command line: every command has useful help; evolve's two forms dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from project_o.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["run", "ask", "status", "vault", "bench", "evolve", "lineage", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_the_top_level_help_lists_the_commands() -> None:
    text = build_parser().format_help()
    assert all(command in text for command in COMMANDS)


def test_evolve_with_a_task_runs_the_genetic_algorithm(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "examples" / "function_minimization"
    status = main(["evolve", "--agent", str(example / "agent.py"), "--task",
                   str(example / "task.py"), "--population", "6", "--generations", "2",
                   "--tournament", "2", "--elitism", "1", "--workers", "2",
                   "--run-dir", str(tmp_path / "run"), "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["winner"] and result["score"] is not None
    assert len(result["history"]) == 3  # the initial population and two generations


def test_evolve_adversarial_has_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["evolve", "--adversarial", "--help"])
    assert "--rounds" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["verify", "quarantine"])
def test_a_vault_command_on_a_file_is_a_usage_error(command: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    not_a_vault = tmp_path / "file"
    not_a_vault.write_text("x")
    assert main(["vault", command, str(not_a_vault)]) == 2
    assert f"{not_a_vault} is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["verify", "quarantine"])
def test_a_vault_command_with_an_unusable_key_file_is_a_usage_error(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROJECT_O_VAULT_KEY", raising=False)
    key_file = tmp_path / "key"
    key_file.write_text("not a key")
    key_file.chmod(0o644)  # readable by others: refused before it is even parsed
    assert main(["vault", command, str(tmp_path), "--vault-key-file", str(key_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("project-o: ") and "Traceback" not in err
    assert not (tmp_path / "wal").exists()  # nothing was opened or made
