"""Opening a damaged WAL: torn tails are repaired, corruption is refused and reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from project_o.errors import WALCorruption
from project_o.vault.wal import WAL, scan, segment_name
from project_o.vault.wal_record import HEADER, encode

pytestmark = pytest.mark.usefixtures("no_leaked_flushers")


def build(directory: Path, count: int, segment_size: int = 64 * 1024 * 1024) -> list[Path]:
    with WAL.open(directory, segment_size=segment_size) as wal:
        for i in range(count):
            wal.append("memory_set", {"key": f"k{i}", "value": "v" * (i % 17)})
        return wal.segments()


def record_offsets(path: Path) -> list[int]:
    """Start offset of each record in a healthy segment."""
    buf, offsets, offset = path.read_bytes(), [], 0
    while offset < len(buf):
        offsets.append(offset)
        (size,) = HEADER.unpack_from(buf, offset)
        offset += HEADER.size + size
    return offsets


def flip(path: Path, position: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


# --------------------------------------------------------------- torn tails


def test_a_torn_last_record_at_every_byte_offset_is_cut_back(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    [segment] = build(pristine, 5)
    data = segment.read_bytes()
    last = record_offsets(segment)[-1]
    work = tmp_path / "wal"
    for keep in range(1, len(data) - last):  # every partial length of the last record
        work.mkdir(exist_ok=True)
        target = work / segment.name
        target.write_bytes(data[: last + keep])
        with WAL.open(work) as wal:
            if any(data[last : last + keep]):
                assert wal.torn_tail is not None, keep
                assert wal.torn_tail.path == target
                assert wal.torn_tail.offset == last
                assert wal.torn_tail.bytes_truncated == keep
            else:  # only the size prefix's leading zero bytes: same as padding
                assert wal.torn_tail is None
            assert wal.last_sequence == 4
            assert [e.sequence for e in wal.replay()] == [1, 2, 3, 4]
        assert target.read_bytes() == data[:last]
        with WAL.open(work) as wal:  # the repair is durable and final
            assert wal.torn_tail is None
            assert wal.append("op", "next") == 5
        for path in work.iterdir():
            path.unlink()


def test_a_torn_tail_is_reported_by_scan_and_repaired_only_on_request(tmp_path: Path) -> None:
    [segment] = build(tmp_path, 3)
    whole = segment.read_bytes()
    with segment.open("ab") as f:
        f.write(encode(4, 1.0, "op", "never acknowledged")[:-7])
    report = scan(tmp_path)
    assert report.sound and report.entries == 3 and report.last_sequence == 3
    assert report.torn_tail is not None and report.torn_tail.offset == len(whole)
    assert not report.repaired
    assert segment.read_bytes() != whole  # scan alone is read-only
    repaired = scan(tmp_path, repair=True)
    assert repaired.repaired and segment.read_bytes() == whole
    assert scan(tmp_path).torn_tail is None


def test_zero_padding_after_a_crash_is_trimmed_not_reported_as_torn(tmp_path: Path) -> None:
    # What a crash leaves behind: the active segment's preallocated zeros.
    [segment] = build(tmp_path, 3)
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(bytes(5000))
    report = scan(tmp_path)
    assert report.sound and report.torn_tail is None and report.padding == 5000
    with WAL.open(tmp_path) as wal:
        assert wal.torn_tail is None
        assert segment.stat().st_size == size
        assert wal.append("op", "next") == 4


def test_a_torn_record_followed_by_padding_is_a_torn_tail(tmp_path: Path) -> None:
    [segment] = build(tmp_path, 3)
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(encode(4, 1.0, "op", "half")[:20] + bytes(5000))
    with WAL.open(tmp_path) as wal:
        assert wal.torn_tail is not None
        assert (wal.torn_tail.offset, wal.torn_tail.bytes_truncated) == (size, 5020)
    assert segment.stat().st_size == size


def test_an_empty_last_segment_after_a_crash_at_rollover_is_fine(tmp_path: Path) -> None:
    build(tmp_path, 3)
    (tmp_path / segment_name(4)).write_bytes(b"")
    with WAL.open(tmp_path) as wal:
        assert wal.torn_tail is None
        assert wal.append("op", "x") == 4
        assert wal.segments()[-1].name == segment_name(4)


# --------------------------------------------------------------- corruption


def test_every_bit_flip_in_a_middle_segment_names_file_and_record(tmp_path: Path) -> None:
    segments = build(tmp_path, 40, segment_size=1024)
    assert len(segments) >= 3
    victim = segments[1]
    offsets = record_offsets(victim)
    start, end = offsets[1], offsets[2]  # a record in the middle of the segment
    original = victim.read_bytes()
    for position in range(start, end):
        flip(victim, position)
        with pytest.raises(WALCorruption) as caught:
            WAL.open(tmp_path)
        assert (caught.value.path, caught.value.offset) == (str(victim), start), position
        report = scan(tmp_path)
        assert [(c.path, c.offset) for c in report.corruption] == [(victim, start)], position
        assert not report.sound
        victim.write_bytes(original)
    with WAL.open(tmp_path) as wal:  # restored: opens again
        assert wal.last_sequence == 40


def test_a_flip_in_the_last_segment_before_its_tail_record_is_corruption(tmp_path: Path) -> None:
    [segment] = build(tmp_path, 10)
    offsets = record_offsets(segment)
    before = segment.read_bytes()
    for victim in (0, 4, 8):  # not the tail record (index 9)
        flip(segment, offsets[victim] + 20, 0x40)
        with pytest.raises(WALCorruption) as caught:
            WAL.open(tmp_path)
        assert caught.value.offset == offsets[victim]
        assert segment.read_bytes() != before  # refused, not "repaired"
        segment.write_bytes(before)


def test_a_broken_size_prefix_mid_log_is_corruption_not_a_tail(tmp_path: Path) -> None:
    [segment] = build(tmp_path, 10)
    offsets = record_offsets(segment)
    flip(segment, offsets[3], 0x80)  # size now claims ~2 GiB: runs past EOF
    with pytest.raises(WALCorruption, match="offset"):
        WAL.open(tmp_path)
    report = scan(tmp_path)
    assert report.corruption[0].offset == offsets[3]
    assert report.torn_tail is None
    assert report.entries == 9  # the scan resynchronised on record 5


def test_a_missing_segment_is_a_gap(tmp_path: Path) -> None:
    segments = build(tmp_path, 40, segment_size=1024)
    segments[1].unlink()
    with pytest.raises(WALCorruption, match="previous one ends at") as caught:
        WAL.open(tmp_path)
    assert caught.value.path == str(segments[2])
    report = scan(tmp_path)
    assert [c.path for c in report.corruption] == [segments[2]]


def test_a_file_name_that_disagrees_with_its_first_record_is_corruption(tmp_path: Path) -> None:
    [segment] = build(tmp_path, 3)
    os.rename(segment, tmp_path / segment_name(7))
    with pytest.raises(WALCorruption, match="file name says 7"):
        WAL.open(tmp_path)


def test_corruption_in_a_sealed_segment_tail_is_not_forgiven(tmp_path: Path) -> None:
    # Only the last segment may end in a torn record: earlier ones were fsynced whole.
    segments = build(tmp_path, 40, segment_size=1024)
    first = segments[0]
    first.write_bytes(first.read_bytes()[:-5])
    with pytest.raises(WALCorruption) as caught:
        WAL.open(tmp_path)
    assert caught.value.path == str(first)


def test_scan_of_a_healthy_log_matches_what_was_written(tmp_path: Path) -> None:
    segments = build(tmp_path, 40, segment_size=1024)
    report = scan(tmp_path)
    assert report.sound and report.torn_tail is None and report.corruption == []
    assert report.padding == 0  # closed: every segment trimmed to its records
    assert (report.entries, report.first_sequence, report.last_sequence) == (40, 1, 40)
    assert [s.path for s in report.segments] == segments
    assert sum(s.entries for s in report.segments) == 40
    assert report.to_dict()["sound"] is True


def test_scan_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    report = scan(tmp_path / "nothing")
    assert report.entries == 0 and report.sound and report.last_sequence is None
