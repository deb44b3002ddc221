"""Task: mean squared error of ``f`` against x**4 + x**3 + x**2 + x on 20 points in [-1, 1).

The points are DEAP's (``symbreg.py``): -1.0, -0.9, ..., 0.9. Score = -MSE,
so higher is better and 0 is a perfect fit; a fit counts as found when the
MSE is below :data:`SOLVED_MSE`.
"""

import math

#: DEAP's sample points: x in [-1, 1) in steps of 0.1
POINTS = [x / 10.0 for x in range(-10, 10)]
#: an MSE below this is the exact polynomial up to float rounding
SOLVED_MSE = 1e-6
#: errors above this are capped, so an exploding expression is bad, not "gamed"
MAX_MSE = 1e12
#: an honest score is -MSE: never positive, never below -MAX_MSE
SCORE_BOUNDS = (-MAX_MSE, 0.0)


def target(x):
    return x**4 + x**3 + x**2 + x


def mse_of(f):
    """Mean squared error of the function ``f`` over :data:`POINTS` (capped)."""
    total = 0.0
    for x in POINTS:
        error = f(x) - target(x)
        total += error * error
    mse = total / len(POINTS)
    return min(MAX_MSE, mse)  # also catches NaN


def evaluate(agent):
    mse = mse_of(agent.function("f"))
    return {"score": -mse, "mse": mse, "solved": mse < SOLVED_MSE and not math.isnan(mse)}
