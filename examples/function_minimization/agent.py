"""Function minimization (OpenEvolve's example): evolve a search routine for
f(x, y) = sin(x)·cos(y) + sin(x·y) + (x² + y²)/20, global minimum ≈ -1.519 at (-1.704, 0.678).

``search`` starts as a single random walk; evolution tunes its params
(step size, restarts) and rewrites its body. The task gives it a fixed
budget of function evaluations, so only a smarter search scores better.
"""

import math
import random

from project_o import Agent

agent = Agent("function-minimization")

STEP = agent.param("step", 0.5, low=0.01, high=3.0)
RESTARTS = agent.param("restarts", 1, low=1, high=20)
SHRINK = agent.param("shrink", 1.0, low=0.9, high=1.0)


def objective(x, y):
    return math.sin(x) * math.cos(y) + math.sin(x * y) + (x * x + y * y) / 20.0


@agent.evolvable
def search(f, rng, budget, step, restarts, shrink):
    """Random-walk descent from ``restarts`` random starts; returns the best (x, y)."""
    best = (0.0, 0.0, f(0.0, 0.0))
    for _ in range(restarts):
        x, y = rng.uniform(-5.0, 5.0), rng.uniform(-5.0, 5.0)
        value = f(x, y)
        scale = step
        for _ in range(budget // restarts):
            nx, ny = x + rng.gauss(0.0, scale), y + rng.gauss(0.0, scale)
            candidate = f(nx, ny)
            if candidate < value:
                x, y, value = nx, ny, candidate
            scale = scale * shrink
        if value < best[2]:
            best = (x, y, value)
    return best[0], best[1]


@agent.handler
def handle(ctx, request):
    rng = random.Random(request.get("seed", 0))
    p = ctx.params
    x, y = search(objective, rng, int(request.get("budget", 500)), p.step, p.restarts, p.shrink)
    return {"x": x, "y": y, "value": objective(x, y)}
