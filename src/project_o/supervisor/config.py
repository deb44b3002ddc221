"""Settings of one supervisor, with the defaults named."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from project_o.evolution.llm_budget import Prices
from project_o.llm.config import LLMConfig
from project_o.runtime.confine.policy import SandboxPolicy
from project_o.supervisor.bounds import Quotas
from project_o.vault.sealing import Keyring

__all__ = ["DEFAULT_PORT", "STATE_FILE", "SupervisorConfig"]

#: where in the vault a running supervisor writes its pid and port (JSON), for clients
STATE_FILE = "supervisor.json"

#: the gateway's port unless told otherwise
DEFAULT_PORT = 8700
#: one heartbeat a second; hung after five silent seconds (a beat or two late under
#: load is not a hang)
DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_HEARTBEAT_TIMEOUT = 5.0
#: how long a request may take before it is answered with a timeout
DEFAULT_REQUEST_DEADLINE = 30.0
#: a request that killed this many instances in a row is quarantined
POISON_THRESHOLD = 2
#: instances an agent version may lose in RESTART_PERIOD before we escalate
MAX_RESTARTS = 10
RESTART_PERIOD = 10.0
#: largest supervisor<->instance frame. A checkpoint travels in one frame, and
#: 100k semantic memories (384-dim float32 vectors) make a ~160 MiB state, so
#: this is above the wire protocol's 64 MiB default. The price: a hostile
#: instance can make the supervisor decode this much (see project_o.wire).
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: after a takeover, wait this long before forking the next standby, so its
#: restore does not compete for the CPU with the requests being re-dispatched
STANDBY_RESPAWN_DELAY = 0.1
#: the instance sends a checkpoint after this many acknowledged writes
CHECKPOINT_EVERY = 1000
#: requests that may wait for a free instance slot (each instance serves its agent's
#: max_concurrency at once) before new ones are turned away with 503 and Retry-After
DEFAULT_MAX_QUEUED = 1000
#: the most mains one host forks (``--instances``): each is a process holding the memory
MAX_INSTANCES = 64


@dataclass
class SupervisorConfig:
    """Everything one supervisor needs to know; all fields have defaults but paths."""

    vault: Path
    agent: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    standby: bool = True
    #: mains forked from the zygote (``--instances``), all serving one memory
    instances: int = 1
    durability: str = "sync"
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    checkpoint_every: int = CHECKPOINT_EVERY
    max_restarts: int = MAX_RESTARTS
    restart_period: float = RESTART_PERIOD
    max_body_bytes: int = 1024 * 1024
    max_frame_bytes: int = MAX_FRAME_BYTES
    limits: dict[str, Any] = field(default_factory=dict)
    #: what each instance may write and stream before it is killed (supervisor.bounds)
    quotas: Quotas = field(default_factory=Quotas)
    #: what happens to an agent's ctx.evolve intents and the health monitor's: off, propose, auto
    autonomy: str = "auto"
    #: the health monitor raises an intent past this p95 latency (ms); None: its default
    perception_p95_ms: float | None = None
    #: the OpenAI-compatible model the supervisor calls for instances (None: no LLM)
    llm: LLMConfig | None = None
    #: requests that may wait for an instance slot before new ones are answered 503
    max_queued: int = DEFAULT_MAX_QUEUED
    #: keys sealing the vault at rest (None: plain); the supervisor's alone
    keyring: Keyring | None = field(default=None, repr=False)
    #: what the model's tokens cost (US dollars per million), for the usage records
    llm_prices: Prices | None = None
    #: contain agent code (--no-sandbox turns it off, loudly: status says so)
    sandbox: bool = True
    #: the agent may use the network (--allow-network); else it has none, loopback included
    allow_network: bool = False
    #: directories agent code may write (--writable); everything else is read-only or hidden
    writable: tuple[Path, ...] = ()

    def sandbox_policy(self) -> SandboxPolicy:
        """How this agent's zygotes confine its code: the vault hidden altogether.

        Instances need nothing of it: checkpoints reach them as sealed
        in-memory copies and ``ctx.llm`` calls go through the supervisor, so
        the agent has no network unless ``--allow-network`` says so.
        """
        return SandboxPolicy(enabled=self.sandbox, network=self.allow_network,
                             hidden=(str(self.vault),), readonly=(),
                             writable=tuple(str(path) for path in self.writable))

    def instance_config(self) -> dict[str, Any]:
        """What an instance is told about itself at fork time (of the LLM: only the model)."""
        return {
            "heartbeat_interval": self.heartbeat_interval,
            "checkpoint_every": self.checkpoint_every,
            "max_frame_size": self.max_frame_bytes,
            "llm": self.llm.for_instances() if self.llm is not None else None,
        }
