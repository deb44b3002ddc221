"""Scores computed where candidates cannot reach them (real evaluator processes).

One small task in both forms: ``evaluate(agent)`` (scored beside the
candidate, behind the tamper check) and ``run`` + ``score`` (scored in the
pool's own process). Candidates that answer wrong try every known way to
raise their score anyway: rebinding a builtin only while the checker runs,
mutating the task's data in place, patching the checker and the tamper
check, forging result frames (for themselves, for other indices, with
wrong field types). With the two-phase contract none of them changes the
score; with ``evaluate`` the first three do (which is why the contract
exists), and the frame checks hold in both.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.task import load_task

ROOT = Path(__file__).resolve().parents[2]

COMMON = '''
SCORE_BOUNDS = (0.0, 1.0)
CASES = [([3, 1, 2], [1, 2, 3]), ([5, 4], [4, 5]), ([9, 7, 8, 6], [6, 7, 8, 9])]


def check(outputs):
    """The share of cases answered right."""
    right = sum(1 for (_, expected), got in zip(CASES, outputs) if got == expected)
    return right / len(CASES)
'''
CONVENIENCE_TASK = COMMON + '''

def evaluate(agent):
    return {"score": check([agent.call({"xs": list(xs)}) for xs, _ in CASES])}
'''
TWO_PHASE_TASK = COMMON + '''

def run(agent):
    return [agent.call({"xs": list(xs)}) for xs, _ in CASES]


def score(outputs):
    return {"score": check(outputs)}
'''

AGENT = '''import builtins, os, sys
from project_o import Agent

agent = Agent("sorter")


def task_module():
    return next(m for m in list(sys.modules.values()) if hasattr(m, "CASES"))


def result_pipe():
    """The evaluator's result channel: its socket (or a pipe it may write)."""
    import fcntl
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        if fd > 2 and (target.startswith("socket:") or (
                target.startswith("pipe:") and flags & os.O_ACCMODE == os.O_WRONLY)):
            return fd
    raise RuntimeError("no result pipe")


def forge(**fields):
    from project_o.wire import Message, encode_frame
    frame = {"offset": 0, "metrics": {"score": 1.0}, "failure": None, "tampered": False,
             "time_s": 0.0, "cpu_s": 0.0, "memory_kb": 1, **fields}
    os.write(result_pipe(), encode_frame(Message("response", frame)))


@agent.handler
def handle(ctx, request):
    xs = request["xs"]
    BODY
'''

HONEST = "return sorted(xs)"
WRONG = "return xs"
#: each answers wrong (the input back) and tries to make the checker say right
BYPASSES = {
    "rebinds a builtin only while the checker runs": '''
    real_sum = sum
    if getattr(builtins.sum, "__name__", "") != "fake_sum":
        def fake_sum(values, *rest):
            if sys._getframe(1).f_code.co_name in ("check", "<genexpr>"):
                builtins.sum = real_sum  # gone again before the tamper check looks
                return 3
            return real_sum(values, *rest)
        builtins.sum = fake_sum
    return xs''',
    "mutates the task's data in place": '''
    for given, expected in task_module().CASES:
        expected[:] = given  # the same list objects: no binding changed
    return xs''',
    "patches the checker and the tamper check": '''
    from project_o.evolution import tamper
    tamper.Snapshot.code_changed = lambda self: []
    tamper.Snapshot.changed_since = lambda self, bindings: []
    task_module().check.__code__ = (lambda outputs: 1.0).__code__
    return xs''',
}


def candidate(body: str) -> Genome:
    return Genome({"agent.py": AGENT.replace("BODY", body)})


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EvaluatorPool]]:
    home = tmp_path_factory.mktemp("two-phase")
    (home / "convenience.py").write_text(CONVENIENCE_TASK)
    (home / "two_phase.py").write_text(TWO_PHASE_TASK)
    with EvaluatorPool(home / "convenience.py", workers=2, batch_size=1) as convenience, \
            EvaluatorPool(home / "two_phase.py", workers=2) as two_phase:
        yield {"convenience": convenience, "two_phase": two_phase}


def _scores(pool: EvaluatorPool, *bodies: str) -> list[float]:
    genomes = [candidate(body) for body in bodies]
    results = pool.evaluate(genomes)
    return [results[genome.id].fitness for genome in genomes]


@pytest.mark.parametrize("form", ["convenience", "two_phase"])
def test_both_forms_score_honest_and_wrong_answers_alike(
        pools: dict[str, EvaluatorPool], form: str) -> None:
    assert _scores(pools[form], HONEST, WRONG) == [1.0, 0.0]


@pytest.mark.parametrize("bypass", sorted(BYPASSES))
def test_no_tamper_check_bypass_changes_a_two_phase_score(
        pools: dict[str, EvaluatorPool], bypass: str) -> None:
    # With evaluate(agent) the bypass works: wrong answers score perfectly...
    assert _scores(pools["convenience"], BYPASSES[bypass]) == [1.0]
    # ...with run/score the same candidate scores what its answers are worth.
    assert _scores(pools["two_phase"], BYPASSES[bypass], HONEST) == [0.0, 1.0]


def test_a_forged_score_on_the_result_channel_fails_its_two_phase_candidate(
        pools: dict[str, EvaluatorPool]) -> None:
    forger = candidate('forge(index=0); os._exit(0)')
    honest = candidate(HONEST)
    results = pools["two_phase"].evaluate([forger, honest])
    assert results[honest.id].fitness == 1.0
    failure = results[forger.id].failure
    assert failure is not None and failure["kind"] == "crash"
    assert "never metrics" in failure["reason"]


@pytest.mark.parametrize("form", ["convenience", "two_phase"])
def test_results_for_other_indices_cannot_change_anyone_elses_score(
        tmp_path: Path, form: str) -> None:
    task = tmp_path / "task.py"
    task.write_text(CONVENIENCE_TASK if form == "convenience" else TWO_PHASE_TASK)
    # First in a batch of three: it answers for its siblings (a zero for the honest one,
    # a one for the wrong one), then carries on as if nothing happened.
    forger = candidate('forge(index=1, metrics={"score": 0.0}); '
                       'forge(index=2, metrics={"score": 1.0}); return xs')
    honest, wrong = candidate(HONEST), candidate(WRONG)
    with EvaluatorPool(task, workers=1, batch_size=3) as pool:
        results = pool.evaluate([forger, honest, wrong])
    assert results[honest.id].fitness == 1.0
    assert results[wrong.id].fitness == 0.0
    failure = results[forger.id].failure
    assert failure is not None and "answered for candidate 1" in failure["reason"]


def test_a_streamed_batch_spoiled_later_keeps_what_it_recorded_and_reruns_the_rest(
        tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text(CONVENIENCE_TASK)
    first = candidate(HONEST)
    forger = candidate('forge(index=5, metrics={"score": 1.0}); return xs')
    honest, wrong = candidate(HONEST + "  # another"), candidate(WRONG)
    recorded: list[str] = []

    def record(genomes: list[Genome], evaluations: object) -> None:
        recorded.extend(genome.id for genome in genomes)

    with EvaluatorPool(task, workers=1) as pool:  # one open child takes them all
        stream = pool.stream()
        try:
            stream.submit(first)
            before = stream.results(on_batch=record)
            for genome in (forger, honest, wrong):  # the next generation, same child
                stream.submit(genome)
            after = stream.results(on_batch=record)
        finally:
            stream.close()
    assert before[first.id].fitness == 1.0
    assert sorted(recorded) == sorted(g.id for g in (first, forger, honest, wrong))
    assert after[honest.id].fitness == 1.0 and after[wrong.id].fitness == 0.0
    failure = after[forger.id].failure  # charged once alone in a child of its own
    assert failure is not None and "answered for candidate 5" in failure["reason"]


MALFORMED = {
    "index a bool": "forge(index=True)",
    "a string time": 'forge(index=0, time_s="fast")',
    "a failure that is a number": "forge(index=0, metrics=None, failure=5)",
    "a failure of no known kind": 'forge(index=0, metrics=None, failure={"kind": "ok", '
                                  '"reason": ""})',
    "metrics that are a list": "forge(index=0, metrics=[1.0])",
    "a negative offset": "forge(index=0, offset=-1)",
    "tampered as text": 'forge(index=0, tampered="no")',
    "an extra field": "forge(index=0, trusted=True)",
    "no offset": "forge(index=0, offset=None)",
}


@pytest.mark.parametrize("form", ["convenience", "two_phase"])
def test_wrong_field_types_fail_their_candidate_never_the_run(
        pools: dict[str, EvaluatorPool], form: str) -> None:
    bodies = [f"{forgery}; os._exit(0)" for forgery in MALFORMED.values()]
    genomes = [candidate(body) for body in [*bodies, HONEST]]
    results = pools[form].evaluate(genomes)
    assert results[genomes[-1].id].fitness == 1.0
    for name, genome in zip(MALFORMED, genomes, strict=False):
        evaluation = results[genome.id]
        assert evaluation.fitness == -math.inf, name
        assert evaluation.failure is not None and "protocol" in evaluation.failure["reason"], (
            name, evaluation.failure)


def test_a_streamed_two_phase_candidate_runs_alone_in_its_child(
        pools: dict[str, EvaluatorPool]) -> None:
    # Its child's CPU limit is one candidate's, as with evaluate(): it runs nothing else.
    pool = pools["two_phase"]
    limit = candidate("import resource; raise RuntimeError("
                      "f'cpu limit {resource.getrlimit(resource.RLIMIT_CPU)[0]}')")
    stream = pool.stream()
    try:
        stream.submit(limit)
        failure = stream.results()[limit.id].failure
    finally:
        stream.close()
    assert failure is not None and failure["kind"] == "error"
    assert f"cpu limit {math.ceil(pool.timeout_s) + 1}" in failure["reason"], failure
    again = pool.evaluate([limit])[limit.id].failure
    assert again is not None and again["reason"] == failure["reason"]


def test_a_two_phase_task_must_be_one_form(tmp_path: Path) -> None:
    half = tmp_path / "half.py"
    half.write_text("def run(agent):\n    return 1\n")
    with pytest.raises(InvalidArgument, match="needs both"):
        load_task(half)
    both = tmp_path / "both.py"
    both.write_text(TWO_PHASE_TASK + "\n\ndef evaluate(agent):\n    return {}\n")
    with pytest.raises(InvalidArgument, match="keep one form"):
        load_task(both)
    task = tmp_path / "task.py"
    task.write_text(TWO_PHASE_TASK)
    loaded = load_task(task)
    assert loaded.two_phase and loaded.score is not None
    assert loaded.evaluate is not None  # the convenience form, composed for in-process callers


def test_outputs_that_cannot_travel_are_the_candidates_error(
        pools: dict[str, EvaluatorPool]) -> None:
    weird = candidate("return {1, 2}")  # a set: not plain data
    failure = pools["two_phase"].evaluate([weird])[weird.id].failure
    assert failure is not None and failure["kind"] == "error"
    assert "not a MessagePack type" in failure["reason"]


def test_the_circle_packing_example_is_two_phase_and_its_checker_cannot_be_patched(
        tmp_path: Path) -> None:
    example = ROOT / "examples" / "circle_packing"
    assert load_task(example / "task.py").two_phase
    grid = [[(2 * c + 1) / 16, (2 * r + 1) / 16, 1 / 16] for r in range(8) for c in range(8)]
    honest = f"return {{'circles': {grid[:26]!r}}}"
    # Circles too big to fit, with the checker made to see no problem at all (and the
    # tamper check made blind to it): 2.86, a "record", if the checker ran beside it.
    big = [[x, y, 0.11] for x, y, _ in grid[:26]]
    cheat = ("from project_o.evolution import tamper; "
             "tamper.Snapshot.code_changed = lambda self: []; "
             "task_module().problems.__code__ = (lambda circles: []).__code__; "
             f"return {{'circles': {big!r}}}")
    circle_agent = AGENT.replace("xs = request[\"xs\"]", "pass").replace(
        "if hasattr(m, \"CASES\")", "if hasattr(m, \"problems\")")
    genomes = [Genome({"agent.py": circle_agent.replace("BODY", body)})
               for body in (honest, cheat)]
    with EvaluatorPool(example / "task.py", workers=1) as pool:
        results = pool.evaluate(genomes)
    assert results[genomes[0].id].fitness == pytest.approx(26 / 16)
    assert results[genomes[0].id].metrics["valid"] is True
    assert results[genomes[1].id].fitness == 0.0
    assert results[genomes[1].id].metrics["valid"] is False
