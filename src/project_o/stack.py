"""A real supervisor in a subprocess, for the demo and the benchmarks to load, kill and measure.

::

    bench process                         subprocess (own session)
    ─────────────                         ────────────────────────
    Stack(vault, agent, args) ──spawn──►  python -m project_o.supervisor
      wait_ready(): VAULT/supervisor.json ──► GET /healthz
      client() ── httpx keep-alive ──►    POST /v1/requests, GET /v1/status
      close(): SIGTERM, grace, then SIGKILL of the whole process group

The supervisor is started in a session of its own, so ``close`` can end it
and everything it forked (zygote, instances) with one ``killpg`` even when
it does not shut down cleanly. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from project_o.supervisor.config import STATE_FILE  # written once it accepts connections

__all__ = ["Stack", "start_process", "stop_process"]

#: how long a supervisor may take to import, fork its zygote and instances
READY_TIMEOUT_S = 60.0
#: time SIGTERM gets (a final checkpoint) before the group is SIGKILLed
STOP_GRACE_S = 15.0
_POLL_S = 0.02


def start_process(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, output to ``log`` (a file nobody has to drain)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, wait ``grace_s``, then SIGKILL the process group (it leads its session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    # Children (zygote, instances) may outlive a supervisor killed mid-way.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class Stack:
    """A supervisor serving ``agent`` from ``vault``, started as a real process."""

    def __init__(self, vault: Path, agent: Path, args: list[str] | None = None) -> None:
        self.vault = vault
        self.token = secrets.token_hex(16)
        self.port = 0
        vault.mkdir(parents=True, exist_ok=True)
        self.log = vault.parent / f"{vault.name}.log"
        env = {**os.environ, "PROJECT_O_TOKEN": self.token}
        argv = [sys.executable, "-m", "project_o.supervisor", "--vault", str(vault),
                "--port", "0", "--agent", str(agent), *(args or [])]
        self.process = start_process(argv, self.log, env)
        self._http: httpx.Client | None = None

    def __enter__(self) -> Self:
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until the supervisor answers ``/healthz``; raise with its log if it died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the supervisor exited early:\n{self.output()[-4000:]}")
            state = self._state()
            if state is not None and _healthy(int(state["port"])):
                self.port = int(state["port"])
                self._http = self.client()
                return
            time.sleep(_POLL_S)
        raise TimeoutError(f"the supervisor was not ready within {timeout:g} s:\n"
                           f"{self.output()[-4000:]}")

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 60.0) -> httpx.Client:
        """A new keep-alive client with the token (one per thread: httpx clients are not shared)."""
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": f"Bearer {self.token}"})

    def ask(self, payload: Any) -> httpx.Response:
        """``POST /v1/requests`` with ``payload`` as the input."""
        assert self._http is not None, "wait_ready() first"
        return self._http.post("/v1/requests", json={"input": payload})

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``."""
        assert self._http is not None, "wait_ready() first"
        response = self._http.get("/v1/status")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def pids(self) -> dict[str, int]:
        """Role -> pid of the live instances."""
        return {i.get("slot") or i["role"]: int(i["pid"]) for i in self.status()["instances"]}

    def supervisor_pid(self) -> int:
        """Pid of the supervisor (the subprocess we started)."""
        return self.process.pid

    def close(self) -> None:
        """Stop the supervisor and everything it started."""
        if self._http is not None:
            self._http.close()
            self._http = None
        stop_process(self.process)

    def output(self) -> str:
        """What the supervisor printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads((self.vault / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("pid") == self.process.pid else None


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).is_success
    except httpx.HTTPError:
        return False
