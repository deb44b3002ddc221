"""``python -m project_o.supervisor``: the supervisor process (the heart starts it)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.options import add_supervisor_options, config_from_args
from project_o.supervisor.service import Supervisor


def main(argv: list[str] | None = None) -> int:
    """Parse the options `project-o run` forwards and serve until stopped."""
    parser = argparse.ArgumentParser(prog="project-o-supervisor")
    add_supervisor_options(parser)
    config: SupervisorConfig = config_from_args(parser.parse_args(argv))
    return asyncio.run(Supervisor(config).run())


if __name__ == "__main__":
    sys.exit(main())
