"""The demo: its pieces in-process, and (slow) the whole scenario against a real supervisor."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from project_o.demo.candidates import CANDIDATES
from project_o.demo.sources import (
    EVOLVABLE,
    FACT_COUNT,
    UNSEEN_QUERIES,
    base_source,
    candidate_source,
    demo_facts,
    splice_function,
)
from project_o.errors import InvalidArgument
from project_o.evolution import validate
from project_o.evolution.genome import Genome

#: the whole demo must finish well within this (the README promises "under a minute")
DEMO_TIMEOUT_S = 240


def _load(tmp_path: Path, name: str, source: str) -> ModuleType:
    path = tmp_path / f"demo_{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"demo_{name}_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _taught(module: ModuleType):  # type: ignore[no-untyped-def]
    client = module.agent.test_client()
    for subject, text in demo_facts():
        client.call({"do": "teach", "subject": subject, "text": text})
    return client


def test_facts_are_deterministic_and_subjects_unique() -> None:
    facts = demo_facts()
    assert facts == demo_facts() and len(facts) == FACT_COUNT
    for subject, text in facts:
        assert [s for s, t in facts if subject in t.split()] == [subject]
    assert not any(word in text.split() for word in UNSEEN_QUERIES for _, text in facts)
    with pytest.raises(InvalidArgument):
        demo_facts(count=0)


@pytest.mark.parametrize("name", ["original", *CANDIDATES])
def test_every_version_compiles_and_passes_validation(name: str) -> None:
    source = base_source() if name == "original" else candidate_source(name)
    compile(source, f"{name}.py", "exec")
    result = validate(Genome({"agent.py": source}))
    assert result.ok, result
    assert source.count(f"def {EVOLVABLE}(") == 1


def test_base_and_lean_and_indexed_give_the_same_answers(tmp_path: Path) -> None:
    clients = {name: _taught(_load(tmp_path, name, src)) for name, src in (
        ("original", base_source()), ("lean", candidate_source("lean")),
        ("indexed", candidate_source("indexed")))}
    for subject, text in demo_facts():
        answers = {name: c.call({"do": "ask", "query": subject})["answer"]
                   for name, c in clients.items()}
        assert set(answers.values()) == {text}, answers
    assert clients["original"].call({"do": "count"}) == {"facts": FACT_COUNT}


def test_indexed_breaks_only_on_words_it_never_saw(tmp_path: Path) -> None:
    original = _taught(_load(tmp_path, "original", base_source()))
    indexed = _taught(_load(tmp_path, "indexed", candidate_source("indexed")))
    assert original.call({"do": "ask", "query": UNSEEN_QUERIES[0]})["answer"] is None
    with pytest.raises(KeyError):
        indexed.call({"do": "ask", "query": UNSEEN_QUERIES[0]})


def test_recursive_candidate_never_ends(tmp_path: Path) -> None:
    """Run it in a child: in the demo it overflows the C stack and the process dies."""
    path = tmp_path / "recursive_agent.py"
    path.write_text(candidate_source("recursive"))
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('rec', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "c = m.agent.test_client()\n"
        "c.call({'do': 'teach', 'subject': 'a', 'text': 'a b'})\n"
        "c.call({'do': 'teach', 'subject': 'b', 'text': 'b c'})\n"
        "c.call({'do': 'ask', 'query': 'a'})\n"
        "print('ANSWERED')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -signal.SIGSEGV, done.stderr[-2000:]
    assert "ANSWERED" not in done.stdout


def test_improve_outside_a_supervisor_is_ignored(tmp_path: Path) -> None:
    client = _load(tmp_path, "original", base_source()).agent.test_client()
    answer = client.call({"do": "improve", "hypothesis": "h", "source": "x"})
    assert answer["status"] == "ignored" and answer["experiment_id"] is None


def test_splice_refuses_a_missing_function_or_candidate() -> None:
    with pytest.raises(InvalidArgument, match="no top-level function"):
        splice_function("x = 1\n", EVOLVABLE, "pass\n")
    with pytest.raises(InvalidArgument, match="no demo candidate"):
        candidate_source("nope")


@pytest.mark.slow
def test_the_whole_demo_keeps_every_promise(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "project_o.cli", "demo", "--json", "--vault",
         str(tmp_path / "vault")],
        check=False, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert summary["promises"] and all(p["held"] for p in summary["promises"]), summary
    statuses = [e["status"] for e in summary["experiments"]]
    assert statuses == ["rejected", "promoted", "rolled_back"]
