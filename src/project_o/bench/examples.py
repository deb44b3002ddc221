"""Finding the ``examples/`` of a source checkout, for benchmarks that run them."""

from __future__ import annotations

from pathlib import Path

__all__ = ["example_dir"]


def example_dir(name: str) -> Path:
    """``examples/NAME`` above the installed package or under the working directory.

    Raises :class:`FileNotFoundError` outside a source checkout.
    """
    here = Path(__file__).resolve()
    for root in (*here.parents, Path.cwd()):
        candidate = root / "examples" / name
        if (candidate / "agent.py").is_file():
            return candidate
    raise FileNotFoundError(f"examples/{name} not found; run from a source checkout")
