"""Batch primitives (``read_files``, ``stat_entries``): both backends agree,
and full loads / index repairs built on them answer as before."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sessionsd
from sessionsd import SessionStore, encode_key
from sessionsd._fsutil import read_regular

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="symlinks, FIFOs and modes are POSIX")

KINDS = ["file", "file", "file", "empty", "big", "dir", "symlink", "dangling", "fifo", "missing"]

# Names: entry names (inline and hashed), dotfiles, temp files, others.
_plain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:_-.", min_size=1, max_size=12)
_names = st.one_of(
    _plain.map(encode_key),
    st.just(encode_key("k" * 200)),
    _plain.map(lambda n: "." + n),
    _plain.map(lambda n: encode_key(n) + ".1-2.tmp"),
    _plain,
).filter(lambda n: n not in (".", ".."))
listings = st.lists(st.tuples(_names, st.sampled_from(KINDS), st.binary(max_size=300)),
                    max_size=20, unique_by=lambda item: item[0])


def outcome(fn, *args):
    try:
        return ("ok", normalise(fn(*args)))
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return ("raise", type(exc), str(exc))


def normalise(result):
    if isinstance(result, list):
        return [normalise(item) for item in result]
    if isinstance(result, OSError):
        return ("error", type(result), result.errno, result.strerror, result.filename)
    return result


def populate(root: str, listing) -> list[str]:
    """Create *listing* in *root*; returns every name to ask about (the
    ``missing`` ones are asked about but never created)."""
    outside = os.path.join(os.path.dirname(root), "outside.json")
    with open(outside, "wb") as fh:
        fh.write(b'{"outside": true}')
    asked = []
    for name, kind, data in listing:
        path = os.path.join(root, name)
        asked.append(name)
        if kind in ("file", "empty", "big"):
            with open(path, "wb") as fh:
                fh.write(b"" if kind == "empty" else data * 1000 if kind == "big" and data else
                         os.urandom(70_000) if kind == "big" else data)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "symlink":
            os.symlink(outside, path)
        elif kind == "dangling":
            os.symlink(os.path.join(root, "nowhere"), path)
        elif kind == "fifo":
            os.mkfifo(path)
    return asked


@posix_only
@given(listings, st.booleans())
def test_read_files_agrees(both_codecs, listing, by_fd):
    twin, compiled = both_codecs
    with tempfile.TemporaryDirectory() as base:
        root = os.path.join(base, "entries")
        os.mkdir(root)
        asked = populate(root, listing)
        where = os.open(root, os.O_RDONLY) if by_fd else root
        try:
            expected = outcome(twin.read_files, where, asked)
            assert outcome(compiled.read_files, where, asked) == expected
        finally:
            if by_fd:
                os.close(where)
        # The oracle: read_regular, file by file.
        assert expected == ("ok", [read_regular(os.path.join(root, name)) for name in asked])


@posix_only
@given(listings)
def test_stat_entries_agrees(both_codecs, listing):
    twin, compiled = both_codecs
    with tempfile.TemporaryDirectory() as base:
        root = os.path.join(base, "entries")
        os.mkdir(root)
        populate(root, listing)
        expected = sorted(twin.stat_entries(root))
        assert sorted(compiled.stat_entries(root)) == expected
        for mode in (dict(force_lstat=True), dict(force_scandir=True)):
            compiled._set_scan_mode(**mode)
            try:
                assert sorted(compiled.stat_entries(root)) == expected, mode
            finally:
                compiled._set_scan_mode()
        # The oracle: the scan's candidates, each with its lstat.
        oracle = []
        for name, key in twin.scan_entries(root):
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode):
                oracle.append((name, key, info.st_ino, info.st_mtime_ns, info.st_size))
        assert expected == sorted(oracle)


@pytest.mark.parametrize("bad", [b"bytes", 3, None, "a/b", "nul\x00", "../x"])
def test_bad_names_raise_the_same_error(both_codecs, tmp_path, bad):
    twin, compiled = both_codecs
    (tmp_path / "ok").write_bytes(b"x")
    expected = outcome(twin.read_files, str(tmp_path), ["ok", bad])
    assert expected[0] == "raise" and expected[1] in (TypeError, ValueError)
    assert outcome(compiled.read_files, str(tmp_path), ["ok", bad]) == expected


def test_missing_directory_raises_the_same_error(both_codecs, tmp_path):
    twin, compiled = both_codecs
    missing = str(tmp_path / "nope")
    for fn in ("read_files", "stat_entries"):
        args = (missing, ["a"]) if fn == "read_files" else (missing,)
        with pytest.raises(FileNotFoundError) as expected:
            getattr(twin, fn)(*args)
        with pytest.raises(FileNotFoundError) as got:
            getattr(compiled, fn)(*args)
        assert (got.value.errno, got.value.filename) == (expected.value.errno, expected.value.filename)


def test_empty_batches(both_codecs, tmp_path):
    twin, compiled = both_codecs
    assert twin.read_files(str(tmp_path), []) == compiled.read_files(str(tmp_path), []) == []
    assert twin.stat_entries(str(tmp_path)) == compiled.stat_entries(str(tmp_path)) == []


@posix_only
def test_many_and_large_files(both_codecs, tmp_path):
    """Sizes around the 64 KiB first read and an arena that must grow."""
    twin, compiled = both_codecs
    names = []
    for i, size in enumerate([0, 1, 65535, 65536, 65537, 200_000, 1 << 20] + [300] * 2000):
        name = f"f{i}"
        (tmp_path / name).write_bytes(os.urandom(size))
        names.append(name)
    expected = twin.read_files(str(tmp_path), names)
    assert compiled.read_files(str(tmp_path), names) == expected
    assert [len(data) for data in expected[:7]] == [0, 1, 65535, 65536, 65537, 200_000, 1 << 20]


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_reported_not_raised(both_codecs, tmp_path):
    twin, compiled = both_codecs
    (tmp_path / "locked").write_bytes(b"{}")
    os.chmod(tmp_path / "locked", 0)
    (tmp_path / "open").write_bytes(b"{}")
    for codec in (twin, compiled):
        result = codec.read_files(str(tmp_path), ["locked", "open"])
        assert isinstance(result[0], PermissionError) and result[0].errno == errno.EACCES
        assert result[0].filename == "locked" and result[1] == b"{}"


# -- the users: a full load ---------------------------------------------------------------------

def make_store(tmp_path, entries: dict) -> str:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(entries))
    assert sessionsd.migrate(path).outcome == "migrated"
    return str(path)


@posix_only
def test_load_skips_as_before(tmp_path):
    """A full read over many batches: entries, and skipped names with their
    reasons, scan reasons first, in directory order."""
    path = make_store(tmp_path, {f"agent:main:k{i}": {"updatedAt": i} for i in range(1200)})
    entries = tmp_path / "sessions.d" / "entries"
    (entries / encode_key("corrupt")).write_bytes(b"{not json")
    os.mkfifo(entries / encode_key("a fifo"))
    os.symlink(entries / encode_key("agent:main:k1"), entries / encode_key("alias"))
    (entries / ".dot").write_bytes(b"{}")
    fresh = SessionStore(path, cache=False)
    loaded = fresh.load()
    assert loaded == {f"agent:main:k{i}": {"updatedAt": i} for i in range(1200)}
    skipped = dict(fresh.skipped)
    assert skipped[encode_key("corrupt")] == "invalid JSON" or "JSON" in skipped[encode_key("corrupt")]
    assert skipped[encode_key("alias")] == "symlink"
    assert skipped[encode_key("a fifo")] == "not a regular file"
    assert skipped[".dot"] == "dotfile"
    # Scan reasons first, then the files that could not be used.
    reasons = [name for name, _ in fresh.skipped]
    assert reasons.index(encode_key("corrupt")) > max(reasons.index(".dot"), reasons.index(encode_key("alias")))


@posix_only
def test_read_all_matches_file_by_file_reads(tmp_path, monkeypatch):
    """_read_all gives exactly what reading each file on its own gives."""
    from sessionsd import _directory

    path = make_store(tmp_path, {f"k{i}": {"updatedAt": i, "pad": "x" * (i * 97 % 3000)} for i in range(700)})
    store = SessionStore(path, durability="none")
    entries = tmp_path / "sessions.d" / "entries"
    (entries / encode_key("corrupt")).write_bytes(b"{not json")
    (entries / encode_key("impostor")).write_bytes(b'{"sessionKey": "other", "entry": {}}')
    (entries / encode_key("empty")).write_bytes(b"")
    os.mkdir(entries / encode_key("a dir"))
    directory = store._backend._dir
    batched = directory._read_all()

    def one_by_one(where, names):
        from sessionsd import _codec_py
        return [_codec_py.read_files(where, [name])[0] for name in names]

    monkeypatch.setattr(_directory, "read_files", one_by_one)
    monkeypatch.setattr(_directory, "_READ_BATCH", 1)
    assert directory._read_all() == batched
    entries_read, _, skipped = batched
    assert len(entries_read) == 700
    assert {name for name, _ in skipped} >= {encode_key("corrupt"), encode_key("impostor"),
                                             encode_key("empty"), encode_key("a dir")}


@posix_only
def test_load_reports_permission_denied_and_raises_other_errors(tmp_path, monkeypatch):
    from sessionsd import _directory

    path = make_store(tmp_path, {"a": {"updatedAt": 1}, "b": {"updatedAt": 2}})
    store = SessionStore(path, durability="none")
    directory = store._backend._dir
    real = _directory.read_files

    def failing(where, names, error):
        results = real(where, names)
        return [OSError(error, os.strerror(error), name) if name == encode_key("a") else data
                for name, data in zip(names, results, strict=False)]

    monkeypatch.setattr(_directory, "read_files", lambda w, n: failing(w, n, errno.EACCES))
    entries, _, skipped = directory._read_all()
    assert entries == {"b": {"updatedAt": 2}} and (encode_key("a"), "permission denied") in skipped
    monkeypatch.setattr(_directory, "read_files", lambda w, n: failing(w, n, errno.EIO))
    with pytest.raises(OSError) as caught:
        directory._read_all()
    assert caught.value.errno == errno.EIO and caught.value.filename == encode_key("a")


@posix_only
@given(listings, st.booleans())
def test_prefetch_files_agrees(both_codecs, listing, by_fd):
    """prefetch_files(...).result() is read_files(...), on both backends;
    a second result() and close() after it are refused / harmless."""
    twin, compiled = both_codecs
    with tempfile.TemporaryDirectory() as base:
        root = os.path.join(base, "entries")
        os.mkdir(root)
        asked = populate(root, listing)
        where = os.open(root, os.O_RDONLY) if by_fd else root
        try:
            expected = outcome(twin.read_files, where, asked)
            for codec in (twin, compiled):
                pending = codec.prefetch_files(where, asked)
                assert outcome(pending.result) == expected
                assert outcome(pending.result)[:2] == ("raise", ValueError)
                pending.close()
                codec.prefetch_files(where, asked).close()  # dropped unread
                codec.prefetch_files(where, asked)           # never collected
        finally:
            if by_fd:
                os.close(where)


def test_prefetch_checks_names_and_directory_at_once(both_codecs, tmp_path):
    twin, compiled = both_codecs
    for args in ((str(tmp_path), ["a/b"]), (str(tmp_path), [3]), (str(tmp_path / "missing"), ["a"])):
        expected = outcome(twin.prefetch_files, *args)
        assert expected[0] == "raise"
        assert outcome(compiled.prefetch_files, *args)[:2] == expected[:2]


@posix_only
def test_two_reader_threads_read_what_one_does(both_codecs, tmp_path):
    """A batch large enough for the compiled backend to read it on two
    threads (each half into its own buffer) gives what one thread and the
    twin give -- with errors and non-files on both sides of the split."""
    twin, compiled = both_codecs
    names = []
    for i in range(300):
        name = f"f{i:03d}"
        if i % 50 == 7:
            os.mkdir(tmp_path / name)
        elif i % 50 == 11:
            os.symlink(tmp_path / "f000", tmp_path / name)
        elif i % 50 != 13:  # 13: missing
            (tmp_path / name).write_bytes(os.urandom(i * 997 % 150_000))
        names.append(name)
    expected = twin.read_files(str(tmp_path), names)
    for parallel in (True, False):
        compiled._set_scan_mode(parallel_io=parallel)
        try:
            assert compiled.read_files(str(tmp_path), names) == expected
            assert compiled.prefetch_files(str(tmp_path), names).result() == expected
        finally:
            compiled._set_scan_mode()
