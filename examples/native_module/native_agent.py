"""The prime-counting agent with its hot function in C (a native module, milestone M2).

The C source is compiled when this file is imported: in the version's own
zygote under the supervisor, or in a sandboxed evaluator child under
``project-o evolve``, with a timeout and limits on the compiler. The
handler and its answers are the same as ``agent.py``'s; only the sieve moved.
"""

from project_o import Agent, native

agent = Agent("primes")

MAX_N = 2_000_000

C_SIEVE = r"""
#include <stdlib.h>

long count_primes(long n) {
    if (n < 3) return 0;
    unsigned char *composite = calloc((size_t)n, 1);
    if (composite == NULL) return -1;
    long count = 0;
    for (long i = 2; i < n; i++) {
        if (composite[i]) continue;
        count++;
        for (long j = i * i; j < n; j += i) composite[j] = 1;
    }
    free(composite);
    return count;
}
"""

SIEVE = native.build(C_SIEVE, cdef="long count_primes(long n);", name="sieve")


@agent.evolvable
def count_primes(n):
    """How many primes are below ``n`` (sieve of Eratosthenes, in C)."""
    count = SIEVE.lib.count_primes(n)
    if count < 0:
        raise MemoryError(f"the native sieve could not allocate {n} bytes")
    return count


@agent.handler
def handle(ctx, request):
    if request == "go native" or isinstance(request, dict) and request.get("do") == "go native":
        return {"status": "ignored", "reason": "this version is already native"}
    n = int(request["n"] if isinstance(request, dict) else request)
    if not 0 <= n <= MAX_N:
        raise ValueError(f"n must be in [0, {MAX_N}], got {n}")
    return {"n": n, "primes": count_primes(n)}
