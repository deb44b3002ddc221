"""A symbolic-regression task with a second, deterministic metric to span a MAP-Elites grid."""

from __future__ import annotations

from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "symbolic_regression"

#: ``size``: bytes of f's compiled code, the same in every process of one Python
SEARCH_TASK = '''
import sys, time
sys.path.insert(0, {example!r})
from task import MAX_MSE, POINTS, SCORE_BOUNDS, evaluate as _evaluate, target

def evaluate(agent):
    time.sleep({slow_s!r})
    metrics = _evaluate(agent)
    metrics["size"] = len(agent.function("f").__code__.co_code)
    return metrics
'''

#: a cheap first stage: the error on four of the twenty points
QUICK_STAGE = '''
def quick(agent):
    f = agent.function("f")
    mse = sum((f(x) - target(x)) ** 2 for x in POINTS[::5]) / 4
    return {"score": -min(MAX_MSE, mse), "size": len(f.__code__.co_code)}

STAGES = [(quick, -0.35), (evaluate, None)]
'''


def search_task(directory: Path, *, slow_s: float = 0.0, staged: bool = False) -> Path:
    """Write the task into ``directory``; its path.

    ``slow_s`` stretches each full evaluation; ``staged`` puts a cheap stage first.
    """
    task = directory / "search_task.py"
    text = SEARCH_TASK.format(example=str(EXAMPLE), slow_s=slow_s)
    task.write_text(text + (QUICK_STAGE if staged else ""))
    return task


#: an agent with two numeric genes and nothing else: only the params operators apply
KNOBS_AGENT = '''
from project_o import Agent

agent = Agent("knobs")
THRESHOLD = agent.param("threshold", 0.5, low=0.0, high=1.0)
TOP_K = agent.param("top_k", 5, low=1, high=20)


@agent.handler
def handle(ctx, request):
    return request
'''

#: best at threshold 0.7, top_k 12; the genes themselves are the features
KNOBS_TASK = '''
def evaluate(agent):
    threshold, top_k = agent.params["threshold"], agent.params["top_k"]
    score = -abs(threshold - 0.7) - abs(top_k - 12) / 20
    return {"score": score, "threshold": threshold, "top_k": top_k}
'''


def knobs(directory: Path) -> tuple[Path, Path]:
    """Write the knobs agent and task into ``directory``; their paths."""
    agent, task = directory / "knobs_agent.py", directory / "knobs_task.py"
    agent.write_text(KNOBS_AGENT)
    task.write_text(KNOBS_TASK)
    return agent, task
