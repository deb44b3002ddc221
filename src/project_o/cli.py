"""The ``project-o`` command line.

Each subcommand's work lives in the package it belongs to; this module only
parses arguments and prints. Heavy imports happen inside the handlers so
``project-o --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from project_o.errors import ProjectOError

if TYPE_CHECKING:
    from project_o.client import Client

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="project-o",
        description="Project O: a crash-proof runtime for self-evolving AI agents.",
        epilog="Run `project-o COMMAND --help` for the options of each command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_run(commands)
    _add_ask(commands)
    _add_status(commands)
    _add_vault(commands)
    _add_bench(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from project_o.supervisor.options import add_supervisor_options

    run = commands.add_parser(
        "run", help="serve an agent under a supervisor kept alive by a heart",
        description="Start the heart, which starts the supervisor (and restarts it if it dies), "
        "which serves the agent over HTTP on 127.0.0.1. Ctrl-C or SIGTERM stops everything "
        "after a final checkpoint. With no --agent, serves the built-in assistant.",
    )
    add_supervisor_options(run)
    run.set_defaults(handler=_cmd_run)


def _add_ask(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ask = commands.add_parser(
        "ask", help="send one request to the running agent and print the answer",
        description="POST the text to /v1/requests of the supervisor serving --vault.",
    )
    ask.add_argument("text", help="what to ask or tell the agent")
    _add_client_options(ask)
    ask.set_defaults(handler=_cmd_ask)


def _add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status", help="show the supervisor, its instances and recent events",
        description="GET /v1/status of the supervisor serving --vault and print it as a tree.",
    )
    _add_client_options(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=_cmd_status)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vault", type=Path, default=None,
                        help="vault of the running supervisor (default: $PROJECT_O_VAULT or ./vault)")
    parser.add_argument("--url", default=None, help="gateway URL (default: read from the vault)")


def _add_vault(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vault = commands.add_parser(
        "vault", help="inspect a vault (WAL, checkpoints, catalog)",
        description="Inspect and check a vault directory.",
    )
    actions = vault.add_subparsers(dest="vault_command", metavar="ACTION")
    actions.required = True
    verify = actions.add_parser(
        "verify",
        help="check every WAL record and checkpoint; exit 0 only if the vault is sound",
        description=(
            "Read every WAL segment and checkpoint in DIR and report entries, segments, "
            "the last sequence, any torn tail, corruption (file and offset), valid and "
            "invalid checkpoints and the restore point recovery would use. Read-only "
            "unless --repair is given. Exit status: 0 sound, 1 unsound, 2 usage error."
        ),
    )
    verify.add_argument("directory", metavar="DIR", type=Path, help="the vault directory")
    verify.add_argument("--json", action="store_true", help="print a machine-readable report")
    verify.add_argument(
        "--repair", action="store_true",
        help="truncate a torn tail of the last segment (what opening the vault does anyway)",
    )
    verify.set_defaults(handler=_cmd_vault_verify)


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from project_o.bench import BENCHMARKS

    bench = commands.add_parser(
        "bench", help="run a benchmark and report its figures",
        description="Run a benchmark. Figures are ratios against a baseline measured in "
        "the same run where one exists. Available: " + ", ".join(sorted(BENCHMARKS)),
    )
    bench.add_argument("name", choices=sorted(BENCHMARKS), metavar="NAME",
                       help="one of: " + ", ".join(sorted(BENCHMARKS)))
    bench.add_argument("--quick", action="store_true", help="a short smoke run")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.set_defaults(handler=_cmd_bench)


def _cmd_run(args: argparse.Namespace) -> int:
    import os

    from project_o.supervisor.heart import heart_command
    from project_o.supervisor.options import config_from_args

    config = config_from_args(args)  # fail here, before anything starts, on bad options
    config.vault.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "project_o.supervisor", *args.forwarded]
    # Become the heart: a tiny stdlib-only process, free of everything this CLI imported.
    argv = heart_command(command, pidfile=config.vault / "heart.json")
    os.execv(argv[0], argv)


def _client(args: argparse.Namespace) -> Client:
    from project_o.client import Client
    from project_o.supervisor.options import default_vault

    return Client(args.vault or default_vault(), url=args.url)


def _cmd_ask(args: argparse.Namespace) -> int:
    answer = _client(args).ask(args.text)
    output = answer.get("output")
    if isinstance(output, dict) and "answer" in output:
        print(output["answer"])
        for citation in output.get("citations", []):
            print(f"  [fact {citation.get('fact')}] {citation.get('text')}")
    else:
        print(json.dumps(output, indent=2))
    print(f"  (version {answer['version']}, {answer['latency_ms']:.1f} ms)", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from project_o.status_view import render_status

    status = _client(args).status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        render_status(status)
    return 0


def _cmd_vault_verify(args: argparse.Namespace) -> int:
    from project_o.vault.verify import render_report, verify_vault

    if not args.directory.is_dir():
        print(f"project-o: {args.directory} is not a directory", file=sys.stderr)
        return 2
    report = verify_vault(args.directory, repair=args.repair)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render_report(report)
    return 0 if report.sound else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from project_o.bench import load
    from project_o.bench.render import render

    def progress(message: str) -> None:
        if not args.json:
            print(f"  … {message}", file=sys.stderr, flush=True)

    report = load(args.name)(args.quick, progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render(report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``project-o`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # `run` hands its own options on to the supervisor process verbatim.
    args.forwarded = argv[argv.index("run") + 1:] if args.command == "run" else []
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except ProjectOError as exc:
        print(f"project-o: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
