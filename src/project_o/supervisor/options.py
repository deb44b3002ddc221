"""Command-line options shared by `project-o run` and the supervisor process.

`project-o run` parses them, then forwards the same argv to the supervisor
the heart starts, so the two can never disagree about a flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from project_o.errors import InvalidArgument
from project_o.evolution.llm_budget import Prices, parse_price
from project_o.llm.config import LLMConfig
from project_o.supervisor import config as defaults
from project_o.supervisor.config import MAX_INSTANCES, SupervisorConfig
from project_o.supervisor.startup import EXIT_NO_AGENT, EXIT_USAGE, StartupError
from project_o.vault.sealing import load_keyring

__all__ = ["add_supervisor_options", "builtin_agent_path", "config_from_args", "default_vault"]


def builtin_agent_path() -> Path:
    """The agent `project-o run` serves when no --agent is given."""
    return Path(__file__).resolve().parent.parent / "builtin_agents" / "assistant.py"


def default_vault() -> Path:
    """``$PROJECT_O_VAULT`` or ``./vault``."""
    return Path(os.environ.get("PROJECT_O_VAULT", "vault"))


def add_supervisor_options(parser: argparse.ArgumentParser) -> None:
    """Add every option that shapes a supervisor."""
    parser.add_argument("--agent", type=Path, default=None,
                        help="agent file or package (default: the built-in assistant)")
    parser.add_argument("--vault", type=Path, default=None,
                        help="vault directory (default: $PROJECT_O_VAULT or ./vault)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=defaults.DEFAULT_PORT,
                        help=f"gateway port (default {defaults.DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--instances", type=int, default=1, metavar="N",
                        help="mains forked from the zygote, each serving requests (least in "
                             f"flight first) over one memory (default 1, at most {MAX_INSTANCES})")
    parser.add_argument("--no-standby", action="store_true",
                        help="do not keep a warm standby instance")
    parser.add_argument("--durability", choices=("sync", "batch"), default="sync",
                        help="WAL mode: sync acks after fsync (default); batch fsyncs every "
                             "100 entries or 1 s")
    parser.add_argument("--heartbeat-interval", type=float,
                        default=defaults.DEFAULT_HEARTBEAT_INTERVAL, metavar="SECONDS",
                        help="how often instances beat (default 1.0, minimum 0.05)")
    parser.add_argument("--heartbeat-timeout", type=float,
                        default=defaults.DEFAULT_HEARTBEAT_TIMEOUT, metavar="SECONDS",
                        help="silence after which an instance is hung (default 5.0)")
    parser.add_argument("--request-deadline", type=float,
                        default=defaults.DEFAULT_REQUEST_DEADLINE, metavar="SECONDS",
                        help="default per-request deadline (default 30)")
    parser.add_argument("--max-queued", type=int, default=defaults.DEFAULT_MAX_QUEUED,
                        metavar="N", help="requests that may wait for a free instance before "
                        f"new ones get 503 with Retry-After (default {defaults.DEFAULT_MAX_QUEUED})")
    parser.add_argument("--max-restarts", type=int, default=defaults.MAX_RESTARTS,
                        help="instance deaths tolerated in --restart-period before the version "
                             f"is given up for the previous good one (default {defaults.MAX_RESTARTS})")
    parser.add_argument("--restart-period", type=float, default=defaults.RESTART_PERIOD,
                        metavar="SECONDS", help=f"default {defaults.RESTART_PERIOD:g}")
    parser.add_argument("--autonomy", choices=("off", "propose", "auto"), default="auto",
                        help="ctx.evolve intents: ignore them (off), record them for approval "
                             "(propose), or start the experiment (auto, default)")
    parser.add_argument("--latency-threshold-ms", type=float, default=None, metavar="MS",
                        help="p95 latency past which the health monitor proposes an "
                             "evolution (default 1000)")
    parser.add_argument("--memory-limit-mb", type=int, default=None,
                        help="address-space quota per instance in MiB")
    parser.add_argument("--max-frame-mb", type=int, default=defaults.MAX_FRAME_BYTES // 2**20,
                        help="largest supervisor<->instance frame in MiB (default 256); a "
                             "checkpoint travels in one frame, so raise it for bigger states")
    parser.add_argument("--llm-price", action="append", default=[], metavar="MODEL=IN,OUT",
                        help="what the model's tokens cost, USD per million prompt and "
                             "completion tokens (repeatable), for the usage records")
    parser.add_argument("--max-body-bytes", type=int, default=1024 * 1024,
                        help="largest accepted HTTP body (default 1 MiB)")
    parser.add_argument("--vault-key-file", type=Path, default=None, metavar="FILE",
                        help="seal the vault at rest (AES-256-GCM) with the keys in FILE, one "
                             "a line, the current one first (or set $PROJECT_O_VAULT_KEY); "
                             "each key 64 hex digits or 32 bytes in base64")
    parser.add_argument("--allow-network", action="store_true",
                        help="let the agent's code use the network (default: none at all, "
                             "loopback included)")
    parser.add_argument("--writable", type=Path, action="append", default=[], metavar="DIR",
                        help="a directory the agent's code may write (repeatable; inside "
                             "the sandbox everything else is read-only or hidden)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run agent code without the sandbox (debugging only; status "
                             "says so on every line)")


def config_from_args(
    args: argparse.Namespace, secrets: Mapping[str, str] | None = None,
) -> SupervisorConfig:
    """Turn parsed options into a config (validating what argparse cannot).

    ``secrets``: what :func:`~project_o.supervisor.hardening.take_secrets`
    took out of the environment (the LLM settings among them).

    Raises :class:`~project_o.supervisor.startup.StartupError` (``EXIT_USAGE``
    for a bad option, ``EXIT_NO_AGENT`` for an agent path that does not exist).
    """
    if args.heartbeat_interval < 0.05:
        raise StartupError("--heartbeat-interval must be at least 0.05 seconds", EXIT_USAGE)
    if args.heartbeat_timeout <= args.heartbeat_interval:
        raise StartupError("--heartbeat-timeout must be longer than --heartbeat-interval",
                           EXIT_USAGE)
    instances = args.instances
    if not 1 <= instances <= MAX_INSTANCES:
        raise StartupError(f"--instances must be between 1 and {MAX_INSTANCES} (mains forked "
                           f"from the zygote), got {instances}", EXIT_USAGE)
    if args.max_queued < 0:
        raise StartupError(f"--max-queued must be 0 or more, got {args.max_queued}", EXIT_USAGE)
    if not 0 <= args.port <= 65535:
        raise StartupError(f"--port must be between 0 and 65535, got {args.port}", EXIT_USAGE)
    agent = (args.agent or builtin_agent_path()).resolve()
    if not agent.exists():
        raise StartupError(f"no agent at {agent}: --agent takes an agent file (.py) or "
                           "package directory; check the path", EXIT_NO_AGENT)
    # PROJECT_O_LLM_BASE_URL / _API_KEY / _MODEL, PROJECT_O_VAULT_KEY: from the secrets
    environ = {**os.environ, **(secrets or {})}
    llm = LLMConfig.from_env(environ)
    try:
        keyring = load_keyring(args.vault_key_file, environ)
    except InvalidArgument as exc:
        raise StartupError(str(exc), EXIT_USAGE) from exc
    try:
        prices = Prices(parse_price(text) for text in args.llm_price)
    except InvalidArgument as exc:
        raise StartupError(f"--llm-price: {exc}", EXIT_USAGE) from None
    limits = {}
    if args.memory_limit_mb:
        limits["memory_bytes"] = args.memory_limit_mb * 1024 * 1024
    return SupervisorConfig(
        vault=(args.vault or default_vault()).resolve(),
        agent=agent,
        host=args.host, port=args.port, standby=not args.no_standby, instances=instances,
        durability=args.durability, heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout, request_deadline=args.request_deadline,
        max_body_bytes=args.max_body_bytes, limits=limits,
        max_frame_bytes=args.max_frame_mb * 2**20, max_restarts=args.max_restarts, llm=llm,
        llm_prices=prices,
        autonomy=args.autonomy, perception_p95_ms=args.latency_threshold_ms, restart_period=args.restart_period,
        max_queued=args.max_queued,
        keyring=keyring,
        sandbox=not args.no_sandbox, allow_network=args.allow_network,
        writable=tuple(path.resolve() for path in args.writable),
    )
