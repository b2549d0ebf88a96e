"""Bad values on the way in and out: legacy files that would exhaust the
parser (nesting, size), non-finite floats, and error messages a user can act on.

Legacy ``sessions.json`` (SPEC §5, §8): a file that cannot be parsed is refused
with ``CorruptStoreError`` naming the file and the reason, reported
``invalid_legacy`` by ``detect`` and ``skipped_invalid`` by ``migrate``, and
never changed on disk -- however deep, however large.  JSON5 (comments,
trailing commas) still loads at any size; the full JSON5 grammar only for
small files.

Entries (README: ``InvalidEntryError``): NaN and infinities are refused
before anything is written (JSON has no such numbers; writing ``null``
would silently change the data), and every refusal names the session key,
the field path and what to do.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import importlib
import json
import math
import os
import pickle
import random
import stat
import sys

import json5
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sessionsd._json as sjson
from sessionsd import CorruptStoreError, InvalidEntryError, SessionStore, datagen, detect, migrate
from sessionsd._documents import encode_document
from sessionsd._legacy import parse_legacy

KEY = "agent:main:x"
GOOD = {"good-1": {"updatedAt": 11, "sessionId": "g1"},
        "good-2": {"updatedAt": 12, "lastChannel": "telegram", "lastTo": "42"}}


# -- helpers ---------------------------------------------------------------------------

def tree(root) -> dict:
    """Every file and directory under *root* with its content (lock files aside)."""
    result = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            if name.endswith(".lock") or ".lock." in name:
                continue
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as fh:
                    result[os.path.relpath(path, root)] = fh.read()
            else:
                result[os.path.relpath(path, root)] = stat.S_IFMT(info.st_mode)
    return result


@pytest.fixture
def base(tmp_path):
    directory = tmp_path / "agents" / "main" / "sessions"
    directory.mkdir(parents=True)
    return directory


@pytest.fixture(params=["default", "stdlib"])
def json_backend(request):
    """Each test twice: on orjson (where installed) and on the stdlib
    fallback that PyPy and free-threaded builds get."""
    if request.param == "default":
        yield "default"
        return
    saved = sys.modules.get("orjson", None)
    sys.modules["orjson"] = None  # "import orjson" now raises ImportError
    try:
        importlib.reload(sjson)
        assert sjson.IMPLEMENTATION == "stdlib json"
        yield "stdlib"
    finally:
        if saved is None:
            del sys.modules["orjson"]
        else:
            sys.modules["orjson"] = saved
        importlib.reload(sjson)


@pytest.fixture
def no_full_json5(monkeypatch):
    """Fail the test if the (slow, pure-Python) json5 parser is used."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise AssertionError("the full JSON5 parser ran")

    monkeypatch.setattr(json5, "loads", refuse)
    return calls


def make_store(kind: str, base) -> SessionStore:
    path = base / "sessions.json"
    if kind == "directory":
        path.write_text(json.dumps(GOOD))
        assert migrate(path).outcome == "migrated"
    elif kind == "legacy":
        path.write_text(json.dumps(GOOD))
    store = SessionStore(path)
    assert store.mode == ("directory" if kind == "directory" else "legacy")
    return store


def assert_legacy_refused(path, *reasons: str) -> None:
    """load/detect/migrate all refuse *path*, say why, and change nothing."""
    root = path.parent
    before = tree(root)
    with pytest.raises(CorruptStoreError) as info:
        SessionStore(path).load()
    message = str(info.value)
    assert str(path) in message
    for reason in reasons:
        assert reason in message, message
    assert os.fspath(info.value.path) == str(path)
    found = detect(path)
    assert found.status == "invalid_legacy"
    assert any(all(reason in w for reason in reasons) for w in found.warnings), found.warnings
    result = migrate(path)
    assert result.outcome == "skipped_invalid"
    assert any(all(reason in w for reason in reasons) for w in result.warnings), result.warnings
    assert tree(root) == before
    store = SessionStore(path)
    with pytest.raises(CorruptStoreError):
        store.put("agent:main:new", {"n": 1})  # a write never replaces the file
    assert tree(root) == before


def realistic_legacy_bytes(min_bytes: int, seed: int = 7) -> bytes:
    """An indented legacy store (as hosts write it) of at least *min_bytes*."""
    entries = {}
    size = 0
    for key, entry in datagen.iter_store(10_000, seed=seed):
        entries[key] = entry
        size += len(json.dumps(entry))
        if size >= min_bytes:
            break
    return json.dumps(entries, indent=2, ensure_ascii=False).encode()


# =======================================================================================
# 6. Nesting deep enough to exhaust a recursive parser
# =======================================================================================

DEEP = 100_000

DEEP_FILES = [
    pytest.param(b"[" * DEEP + b"]" * DEEP, id="arrays"),
    pytest.param(b'{"a":' * DEEP + b"1" + b"}" * DEEP, id="objects"),
    pytest.param(b'{"k": ' + b"[" * DEEP + b"]" * DEEP + b"}", id="inside-an-entry"),
    pytest.param(b"[" * DEEP, id="unclosed"),
    pytest.param(b"// json5\n" + b"[" * DEEP + b"]" * DEEP, id="json5-comment"),
    # Within the strict parser's limit but beyond the JSON5 parser's.
    pytest.param(b"{k: " + b"[" * 300 + b"]" * 300 + b"}", id="json5-moderately-deep"),
]


@pytest.mark.parametrize("data", DEEP_FILES)
def test_deeply_nested_legacy_file_is_refused_not_a_recursion_error(base, json_backend, data):
    path = base / "sessions.json"
    path.write_bytes(data)
    assert_legacy_refused(path, "nest")


@pytest.mark.parametrize("data", DEEP_FILES)
def test_parse_legacy_says_the_nesting_is_too_deep(json_backend, data):
    with pytest.raises(ValueError, match="nesting too deep") as info:
        parse_legacy(data)
    assert not isinstance(info.value, RecursionError)


# =======================================================================================
# 7. Large files: rejected (or read) in time bounded by the strict parser
# =======================================================================================

@pytest.fixture(scope="module")
def big_legacy():
    return realistic_legacy_bytes(3 << 20)


def test_big_truncated_legacy_file_is_refused(base, json_backend, big_legacy, no_full_json5):
    path = base / "sessions.json"
    path.write_bytes(big_legacy[: len(big_legacy) * 2 // 3])
    assert_legacy_refused(path, "truncated")
    assert no_full_json5 == []


def test_small_truncated_file_is_refused_without_the_json5_parser(base, no_full_json5):
    """Truncation is never something JSON5 could explain: no JSON5 pass."""
    path = base / "sessions.json"
    path.write_bytes(b'{"a": {"updatedAt": 1, "note": "cut he')
    assert_legacy_refused(path, "truncated")
    assert no_full_json5 == []


@pytest.mark.parametrize("garbage", [b"}", b"\x00\x01", b" garbage", b"\xff\xfe"])
def test_big_file_with_trailing_garbage_is_refused(base, json_backend, big_legacy, no_full_json5,
                                                   garbage):
    path = base / "sessions.json"
    path.write_bytes(big_legacy + garbage)
    assert_legacy_refused(path)
    assert no_full_json5 == []


def test_big_garbage_file_is_refused(base, json_backend, no_full_json5):
    rng = random.Random(5)
    path = base / "sessions.json"
    path.write_bytes(b"{" + bytes(rng.getrandbits(8) for _ in range(2 << 20)))
    assert_legacy_refused(path)
    assert no_full_json5 == []


def _with_json5_syntax(data: bytes) -> bytes:
    """*data* (indented JSON) with comments and trailing commas, as a person
    editing the file would add them, some in awkward places."""
    text = data.decode()
    lines = text.split("\n")
    out = ["// sessions, edited by hand", "/* a block", "   comment */"]
    for index, line in enumerate(lines):
        if index % 97 == 5 and line.rstrip().endswith(("{", "[")):
            line += "  // opened here"
        if index % 89 == 7 and line.rstrip().endswith((",",)):
            line += " /* more follow */"
        out.append(line)
    text = "\n".join(out)
    # Trailing commas before every closing bracket on its own line.
    text = text.replace('"\n  }', '",\n  }').replace("}\n}", "},\n}")
    return text.encode()


def test_big_json5_legacy_file_loads_without_the_json5_parser(base, json_backend, big_legacy,
                                                              no_full_json5):
    path = base / "sessions.json"
    data = _with_json5_syntax(big_legacy)
    with pytest.raises(ValueError):
        json.loads(data)
    path.write_bytes(data)
    strict = base.parent / "strict" / "sessions.json"
    strict.parent.mkdir()
    strict.write_bytes(big_legacy)
    expected = SessionStore(strict).load()
    assert len(expected) > 20
    assert SessionStore(path).load() == expected
    found = detect(path)
    assert found.status == "ready_to_migrate"
    assert "Legacy sessions.json is not strict JSON; it was read as JSON5." in found.warnings
    assert no_full_json5 == []


def test_big_json5_legacy_file_truncated_is_refused(base, json_backend, big_legacy, no_full_json5):
    path = base / "sessions.json"
    data = _with_json5_syntax(big_legacy)
    path.write_bytes(data[: len(data) // 2])
    assert_legacy_refused(path, "truncated")
    assert no_full_json5 == []


def test_big_file_with_json5_only_syntax_is_refused_with_a_reason(base, big_legacy, no_full_json5):
    """Unquoted keys in a large file: only comments and trailing commas are
    read at any size; the message says so."""
    path = base / "sessions.json"
    path.write_bytes(b"{unquoted: {}, " + big_legacy[1:])
    assert_legacy_refused(path, "JSON5")
    assert no_full_json5 == []


def test_too_many_comments_in_a_big_file_are_refused_with_a_reason(base, monkeypatch,
                                                                    no_full_json5):
    """The comment/trailing-comma reader runs Python code per dropped token,
    so their number is capped (a person writes a few, not a million)."""
    entries = {f"agent:main:s{i}": {"updatedAt": i, "tags": ["a", "b"]} for i in range(2000)}
    text = json.dumps(entries, indent=2).replace('"b"\n', '"b", // last tag\n')
    assert len(text) > 64 * 1024 and text.count("// last tag") == 2000
    path = base / "sessions.json"
    path.write_text(text)
    monkeypatch.setattr(sjson, "MAX_REMOVALS", 3999)
    assert_legacy_refused(path, "more than 3999 comments and trailing commas")
    monkeypatch.setattr(sjson, "MAX_REMOVALS", 4000)  # 2000 comments, 2000 trailing commas
    assert SessionStore(path).load()["agent:main:s7"] == {"updatedAt": 7, "tags": ["a", "b"]}
    assert no_full_json5 == []


def test_byte_order_mark_is_read_at_any_size(base, big_legacy, no_full_json5):
    path = base / "sessions.json"
    path.write_bytes(b"\xef\xbb\xbf" + big_legacy)
    assert len(SessionStore(path).load()) > 20


# -- the comment/trailing-comma reader agrees with JSON5 ----------------------------------

def _is_strict_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


JSON5_CASES = [
    '{"a": 1 // c\n}',
    '// c\n{}',
    '{"a": // c\n 1}',
    '{"a": 1, // c\n "b": 2}',
    '[1, 2,]',
    '{"a": 1,}',
    '[1, 2, // c\n ]',
    '[1, 2, /* c */ ]',
    '[1, 2 /* c */ , ]',
    '{"a": [1, 2,], "b": {"c": 3,},}',
    '{"url": "http://example.com/*x*/", "p": "a//b"} // tail',
    '{"q": "a\\"//b", "r": "\\\\", "s": ", ]"}',
    '{"q": "say \\"hi\\", ]"} /* "quoted" in a comment, ] */',
    '{"a": 1} /* multi\nline */\n',
    '{"a": "x"}\r// cr comment',
    '{"a": 1, // comment "with quotes" and a , ]\n}',
    '/**/{"a"/**/:/**/1/**/,/**/}/**/',
    '{"a": 1}\n//',
    '{"a": "\u00e9\u2028"} // caf\u00e9',
    '{"a": 1, // ends at LS\u2028"b": 2}',
    '{"a": 1, // ends at PS\u2029"b": 2}',
    # Invalid JSON5 too: must be refused, not "repaired".
    '[,]',
    '{,}',
    '[1,,]',
    '[/* c */,]',
    '{"a": 1,,}',
    '{"a": 1} /* unterminated',
    '{"a": 1} /',
    '{"a": "unterminated // x}',
    '{"a": 1}, ',
    '{"a": 1 /* c */ 2}',
    '{"a"://c\n}',
    '11/*c*/1',
    '[1//c\n2]',
    '{"a": tr/**/ue}',
    # Full JSON5 (small files only).
    "{a: 1, 'b': 'two', c: +1, d: .5, e: 0x10, f: [1,],}",
]


@pytest.mark.parametrize("text", JSON5_CASES)
def test_legacy_reader_agrees_with_json5(text):
    try:
        expected = json5.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_legacy(text.encode())
        return
    value, used_json5 = parse_legacy(text.encode())
    assert value == expected
    assert used_json5 == (not _is_strict_json(text))


@pytest.mark.parametrize("text", JSON5_CASES)
def test_comment_and_comma_reader_alone_never_disagrees_with_json5(monkeypatch, text):
    """The same cases with the full JSON5 parser unavailable (as for a large
    file): what is read is what JSON5 reads; what JSON5 refuses is refused."""
    try:
        expected = json5.loads(text)
    except ValueError:
        expected = None

    def unavailable(*args, **kwargs):
        raise ValueError("full JSON5 parser not used here")

    monkeypatch.setattr(json5, "loads", unavailable)
    try:
        value, used_json5 = parse_legacy(text.encode())
    except ValueError:
        assert expected is None or "0x10" in text or "\u2028" in text or "\u2029" in text, text
        return
    assert value == expected and used_json5 == (not _is_strict_json(text))


_json_leaves = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(alphabet=st.sampled_from('ab/*,]}"\\\n\u2028 é'), max_size=8))
_json_values = st.recursive(
    _json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet=st.sampled_from('k/*,]"\\'), max_size=4), children, max_size=4),
    max_leaves=12,
)
_gaps = st.sampled_from(["", " ", "\n", "// c\n", "/* c */", " /* ,] */ ", "//\"x\n", "\n  "])


@given(value=_json_values, data=st.data())
def test_json_with_comments_and_trailing_commas_reads_back(value, data):
    """Any JSON value, written with comments and trailing commas between its
    tokens, reads back as that value (comments inside strings stay text)."""

    def gap() -> str:
        return data.draw(_gaps)

    def write(item) -> str:
        if isinstance(item, dict):
            parts = [gap() + json.dumps(k) + gap() + ":" + gap() + write(v) + gap()
                     for k, v in item.items()]
            trailing = "," + gap() if parts and data.draw(st.booleans()) else ""
            return "{" + ",".join(parts) + trailing + gap() + "}"
        if isinstance(item, list):
            parts = [gap() + write(v) + gap() for v in item]
            trailing = "," + gap() if parts and data.draw(st.booleans()) else ""
            return "[" + ",".join(parts) + trailing + gap() + "]"
        return json.dumps(item, ensure_ascii=data.draw(st.booleans()))

    text = gap() + write(value) + gap()
    parsed, _used = parse_legacy(text.encode())
    assert parsed == value


def test_json5_nan_and_infinity_in_a_legacy_file_read_as_null(base):
    """A hand-written JSON5 NaN is read as null -- what the reference writes
    for it -- so the store never holds a value it would refuse to save."""
    path = base / "sessions.json"
    path.write_text("{a: {updatedAt: 1, r: NaN, s: [Infinity, -Infinity]}}")
    store = SessionStore(path)
    assert store.load() == {"a": {"updatedAt": 1, "r": None, "s": [None, None]}}
    store.mutate(lambda s: s["a"].__setitem__("t", 1))  # untouched fields are no obstacle
    assert store.get("a") == {"updatedAt": 1, "r": None, "s": [None, None], "t": 1}
    path2 = base.parent / "two" / "sessions.json"
    path2.parent.mkdir()
    path2.write_text("{a: {updatedAt: 1, r: NaN}}")
    assert migrate(path2).outcome == "migrated"
    assert SessionStore(path2).get("a") == {"updatedAt": 1, "r": None}


# =======================================================================================
# 8. NaN and infinities are refused, not written as null
# =======================================================================================

class _Num(enum.Enum):
    NAN = float("nan")


NON_FINITE = [
    pytest.param({"updatedAt": 1, "stats": {"ratio": float("nan")}}, "stats.ratio", "NaN", id="nested"),
    pytest.param({"updatedAt": float("nan")}, "updatedAt", "NaN", id="updatedAt"),
    pytest.param({"updatedAt": 1, "a": float("inf")}, "a", "Infinity", id="inf"),
    pytest.param({"updatedAt": 1, "b": [1.5, None, float("-inf")]}, "b[2]", "-Infinity", id="in-list"),
    pytest.param({"updatedAt": 1, "t": (None, {"x y": float("nan")})}, 't[1]["x y"]', "NaN", id="tuple"),
    pytest.param({"updatedAt": 1, "e": _Num.NAN}, "e", "NaN", id="enum-value"),
    pytest.param({"updatedAt": 1, "n": None, "deep": [[[[{"v": -math.inf}]]]]}, "deep[0][0][0][0].v",
                 "-Infinity", id="deep-with-null"),
]


def _writes(store, entry):
    return {
        "put": lambda: store.put(KEY, entry),
        "put existing": lambda: store.put("good-1", entry),
        "update_entry": lambda: store.update_entry(KEY, lambda current: entry),
        "update": lambda: store.mutate(lambda s: s.__setitem__(KEY, entry)),
        "save": lambda: store.save({**GOOD, KEY: entry}),
        "patch": lambda: store.patch("good-1", {k: v for k, v in entry.items() if k != "updatedAt"}
                                     or entry),
    }


@pytest.mark.parametrize("mode", ["fresh", "legacy", "directory"])
@pytest.mark.parametrize("entry,field,word", NON_FINITE)
def test_non_finite_float_is_refused_before_anything_is_written(base, json_backend, mode, entry,
                                                                field, word):
    store = make_store(mode, base)
    before = tree(base)
    for label, write in _writes(store, entry).items():
        if mode == "fresh" and label in ("put existing", "patch"):
            continue
        with pytest.raises(InvalidEntryError) as info:
            write()
        message = str(info.value)
        assert "is not valid JSON" in message and word in message, (label, message)
        if label not in ("put existing", "patch"):
            assert f"session entry {KEY!r} field {field}: {word} is not valid JSON" in message, message
        assert tree(base) == before, label
        assert SessionStore(base / "sessions.json", cache=False).load() == ({} if mode == "fresh" else GOOD)


def test_non_finite_message_names_key_and_field():
    with pytest.raises(InvalidEntryError) as info:
        encode_document(KEY, {"stats": {"ratio": float("nan")}})
    assert str(info.value).startswith(f"session entry {KEY!r} field stats.ratio: NaN is not valid JSON")
    assert (info.value.key, info.value.field) == (KEY, "stats.ratio")
    assert isinstance(info.value, ValueError)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (str(copy), copy.key, copy.field) == (str(info.value), KEY, "stats.ratio")


@pytest.mark.parametrize("entry", [
    {"updatedAt": 1, "n": None, "f": [0.5, -0.0, 1e300, None], "s": "null NaN Infinity"},
    {"updatedAt": None, "nested": {"x": None, "y": [None, {"z": None}]}},
    {"null": "null", "NaN": 1.0, "nan": "nan"},
])
def test_null_and_finite_floats_are_still_stored(base, json_backend, entry):
    store = make_store("directory", base)
    store.put(KEY, entry)
    assert store.get(KEY) == entry
    assert SessionStore(base / "sessions.json", cache=False).get(KEY) == entry


class _Float(float):
    pass


class _Str(str):
    pass


class _Pair(tuple):
    pass


class _Bad(enum.Enum):
    KEYS = {1: "x"}


@pytest.mark.parametrize("value", [{_Str("k"): 1}, [_Float(1.5)], {"p": _Pair((1, 2))},
                                   {"e": _Bad.KEYS}], ids=["str-subclass-key", "float-subclass",
                                                          "tuple-subclass", "enum-value"])
def test_stdlib_encoder_refuses_what_orjson_refuses(value):
    """Without orjson the same values are refused (a store written on one
    interpreter must be writable on the other)."""
    with pytest.raises(TypeError):
        sjson.stdlib_dumps(value)
    with pytest.raises(TypeError):
        sjson.dumps(value)
    assert sjson.find_problem(value) is not None


def test_json_dumps_itself_still_writes_null_like_orjson():
    """The codec layer keeps orjson's behaviour (golden bytes elsewhere);
    the refusal belongs to entry encoding."""
    assert sjson.dumps([float("nan")]) == sjson.stdlib_dumps([float("nan")]) == b"[\n  null\n]"


# =======================================================================================
# 11. Messages a user can act on: the key, the field path, what to do
# =======================================================================================

@dataclasses.dataclass
class _Point:
    x: int


def _cycle():
    entry = {"updatedAt": 1, "meta": {"list": []}}
    entry["meta"]["list"].append(entry["meta"])
    return entry


def _deep(levels):
    entry = {"updatedAt": 1}
    node = entry
    for _ in range(levels):
        node["n"] = {}
        node = node["n"]
    return entry


MESSAGES = [
    pytest.param({"tags": {"a", "b"}}, "field tags:", ["set", "convert the set to a list"], id="set"),
    pytest.param({"x": {"y": frozenset()}}, "field x.y:", ["frozenset", "list"], id="frozenset"),
    pytest.param({"raw": b"\x00"}, "field raw:", ["bytes", "decode"], id="bytes"),
    pytest.param({"raw": [bytearray(b"x")]}, "field raw[0]:", ["bytearray", "decode"], id="bytearray"),
    pytest.param({"when": datetime.datetime(2024, 1, 1)}, "field when:", ["datetime", "isoformat"],
                 id="datetime"),
    pytest.param({"p": _Point(1)}, "field p:", ["dataclass", "dataclasses.asdict"], id="dataclass"),
    pytest.param({"o": object()}, "field o:", ["object", "not JSON-serialisable"], id="object"),
    pytest.param({"c": 1j}, "field c:", ["complex"], id="complex"),
    pytest.param({"f": _Float(1.5)}, "field f:", ["_Float", "float("], id="float-subclass"),
    pytest.param({"big": 2**64}, "field big:", ["18446744073709551616", "64-bit", "string"], id="big-int"),
    pytest.param({"nested": {7: "x"}}, "field nested:", ["key 7", "str"], id="int-key"),
    pytest.param({5: "x"}, "", ["key 5", "str"], id="top-level-int-key"),
    pytest.param({"s": "a\ud800b"}, "field s:", ["surrogate"], id="lone-surrogate"),
    pytest.param(_cycle(), "field meta.list[0]:", ["cycle", "meta"], id="cycle"),
    pytest.param(_deep(300), "field n.n.n", ["nested", "deep", "flatten"], id="too-deep"),
]


@pytest.mark.parametrize("entry,where,words", MESSAGES)
def test_unserialisable_value_message_names_key_field_and_remedy(base, json_backend, entry, where,
                                                                 words):
    store = make_store("directory", base)
    before = tree(base)
    for write in (lambda: store.put(KEY, entry), lambda: store.mutate(lambda s: s.__setitem__(KEY, entry))):
        with pytest.raises(InvalidEntryError) as info:
            write()
        message = str(info.value)
        assert message.startswith(f"session entry {KEY!r}"), message
        assert where in message, message
        for word in words:
            assert word in message, message
        assert "Recursion limit reached" not in message
        assert "Type is not JSON serializable" not in message
        assert len(message) < 600, message
        assert info.value.key == KEY
    assert tree(base) == before


@pytest.mark.parametrize("entry", [["a", 1], "entry", 5, ("a",)])
def test_non_dict_entry_message_names_the_key(base, json_backend, entry):
    store = make_store("directory", base)
    with pytest.raises(InvalidEntryError) as info:
        store.put(KEY, entry)
    message = str(info.value)
    assert repr(KEY) in message and type(entry).__name__ in message, message
    assert info.value.key == KEY
    with pytest.raises(InvalidEntryError) as info:
        encode_document(KEY, entry)
    assert repr(KEY) in str(info.value)


def test_long_field_paths_and_keys_are_shortened_in_messages():
    entry = {"k" * 500: {"tags": {1}}}
    with pytest.raises(InvalidEntryError) as info:
        encode_document(KEY, entry)
    message = str(info.value)
    assert len(message) < 600 and "convert the set to a list" in message, message
