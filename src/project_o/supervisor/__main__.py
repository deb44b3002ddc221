"""``python -m project_o.supervisor``: the supervisor process (the heart starts it).

The entry point wires the layers together: it hands the supervisor the
gateway to serve it, with the dashboard mounted under ``/ui/``, neither of
which the supervisor itself imports (see "Layers" in docs/design.md).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Mapping

from project_o.dashboard import mount_dashboard
from project_o.errors import InvalidArgument
from project_o.gateway import GatewayServer, create_app, resolve_token
from project_o.gateway.server import loop_factory
from project_o.supervisor.api import AgentService
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.hardening import take_secrets
from project_o.supervisor.options import add_supervisor_options, config_from_args
from project_o.supervisor.service import Supervisor
from project_o.supervisor.startup import EXIT_USAGE, StartupError, claim_ready_fd
from project_o.vault.fileio import PRIVATE_UMASK


def main(argv: list[str] | None = None) -> int:
    """Parse the options `project-o run` forwards and serve until stopped.

    Returns the exit status: 0 after a requested stop, a start-failure
    status (see :mod:`~project_o.supervisor.startup`) when it could not start.
    """
    ready_fd = claim_ready_fd()  # first: nothing we start may inherit the heart's pipe
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)  # every file it creates is private
    # Before anything else runs or starts: no child may inherit a secret.
    try:
        secrets = take_secrets()
    except (InvalidArgument, OSError) as exc:  # a bad PROJECT_O_SECRETS_FD, prctl refused
        print(f"project-o: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser = argparse.ArgumentParser(prog="project-o-supervisor")
    add_supervisor_options(parser)
    try:
        config = config_from_args(parser.parse_args(argv), secrets)
    except StartupError as exc:
        print(f"project-o: {exc}", file=sys.stderr)
        return exc.exit_code
    gateway = functools.partial(gateway_for, secrets=secrets)
    # the standard loop, or uvloop when PROJECT_O_LOOP asks (gateway.server.loop_factory)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(Supervisor(config, gateway, ready_fd=ready_fd).run())


def gateway_for(
    service: AgentService, config: SupervisorConfig, secrets: Mapping[str, str] | None = None,
) -> GatewayServer:
    """The HTTP gateway serving ``service`` as ``config`` says (token, address, body size).

    ``secrets``: where ``$PROJECT_O_TOKEN`` is looked up (default: the environment).
    """
    token, created = resolve_token(config.vault, secrets)
    if created:
        # The path, never the token: stdout ends up in terminals' scrollback and logs.
        print(f"project-o: API token written to {config.vault / 'token'} (mode 0600)",
              flush=True)
    app = create_app(service, token=token, max_body_bytes=config.max_body_bytes,
                     mounts=[mount_dashboard])
    return GatewayServer(app, host=config.host, port=config.port,
                         ws_max_size=config.max_body_bytes)


if __name__ == "__main__":
    sys.exit(main())
