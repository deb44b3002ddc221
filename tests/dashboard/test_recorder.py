"""Experiment points beside the catalog: appended, read back, thinned, never outside the vault."""

from __future__ import annotations

import itertools
from pathlib import Path

from project_o.dashboard.recorder import MAX_LOADED, append_point, load_points, points_path


def test_points_come_back_in_order(tmp_path: Path) -> None:
    for n in range(5):
        append_point(tmp_path, "exp-1", {"t": n, "metrics": {}})
    assert [p["t"] for p in load_points(tmp_path, "exp-1")] == [0, 1, 2, 3, 4]
    assert load_points(tmp_path, "exp-2") == []


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    append_point(tmp_path, "exp-1", {"t": 1})
    path = points_path(tmp_path, "exp-1")
    assert path is not None
    with path.open("a") as stream:
        stream.write('{"t": 2, "metr')  # a crash mid-write
    assert load_points(tmp_path, "exp-1") == [{"t": 1}]


def test_long_histories_are_thinned_evenly_keeping_both_ends(tmp_path: Path) -> None:
    for n in range(3 * MAX_LOADED):
        append_point(tmp_path, "long", {"t": n})
    points = load_points(tmp_path, "long")
    assert len(points) == MAX_LOADED
    assert points[0]["t"] == 0 and points[-1]["t"] == 3 * MAX_LOADED - 1
    assert all(a["t"] < b["t"] for a, b in itertools.pairwise(points))


def test_an_id_that_is_no_plain_name_is_never_a_path(tmp_path: Path) -> None:
    for bad in ("../escape", "a/b", "", ".hidden", "x\x00y"):
        assert points_path(tmp_path, bad) is None
        append_point(tmp_path, bad, {"t": 1})
        assert load_points(tmp_path, bad) == []
    assert not (tmp_path / "dashboard").exists()
