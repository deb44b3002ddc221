"""The parser's task: the original test cases, the checker red's inputs are judged by.

``evaluate(agent)`` scores the share of CASES parsed right (all of them, for
the seed agent); ``check(input, output)`` compares any output with
``reference``, the specification; ``generate(rng)`` and ``EXAMPLES`` seed
red's search.
"""

import string

SCORE_RANGE = (0.0, 1.0)

CASES = [
    "a=1",
    "a=1;b=2",
    " a = 1 ; b = two ",
    'name="Ada Lovelace";year=1815',
    "url=http://x?q=1",
    "a=1;;b=2;",
    "a=1;junk",
    "",
]
EXAMPLES = list(CASES)
_KEY = string.ascii_lowercase
_VALUE = string.ascii_letters + string.digits + ' "=:/?.'


def reference(text):
    """The specification the checker holds outputs to."""
    result = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        if "=" not in item:
            return {"error": "no '='"}
        key, value = item.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) > 0 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        result[key] = value
    return {"ok": result}


def check(text, output):
    """True when ``output`` is what the specification says for ``text``."""
    expected = reference(str(text))
    if not isinstance(output, dict):
        return f"expected a dict, got {type(output).__name__}"
    if "error" in expected:
        return True if "error" in output else f"expected an error, got {output!r}"
    return True if output.get("ok") == expected["ok"] else f"expected {expected!r}"


def evaluate(agent):
    """Share of CASES answered as the specification says."""
    right = sum(check(case, agent.call(case)) is True for case in CASES)
    return {"score": right / len(CASES), "cases": len(CASES)}


def generate(rng):
    """A random well-formed-ish input: 1 to 4 items, values sometimes empty or quoted."""
    items = []
    for _ in range(rng.randint(1, 4)):
        key = "".join(rng.choice(_KEY) for _ in range(rng.randint(1, 5)))
        value = "".join(rng.choice(_VALUE) for _ in range(rng.randint(0, 8)))
        items.append(f"{key}={value}")
    return ";".join(items)
