"""Big legacy files: one size rule on every migration path, streaming reads
in bounded memory, the splitter that makes them possible (both backends).

* the rule: no size limit unless ``max_bytes`` / ``--max-bytes`` sets one
  (then ``skipped_invalid``, the warning naming the limit and the flag);
  ``migrate()``, ``detect()``, startup migration and the CLI agree;
* the first write into a legacy file over 64 MiB migrates it by streaming,
  then lands in directory mode -- never loading the file whole;
* ``ObjectSplitter`` (codec): the compiled one and the twin give the same
  members and the same errors wherever the chunks are cut, and what they
  split is what ``json.loads`` reads;
* the streaming reader gives exactly ``normalize_entries(loads(file))``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import ascii_char, tricky_char
from terminal import run_on_a_terminal

import sessionsd
from sessionsd import SessionStore, _json, _legacy_stream, detect, migrate, migration
from sessionsd._codec_py import SPLIT_MAX_DEPTH, SplitError
from sessionsd._legacy import normalize_entries
from sessionsd.discovery import run_startup_migration, summary_line

MiB = 1024 * 1024
LIMIT_TAIL = ("set by --max-bytes / max_bytes=; raise the limit or drop it (--max-bytes none, "
              "max_bytes=None) to migrate the file.")


# -- generated legacy files, written streaming (never held in memory) ---------------------

def entry_of(i: int, blob: int) -> dict:
    return {"sessionId": f"s-{i:08d}", "updatedAt": 1_700_000_000_000 + i, "lastChannel": "telegram",
            "lastTo": str(821071206 + i), "blob": (f"word{i % 97} " * (blob // 7 + 1))[:blob]}


def key_of(i: int) -> str:
    return f"agent:main:telegram:dm:{i}"


def write_legacy(path, count: int, blob: int) -> str:
    """Write a legacy sessions.json of *count* entries, in batches; returns
    the sha256 of every (key, entry) in order, as the store should hold them."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        fh.write(b"{\n")
        for start in range(0, count, 500):
            lines = []
            for i in range(start, min(count, start + 500)):
                key, entry = key_of(i), entry_of(i, blob)
                digest.update(json.dumps([key, entry], sort_keys=True).encode())
                lines.append(f"  {json.dumps(key)}: {json.dumps(entry)}")
            fh.write(((",\n" if start else "") + ",\n".join(lines)).encode())
        fh.write(b"\n}\n")
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_legacy(tmp_path_factory):
    """A legacy file just over 64 MiB (large entries, so few files), made
    once; tests copy it."""
    path = tmp_path_factory.mktemp("big") / "sessions.json"
    write_legacy(path, 700, 100_000)
    assert os.path.getsize(path) > migration.WHOLE_FILE_BYTES
    return path


def copy_of(big_legacy, tmp_path):
    path = tmp_path / "s" / "sessions.json"
    path.parent.mkdir()
    shutil.copyfile(big_legacy, path)
    return path


def forbid_whole_file_reads(monkeypatch):
    """Fail the test if anything parses the legacy file whole."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the legacy file was read whole")

    monkeypatch.setattr(sessionsd._legacy.LegacyStore, "read", refuse)
    # Patched where they are looked up: the reader lives in _legacy_stream.
    monkeypatch.setattr(_legacy_stream, "parse_legacy", refuse)
    monkeypatch.setattr(_legacy_stream, "_read_whole", refuse)


# -- the size rule --------------------------------------------------------------------------

def test_a_file_over_64_mib_migrates_by_default_and_detect_agrees(big_legacy, tmp_path, monkeypatch):
    path = copy_of(big_legacy, tmp_path)
    forbid_whole_file_reads(monkeypatch)
    found = detect(path)
    assert (found.status, found.legacy_entry_count, found.normalized_entry_count, found.warnings) == (
        "ready_to_migrate", 700, 700, [])
    seen = []
    result = migrate(path, progress=lambda done, total: seen.append((done, total)))
    assert (result.outcome, result.legacy_entries, result.migrated_entries, result.warnings) == (
        "migrated", 700, 700, [])
    size = os.path.getsize(result.backup_path)
    assert seen[-1] == (size, size) and len(seen) >= size // migration._CHUNK_BYTES
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    store = SessionStore(path)
    assert store.mode == "directory" and len(store) == 700
    assert store.get(key_of(699)) == entry_of(699, 100_000)


def test_a_limit_applies_only_when_set_and_names_itself(big_legacy, tmp_path):
    path = copy_of(big_legacy, tmp_path)
    size = os.path.getsize(path)
    message = (f"Legacy sessions.json is {size / MiB:.1f} MiB ({size} bytes), over the migration "
               f"limit of 64 MiB {LIMIT_TAIL}")
    found = detect(path, max_bytes=64 * MiB)
    assert (found.status, found.warnings) == ("invalid_legacy", [message])
    result = migrate(path, max_bytes=64 * MiB)
    assert (result.outcome, result.warnings, result.backup_path) == ("skipped_invalid", [message], None)
    assert os.path.getsize(path) == size and not (path.parent / "sessions.d").exists()
    # Startup migration: the same rule, the same message in its summary.
    results = run_startup_migration(None, [path], max_bytes=64 * MiB)
    assert [r.outcome for r in results] == ["skipped_invalid"]
    assert message in summary_line(results)
    assert [r.outcome for r in run_startup_migration(None, [path])] == ["migrated"]


def test_the_first_put_into_a_file_over_64_mib_migrates_it_streaming(big_legacy, tmp_path, monkeypatch):
    path = copy_of(big_legacy, tmp_path)
    forbid_whole_file_reads(monkeypatch)
    store = SessionStore(path)
    assert store.mode == "legacy"
    store.put("agent:main:New", {"updatedAt": 1, "x": 1})
    assert store.mode == "directory" and not path.exists()
    [backup] = path.parent.glob("sessions.json.bak.*")
    assert backup.stat().st_size == big_legacy.stat().st_size
    fresh = SessionStore(path)
    assert fresh.get("agent:main:new") == {"updatedAt": 1, "x": 1}
    assert fresh.get(key_of(3)) == entry_of(3, 100_000)
    assert len(fresh) == 701


def test_a_big_file_that_is_not_strict_json_is_refused_and_says_why(big_legacy, tmp_path):
    path = copy_of(big_legacy, tmp_path)
    with open(path, "r+b") as fh:  # a comment after the opening brace: JSON5
        fh.write(b"{//\n")
    result = migrate(path)
    assert result.outcome == "skipped_invalid"
    [warning] = result.warnings
    assert warning.startswith("Failed to parse legacy sessions.json: expected a string key or '}' at "
                              "byte 1, found '/'; a file over 64 MiB is read as strict JSON only")
    assert detect(path).warnings == result.warnings
    # The same file under 64 MiB is read whole, as JSON5.
    small = tmp_path / "small" / "sessions.json"
    small.parent.mkdir()
    small.write_bytes(b'{//\n "a": {"n": 1},}')
    assert migrate(small).warnings == ["Legacy sessions.json is not strict JSON; it was read as JSON5."]


@pytest.mark.parametrize("size", ["small", "big"])
def test_nesting_100000_levels_deep_is_invalid_not_a_recursion_error(tmp_path, size):
    path = tmp_path / "sessions.json"
    with open(path, "wb") as fh:
        fh.write(b'{"ok": {"updatedAt": 1}, ')
        if size == "big":
            fh.write(b'"pad": "' + b"x" * (65 * MiB) + b'", ')
        fh.write(b'"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    found = detect(path)
    result = migrate(path)
    assert (found.status, result.outcome) == ("invalid_legacy", "skipped_invalid")
    [warning] = result.warnings
    assert found.warnings == result.warnings
    if size == "big":
        offset = os.path.getsize(path) - 200_001 + SPLIT_MAX_DEPTH - 1
        assert warning.startswith(f"Failed to parse legacy sessions.json: arrays and objects nested deeper "
                                  f"than {SPLIT_MAX_DEPTH} levels (at byte {offset})"), warning
    else:
        assert warning.startswith("Failed to parse legacy sessions.json: nesting too deep"), warning
    assert not (tmp_path / "sessions.d").exists()


# -- the first write, streaming: the same result as the legacy path -------------------------
#
# With the threshold lowered, small stores take the streaming path; the same
# operation on a copy that takes the legacy path (load whole, migrate the
# result) must end in the same store.

LEGACY = {"agent:main:a": {"updatedAt": 3, "n": 1}, "agent:main:b": {"updatedAt": 1, "n": 2},
          "Agent:Main:C": {"updatedAt": 2, "n": 3}, "agent:main:c": {"updatedAt": 1, "n": 4},
          "agent:main:list": [1, 2]}


def _operations():
    def nested(store):
        def mutator(entries):
            store.put("agent:main:nested", {"updatedAt": 9})
            entries["agent:main:a"]["n"] = -1
        return store.mutate(mutator)

    return {
        "put new": lambda s: s.put("agent:main:new", {"updatedAt": 5}),
        "put same": lambda s: s.put("agent:main:a", {"updatedAt": 3, "n": 1}),
        "patch": lambda s: s.patch("agent:main:b", {"n": 20}),
        "patch missing": lambda s: s.patch("agent:main:zzz", {"n": 20}),
        "update_entry": lambda s: s.update_entry("AGENT:MAIN:C", lambda e: {**e, "seen": True}),
        "delete": lambda s: s.delete("agent:main:b"),
        "delete missing": lambda s: s.delete("agent:main:zzz"),
        "update in place": lambda s: s.mutate(lambda e: e["agent:main:a"].update(n=7)),
        "update whole": lambda s: s.mutate(lambda e: sorted(e) and e.pop("agent:main:b") and len(e)),
        "update setdefault": lambda s: s.mutate(lambda e: e.setdefault("agent:main:d", {"updatedAt": 0})),
        "update odd key": lambda s: s.mutate(lambda e: e.__setitem__(" Agent:Main:E ", {"updatedAt": 4})),
        "save": lambda s: s.save({"agent:main:only": {"updatedAt": 1}}),
        "nested put": nested,
    }


@pytest.mark.parametrize("operation", list(_operations()))
def test_a_streaming_first_write_matches_the_legacy_path(tmp_path, monkeypatch, operation):
    op = _operations()[operation]
    outcomes = {}
    for way in ("legacy", "streaming"):
        path = tmp_path / way / "sessions.json"
        path.parent.mkdir()
        path.write_text(json.dumps(LEGACY))
        with monkeypatch.context() as patch:
            if way == "streaming":
                patch.setattr(migration, "WHOLE_FILE_BYTES", 10)  # the first-write rule
                patch.setattr(_legacy_stream, "WHOLE_FILE_BYTES", 10)  # the reader's JSON5 fallback
                forbid_whole_file_reads(patch)
            store = SessionStore(path)
            returned = op(store)
        outcomes[way] = (returned, store.mode, SessionStore(path, cache=False).load())
    legacy, streaming = outcomes["legacy"], outcomes["streaming"]
    assert streaming[0] == legacy[0] and streaming[2] == legacy[2]
    assert streaming[1] == "directory"  # it migrated, even when the legacy path changed nothing


def test_a_streaming_first_write_applies_maintenance(tmp_path, monkeypatch):
    from sessionsd.maintenance import Maintenance

    kept = {}
    for way in ("legacy", "streaming"):
        path = tmp_path / way / "sessions.json"
        path.parent.mkdir()
        path.write_text(json.dumps({f"k{i}": {"updatedAt": 1_000 + i} for i in range(10)}))
        with monkeypatch.context() as patch:
            if way == "streaming":
                patch.setattr(migration, "WHOLE_FILE_BYTES", 10)  # the first-write rule
                patch.setattr(_legacy_stream, "WHOLE_FILE_BYTES", 10)  # the reader's JSON5 fallback
            store = SessionStore(path, maintenance=Maintenance(mode="enforce", max_entries=5))
            store.put("k-new", {"updatedAt": 1})  # the oldest, but the session written is kept
        kept[way] = SessionStore(path, cache=False).load()
    assert kept["streaming"] == kept["legacy"]
    assert sorted(kept["legacy"]) == ["k-new", "k6", "k7", "k8", "k9"]


# -- the streaming reader: exactly normalize_entries(loads(file)) -------------------------

def read_streaming(tmp_path, data: bytes, chunk_bytes: int = 7, lower_keys: bool = True):
    """``(raw count, count, entries)`` as the streaming reader gets them, or
    the _NotStrict it raises."""
    path = tmp_path / "stream.json"
    path.write_bytes(data)
    store = SessionStore(tmp_path / "sessions.json", lower_keys=lower_keys)
    sink = migration._DictSink()
    fd = os.open(path, os.O_RDONLY)
    try:
        raw, count, _bom = migration._stream(fd, store.normalize_key, sink, None, len(data), None,
                                             chunk_bytes=chunk_bytes)
    finally:
        os.close(fd)
    assert count == len(sink.entries)
    return raw, sink.entries


def reference(data: bytes, lower_keys: bool = True):
    store = SessionStore("/nonexistent/sessions.json", lower_keys=lower_keys)
    value = _json.loads(data)
    entries, _ = normalize_entries(value, store.normalize_key)
    return len(value), entries


@pytest.mark.parametrize("document", [
    # duplicates: the last value wins
    b'{"a": {"v": 1}, "b": {}, "a": {"v": 2}}',
    # case variants: the greatest updatedAt, ties to the later key
    b'{"A": {"updatedAt": 5, "v": 1}, "a": {"updatedAt": 5, "v": 2}, "b": {"updatedAt": 1}}',
    b'{"Agent:X": {"updatedAt": 9}, "agent:x": {"updatedAt": 3}, " AGENT:X ": {}, "agent:y": {}}',
    # a duplicate of the winning variant that is now older: the other one wins
    b'{"A": {"updatedAt": 5}, "a": {"updatedAt": 1}, "A": {"updatedAt": 0}}',
    # ... and the tie goes by the key's first position, not its last
    b'{"A": {"updatedAt": 1, "v": "A1"}, "a": {"updatedAt": 1}, "A": {"updatedAt": 1, "v": "A2"}}',
    # escapes and unicode keys
    b'{"q\\"uo\\\\te": {"s": "}\\"]"}, "\\u00c9t\\u00e9": {"n": 1}, "\xc3\xa9t\xc3\xa9": {"n": 2}}',
    # values that are not objects are kept, wrapped
    b'{"list": [1, {"a": "]"}], "null": null, "s": "x", "n": -1.5e3, "t": true}',
    # keys nothing can be stored under: counted, dropped
    b'{"   ": {}, "__proto__": {"a": 1}, "ok": {}}',
    b'{}',
    b' \n{ "a" :{ } ,"b":[ ] }\r\n',
])
def test_streaming_reads_what_the_whole_file_parser_reads(tmp_path, document):
    for chunk_bytes in (1, 2, 5, 64, 1 << 20):
        for lower_keys in (True, False):
            assert read_streaming(tmp_path, document, chunk_bytes, lower_keys) == reference(
                document, lower_keys)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.one_of(tricky_char, ascii_char, st.sampled_from('"\\[]{}:,')), max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(st.sampled_from('ab"\\{}'), max_size=3), inner, max_size=4)),
    max_leaves=12,
)
member_keys = st.one_of(
    st.sampled_from(["a", "A", " a ", "agent:Main:x", "agent:main:X", "é", "É", "__proto__", "", "  ",
                     'q"uo\\te', "\u2028k", "constructor"]),
    st.text(st.one_of(tricky_char, ascii_char), max_size=6),
)
member_values = st.one_of(
    json_values,
    st.fixed_dictionaries({"updatedAt": st.one_of(st.integers(0, 3), st.floats(0, 3), st.booleans())},
                          optional={"v": json_values}),
)


@st.composite
def documents(draw):
    """A legacy object as bytes, duplicates and case variants included, in
    one of several layouts."""
    pairs = draw(st.lists(st.tuples(member_keys, member_values), max_size=8))
    if pairs and draw(st.booleans()):
        pairs.append(draw(st.sampled_from(pairs)))  # a duplicate key
    ascii_only = draw(st.booleans())
    gap = draw(st.sampled_from(["", " ", "\n  ", "\t", "\r\n "]))
    indent = draw(st.sampled_from([None, 1, 2]))
    members = [json.dumps(k, ensure_ascii=ascii_only) + gap + ":" + gap
               + json.dumps(v, ensure_ascii=ascii_only, indent=indent) for k, v in pairs]
    text = draw(st.sampled_from(["", " ", "\n"])) + "{" + gap + ("," + gap).join(members) + gap + "}" + gap
    return text.encode("utf-8", "surrogatepass")


def mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, where, byte in edits:
        at = where % (len(out) + 1)
        if kind == "delete" and out:
            del out[min(at, len(out) - 1)]
        elif kind == "insert":
            out.insert(at, byte)
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


edits = st.lists(st.tuples(st.sampled_from(["delete", "insert", "truncate"]), st.integers(0, 10**6),
                           st.sampled_from(list(b'{}[]",: \\\x00a1'))), max_size=3)
cuts = st.lists(st.integers(0, 10**6), max_size=5)


def split(codec, data: bytes, cut_at=(), max_depth: int = SPLIT_MAX_DEPTH):
    """Feed *data* to a splitter cut at *cut_at* (positions modulo its size):
    ``("ok", members)`` or ``("error", kind, message, offset)``."""
    points = sorted({c % (len(data) + 1) for c in cut_at}) if data else []
    pieces = [data[a:b] for a, b in zip([0] + points, points + [len(data)], strict=False)]
    splitter = codec.ObjectSplitter(max_depth)
    members, window, base = [], b"", 0
    try:
        for number, piece in enumerate(pieces):
            keep = splitter.keep_from
            window, base = window[keep - base:] + piece, keep
            members += splitter.scan(window, base, final=number == len(pieces) - 1)
    except SplitError as exc:
        assert isinstance(exc, ValueError)
        return ("error", exc.kind, str(exc), exc.offset)
    assert splitter.finished
    return ("ok", members)


@given(documents(), edits, cuts)
@example(b'{"a": [1, "]\\"", {"b": "\\\\"}], "c": 2}', [], [3, 9, 14, 15])
@example(b'{"a": "x\\', [], [8])
@example(b'{"a": 1}x', [], [])
@example(b"[1]", [], [])
@example(b'{"a": 1,}', [], [])
def test_both_splitters_agree_wherever_the_chunks_are_cut(both_codecs, document, changes, cut_at):
    twin, compiled = both_codecs
    data = mutate(document, changes)
    whole = split(twin, data)
    assert split(compiled, data) == whole
    assert split(twin, data, cut_at) == whole
    assert split(compiled, data, cut_at) == whole


def _loads(data: bytes):
    try:
        return ("ok", json.loads(data))
    except (ValueError, RecursionError):
        return ("error",)


@given(documents(), edits)
def test_what_is_split_is_what_json_loads_reads(codec, document, changes):
    data = mutate(document, changes)
    result = split(codec, data)
    whole = _loads(data)
    if result[0] == "error":
        # Refused: json.loads refuses it too, or it is no object.
        assert whole[0] == "error" or not isinstance(whole[1], dict), (data, result)
        return
    parsed = [(_loads(data[k0:k1]), _loads(data[v0:v1])) for k0, k1, v0, v1 in result[1]]
    if any(key[0] == "error" or value[0] == "error" for key, value in parsed):
        assert whole[0] == "error"  # a member the parser refuses: so is the whole
        return
    assert whole[0] == "ok" and whole[1] == {key[1]: value[1] for key, value in parsed}


@given(documents(), edits, st.integers(1, 40))
def test_streaming_equals_the_whole_file_reader(tmp_path, document, changes, chunk_bytes):
    data = mutate(document, changes)
    try:
        expected = reference(data) if isinstance(_json.loads(data), dict) else None
    except ValueError:
        expected = None  # not strict JSON, or not an object: streaming refuses it too
    try:
        got = read_streaming(tmp_path, data, chunk_bytes)
    except migration._NotStrict:
        got = None
    assert got == expected


def test_split_offsets_escapes_and_errors(codec):
    data = b' {"a\\"b" : "x\\\\", "c": [{"]": "\\"["}], "d":-1e5 }\n'
    status, members = split(codec, data)
    assert status == "ok" and members == [(2, 8, 11, 16), (18, 21, 23, 37), (39, 42, 43, 47)]
    assert [(data[k0:k1], data[v0:v1]) for k0, k1, v0, v1 in members] == [
        (b'"a\\"b"', b'"x\\\\"'), (b'"c"', b'[{"]": "\\"["}]'), (b'"d"', b"-1e5")]
    cases = {
        b"": ("empty", "the document is empty (only whitespace)", 0),
        b" \n": ("empty", "the document is empty (only whitespace)", 2),
        b" [1]": ("not_object", "not a JSON object: the document starts with '[' at byte 1", 1),
        b"\xef\xbb\xbf{}": ("not_object", "not a JSON object: the document starts with byte 0xef at byte 0", 0),
        b'{"a": 1': ("truncated", "the data ends inside the top-level object (at byte 7), so it looks "
                                  "truncated", 7),
        b'{"a": "}': ("truncated", "the data ends inside the top-level object (at byte 8), so it looks "
                                   "truncated", 8),
        b'{"a": 1} {': ("trailing", "unexpected '{' at byte 9 after the end of the top-level object", 9),
        b'{"a": 1}\x00': ("trailing", "unexpected byte 0x00 at byte 8 after the end of the top-level "
                                      "object", 8),
        b'{"a" 1}': ("syntax", "expected ':' after the key at byte 5, found '1'", 5),
        b'{"a": 1 "b": 2}': ("syntax", "expected ',' or '}' after a value at byte 8, found '\"'", 8),
        b'{"a": 1,}': ("syntax", "expected a string key at byte 8, found '}'", 8),
        b"{a: 1}": ("syntax", "expected a string key or '}' at byte 1, found 'a'", 1),
        b'{"a": }': ("syntax", "expected a value at byte 6, found '}'", 6),
    }
    for data, (kind, message, offset) in cases.items():
        assert split(codec, data) == ("error", kind, message, offset), data


def test_split_depth_bound_is_the_parsers(codec):
    def nested(depth: int) -> bytes:  # the top-level object counts as one level
        return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    assert split(codec, nested(SPLIT_MAX_DEPTH))[0] == "ok"
    assert split(codec, nested(SPLIT_MAX_DEPTH + 1)) == (
        "error", "depth", f"arrays and objects nested deeper than {SPLIT_MAX_DEPTH} levels (at byte "
        f"{6 + SPLIT_MAX_DEPTH - 1})", 6 + SPLIT_MAX_DEPTH - 1)
    if _json.IMPLEMENTATION.startswith("orjson"):
        _json.loads(nested(SPLIT_MAX_DEPTH))
        with pytest.raises(ValueError):
            _json.loads(nested(SPLIT_MAX_DEPTH + 1))
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for cut_at in ((), (50_000,), (7, 99_000, 150_000)):
        assert split(codec, deep, cut_at)[1] == "depth"
    assert split(codec, b'{"a": {"b": 1}}', max_depth=2)[0] == "ok"
    assert split(codec, b'{"a": {"b": []}}', max_depth=2)[:2] == ("error", "depth")


def test_split_errors_are_value_errors_that_survive_pickling(both_codecs):
    import pickle

    twin, compiled = both_codecs
    assert twin.SplitError is compiled.SplitError and issubclass(twin.SplitError, ValueError)
    for codec in both_codecs:
        with pytest.raises(SplitError) as info:
            codec.ObjectSplitter().scan(b'{"a": 1}}', 0, final=True)
        clone = pickle.loads(pickle.dumps(info.value))
        assert (type(clone), str(clone), clone.kind, clone.offset) == (
            SplitError, str(info.value), "trailing", 8)
        with pytest.raises(TypeError) as wrong:
            codec.ObjectSplitter().scan('{"a": 1}', 0)
        assert str(wrong.value) == "scan() needs bytes, bytearray or memoryview, not str"
        assert codec.ObjectSplitter().scan(memoryview(b'{"a": 1}'), 0, True) == [(1, 4, 6, 7)]
        assert codec.ObjectSplitter().scan(bytearray(b'{"a": 1}'), 0, True) == [(1, 4, 6, 7)]


def test_a_failed_splitter_stays_failed(codec):
    splitter = codec.ObjectSplitter()
    with pytest.raises(SplitError):
        splitter.scan(b"[", 0)
    with pytest.raises(SplitError, match="not a JSON object"):
        splitter.scan(b"[", 0, final=True)
    done = codec.ObjectSplitter()
    assert done.scan(b"{}", 0, final=True) == [] and done.finished
    with pytest.raises(ValueError, match="after the final window"):
        done.scan(b"", 2, final=True)
    with pytest.raises(ValueError, match="needs the data from byte 0 on"):
        codec.ObjectSplitter().scan(b"{}", 1)


# -- bounded memory ---------------------------------------------------------------------------

# The child's own peak: VmHWM belongs to its address space (ru_maxrss would
# carry the forking parent's peak across exec on Linux).
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import sessionsd

    def peak_rss():
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

    started = time.perf_counter()
    result = sessionsd.migrate(sys.argv[1])
    peak = peak_rss()
    print(json.dumps({"outcome": result.outcome, "migrated": result.migrated_entries,
                      "peak": peak, "seconds": time.perf_counter() - started,
                      "backend": sessionsd.BACKEND}))
""")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage")
def test_a_300_mb_file_migrates_in_a_fraction_of_its_size(tmp_path):
    path = tmp_path / "sessions.json"
    count, blob = 37_000, 8_000
    expected = write_legacy(path, count, blob)
    size = os.path.getsize(path)
    assert size > 290 * 1_000_000
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "migrated" and report["migrated"] == count
    assert report["backend"] == sessionsd.BACKEND
    assert report["peak"] < size / 3, f"peak RSS {report['peak'] / MiB:.0f} MiB for a {size / MiB:.0f} MiB file"
    # Every session reads back equal (the same digest as the one written).
    store = SessionStore(path, cache=False)
    digest = hashlib.sha256()
    for i in range(count):
        digest.update(json.dumps([key_of(i), store.get(key_of(i))], sort_keys=True).encode())
    assert digest.hexdigest() == expected
    assert len(os.listdir(store.paths.entries)) == count


# -- the command line -------------------------------------------------------------------------

def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "sessionsd", *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False, env=env, **kwargs)


def test_cli_max_bytes_names_the_limit_and_the_flag(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"a": {"x": "y" * 3000}}))
    size = os.path.getsize(path)
    message = (f"Legacy sessions.json is {size / 1024:.1f} KiB ({size} bytes), over the migration "
               f"limit of 1 KiB {LIMIT_TAIL}")
    done = run_cli("detect", path, "--max-bytes", "1K")
    assert done.returncode == 0 and f"warning: {message}" in done.stdout.splitlines()
    done = run_cli("migrate", path, "--max-bytes", "1K")
    assert done.returncode == 1 and "1 store(s) not migrated" in done.stderr
    assert done.stdout.splitlines() == [f"skipped_invalid {path} (legacy 0, migrated 0)",
                                        f"  warning: {message}"]
    done = run_cli("migrate", path, "--max-bytes", "lots")
    assert done.returncode == 2 and "not a size: 'lots'" in done.stderr
    done = run_cli("migrate", path)  # no limit by default
    assert done.returncode == 0 and done.stdout.startswith(f"migrated {path} (legacy 1, migrated 1)")


def _on_a_terminal(args) -> tuple[subprocess.CompletedProcess, str]:
    pytest.importorskip("pty")
    return run_on_a_terminal([sys.executable, "-m", "sessionsd", *map(str, args)])


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals")
@pytest.mark.parametrize("how", ["path", "state-dir"])
def test_cli_progress_bar_on_a_terminal_only(tmp_path, how):
    sessions = tmp_path / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    path = sessions / "sessions.json"
    write_legacy(path, 400, 50_000)  # ~20 MB: three chunks
    size = os.path.getsize(path)
    args = ["migrate", path] if how == "path" else ["migrate", "--state-dir", tmp_path]
    copy = tmp_path / "copy.json"
    shutil.copyfile(path, copy)
    done, shown = _on_a_terminal(args)
    assert done.returncode == 0, shown
    redraws = shown.replace("\r\n", "\n").split("\r")  # (the terminal writes \n as \r\n)
    assert redraws[1].startswith("migrating main [") and " ETA " in redraws[1] and "/s" in redraws[1]
    final = redraws[-1].rstrip()
    assert final.startswith(f"migrating main [{'#' * 30}] 100% {size / MiB:.1f} MiB in "), final
    assert shown.endswith("\n")
    # Piped: nothing on stderr but what the command says.
    shutil.rmtree(sessions)
    sessions.mkdir()
    shutil.copyfile(copy, path)
    done = run_cli(*args)
    assert done.returncode == 0 and "[" not in done.stderr and "%" not in done.stderr
