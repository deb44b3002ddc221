"""Everything an agent needs at run time, built in one place.

The instance runtime and :class:`~project_o.agent.dsl.TestClient` both ask
an :class:`AgentKit` for the agent's durable stores (to restore, replay and
checkpoint them) and for the :class:`~project_o.agent.context.Context` of
each request, so a handler behaves the same under test and in production::

    kit = AgentKit(agent, journal)      journal(op, data): durable on return
    kit.state                           StateBook: restore / replay / checkpoint
    kit.context(request_id)             what the handler receives
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from project_o.agent.blocks import BlockStore
from project_o.agent.context import Context
from project_o.agent.history import DEFAULT_HISTORY_LIMIT, History, HistoryStore
from project_o.agent.memory import KVReplica, Memory
from project_o.agent.params import Param, Params
from project_o.agent.params import resolve as resolve_params
from project_o.agent.semantic import SemanticStore
from project_o.agent.store import AsyncDurableWrite, DurableWrite, StateBook
from project_o.agent.toolbox import HasTools, JournalGate, ToolRunner, on_owner_thread
from project_o.agent.tools import ToolRegistry
from project_o.agent.workflow import HasWorkflows, WorkflowRunner, Workflows, WorkflowStore
from project_o.llm.chat import LLM, CompletionClient
from project_o.llm.config import LLMConfig
from project_o.llm.history import LLMHistory

__all__ = ["AgentDefinition", "AgentKit"]


class AgentDefinition(HasTools, HasWorkflows, Protocol):
    """What a kit reads of an agent (a :class:`~project_o.agent.dsl.Agent`).

    A protocol, not the class: the DSL builds kits (its test client), so
    this module must not import the DSL. ``embedder`` and
    ``history_limit`` are read with ``getattr`` and may be absent.
    """

    def params_spec(self) -> dict[str, Param]: ...


class AgentKit:
    """The stores and per-request context of one agent in one process."""

    def __init__(self, agent: AgentDefinition, journal: DurableWrite, *,
                 llm: LLMConfig | None = None, params: Mapping[str, Any] | None = None,
                 stub_side_effects: bool = False,
                 ajournal: AsyncDurableWrite | None = None) -> None:
        """``ajournal``: the awaitable durable write behind ``ctx.memory.aset`` and
        the other awaitable writes (None: they call ``journal``)."""
        # Tools run in worker threads; the gate forwards their writes to the
        # thread that owns the journal (see project_o.agent.toolbox).
        journal = JournalGate(journal)
        self.agent = agent
        self.journal = journal
        self.ajournal = ajournal
        self.kv = KVReplica()
        self.state = StateBook([self.kv])
        self._build_memory()
        # Registered even without an LLM: WAL replay must find a store for llm_* entries.
        self.llm_history = LLMHistory()
        self.state.register(self.llm_history)
        self.llm: LLM | None = None
        self.use_llm(llm)
        self._build_tools_params_workflows(params, stub_side_effects)

    def context(self, request_id: Any, **extra: Any) -> Context:
        """The context for one request."""
        tools, workflows = self.tools.box(), Workflows(self.workflows)
        if "emit" in extra:  # a tool's worker thread must not write to the socket itself
            extra["emit"] = on_owner_thread(extra["emit"], "emit an event")
        if self.llm is not None:  # chat(tools=True) offers this request's tools
            emit = extra.get("emit")
            on_token = None if emit is None else (lambda text: emit({"token": text}))
            extra.setdefault("llm", self.llm.bind(request_id, tools=tools.specs,
                                                  on_token=on_token))
        extra.setdefault("params", self.params)
        extra.setdefault("history", self.history.bound(request_id))
        extra.setdefault("tools", tools)
        extra.setdefault("workflows", workflows)
        if self.evolve is not None:
            extra.setdefault("evolve", self.evolve)
        ctx = Context(request_id=request_id, memory=self.memory, **extra)
        tools.bind(ctx)
        workflows.bind(ctx)
        return ctx

    def _build_memory(self) -> None:
        """``ctx.memory`` (key-value, semantic, blocks) and ``ctx.history``, with their stores.

        An agent may carry ``embedder`` (an Embedder; default: the offline
        hashing one) and ``history_limit`` (entries kept).
        """
        self.semantic = SemanticStore(getattr(self.agent, "embedder", None))
        self.blocks = BlockStore()
        self.history_store = HistoryStore(getattr(self.agent, "history_limit", None)
                                          or DEFAULT_HISTORY_LIMIT)
        self.memory = Memory(self.kv, self.journal, semantic=self.semantic, blocks=self.blocks,
                             ajournal=self.ajournal)
        self.history = History(self.history_store, self.journal)
        for store in (self.semantic, self.blocks, self.history_store):
            self.state.register(store)

    def use_llm(self, config: LLMConfig | None, client: CompletionClient | None = None) -> None:
        """Give handlers ``ctx.llm`` for ``config`` (None: no LLM, ``ctx.llm`` is None).

        ``client`` makes the completions (default: over HTTP with
        ``config``'s endpoint and key). Given one, calls run on the calling
        thread: an instance's client waits for the answer its event loop
        routes to it, and that wait is progress (see runtime/llm_link.py).
        """
        if config is None:
            self.llm = None
            return
        idle = None if client is not None else (lambda: self.idle())
        self.llm = LLM(config, self.llm_history, self.journal, client=client, idle=idle,
                       journal_async=self.ajournal)

    def _build_tools_params_workflows(
        self, params: Mapping[str, Any] | None, stub_side_effects: bool
    ) -> None:
        """``ctx.params``, ``ctx.tools`` and ``ctx.workflows``, with their stores.

        ``idle`` is called at least every 0.1 s while a tool or a retry
        backoff keeps the calling thread waiting: the runtime may send its
        heartbeat from it.
        """
        self.idle: Callable[[], None] = lambda: None
        #: ``ctx.evolve``; the instance runtime sets it to send an evolution_intent
        self.evolve: Callable[..., dict[str, Any]] | None = None
        self.params: Params = resolve_params(self.agent.params_spec(), params)
        self.tools = ToolRunner(self.agent, stub_side_effects=stub_side_effects,
                                idle=lambda: self.idle())
        self.tool_registry = ToolRegistry(lambda: self.agent.tools)
        self.workflow_store = WorkflowStore()
        self.workflows = WorkflowRunner(self.agent, self.workflow_store, self.journal,
                                        idle=lambda: self.idle())
        self.state.register(self.tool_registry)
        self.state.register(self.workflow_store)
