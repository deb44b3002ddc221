"""Start a real supervisor (or a heart + supervisor) for a test and talk to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHAOS_AGENT = ROOT / "tests" / "fixtures" / "chaos_agent.py"
TOKEN = "test-token-for-supervisor-tests"
#: faster detection than the default 1 s / 5 s, with room for a loaded 2-core CI box
FAST_HEARTBEAT = ["--heartbeat-interval", "0.1", "--heartbeat-timeout", "2.0"]


class Stack:
    """A supervisor started as a real process, with an HTTP client for it."""

    def __init__(self, vault: Path, args: list[str], *, heart: bool = False,
                 token_env: bool = True, env: dict[str, str] | None = None,
                 preexec: Callable[[], None] | None = None) -> None:
        """``token_env=False``: no $PROJECT_O_TOKEN, so the supervisor makes its own;
        ``env``: variables added to the environment it starts with; ``preexec``: run in
        the child before it executes the command."""
        self.vault = vault
        env = {**{k: v for k, v in os.environ.items() if k != "PROJECT_O_TOKEN"}, **(env or {})}
        if token_env:
            env["PROJECT_O_TOKEN"] = TOKEN
        module = ["-m", "project_o.cli", "run"] if heart else ["-m", "project_o.supervisor"]
        vault.mkdir(parents=True, exist_ok=True)
        self.log = vault.parent / f"{vault.name}.log"
        with open(self.log, "a") as log:  # a file, not a pipe nobody drains
            self.process = subprocess.Popen(
                [sys.executable, *module, "--vault", str(vault), "--port", "0", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 - tests pass prctl calls only
            )
        self.http: httpx.Client | None = None
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0, not_pid: int | None = None) -> None:
        """Wait until a supervisor (other than ``not_pid``) answers /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stack exited early:\n{self.output()}")
            state = self._state()
            if state and state["pid"] != not_pid and self._healthy(state):
                self.http = httpx.Client(
                    base_url=f"http://127.0.0.1:{state['port']}",
                    timeout=60.0,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
                return
            time.sleep(0.05)
        raise TimeoutError("the supervisor did not become ready")

    def _state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.vault / "supervisor.json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _healthy(state: dict[str, Any]) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{state['port']}/healthz", timeout=1).is_success
        except httpx.HTTPError:
            return False

    def ask(self, payload: Any, **extra: Any) -> httpx.Response:
        assert self.http is not None
        return self.http.post("/v1/requests", json={"input": payload, **extra})

    def do(self, action: str, **fields: Any) -> httpx.Response:
        return self.ask({"do": action, **fields})

    def status(self) -> dict[str, Any]:
        assert self.http is not None
        response = self.http.get("/v1/status")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def main_pid(self) -> int:
        return next(i["pid"] for i in self.status()["instances"] if i["role"] == "main")

    def supervisor_pid(self) -> int:
        state = self._state()
        assert state is not None
        return int(state["pid"])

    def stop(self) -> str:
        if self.http is not None:
            self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # the heart runs the supervisor in a process group of its own
                for pid in {self.process.pid, self.supervisor_pid()}:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                self.process.wait()
        return self.output()

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
