"""Distances; plain helpers the other modules import (never evolved themselves)."""

import math


def distance(a, b):
    return math.hypot(a[0] - b[0], a[1] - b[1])


def tour_length(tour, points):
    """Length of the closed tour visiting ``points`` in the order ``tour``."""
    return sum(distance(points[tour[i - 1]], points[tour[i]]) for i in range(len(tour)))
