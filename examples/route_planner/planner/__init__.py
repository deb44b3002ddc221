"""Route planner: an agent spread over a package (core, geometry, construct, improve).

A request carries ``points`` (a list of [x, y]); the answer is a closed tour
through all of them. Evolution rewrites ``first_tour`` (construct.py) and
``improve`` (improve.py), tunes the ``passes`` and ``start`` params
(core.py), and may edit any module, helpers included, as one change.
"""

from .construct import first_tour
from .core import agent
from .improve import improve, length


@agent.handler
def handle(ctx, request):
    points = [tuple(p) for p in request["points"]]
    tour = improve(first_tour(points, ctx.params.start), points, ctx.params.passes)
    return {"tour": tour, "length": length(tour, points)}
