"""A prime-counting agent whose hot function is pure Python, and which proposes a native one.

``count_primes(n)`` is a sieve written as plain Python loops: correct, and
slow. Asked ``{"do": "go native"}`` (or the text ``go native``), the agent
proposes ``native_agent.py`` as its next version with ``ctx.evolve``: the
same agent, with the sieve in C, compiled when that version is imported (in
its own zygote, never in the supervisor) and shadow-tested like any version.
``{"do": "go native", "variant": "segfault"}`` proposes one of the broken C
versions of :data:`BROKEN` instead, to watch it being survived and rejected.
"""

from pathlib import Path

from project_o import Agent

agent = Agent("primes")

#: largest n the handler accepts (a request is not a denial of service)
MAX_N = 2_000_000
#: the proposal: this agent with the sieve in C
NATIVE_AGENT = Path(__file__).with_name("native_agent.py")
#: the C line every broken variant replaces, and what it puts there instead
SIEVE_LINE = "for (long j = i * i; j < n; j += i) composite[j] = 1;"
BROKEN = {
    # writes through a null pointer: SIGSEGV in the first request
    "segfault": "*(volatile long *)0 = n;",
    # writes far past the end of its buffer: the heap is wrecked, then free() aborts
    "corrupt": "for (long j = i * i; j < n + 4096 * 8; j += i) composite[j] = 1;",
    # never returns: the instance stops sending heartbeats
    "loop": "for (volatile long spin = 0; spin >= 0; spin = spin * 1) { }",
}


@agent.evolvable
def count_primes(n):
    """How many primes are below ``n`` (sieve of Eratosthenes, in Python)."""
    if n < 3:
        return 0
    composite = bytearray(n)
    count = 0
    for i in range(2, n):
        if composite[i]:
            continue
        count += 1
        for j in range(i * i, n, i):
            composite[j] = 1
    return count


def native_source(variant=None):
    """``native_agent.py``'s text, with the C sieve broken as :data:`BROKEN` says."""
    text = NATIVE_AGENT.read_text()
    if variant is None:
        return text
    if variant not in BROKEN:
        raise ValueError(f"variant {variant!r}: expected one of {sorted(BROKEN)}")
    assert SIEVE_LINE in text, "native_agent.py no longer holds the line to break"
    return text.replace(SIEVE_LINE, BROKEN[variant])


@agent.handler
def handle(ctx, request):
    if request == "go native":
        request = {"do": "go native"}
    if isinstance(request, dict) and request.get("do") == "go native":
        variant = request.get("variant")
        return ctx.evolve("the sieve in C is faster", source=native_source(variant))
    n = int(request["n"] if isinstance(request, dict) else request)
    if not 0 <= n <= MAX_N:
        raise ValueError(f"n must be in [0, {MAX_N}], got {n}")
    return {"n": n, "primes": count_primes(n)}
