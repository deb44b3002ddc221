"""The demo's candidate versions of ``search_facts``, one module each.

Each module's text after the ``# -- candidate --`` line replaces the
evolvable ``search_facts`` of :mod:`project_o.demo.agent` (the lines above
it only make the module importable and lintable on its own).
:func:`project_o.demo.sources.candidate_source` does the splice, as an AST
operator would::

    recursive   divide and conquer whose split never shrinks: unbounded recursion
                through C frames overflows the stack (SIGSEGV) — must die in the shadow
    lean        the same scan without the per-fact digest rounds: same answers,
                several times faster — must be promoted through the canary
    indexed     an inverted index, faster still, but it raises KeyError on a word it
                never indexed — passes the canary (which only asks about known
                subjects), must be rolled back once such questions arrive
"""

from __future__ import annotations

__all__ = ["CANDIDATES"]

#: candidate name (module) -> what it is supposed to show, in the order the demo tries them
CANDIDATES = {
    "recursive": "crashes in the shadow (stack overflow)",
    "lean": "same answers, faster: promoted through the canary",
    "indexed": "faster still, fails on unseen words after promotion: rolled back",
}
