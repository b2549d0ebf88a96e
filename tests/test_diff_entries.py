"""``diff_entries`` (what a listing-index repair compares ``entries/`` with):
the compiled backend and the pure twin give identical answers, and both
give the answer of a plain re-statement of the rules on top of
``stat_entries``."""

from __future__ import annotations

import os
import struct
import sys
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_batch_reads import listings, outcome, populate

from sessionsd import encode_key

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="symlinks, FIFOs and modes are POSIX")

RECORD = struct.Struct("<Qqq")
MODES = [{}, {"force_lstat": True}, {"force_scandir": True}, {"parallel_io": False}]


def pack(rows) -> tuple[bytes, bytes]:
    """(names, stats) of rows ``(name, ino, mtime_ns, size)``; a name may be
    bytes (a damaged section)."""
    names = b"".join((name if isinstance(name, bytes) else name.encode("ascii")) + b"\n" for name, *_ in rows)
    return names, b"".join(RECORD.pack(ino, mtime, size) for _, ino, mtime, size in rows)


def oracle(twin, root, rows, trusted_before):
    """The documented rules, spelled out over stat_entries."""
    last = {}
    for row, (name, *_rest) in enumerate(rows):
        last[name.decode("ascii", "surrogateescape") if isinstance(name, bytes) else name] = row
    changed, seen = [], set()
    for name, key, ino, mtime, size in twin.stat_entries(root):
        row = last.get(name, -1)
        if row >= 0:
            seen.add(row)
            _, was_ino, was_mtime, was_size = rows[row]
            if was_ino != 0 and (was_ino, was_mtime, was_size) == (ino, mtime, size) and mtime <= trusted_before:
                continue
        changed.append((name, key, ino, mtime, size, row))
    return sorted(changed), sorted(row for row in last.values() if row not in seen)


def compare(twin, compiled, root, rows, trusted_before):
    names, stats = pack(rows)
    expected = twin.diff_entries(root, names, stats, trusted_before)
    assert (sorted(expected[0]), expected[1]) == oracle(twin, root, rows, trusted_before)
    for mode in MODES:
        compiled._set_scan_mode(**mode)
        try:
            got = compiled.diff_entries(root, names, stats, trusted_before)
        finally:
            compiled._set_scan_mode()
        # Both list the directory in its own order: compare as sets.
        assert (sorted(got[0]), got[1]) == (sorted(expected[0]), expected[1]), mode
    return expected


@posix_only
@given(listings, st.data())
def test_diff_entries_agrees(both_codecs, listing, data):
    twin, compiled = both_codecs
    with tempfile.TemporaryDirectory() as base:
        root = os.path.join(base, "entries")
        os.mkdir(root)
        populate(root, listing)
        real = twin.stat_entries(root)
        rows = []
        for name, _key, ino, mtime, size in real:
            how = data.draw(st.sampled_from(["same", "same", "ino", "mtime", "size", "unknown", "absent"]))
            if how == "absent":
                continue
            rows.append((name, 0 if how == "unknown" else ino + (how == "ino"), mtime + (how == "mtime"),
                         size + (how == "size")))
        # Rows of names that are not (or not any more) entry files, damaged
        # names, and later rows overriding earlier ones of the same name.
        others = st.one_of(st.sampled_from([name for name, *_ in listing] or ["x"]),
                           st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:", min_size=1, max_size=8).map(encode_key),
                           st.binary(max_size=8).filter(lambda b: b"\n" not in b))
        for _ in range(data.draw(st.integers(0, 4))):
            rows.append((data.draw(others), data.draw(st.integers(0, 2 ** 64 - 1)),
                         data.draw(st.integers(-(2 ** 63), 2 ** 63 - 1)), data.draw(st.integers(-1, 400))))
        for _ in range(data.draw(st.integers(0, 2))):
            if real:
                name, _key, ino, mtime, size = data.draw(st.sampled_from(real))
                rows.append((name, ino, mtime, size))
        rows = data.draw(st.permutations(rows))
        mtimes = sorted(mtime for *_, mtime, _size in real) or [0]
        trusted_before = data.draw(st.sampled_from([2 ** 63 - 1, mtimes[0] - 1, mtimes[len(mtimes) // 2]]))
        compare(twin, compiled, root, rows, trusted_before)


@posix_only
def test_unchanged_files_are_left_out(both_codecs, tmp_path):
    twin, compiled = both_codecs
    for i in range(5):
        (tmp_path / encode_key(f"k{i}")).write_bytes(b"{}" * i)
    rows = [(name, ino, mtime, size) for name, _key, ino, mtime, size in twin.stat_entries(str(tmp_path))]
    rows.sort()
    for codec in (twin, compiled):
        assert codec.diff_entries(str(tmp_path), *pack(rows), 2 ** 63 - 1) == ([], [])
        # Too young to be trusted: every file is reported, with its row.
        changed, missing = codec.diff_entries(str(tmp_path), *pack(rows), 0)
        assert sorted(item[5] for item in changed) == list(range(5)) and missing == []
    os.unlink(tmp_path / rows[2][0])
    (tmp_path / encode_key("new")).write_bytes(b"{}")
    for codec in (twin, compiled):
        changed, missing = codec.diff_entries(str(tmp_path), *pack(rows), 2 ** 63 - 1)
        assert [(item[0], item[1], item[5]) for item in changed] == [(encode_key("new"), "new", -1)]
        assert missing == [2]


@posix_only
def test_a_large_directory(both_codecs, tmp_path):
    """Enough files for the compiled lstats to use a second thread."""
    twin, compiled = both_codecs
    for i in range(5000):
        (tmp_path / encode_key(f"agent:main:{i}")).write_bytes(b"x" * (i % 7))
    rows = [(name, ino, mtime, size) for name, _key, ino, mtime, size in twin.stat_entries(str(tmp_path))]
    rows = [(name, ino if i % 10 else ino + 1, mtime, size) for i, (name, ino, mtime, size) in enumerate(rows)]
    rows += [(encode_key(f"gone:{i}"), 1, 1, 1) for i in range(50)]
    expected = compare(twin, compiled, str(tmp_path), rows, 2 ** 63 - 1)
    assert len(expected[0]) == 500 and expected[1] == list(range(5000, 5050))


@pytest.mark.parametrize("args", [
    ("names", b""), (b"", "stats"), (bytearray(b""), b""), (b"", memoryview(b"")),
    (b"", b"x" * 23), (b"a\n", b""), (b"", b"x" * 24), (b"a\nb", b"x" * 48), (b"a\nb\nc\n", b"x" * 48),
])
def test_bad_arguments_raise_the_same_error(both_codecs, tmp_path, args):
    twin, compiled = both_codecs
    expected = outcome(twin.diff_entries, str(tmp_path), *args, 0)
    assert expected[0] == "raise" and expected[1] in (TypeError, ValueError)
    assert outcome(compiled.diff_entries, str(tmp_path), *args, 0) == expected


def test_missing_directory_raises_the_same_error(both_codecs, tmp_path):
    twin, compiled = both_codecs
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError) as expected:
        twin.diff_entries(missing, b"", b"", 0)
    with pytest.raises(FileNotFoundError) as got:
        compiled.diff_entries(missing, b"", b"", 0)
    assert (got.value.errno, got.value.filename) == (expected.value.errno, expected.value.filename)


def test_record_size_is_shared(both_codecs):
    twin, compiled = both_codecs
    assert twin.STAT_RECORD == compiled.STAT_RECORD == RECORD.size == 24
