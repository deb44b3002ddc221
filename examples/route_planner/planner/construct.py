"""The first tour: evolution may rewrite how it is built."""

from .core import agent


@agent.evolvable
def first_tour(points, start):
    """Visit the cities in the order they were given, from ``start``."""
    n = len(points)
    start = start % n
    return [(start + i) % n for i in range(n)]
