"""Agents that ship with Project O (served by `project-o run` without --agent).

These files are agent code: the supervisor passes their *path* to a zygote
and never imports them itself, so the package exports nothing.
"""

__all__: list[str] = []
