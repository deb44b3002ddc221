"""Task: short closed tours through fixed sets of random cities (a small travelling salesman).

Each candidate plans tours for :data:`INSTANCES` (20 cities each, in the
unit square, from fixed seeds). The task checks that every tour visits
every city exactly once and measures its length itself, so a planner can
neither skip cities nor report a length it did not achieve. Score =
-mean(length). The seed (cities in the given order, no 2-opt) scores
about -11.2; five rounds of 2-opt bring it near -4.0.
"""

import math
import random

CITIES = 20
INSTANCES = [[(rng.random(), rng.random()) for _ in range(CITIES)]
             for rng in (random.Random(seed) for seed in (1, 2, 3))]
#: no closed tour through 20 points of the unit square is longer than 20·sqrt(2)
SCORE_BOUNDS = (-CITIES * math.sqrt(2), 0.0)


def tour_length(tour, points):
    return sum(math.dist(points[tour[i - 1]], points[tour[i]]) for i in range(len(tour)))


def evaluate(agent):
    first_tour, improve = agent.function("first_tour"), agent.function("improve")
    lengths, problems = [], []
    for number, points in enumerate(INSTANCES):
        tour = [int(city) for city in improve(first_tour(points, agent.params["start"]),
                                              points, agent.params["passes"])]
        if sorted(tour) != list(range(len(points))):
            problems.append(f"instance {number}: not a tour of all {len(points)} cities: "
                            f"{tour[:30]}")
            continue
        lengths.append(tour_length(tour, points))
    if problems:
        raise ValueError("; ".join(problems))
    mean = sum(lengths) / len(lengths)
    return {"score": -mean, "mean_length": mean,
            "artifacts": {"lengths": ", ".join(f"{x:.4f}" for x in lengths)}}
