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

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="project-o",
        description="Project O: a crash-proof runtime for self-evolving AI agents.",
        epilog="Run `project-o COMMAND --help` for the options of each command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_vault(commands)
    _add_bench(commands)
    return parser


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
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
