"""Both backends give the same outputs and the same errors on generated input."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from strategies import keys, names, non_str_keys


def outcome(fn, *args):
    """('ok', value) or ('raise', type, message, key, cause type)."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the exception *is* the result here
        return ("raise", type(exc), str(exc), getattr(exc, "key", None), type(exc.__cause__))


@given(st.one_of(keys, non_str_keys))
@example("a" * 120)
@example("é" * 60 + " ")
@example("\ud800")
@example("\x00")
def test_encode_and_validate_agree(both_codecs, key):
    twin, compiled = both_codecs
    assert outcome(compiled.encode_key, key) == outcome(twin.encode_key, key)
    assert outcome(compiled.validate_key, key) == outcome(twin.validate_key, key)


@given(keys)
def test_round_trip_agrees(both_codecs, key):
    twin, compiled = both_codecs
    result = outcome(twin.encode_key, key)
    if result[0] != "ok":
        return
    name = result[1]
    assert compiled.decode_name(name) == twin.decode_name(name)
    assert compiled.classify_name(name) == twin.classify_name(name)
    if twin.classify_name(name) == "inline":
        assert twin.decode_name(name) == twin.validate_key(key)


@given(st.one_of(names, st.integers(), st.binary(max_size=4)))
def test_decode_and_classify_agree(both_codecs, name):
    twin, compiled = both_codecs
    assert outcome(compiled.decode_name, name) == outcome(twin.decode_name, name)
    assert outcome(compiled.classify_name, name) == outcome(twin.classify_name, name)


@given(st.lists(names, max_size=20))
def test_bulk_decode_agrees(both_codecs, batch):
    twin, compiled = both_codecs
    assert compiled.decode_names(batch) == twin.decode_names(batch)


@given(names)
def test_accepted_names_are_canonical(both_codecs, name):
    twin, _ = both_codecs
    key = twin.decode_name(name)
    if key is not None:
        assert twin.encode_key(key) == name


# -- the updatedAt fast path ----------------------------------------------------------

def _document(key: str, entry: dict) -> bytes:
    import json

    return json.dumps({"sessionKey": key, "entry": entry}, indent=2, ensure_ascii=False).encode()


_updated_at_values = st.one_of(
    st.integers(-(10**19), 10**19), st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=3))
_entries = st.fixed_dictionaries(
    {"updatedAt": _updated_at_values},
    optional={"blob": st.text(max_size=6000), "n": st.integers(), "nested": st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)},
)


def _insert_line(data: bytes, line: bytes, at: int) -> bytes:
    """*data* with *line* inserted as its line number *at* (wrapped)."""
    lines = data.split(b"\n")
    at %= len(lines) + 1
    return b"\n".join(lines[:at] + [line] + lines[at:])


@st.composite
def entry_files(draw):
    """Bytes of an entry file: whole documents in the reference layout, then
    damaged or re-laid-out copies (truncated, appended to, compact, CRLF,
    with a duplicated or re-indented line)."""
    key = draw(st.one_of(st.just("agent:main:k"), st.text(min_size=1, max_size=8)))
    data = _document(key, draw(_entries))
    damage = draw(st.sampled_from(["none", "truncate", "append", "compact", "crlf", "newline", "bytes",
                                   "insert", "dedent"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "append":
        # Appended text that itself ends like a document is left to the full
        # parse too: it leaves a line shallower than the entry's fields.
        data += draw(st.sampled_from([
            b" ", b"x", b"\x00", b"\n}x", b"\n}\n\n", b",\n", b"\n}", b"\n}\n", b" }", b"\n  }\n}",
            b"\n\n", b"\n", _document(key, {"updatedAt": 1}), b"\n" + _document(key, {"updatedAt": 2}),
        ]))
    elif damage == "compact":
        data = data.replace(b"\n", b"").replace(b"  ", b"")
    elif damage == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif damage == "newline":
        data += b"\n"
    elif damage == "bytes":
        data = draw(st.binary(max_size=64))
    elif damage == "insert":
        # A duplicated field (JSON keeps the last), a second entry, a stray closer.
        line = draw(st.sampled_from([
            b'    "updatedAt": 99,', b'    "updatedAt": 99', b'    "updatedAt": null,',
            b'  "entry": {"updatedAt": 98},', b'  "sessionKey": "agent:main:other",', b"}", b"  },",
            b'      "updatedAt": 97,',
        ]))
        data = _insert_line(data, line, draw(st.integers(0, 10_000)))
    elif damage == "dedent":
        lines = data.split(b"\n")
        at = draw(st.integers(0, len(lines) - 1))
        lines[at] = lines[at][draw(st.integers(1, 4)):]
        data = b"\n".join(lines)
    return key, data


@given(entry_files(), st.sampled_from(["same", "other"]))
def test_read_updated_at_agrees_and_never_answers_for_a_broken_file(both_codecs, tmp_path_factory, case, query):
    import json

    twin, compiled = both_codecs
    key, data = case
    path = tmp_path_factory.mktemp("entry") / "session-x.json"
    path.write_bytes(data)
    asked = key if query == "same" else key + "-other"
    result = outcome(twin.read_updated_at, str(path), asked)
    assert outcome(compiled.read_updated_at, str(path), asked) == result
    if result[0] == "ok" and result[1] is not None:
        # Whatever the fast path answers, a full parse of the file agrees.
        doc = json.loads(data)
        assert doc["sessionKey"] == asked
        assert result[1] == (True, doc["entry"]["updatedAt"])
        assert type(result[1][1]) is type(doc["entry"]["updatedAt"])


def test_read_updated_at_of_large_documents(both_codecs, tmp_path):
    for codec in both_codecs:
        whole = _document("k", {"updatedAt": 7, "blob": "x" * 100_000, "tail": {"updated": 8}})
        path = tmp_path / "session-a.json"
        path.write_bytes(whole)
        assert codec.read_updated_at(str(path), "k") == (True, 7)
        path.write_bytes(whole[:-1])  # truncated by one byte: not settled by the fast path
        assert codec.read_updated_at(str(path), "k") is None
        path.write_bytes(whole + b" trailing")
        assert codec.read_updated_at(str(path), "k") is None
        path.write_bytes(whole.replace(b'"blob"', b'"updatedAt": 9,\n    "blob"'))  # a duplicate
        assert codec.read_updated_at(str(path), "k") is None
        assert codec.read_updated_at(str(tmp_path / "missing.json"), "k") == (False, None)


def test_read_updated_at_of_non_files_and_unreadable_paths(both_codecs, tmp_path):
    import os

    twin, compiled = both_codecs
    os.mkdir(tmp_path / "dir")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(_document("k", {"updatedAt": 1}))
    os.symlink(tmp_path / "file", tmp_path / "link")
    for name in ("dir", "fifo", "link", "missing", "file/below"):
        path = str(tmp_path / name)
        assert outcome(compiled.read_updated_at, path, "k") == outcome(twin.read_updated_at, path, "k") \
            == ("ok", (False, None)), name
    assert twin.read_updated_at(str(tmp_path / "file"), "k") == (True, 1)
    assert compiled.read_updated_at(str(tmp_path / "file"), "k") == (True, 1)
    (tmp_path / "empty").write_bytes(b"")
    assert twin.read_updated_at(str(tmp_path / "empty"), "k") is None
    assert compiled.read_updated_at(str(tmp_path / "empty"), "k") is None


def test_read_updated_at_blind_spot_is_damage_inside_a_line(both_codecs, tmp_path):
    """What the docstring says the fast path cannot see: a line's start and
    the file's end are intact, a byte inside a line is not.  A full parse
    skips the file; the fast path still answers (``get``/``load`` do not)."""
    import json

    whole = _document("k", {"updatedAt": 7, "blob": "abc", "n": 1})
    damaged = whole.replace(b'"abc"', b'"abc')  # a lost quote
    path = tmp_path / "session-a.json"
    path.write_bytes(damaged)
    try:
        json.loads(damaged)
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the damaged document should not parse")
    for codec in both_codecs:
        assert codec.read_updated_at(str(path), "k") == (True, 7)


# -- JSON value equality --------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-3, 3, allow_nan=False),
              st.text(max_size=2)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=2), children, max_size=3)),
    max_leaves=12,
)


@given(json_values, json_values)
@example({"a": 1}, {"a": True})
@example([0], [False])
@example({"a": 1, "b": 2}, {"b": 2, "a": 1})
@example(1, 1.0)
def test_same_json_agrees_and_means_equal_json_text(both_codecs, a, b):
    import json

    twin, compiled = both_codecs
    expected = twin.same_json(a, b)
    assert compiled.same_json(a, b) is expected
    canonical = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
    assert expected == (canonical(a) == canonical(b))
