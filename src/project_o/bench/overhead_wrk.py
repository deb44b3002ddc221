"""The load generator of ``project-o bench overhead``: wrk, a C client that is not the bottleneck.

::

    ensure_wrk() ── on PATH? ──► its path
                 └─ missing: apt-get install wrk (as root, or with sudo -n), else
                    BaselineMissing naming the exact command that installs it
    run_wrk(url, body, token, threads, connections, seconds)
        writes a Lua script (POST, JSON body, bearer token, a done() that prints one
        JSON line), runs wrk, reaps it with wait4 (its own CPU time), returns a WrkResult

Why wrk and not Python threads: a Python client spends more CPU per request
than the servers it measures, so it saturates first and every ratio drifts
toward 1. wrk's own CPU per request is measured in every run, so a report
can show how far from its ceiling the client was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from project_o.bench.report import BaselineMissing

__all__ = ["INSTALL_WRK", "WrkResult", "ensure_wrk", "lua_script", "parse_result", "run_wrk"]

#: the command that installs wrk on Debian and Ubuntu
INSTALL_WRK: Final = "sudo apt-get install -y wrk"
#: marks the line our done() prints among wrk's own report
_MARK: Final = "PROJECT_O_WRK "
#: longer than any request the bench makes wait (wrk's default, 2 s, would
#: count a queued 100 ms request at 32 connections as a timeout)
REQUEST_TIMEOUT_S: Final = 30


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: what it completed, its latency and its own CPU time."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_s: float

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def client_cpu_us(self) -> float:
        """wrk's CPU time per completed request, in microseconds."""
        return self.client_cpu_s / self.requests * 1e6 if self.requests else 0.0


def ensure_wrk() -> str:
    """wrk's path, installing Debian's package first when it is missing and we may.

    Raises :class:`BaselineMissing` with :data:`INSTALL_WRK` when it cannot.
    """
    found = shutil.which("wrk")
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    prefix = [] if os.geteuid() == 0 else _sudo()
    if apt is not None and prefix is not None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [*prefix, apt, "install", "-y", "-qq", "--no-install-recommends", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
            # the package lists may be missing (a fresh container): fetch them once
            subprocess.run([*prefix, apt, "update", "-qq"], env=env, capture_output=True,
                           check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = shutil.which("wrk")
        if found is not None:
            return found
    raise BaselineMissing(
        f"the overhead benchmark drives both servers with wrk, which is not installed "
        f"and could not be installed here; install it with: {INSTALL_WRK}"
    )


def _sudo() -> list[str] | None:
    sudo = shutil.which("sudo")
    if sudo is None:
        return None
    ok = subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0
    return [sudo, "-n"] if ok else None


def lua_script(body: bytes, token: str | None) -> str:
    """wrk's script: POST ``body`` as JSON with the bearer token; done() prints one JSON line."""
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if token is not None:
        headers += f'wrk.headers["Authorization"] = {_lua_string("Bearer " + token)}\n'
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(body.decode())}\n"
        f"{headers}"
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        f'  io.write(string.format("{_MARK}{{\\"requests\\":%d,\\"duration_us\\":%d,'
        '\\"errors\\":%d,\\"p50_us\\":%.1f,\\"p99_us\\":%.1f}\\n",\n'
        "    summary.requests, summary.duration,\n"
        "    e.connect + e.read + e.write + e.status + e.timeout,\n"
        "    latency:percentile(50), latency:percentile(99)))\n"
        "end\n"
    )


def _lua_string(text: str) -> str:
    # decimal escapes for everything but plain characters: no quoting surprises
    return '"' + "".join(
        ch if ch.isalnum() or ch in " -_.,:/+=" else "".join(f"\\{b}" for b in ch.encode())
        for ch in text
    ) + '"'


def parse_result(output: str, client_cpu_s: float) -> WrkResult:
    """The line our done() printed, as a :class:`WrkResult`."""
    for line in output.splitlines():
        if line.startswith(_MARK):
            fields: dict[str, Any] = json.loads(line[len(_MARK):])
            return WrkResult(
                requests=int(fields["requests"]),
                seconds=int(fields["duration_us"]) / 1e6,
                p50_ms=float(fields["p50_us"]) / 1000,
                p99_ms=float(fields["p99_us"]) / 1000,
                errors=int(fields["errors"]),
                client_cpu_s=client_cpu_s,
            )
    raise RuntimeError(f"wrk printed no result line; its output:\n{output[-2000:]}")


def run_wrk(wrk: str, url: str, body: bytes, token: str | None, *, threads: int,
            connections: int, seconds: float) -> WrkResult:
    """Drive ``url`` with ``connections`` keep-alive connections for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="project-o-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(body, token))
        out = Path(tmp) / "out.txt"
        argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(seconds, 1.0):.0f}s",
                f"--timeout={REQUEST_TIMEOUT_S}s", "-s", str(script), url]
        with open(out, "wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        text = out.read_text(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"wrk exited {process.returncode}:\n{text[-2000:]}")
        return parse_result(text, usage.ru_utime + usage.ru_stime)
