"""Task: ``count_primes`` must be exactly right on every case, then as fast as it can be.

Score = -(seconds for :data:`WORKLOAD`) when every case is right, else
:data:`WRONG_SCORE` minus the number of wrong cases: a fast wrong sieve
never beats a slow right one. Used by ``project-o evolve`` on versions of
this agent (``native_agent.py`` among them), each in a sandboxed evaluator:
a native module that crashes or loops costs only its own candidate.
"""

import time

#: n -> the number of primes below n
CASES = {0: 0, 1: 0, 2: 0, 3: 1, 10: 4, 100: 25, 1000: 168, 60_000: 6057, 1_000_000: 78_498}
#: what is timed, once every case is right
WORKLOAD = (200_000, 300_000, 500_000)
WRONG_SCORE = -1000.0
SCORE_BOUNDS = (WRONG_SCORE - len(CASES), 0.0)


def evaluate(agent):
    count_primes = agent.function("count_primes")
    wrong = sum(count_primes(n) != want for n, want in CASES.items())
    if wrong:
        return {"score": WRONG_SCORE - wrong, "wrong_cases": wrong}
    started = time.perf_counter()
    for n in WORKLOAD:
        count_primes(n)
    seconds = time.perf_counter() - started
    return {"score": -seconds, "wrong_cases": 0, "workload_s": seconds}
