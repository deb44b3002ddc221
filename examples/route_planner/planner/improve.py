"""Improving a tour: evolution may rewrite the local search."""

from .core import agent
from .geometry import distance, tour_length


@agent.evolvable
def improve(tour, points, passes):
    """Up to ``passes`` rounds of 2-opt: reverse a segment when that shortens the tour."""
    tour = list(tour)
    n = len(tour)
    for _ in range(passes):
        improved = False
        for i in range(1, n - 1):
            for j in range(i + 1, n):
                a, b = points[tour[i - 1]], points[tour[i]]
                c, d = points[tour[j]], points[tour[(j + 1) % n]]
                if distance(a, c) + distance(b, d) < distance(a, b) + distance(c, d) - 1e-12:
                    tour[i:j + 1] = reversed(tour[i:j + 1])
                    improved = True
        if not improved:
            break
    return tour


def length(tour, points):
    return tour_length(tour, points)
