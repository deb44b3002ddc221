"""A parser of "key=value;key=value" strings, with a seeded bug for red to find.

    "a=1; b = 2"        -> {"ok": {"a": "1", "b": "2"}}
    'name="Ada"'        -> {"ok": {"name": "Ada"}}        surrounding quotes are removed
    "a=1;junk"          -> {"error": "no '=' in 'junk'"}

The seeded bug: the guard before the quote check reads ``len(value) >= 0``,
which is always true, so an empty value ("a=") indexes ``value[0]`` and
raises IndexError. The original task never sends an empty value; red's
fuzzing does. ``split_first`` is a correct helper blue's operators may
borrow code from (``mut_ast_donor``).
"""

from project_o import Agent

agent = Agent("kv_parser")


@agent.evolvable
def parse(text):
    """Parse ``text`` into a dict; raise ValueError for an item without '='."""
    result = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"no '=' in {item.strip()!r}")
        key, value = item.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 0 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        result[key] = value
    return result


@agent.evolvable
def split_first(item):
    """``(key, value)`` of one item, cut at the first '=' (values may hold '=')."""
    key, _, value = item.partition("=")
    return key.strip(), value.strip()


@agent.handler
def handle(ctx, request):
    try:
        return {"ok": parse(str(request))}
    except ValueError as exc:
        return {"error": str(exc)}
