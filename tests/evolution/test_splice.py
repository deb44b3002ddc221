"""splice(): a function's lines replaced, every other character of the file kept."""

from __future__ import annotations

from project_o.evolution.operators.evolvables import EvolvableFunction, splice

TOP = EvolvableFunction("agent.py", "f", 3, 5, "")


def test_only_the_functions_lines_change() -> None:
    text = "import x\r\n\r\n@agent.evolvable\ndef f(x):\n    return x\n\n# after\x0cpage\n"
    out = splice(text, TOP, "@agent.evolvable\ndef f(x):\n    return x * x\n")
    assert out == ("import x\r\n\r\n@agent.evolvable\ndef f(x):\n    return x * x\n"
                   "\n# after\x0cpage\n")


def test_a_file_without_a_final_newline_keeps_it_so() -> None:
    text = "a = 1\n\ndef f():\n    return 1"
    out = splice(text, EvolvableFunction("a.py", "f", 3, 4, ""), "def f():\n    return 2\n")
    assert out == "a = 1\n\ndef f():\n    return 2"


def test_a_method_is_put_back_at_its_indent_and_later_lines_follow() -> None:
    text = "class A:\n    def m(self):\n        return 1\n\n    def n(self):\n        pass\n"
    method = EvolvableFunction("a.py", "A.m", 2, 3, "    ")
    out = splice(text, method, "def m(self):\n    y = 2\n    return y\n")
    assert out == ("class A:\n    def m(self):\n        y = 2\n        return y\n\n"
                   "    def n(self):\n        pass\n")
    # the same parent spliced again (its line offsets remembered) gives the same text
    assert splice(text, method, "def m(self):\n    y = 2\n    return y\n") == out
