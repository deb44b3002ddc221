"""Symbolic regression, DEAP's benchmark: evolve ``f`` until it is x**4 + x**3 + x**2 + x.

``f`` starts as a poor guess (``return x``). Evolution grows it as an
expression tree of ``+``, ``-``, ``*`` and ``x``: the AST operators swap
operators and graft subtrees, taken from a crossover mate's ``f`` or from
``blocks`` (a palette of small expressions, never called).
"""

from project_o import Agent

agent = Agent("symbolic-regression")


@agent.evolvable
def f(x):
    """The candidate expression; evolution rewrites this body."""
    return x


@agent.evolvable
def blocks(x):
    """Building blocks grafted into ``f`` by mut_ast_donor; never called."""
    return x * x + (x - x)


@agent.handler
def handle(ctx, request):
    return {"y": f(float(request["x"]))}
