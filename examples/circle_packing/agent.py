"""Circle packing (AlphaEvolve's problem, OpenEvolve's example): 26 circles in the unit square,
maximise the sum of their radii.

``construct_packing`` is a penalty method: from ``starts`` random layouts at
once (numpy arrays, one row per start), Adam ascends the sum of the radii
while a penalty on overlaps and on leaving the square grows from
``mu_start`` to ``mu_end``; then every layout is made exactly valid
(radii shrunk where two circles or a wall still touch too closely) and
the best is returned. Evolution tunes the params (how many starts, steps,
the learning-rate and penalty schedules, the random seed) and rewrites the
functions' bodies.
"""

import math

import numpy as np

from project_o import Agent

agent = Agent("circle-packing")

STARTS = agent.param("starts", 8, low=2, high=32)
STEPS = agent.param("steps", 600, low=100, high=2000)
LR = agent.param("lr", 0.05, low=0.001, high=0.2)
LR_END = agent.param("lr_end", 1e-5, low=1e-7, high=1e-3)
MU_START = agent.param("mu_start", 1.0, low=0.1, high=100.0)
MU_END = agent.param("mu_end", 1e5, low=1e3, high=1e7)
R_START = agent.param("r_start", 0.05, low=0.0, high=0.15)
SEED = agent.param("seed", 0, low=0, high=1_000_000)


def pair_matrices(n):
    """(D, S): for each pair i < j a column with D[i] = 1, D[j] = -1 and S = |D|."""
    first, second = np.triu_indices(n, 1)
    columns = np.arange(len(first))
    difference = np.zeros((n, len(first)))
    difference[first, columns] = 1.0
    difference[second, columns] = -1.0
    return difference, np.abs(difference)


@agent.evolvable
def optimize(n, starts, steps, lr, lr_end, mu_start, mu_end, r_start, rng):
    """Adam on -sum(r) + mu * (squared overlaps and wall violations); (x, y, r), one row a start."""
    x = rng.uniform(0.1, 0.9, (starts, n))
    y = rng.uniform(0.1, 0.9, (starts, n))
    r = np.full((starts, n), r_start)
    difference, pairs = pair_matrices(n)
    difference_t, pairs_t = difference.T.copy(), pairs.T.copy()
    first = [np.zeros_like(x), np.zeros_like(y), np.zeros_like(r)]
    second = [np.zeros_like(x), np.zeros_like(y), np.zeros_like(r)]
    beta1, beta2 = 0.9, 0.999
    for t in range(1, steps + 1):
        progress = t / steps
        mu2 = 2.0 * mu_start * (mu_end / mu_start) ** progress
        rate = lr * (lr_end / lr) ** progress
        dx, dy = x @ difference, y @ difference
        distance = np.sqrt(dx * dx + dy * dy + 1e-12)
        overlap = np.maximum(r @ pairs - distance, 0.0)
        push = overlap / distance
        left, right = np.maximum(r - x, 0.0), np.maximum(r + x - 1.0, 0.0)
        low, high = np.maximum(r - y, 0.0), np.maximum(r + y - 1.0, 0.0)
        grad_r = mu2 * (overlap @ pairs_t + left + right + low + high + np.minimum(r, 0.0)) - 1.0
        grad_x = mu2 * (right - left - (push * dx) @ difference_t)
        grad_y = mu2 * (high - low - (push * dy) @ difference_t)
        unbias1, unbias2 = 1.0 - beta1**t, 1.0 - beta2**t
        for value, grad, m, v in zip((x, y, r), (grad_x, grad_y, grad_r), first, second):
            m *= beta1
            m += (1.0 - beta1) * grad
            v *= beta2
            v += (1.0 - beta2) * grad * grad
            value -= rate * (m / unbias1) / (np.sqrt(v / unbias2) + 1e-8)
    return x, y, r


@agent.evolvable
def make_valid(x, y, r):
    """Shrink radii until no circle leaves the square or overlaps another, exactly (floats)."""
    n = len(r)
    r = [max(0.0, min(r[i], x[i], 1.0 - x[i], y[i], 1.0 - y[i])) for i in range(n)]
    for _ in range(1000):
        changed = False
        for i in range(n):
            if x[i] - r[i] < 0 or x[i] + r[i] > 1 or y[i] - r[i] < 0 or y[i] + r[i] > 1:
                r[i] *= 1.0 - 1e-12
                changed = True
            for j in range(i + 1, n):
                gap = math.hypot(x[i] - x[j], y[i] - y[j])
                if r[i] + r[j] > gap:
                    scale = gap / (r[i] + r[j]) * (1.0 - 1e-12)
                    r[i], r[j] = r[i] * scale, r[j] * scale
                    changed = True
        if not changed:
            return r
    return [0.0] * n


def construct_packing(n, params):
    """The best of ``params["starts"]`` optimised layouts: a list of (x, y, r)."""
    rng = np.random.default_rng(int(params["seed"]))
    xs, ys, rs = optimize(n, int(params["starts"]), int(params["steps"]), params["lr"],
                          params["lr_end"], params["mu_start"], params["mu_end"],
                          params["r_start"], rng)
    best, best_sum = [], -1.0
    for x, y, r in zip(xs.tolist(), ys.tolist(), rs.tolist()):
        radii = make_valid(x, y, r)
        if sum(radii) > best_sum:
            best, best_sum = list(zip(x, y, radii)), sum(radii)
    return best


@agent.handler
def handle(ctx, request):
    circles = construct_packing(int(request.get("n", 26)), ctx.params.as_dict())
    return {"circles": circles, "sum_of_radii": sum(r for _, _, r in circles)}
