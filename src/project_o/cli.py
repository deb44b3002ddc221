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
    from project_o.vault.sealing import Keyring

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
    _add_lineage(commands)
    _add_evolve(commands)
    _add_demo(commands)
    _add_dashboard(commands)
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
    ask.add_argument("--stream", action="store_true",
                     help="send it over the /v1/stream WebSocket and print each event the "
                     "agent emits as it comes (opened with a one-time ticket, not the token)")
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
            "invalid checkpoints and the restore point recovery would use. Sealed (encrypted) "
            "records and checkpoints are opened with the vault key ($PROJECT_O_VAULT_KEY or "
            "--vault-key-file) and their tags checked. Read-only "
            "unless --repair is given. Exit status: 0 sound, 1 unsound, 2 usage error."
        ),
    )
    verify.add_argument("--vault-key-file", type=Path, default=None, metavar="FILE",
                        help="the vault's keys, one a line (default: $PROJECT_O_VAULT_KEY)")
    verify.add_argument("directory", metavar="DIR", type=Path, help="the vault directory")
    verify.add_argument("--json", action="store_true", help="print a machine-readable report")
    verify.add_argument(
        "--repair", action="store_true",
        help="truncate a torn tail of the last segment (what opening the vault does anyway)",
    )
    verify.set_defaults(handler=_cmd_vault_verify)
    quarantine = actions.add_parser(
        "quarantine", help="list the canary writes kept out of the agent's memory",
        description=(
            "A canary's writes reach the agent's memory only if it is promoted; otherwise "
            "they stay in VAULT/quarantine, tagged with the version and the requests that "
            "made them. List them, show one overlay's writes, or apply one by hand."),
    )
    quarantine.add_argument("directory", metavar="DIR", type=Path, help="the vault directory")
    quarantine.add_argument("--show", metavar="ID", help="print the writes of overlay ID")
    quarantine.add_argument(
        "--apply", metavar="ID",
        help="append overlay ID's writes to the agent's memory (through the running "
        "supervisor if one serves DIR)")
    quarantine.add_argument("--json", action="store_true", help="print JSON")
    quarantine.add_argument("--vault-key-file", type=Path, default=None, metavar="FILE",
                            help="the vault's keys, one a line, to show or apply the writes "
                            "of a sealed vault (default: $PROJECT_O_VAULT_KEY)")
    quarantine.set_defaults(handler=_cmd_vault_quarantine)


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


def _add_lineage(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lineage = commands.add_parser(
        "lineage", help="print the version tree of a vault",
        description="Read VAULT/catalog.sqlite (no supervisor needed) and print every version "
        "under its parent, with its status (serving, shadow, canary, promoted, rolled back, "
        "rejected, good...), the operator that made it and why it ended where it did.",
    )
    lineage.add_argument("--vault", type=Path, default=None,
                         help="vault directory (default: $PROJECT_O_VAULT or ./vault)")
    lineage.add_argument("--json", action="store_true", help="print the tree as JSON")
    lineage.set_defaults(handler=_cmd_lineage)


def _add_evolve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evolve = commands.add_parser(
        "evolve", help="evolve populations, or start, watch and approve experiments",
        description="Two forms. Populations, run here in sandboxed evaluator processes: "
        "`project-o evolve --agent A --task T [--population 50 --generations 10 ... "
        "--universes N | --adversarial] [--resume] [--backend local|ray]` (see "
        "`project-o evolve --agent A --task T --help`). Experiments on a running supervisor "
        "(/v1/evolution/experiments of the one serving --vault): the actions below.",
    )
    actions = evolve.add_subparsers(dest="evolve_command", metavar="ACTION")
    actions.required = True
    start = actions.add_parser(
        "start", help="start a shadow or canary experiment with a candidate version",
        description="POST /v1/evolution/experiments. The candidate is a whole agent file "
        "(--source), or an operator applied to the serving version (--operator).",
    )
    candidate = start.add_mutually_exclusive_group(required=True)
    candidate.add_argument("--source", type=Path, help="the candidate agent file")
    candidate.add_argument("--operator", help="an evolution operator's name")
    start.add_argument("--kind", choices=("shadow", "canary"), default="shadow")
    start.add_argument("--hypothesis", default=None, help="why the candidate should be better")
    start.add_argument("--mode", choices=("mirror", "split"), default=None,
                       help="shadow traffic: mirrored (default) or split")
    start.add_argument("--share", type=float, default=None, help="shadow share (default 0.1)")
    start.add_argument("--metric", choices=("latency", "errors", "feedback"), default=None,
                       help="judge on one metric (default: all three)")
    start.add_argument("--watch", action="store_true", help="poll until a decision, then show it")
    show = actions.add_parser("show", help="show one experiment: stage, statistics, timeline")
    show.add_argument("id", help="the experiment id")
    show.add_argument("--watch", action="store_true", help="poll until a decision")
    listing = actions.add_parser("list", help="list experiments, newest first")
    approve = actions.add_parser("approve", help="start an experiment the agent proposed")
    approve.add_argument("id", help="the proposed experiment's id")
    for parser in (start, show, listing, approve):
        _add_client_options(parser)
        parser.add_argument("--json", action="store_true", help="print the raw JSON")
        parser.set_defaults(handler=_cmd_evolve)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help='run the "evolution gone wrong" scenario, offline, in about a minute',
        description="Start a supervisor serving a demo agent with a slow memory search, teach "
        "it facts, then let it evolve: a candidate that crashes dies in the shadow, a faster "
        "one is promoted through the canary, a later regression is rolled back, and every "
        "fact is still remembered. Exit 0 only if every promise held.",
    )
    demo.add_argument("--vault", type=Path, default=None,
                      help="vault directory to use (default: a temporary one, removed after)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=_cmd_demo)


def _add_dashboard(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboard = commands.add_parser(
        "dashboard", help="print a one-time login URL for the running supervisor's dashboard",
        description="Ask the supervisor serving --vault for a login ticket and print "
        "http://127.0.0.1:PORT/ui/login?ticket=... (one use, 60 s); it sets a session cookie "
        "and opens the live view, versions, experiments and evolution runs.",
    )
    _add_client_options(dashboard)
    dashboard.add_argument("--open", action="store_true", help="open the URL in a browser")
    dashboard.add_argument("--run-dir", type=Path, action="append", default=[],
                           help="an evolution run directory to watch (repeatable; "
                           "default: ./project-o-evolution if it exists)")
    dashboard.set_defaults(handler=_cmd_dashboard)
    report = commands.add_parser(
        "report", help="write one self-contained HTML report of an evolution run or a vault",
        description="Read RUN_OR_VAULT's catalog (no supervisor needed) and write the "
        "dashboard's views of it, every asset inlined, to one HTML file that opens offline.",
    )
    report.add_argument("source", metavar="RUN_OR_VAULT", type=Path,
                        help="an evolution run directory or a vault directory")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                        help="the HTML file to write (default: report.html)")
    report.set_defaults(handler=_cmd_report)


def _population(argv: list[str]) -> int:
    """`project-o evolve --agent A --task T ...`: a GA, parallel universes or red vs blue."""
    if "--adversarial" in argv:
        from project_o.evolution import adversarial_cli as chosen
    else:
        from project_o.evolution import evolve_cli as chosen  # type: ignore[no-redef]
    parser = argparse.ArgumentParser(
        prog="project-o evolve",
        description="Evolve the agent against a task file, every candidate in a sandboxed "
        "process; progress is in the catalog, so --resume continues after any crash.",
    )
    chosen.add_arguments(parser)
    return int(chosen.main(parser.parse_args(argv)))


def _cmd_run(args: argparse.Namespace) -> int:
    import os

    from project_o.supervisor.hardening import SECRET_ENV, secrets_pipe
    from project_o.supervisor.heart import heart_command
    from project_o.supervisor.options import config_from_args
    from project_o.supervisor.startup import StartupError

    try:
        config = config_from_args(args)  # fail here, before anything starts, on bad options
    except StartupError as exc:
        print(f"project-o run: {exc}", file=sys.stderr)
        return exc.exit_code
    config.vault.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "project_o.supervisor", *args.forwarded]
    # The secrets go to the heart on a pipe: an environment is readable in /proc.
    secrets = {name: os.environ[name] for name in SECRET_ENV if name in os.environ}
    env = {name: value for name, value in os.environ.items() if name not in SECRET_ENV}
    secrets_fd = secrets_pipe(secrets)
    # Become the heart: a tiny stdlib-only process, free of everything this CLI imported.
    argv = heart_command(command, pidfile=config.vault / "heart.json", secrets_fd=secrets_fd)
    os.execve(argv[0], argv, env)


def _client(args: argparse.Namespace) -> Client:
    from project_o.client import Client
    from project_o.supervisor.options import default_vault

    return Client(args.vault or default_vault(), url=args.url)


def _cmd_ask(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.stream:
        answer = client.stream(args.text, on_event=lambda event: print(
            f"  event: {json.dumps(event)}", file=sys.stderr, flush=True))
    else:
        answer = client.ask(args.text)
    output = answer.get("output")
    if isinstance(output, dict) and "answer" in output:
        print(output["answer"])
        for citation in output.get("citations", []):
            print(f"  [{citation.get('id')}] {citation.get('text')}")
        if output.get("note"):
            print(f"  ({output['note']})")
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


class _UsageError(Exception):
    """A command line that names something unusable: exit 2 with the reason, no traceback."""


def _vault_keyring(args: argparse.Namespace) -> Keyring | None:
    """The keys for the vault directory a ``vault`` command names (None: it is not sealed)."""
    from project_o.vault.sealing import load_keyring

    if not args.directory.is_dir():
        raise _UsageError(f"{args.directory} is not a directory")
    try:
        return load_keyring(args.vault_key_file)
    except ProjectOError as exc:
        raise _UsageError(str(exc)) from None


def _cmd_vault_verify(args: argparse.Namespace) -> int:
    from project_o.vault.verify import render_report, verify_vault

    report = verify_vault(args.directory, repair=args.repair, keyring=_vault_keyring(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render_report(report)
    return 0 if report.sound else 1


def _cmd_vault_quarantine(args: argparse.Namespace) -> int:
    from project_o.quarantine_view import apply_overlay, render_overlays, render_writes

    keyring = _vault_keyring(args)
    if args.apply:
        print(json.dumps(apply_overlay(args.directory, args.apply, keyring=keyring), indent=2))
    elif args.show:
        render_writes(args.directory, args.show, keyring=keyring, as_json=args.json)
    else:
        render_overlays(args.directory, as_json=args.json)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from project_o.bench import load
    from project_o.bench.render import render
    from project_o.bench.report import BaselineMissing

    def progress(message: str) -> None:
        if not args.json:
            print(f"  … {message}", file=sys.stderr, flush=True)

    try:
        report = load(args.name)(args.quick, progress)
    except BaselineMissing as exc:  # no comparison without its baseline: say how to get it
        print(f"bench {args.name}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render(report)
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from project_o.lineage import lineage_to_dict, read_lineage, render_lineage
    from project_o.supervisor.options import default_vault

    roots = read_lineage(args.vault or default_vault())
    if args.json:
        print(json.dumps(lineage_to_dict(roots), indent=2))
    else:
        render_lineage(roots)
    return 0


def _cmd_evolve(args: argparse.Namespace) -> int:
    from project_o.lineage import render_experiment, render_experiments, watch_experiment

    client = _client(args)
    action = args.evolve_command
    if action == "list":
        listed = client.experiments()
        if args.json:
            print(json.dumps(listed, indent=2))
        else:
            render_experiments(listed)
        return 0
    if action == "start":
        result = client.start_experiment(_experiment_body(args))
    elif action == "approve":
        result = client.approve(args.id)
    else:
        result = client.experiment(args.id)
    if getattr(args, "watch", False):
        result = watch_experiment(client, result["id"], quiet=args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render_experiment(result)
    return 0


def _experiment_body(args: argparse.Namespace) -> dict[str, object]:
    candidate = ({"source": args.source.read_text()} if args.source is not None
                 else {"operator": args.operator})
    body: dict[str, object] = {"kind": args.kind, "candidate": candidate}
    for key in ("hypothesis", "mode", "share", "metric"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    return body


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from project_o.dashboard.commands import open_dashboard

    run_dirs = args.run_dir or [d for d in (Path("project-o-evolution"),) if d.is_dir()]
    print(open_dashboard(_client(args), run_dirs, open_browser=args.open))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from project_o.dashboard.commands import report

    print(f"report written to {report(args.source, args.output)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from project_o.demo import run_demo

    return run_demo(vault=args.vault, as_json=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``project-o`` console script."""
    from project_o.vault.fileio import private_umask

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["evolve"] and len(argv) > 1 and argv[1].startswith("--") and argv[1] != "--help":
        with private_umask():  # a run directory is a vault too
            return _population(argv[1:])
    args = build_parser().parse_args(argv)
    # `run` hands its own options on to the supervisor process verbatim.
    args.forwarded = argv[argv.index("run") + 1:] if args.command == "run" else []
    try:
        with private_umask():  # vaults, run dirs, reports: the user's alone (and the heart's)
            return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except _UsageError as exc:
        print(f"project-o: {exc}", file=sys.stderr)
        return 2
    except ProjectOError as exc:
        print(f"project-o: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
