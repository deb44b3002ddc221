"""Task: how low can ``search`` get f(x, y) within a budget of evaluations, over a few seeds?

f(x, y) = sin(x)·cos(y) + sin(x·y) + (x² + y²)/20; global minimum ≈ -1.519
at (-1.704, 0.678) (OpenEvolve's function_minimization example). The task
counts every call of f itself and remembers the lowest value it returned,
so a search can neither exceed the budget nor claim a value it did not
find. Score = -mean(best value) over :data:`SEEDS`.
"""

import math
import random

#: evaluations of f per search run
BUDGET = 400
#: independent runs per candidate (each with its own random.Random(seed))
SEEDS = (0, 1, 2, 3, 4)
#: the known optimum (OpenEvolve's README)
KNOWN_MINIMUM = -1.519
KNOWN_ARGMIN = (-1.704, 0.678)
#: f is bounded below by about -2 everywhere: anything lower is a lie
SCORE_BOUNDS = (-100.0, 2.0)


def f(x, y):
    return math.sin(x) * math.cos(y) + math.sin(x * y) + (x * x + y * y) / 20.0


class BudgetSpent(Exception):
    """The search asked for more evaluations than the budget."""


class Counted:
    """f, counting calls and remembering the best point it returned."""

    def __init__(self, budget):
        self.left = budget
        self.best = (math.inf, None, None)

    def __call__(self, x, y):
        if self.left <= 0:
            raise BudgetSpent()
        self.left -= 1
        x, y = float(x), float(y)
        value = f(x, y)
        if value < self.best[0]:
            self.best = (value, x, y)
        return value


def run_once(search, params, seed):
    counted = Counted(BUDGET)
    try:
        search(counted, random.Random(seed), BUDGET, params["step"], params["restarts"],
               params["shrink"])
    except BudgetSpent:
        pass  # what it found within the budget still counts
    return counted.best


def evaluate(agent):
    search = agent.function("search")
    results = [run_once(search, agent.params, seed) for seed in SEEDS]
    values = [value for value, _, _ in results]
    best_value, best_x, best_y = min(results, key=lambda r: r[0])
    distances = [math.dist((x, y), KNOWN_ARGMIN) if x is not None else math.inf
                 for _, x, y in results]
    distance = math.dist((best_x, best_y), KNOWN_ARGMIN) if best_x is not None else math.inf
    # mean_* are what OpenEvolve's evaluator scores (over its trials), to compare with it.
    return {"score": -sum(values) / len(values), "best_value": best_value,
            "mean_value": sum(values) / len(values), "distance_to_minimum": distance,
            "mean_distance_to_minimum": min(1e9, sum(distances) / len(distances)),
            "gap_to_minimum": best_value - KNOWN_MINIMUM}
