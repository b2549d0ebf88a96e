"""Directory scan of an entries/ directory, on both backends."""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

import pytest
from conftest import load_compiled
from hypothesis import given
from strategies import dir_entries

KEYS = ["agent:main:main", "agent:main:telegram:dm:821071206", "x" * 200, "é"]


def symlink(target, path) -> bool:
    """Create a symlink; on Windows only where the account may (a privilege
    or developer mode), elsewhere a failure is a failure."""
    try:
        os.symlink(target, path)
    except OSError:
        if sys.platform != "win32":
            raise
        return False
    return True


def mkfifo(path) -> bool:
    if not hasattr(os, "mkfifo"):  # Windows
        return False
    os.mkfifo(path)
    return True


def make_entries(root: pathlib.Path, codec) -> dict[str, str | None]:
    """A directory with every kind of impostor; returns what a scan must find."""
    entries = root / "entries"
    entries.mkdir()
    expected: dict[str, str | None] = {}
    for key in KEYS:
        name = codec.encode_key(key)
        (entries / name).write_text("{}")
        expected[name] = None if codec.classify_name(name) == "hashed" else key
    outside = root / "outside.json"
    outside.write_text("{}")
    good = codec.encode_key("agent:main:main")[len("session-"):-len(".json")]
    (entries / ".hidden.json").write_text("{}")
    (entries / ("." + codec.encode_key("hidden"))).write_text("{}")
    (entries / (codec.encode_key("tmp") + ".4f2a.tmp")).write_text("{}")
    (entries / ("session-" + good + "==.json")).write_text("{}")
    (entries / "session-YWI+.json").write_text("{}")
    (entries / "session-hash-short.json").write_text("{}")
    (entries / "notes.txt").write_text("x")
    (entries / codec.encode_key("a directory")).mkdir()
    symlink(outside, entries / codec.encode_key("agent:main:evil"))
    symlink(root / "missing", entries / codec.encode_key("dangling"))
    symlink(entries / codec.encode_key("agent:main:main"), entries / codec.encode_key("alias"))
    mkfifo(entries / codec.encode_key("a fifo"))
    return expected


def expected_reason(name: str, kind: str, twin) -> str | None:
    """Why a listed name is not loaded (None: it is an entry), from the
    documented rules: names are judged first, then types."""
    if name.endswith(".tmp"):
        return "temp file"
    if name.startswith("."):
        return "dotfile"
    if twin.classify_name(name) is None:
        return "name is not an entry name"
    return {"file": None, "dir": "directory", "symlink": "symlink", "dangling": "symlink",
            "fifo": "not a regular file"}[kind]


SKIPPED_IN_MAKE_ENTRIES = {
    ".hidden.json": "dotfile",
    "notes.txt": "name is not an entry name",
    "session-YWI+.json": "name is not an entry name",
    "session-hash-short.json": "name is not an entry name",
}


def skipped_in_make_entries(codec, entries: pathlib.Path) -> dict[str, str]:
    """What make_entries() planted besides the entries (where the platform could)."""
    good = codec.encode_key("agent:main:main")[len("session-"):-len(".json")]
    expected = dict(SKIPPED_IN_MAKE_ENTRIES)
    expected["." + codec.encode_key("hidden")] = "dotfile"
    expected[codec.encode_key("tmp") + ".4f2a.tmp"] = "temp file"
    expected["session-" + good + "==.json"] = "name is not an entry name"
    expected[codec.encode_key("a directory")] = "directory"
    for key in ("agent:main:evil", "dangling", "alias"):
        if os.path.lexists(entries / codec.encode_key(key)):
            expected[codec.encode_key(key)] = "symlink"
    if os.path.lexists(entries / codec.encode_key("a fifo")):
        expected[codec.encode_key("a fifo")] = "not a regular file"
    return expected


def test_scan_with_skipped_names_every_other_entry(codec, tmp_path):
    expected = make_entries(tmp_path, codec)
    found, skipped = codec.scan_entries_with_skipped(tmp_path / "entries")
    assert found == codec.scan_entries(tmp_path / "entries")
    assert dict(found) == expected
    reasons = dict(skipped)
    assert len(reasons) == len(skipped)  # each name once
    assert reasons == skipped_in_make_entries(codec, tmp_path / "entries")
    assert set(reasons) | set(expected) == set(os.listdir(tmp_path / "entries"))
    assert all(type(name) is str and type(reason) is str for name, reason in skipped)


@pytest.mark.skipif(sys.platform == "win32", reason="bytes names")
def test_scan_with_skipped_reports_undecodable_names_as_scandir_does(both_codecs, tmp_path):
    entries = tmp_path / "entries"
    entries.mkdir()
    raw = [b"session-\xff.json", b".\xfe.tmp", b"\xe9t\xe9.json", "séssion.json".encode()]
    for name in raw:
        with open(os.path.join(os.fsencode(str(entries)), name), "w") as fh:
            fh.write("{}")
    results = [codec.scan_entries_with_skipped(entries) for codec in both_codecs]
    assert sorted(results[0][1]) == sorted(results[1][1])
    assert dict(results[1][1]) == {
        os.fsdecode(b"session-\xff.json"): "name is not an entry name",
        os.fsdecode(b".\xfe.tmp"): "temp file",
        os.fsdecode(b"\xe9t\xe9.json"): "name is not an entry name",
        "séssion.json": "name is not an entry name",
    }
    assert results[0][0] == results[1][0] == []


def test_scan_finds_exactly_the_candidates(codec, tmp_path):
    expected = make_entries(tmp_path, codec)
    found = codec.scan_entries(tmp_path / "entries")
    assert dict(found) == expected
    assert len(found) == len(expected)
    assert all(type(name) is str for name, _ in found)


def test_scan_accepts_str_and_pathlike(codec, tmp_path):
    expected = make_entries(tmp_path, codec)
    assert dict(codec.scan_entries(str(tmp_path / "entries"))) == expected


def test_scan_of_empty_directory(codec, tmp_path):
    assert codec.scan_entries(tmp_path) == []


@pytest.mark.parametrize("mode", [dict(force_lstat=True), dict(force_scandir=True)])
def test_compiled_fallback_listings_agree(tmp_path, mode):
    """DT_UNKNOWN file systems (lstat per candidate) and the Windows-style
    os.scandir listing give the same answer as the d_type fast path."""
    compiled = load_compiled()
    expected = make_entries(tmp_path, compiled)
    compiled._set_scan_mode(**mode)
    try:
        assert dict(compiled.scan_entries(tmp_path / "entries")) == expected
        found, skipped = compiled.scan_entries_with_skipped(tmp_path / "entries")
        assert dict(found) == expected
        assert dict(skipped) == skipped_in_make_entries(compiled, tmp_path / "entries")
    finally:
        compiled._set_scan_mode()


def test_scan_errors(both_codecs, tmp_path):
    outcomes = []
    for codec in both_codecs:
        row = []
        for target in (tmp_path / "missing", tmp_path / "file"):
            (tmp_path / "file").write_text("")
            with pytest.raises(OSError) as info:
                codec.scan_entries(target)
            row.append((type(info.value), info.value.errno, str(info.value)))
        with pytest.raises(TypeError, match="directory must be a str or os.PathLike"):
            codec.scan_entries(os.fsencode(str(tmp_path)))
        with pytest.raises(FileNotFoundError):
            codec.scan_entries_with_skipped(tmp_path / "missing")
        with pytest.raises(TypeError, match="directory must be a str or os.PathLike"):
            codec.scan_entries_with_skipped(os.fsencode(str(tmp_path)))
        outcomes.append(row)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0][0] is FileNotFoundError
    assert outcomes[0][1][0] is NotADirectoryError


def populate(root: str, listing) -> list[tuple[str, str]]:
    """Create the listing; returns what was created (a platform without
    symlinks or FIFOs skips those entries)."""
    outside = os.path.join(root, "..", os.path.basename(root) + "-outside")
    with open(outside, "w") as fh:
        fh.write("{}")
    created = []
    for name, kind in listing:
        path = os.path.join(root, name)
        if kind == "file":
            with open(path, "w") as fh:
                fh.write("{}")
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "symlink":
            if not symlink(outside, path):
                continue
        elif kind == "dangling":
            if not symlink(os.path.join(root, "nowhere"), path):
                continue
        elif not mkfifo(path):
            continue
        created.append((name, kind))
    return created


@given(dir_entries)
def test_generated_directories_agree(both_codecs, listing):
    twin, compiled = both_codecs
    with tempfile.TemporaryDirectory() as base:
        root = os.path.join(base, "entries")
        os.mkdir(root)
        created = populate(root, listing)
        expected = sorted(twin.scan_entries(root))
        assert sorted(compiled.scan_entries(root)) == expected
        found, skipped = twin.scan_entries_with_skipped(root)
        expected_skipped = sorted(skipped)
        assert sorted(found) == expected
        # The DT_UNKNOWN path (lstat per candidate) and the os.scandir
        # listing that Windows builds use give the same answer.
        for mode in (dict(), dict(force_lstat=True), dict(force_scandir=True)):
            compiled._set_scan_mode(**mode)
            try:
                if mode:
                    assert sorted(compiled.scan_entries(root)) == expected, mode
                found, skipped = compiled.scan_entries_with_skipped(root)
                assert (sorted(found), sorted(skipped)) == (expected, expected_skipped), mode
            finally:
                compiled._set_scan_mode()
        # Every created name is found or skipped, once, for the documented reason.
        assert sorted(n for n, _ in created) == sorted([n for n, _ in expected] + [n for n, _ in expected_skipped])
        assert expected_skipped == sorted(
            (name, expected_reason(name, kind, twin)) for name, kind in created
            if expected_reason(name, kind, twin) is not None)
        # The oracle: a candidate is a regular file whose name classifies.
        oracle = sorted(
            (name, twin.decode_name(name))
            for name, kind in created
            if kind == "file" and twin.classify_name(name) is not None
        )
        assert expected == oracle
