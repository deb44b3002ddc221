"""Task: pack 26 circles in the unit square, maximising the sum of their radii.

AlphaEvolve reported 2.635 for n = 26; OpenEvolve's example reached 2.634
(checked with a 1e-6 tolerance). Here validity is checked with zero
tolerance, in floating point as computed below: every circle inside the
square (``x - r >= 0``, ``x + r <= 1``, same for y), no two overlapping
(``hypot(dx, dy) >= r_i + r_j``), radii not negative, all numbers finite.
Score = the sum of radii of a valid packing, else 0.

A two-phase task: ``run`` asks the candidate for its packing inside the
sandboxed evaluator, and ``score`` checks it in the process that runs the
evolution, which no candidate code ever shared. A candidate can choose its
circles, nothing else: not the checker, not N, not the builtins it uses.
"""

import math

import numpy  # noqa: F401 - imported once in the evaluators' zygote, not once per candidate

#: circles to pack (AlphaEvolve's and OpenEvolve's n)
N = 26
#: sum of r <= sqrt(n / pi) (the areas fit in the square): anything above is a lie
SCORE_BOUNDS = (0.0, math.sqrt(N / math.pi))


def problems(circles):
    """Why ``circles`` is not a valid packing of N circles (empty when it is)."""
    if len(circles) != N:
        return [f"{len(circles)} circles, expected {N}"]
    found = []
    for i, (x, y, r) in enumerate(circles):
        if not all(math.isfinite(v) for v in (x, y, r)) or r < 0:
            found.append(f"circle {i}: not finite or negative radius")
        elif x - r < 0 or x + r > 1 or y - r < 0 or y + r > 1:
            found.append(f"circle {i} leaves the square")
    for i in range(N):
        for j in range(i + 1, N):
            (xi, yi, ri), (xj, yj, rj) = circles[i], circles[j]
            if math.hypot(xi - xj, yi - yj) < ri + rj:
                found.append(f"circles {i} and {j} overlap")
    return found


def run(agent):
    """The candidate's packing, as plain numbers: [[x, y, r], ...]."""
    return [[float(v) for v in c] for c in agent.call({"n": N})["circles"]]


def score(outputs):
    """Check and score a packing ``run`` returned (anything else raises: the candidate fails)."""
    circles = [tuple(float(v) for v in c) for c in outputs]
    if any(len(c) != 3 for c in circles):
        raise ValueError("each circle must be [x, y, r]")
    wrong = problems(circles)
    if wrong:
        return {"score": 0.0, "valid": False, "problems": len(wrong), "first_problem": wrong[0]}
    return {"score": sum(r for _, _, r in circles), "valid": True, "problems": 0}
