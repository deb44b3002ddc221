"""Genomes: content ids, immutability, materialization, diffs and catalog records."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.genome import PARAMS_FILE, Genome, genome_id, read_params
from project_o.supervisor.versions import content_version
from project_o.vault.catalog import Catalog
from tests.evolution.samples import AGENT, sample

ID_IN_CHILD = """
import json, sys
from project_o.evolution.genome import Genome
spec = json.loads(sys.stdin.read())
print(Genome(spec["sources"], spec["params"]).id)
"""


def _id_in_subprocess(sources: dict[str, str], params: dict[str, object], seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", ID_IN_CHILD], input=json.dumps({"sources": sources,
                                                              "params": params}),
        capture_output=True, text=True, env=env, check=True, timeout=60,
    )
    return done.stdout.strip()


def test_id_is_the_same_in_other_processes_whatever_their_hash_seed() -> None:
    sources = {"b.py": "B = 2\n", "a.py": "A = 1\n", "pkg/c.py": "C = 'é'\n"}
    params = {"z": 0.1, "a": [1, 2], "mode": "fast", "on": True}
    here = Genome(sources, params).id
    assert _id_in_subprocess(sources, params, "1") == here
    assert _id_in_subprocess(sources, params, "987") == here


def test_id_without_params_is_the_supervisors_content_version() -> None:
    sources = {"agent.py": AGENT, "helpers.py": "X = 1\n"}
    assert Genome(sources).id == content_version(sources) == genome_id(sources)


def test_id_depends_on_content_only() -> None:
    a = Genome({"x.py": "1\n", "y.py": "2\n"}, {"p": 1, "q": 2}, operator="seed")
    b = Genome({"y.py": "2\n", "x.py": "1\n"}, {"q": 2, "p": 1}, parents=["f00"], operator="x")
    assert a.id == b.id and a == b and len({a, b}) == 1
    assert Genome({"x.py": "1\n", "y.py": "2\n"}, {"p": 1, "q": 3}).id != a.id
    assert Genome({"x.py": "1\n", "y.py": "2\n"}, {"p": 1.0, "q": 2}).id != a.id  # types count
    assert Genome({"x.py": "1\n", "y.py": "2 \n"}, {"p": 1, "q": 2}).id != a.id


def test_params_cannot_pose_as_a_source_file() -> None:
    # Without the marker between sources and params, these would hash the same bytes.
    with_params = Genome({"a.py": "x\n"}, {"p": 1})
    with_file = Genome({"a.py": "x\n", "params": '{"p":1}'})
    assert with_params.id != with_file.id


def test_a_genome_cannot_be_changed() -> None:
    sources, params = {"agent.py": "A = 1\n"}, {"p": [1, 2]}
    genome = Genome(sources, params)
    sources["agent.py"] = "A = 2\n"
    params["p"].append(3)
    assert genome.sources["agent.py"] == "A = 1\n" and genome.params["p"] == [1, 2]
    before = genome.id
    genome.params["p"].append(4)  # nested values are handed out as copies
    assert genome.params["p"] == [1, 2] and genome_id(genome.sources, genome.params) == before
    with pytest.raises(AttributeError):
        genome.operator = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        genome.sources["agent.py"] = "A = 3\n"  # type: ignore[index]
    with pytest.raises(TypeError):
        genome.params["p"] = 0  # type: ignore[index]


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil.py", "a//b.py", "./a.py", "",
                                  "a\\b.py", PARAMS_FILE, "a/../../b.py"])
def test_source_names_must_be_plain_relative_paths(name: str) -> None:
    with pytest.raises(InvalidArgument):
        Genome({name: "x = 1\n"})


@pytest.mark.parametrize("params", [{"p": float("nan")}, {"p": float("inf")}, {"p": object()},
                                    {1: 2}])
def test_params_must_be_finite_json(params: dict[object, object]) -> None:
    with pytest.raises(InvalidArgument):
        Genome({"a.py": "x = 1\n"}, params)  # type: ignore[arg-type]


def test_empty_and_nul_sources_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        Genome({})
    with pytest.raises(InvalidArgument):
        Genome({"a.py": "x = 1\0\n"})


def test_file_agent_round_trips_through_a_directory(tmp_path: Path) -> None:
    genome = sample(threshold=0.25)
    agent = genome.write_to(tmp_path / genome.id)
    assert agent == tmp_path / genome.id / "agent.py"
    assert agent.read_text() == AGENT
    assert read_params(agent) == {"threshold": 0.25}
    again = Genome.from_path(agent)
    assert again.id == genome.id and again.operator == "seed"


def test_package_agent_round_trips_and_explicit_params_win(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .sub.core import agent\n")
    (package / "sub" / "core.py").write_text(AGENT)
    (package / "notes.txt").write_text("not a source")
    genome = Genome.from_path(package)
    assert sorted(genome.sources) == ["__init__.py", "sub/core.py"] and genome.params == {}
    target = genome.write_to(tmp_path / "out")
    assert target == tmp_path / "out" and not (target / PARAMS_FILE).exists()
    assert Genome.from_path(target) == genome
    assert Genome.from_path(target, {"top_k": 3}).params == {"top_k": 3}


def test_write_to_refuses_a_directory_with_other_sources(tmp_path: Path) -> None:
    (tmp_path / "stale.py").write_text("x = 1\n")
    with pytest.raises(InvalidArgument, match="stale.py"):
        sample().write_to(tmp_path)
    assert not (tmp_path / "agent.py").exists()


def test_from_path_of_nothing_says_so(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        Genome.from_path(tmp_path / "missing.py")


def test_diff_shows_code_and_params_changes() -> None:
    old = sample()
    new = old.derive(operator="test", sources={"agent.py": AGENT.replace("* 2", "* 3")},
                     params={"top_k": 7})
    diff = old.diff(new)
    assert f"--- {old.id}/agent.py" in diff and f"+++ {new.id}/agent.py" in diff
    assert "-    return hits / (len(fact.split()) + 1.0) * 2" in diff
    assert "+    return hits / (len(fact.split()) + 1.0) * 3" in diff
    assert '+"top_k": 7' in diff
    assert old.diff(old) == ""


def test_diff_marks_a_missing_final_newline() -> None:
    diff = Genome({"a.py": "x = 1"}).diff(Genome({"a.py": "x = 2"}))
    assert "-x = 1\n\\ No newline at end of file\n+x = 2\n" in diff


def test_derive_records_lineage_without_duplicates() -> None:
    parent, donor = sample(), sample(top_k=9)
    child = parent.derive(operator="cx_params", params={"top_k": 9}, donors=[donor, parent],
                          details={"taken": ["top_k"]})
    assert child.parents == (parent.id, donor.id)
    assert child.operator == "cx_params" and child.details == {"taken": ["top_k"]}
    assert child.sources == parent.sources


def test_catalog_record_round_trip(tmp_path: Path) -> None:
    parent = sample()
    child = parent.derive(operator="mut_param_gauss", params={"threshold": 0.7},
                          details={"changes": {"threshold": [0.5, 0.7]}})
    with Catalog.open(tmp_path / "catalog.sqlite") as catalog:
        catalog.add_version(**parent.to_record())
        catalog.add_version(**child.to_record(), status="candidate", reason="test")
        stored = catalog.get_version(child.id)
    assert stored is not None
    back = Genome.from_record(stored)
    assert back == child and back.parents == (parent.id,)
    assert back.operator == "mut_param_gauss" and dict(back.details) == dict(child.details)
    assert dict(back.params) == {"threshold": 0.7}


def test_from_record_reads_versions_recorded_before_genomes() -> None:
    sources = {"agent.py": AGENT}
    legacy = {"id": content_version(sources), "source": sources, "parents": [],
              "operator": "user", "params": {"path": "/somewhere/agent.py"}}
    genome = Genome.from_record(legacy)
    assert genome.id == legacy["id"] and genome.params == {}
    assert genome.details == {"path": "/somewhere/agent.py"}


def test_from_record_refuses_content_that_does_not_match_its_id() -> None:
    record = sample().to_record()
    record["source"] = {"agent.py": AGENT + "# tampered\n"}
    with pytest.raises(InvalidArgument, match="hashes to"):
        Genome.from_record(record)


def test_pickle_keeps_content_and_lineage() -> None:
    child = sample().derive(operator="x", params={"top_k": 2}, details={"k": 1})
    back = pickle.loads(pickle.dumps(child))
    assert back == child and back.parents == child.parents and back.details == {"k": 1}


@pytest.mark.parametrize("genome", [
    Genome({"agent.py": "x = 1\n"}),
    Genome({"agent.py": "x = 1\n"}, {"t": 0.5, "name": "héllo"}, details={"k": [1, "ü"]}),
    Genome({"pkg/__init__.py": "", "pkg/b.py": "y = 2\n"}, {"z": [1, 2.5e-7]},
           parents=["p1", "p2"], operator="cx_functions", details={"taken": ["pkg/b.py:f"]}),
])
def test_record_row_is_the_json_of_to_record(genome: Genome) -> None:
    # The catalog row written without decoding the canonical JSON again: same text.
    def compact(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    record = genome.to_record()
    assert genome.record_row() == (record["version_id"], compact(record["parents"]),
                                   record["operator"], compact(record["params"]),
                                   compact(record["source"]))
