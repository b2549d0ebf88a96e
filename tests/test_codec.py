"""Key codec rules of SPEC §3, on both backends."""

from __future__ import annotations

import base64
import hashlib
import pickle

import pytest

from sessionsd.errors import InvalidKeyError, InvalidKeyTypeError, SessionsdError

REFERENCE_KEYS = [
    "agent:main:direct:+15551234567",
    "agent:main:100%done",
    "agent:main:path/with/slashes",
    "agent:main:path\\with\\backslashes",
    "agent:main:a--b",
    "agent:main:a:b",
]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_spec_example(codec):
    assert codec.encode_key("a") == "session-YQ.json"
    assert codec.decode_name("session-YQ.json") == "a"


@pytest.mark.parametrize("key", REFERENCE_KEYS)
def test_reference_keys_round_trip(codec, key):
    name = codec.encode_key(key)
    assert name == "session-" + b64url(key.encode()) + ".json"
    assert codec.decode_name(name) == key
    assert codec.classify_name(name) == "inline"


def test_colon_and_double_dash_do_not_collide(codec):
    assert codec.encode_key("agent:main:a:b") != codec.encode_key("agent:main:a--b")


def test_key_is_trimmed_with_the_ecmascript_set(codec):
    assert codec.encode_key("  \t\ufeffabc\u3000\n") == codec.encode_key("abc")
    assert codec.validate_key("\u2028abc\xa0") == "abc"
    # Not whitespace for String.prototype.trim: kept, as the reference keeps them.
    assert codec.validate_key("\x1cabc\x85") == "\x1cabc\x85"
    assert codec.validate_key("\u180eabc") == "\u180eabc"


def test_case_is_preserved_by_the_codec(codec):
    assert codec.encode_key("Agent:Main") != codec.encode_key("agent:main")


@pytest.mark.parametrize(
    "unit,count,hashed",
    [
        ("a", 120, False),
        ("a", 121, True),
        ("é", 60, False),   # 120 bytes in 60 characters
        ("é", 61, True),    # 122 bytes
        ("€", 40, False),   # 120 bytes
        ("𝄞", 30, False),   # 120 bytes
        ("𝄞", 31, True),
    ],
)
def test_inline_limit_counts_utf8_bytes(codec, unit, count, hashed):
    key = unit * count
    name = codec.encode_key(key)
    if hashed:
        digest = hashlib.sha256(key.encode()).digest()
        assert name == "session-hash-" + b64url(digest) + ".json"
        assert len(name) == 61
        assert codec.decode_name(name) is None
        assert codec.classify_name(name) == "hashed"
    else:
        assert name.startswith("session-") and not name.startswith("session-hash-")
        assert codec.decode_name(name) == key
        assert len(name) <= 8 + 160 + 5


def test_mixed_width_boundary(codec):
    key = "a" * 118 + "é"  # 120 bytes
    assert codec.decode_name(codec.encode_key(key)) == key
    key = "a" * 119 + "é"  # 121 bytes
    assert codec.classify_name(codec.encode_key(key)) == "hashed"


def test_very_long_key_hashes(codec):
    key = "agent:main:" + "x" * 400
    name = codec.encode_key(key)
    assert name.startswith("session-hash-") and len(name) == 61
    assert codec.encode_key(" " + key + " ") == name


def test_nul_slash_backslash_are_ordinary_key_characters(codec):
    for key in ["a\x00b", "../../etc/passwd", "a\\b", "\x00"]:
        name = codec.encode_key(key)
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert codec.decode_name(name) == key


@pytest.mark.parametrize("key", ["", " ", "\t\n", "\ufeff\u3000"])
def test_empty_keys_are_rejected(codec, key):
    with pytest.raises(InvalidKeyError, match="empty after trimming") as info:
        codec.encode_key(key)
    assert info.value.key == key
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, SessionsdError)


@pytest.mark.parametrize("key", [None, 1, b"abc", ["a"], 1.5])
def test_non_str_keys_are_rejected(codec, key):
    with pytest.raises(InvalidKeyTypeError, match="must be a str") as info:
        codec.validate_key(key)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert info.value.key is key


@pytest.mark.parametrize("key,pos", [("\ud800", 0), ("ab\udfffc", 2), ("  x\udc80", 1)])
def test_lone_surrogates_are_rejected(codec, key, pos):
    with pytest.raises(InvalidKeyError, match=f"lone surrogate at position {pos}") as info:
        codec.encode_key(key)
    assert isinstance(info.value.__cause__, UnicodeEncodeError)


def test_str_subclass_key(codec):
    class Key(str):
        pass

    assert codec.encode_key(Key("abc")) == "session-YWJj.json"
    assert type(codec.validate_key(Key("abc"))) is str


@pytest.mark.parametrize(
    "name",
    [
        "session-YQ==.json",           # padding
        "session-YQ=.json",
        "session-YR.json",             # non-zero trailing bits
        "session-YWI+.json",           # '+' (standard alphabet)
        "session-YWI/.json",
        "session-.json",               # empty middle
        "session-Y.json",              # impossible length
        ".session-YQ.json",            # dotfile
        "session-YQ.json.tmp",         # temp file
        "session-YQ.json.1f2e.tmp",
        "session-IGE.json",            # " a": surrounding whitespace
        "session-YSA.json",            # "a "
        "session-_w.json",             # invalid UTF-8 (0xff)
        "session-7aCA.json",           # UTF-8-encoded surrogate U+D800
        "session-wIA.json",            # overlong encoding of NUL
        "SESSION-YQ.json",
        "session-YQ.JSON",
        "session-YQ",
        "session-hash-YQ.json",        # hashed prefix is never inline
        "session-" + "YWFh" * 40 + "YQ.json",  # 121-byte key under an inline name
        "session-ÿQ.json",             # non-ASCII
        "",
        "sessions.json",
        "state.json",
    ],
)
def test_non_canonical_names_decode_to_nothing(codec, name):
    assert codec.decode_name(name) is None
    assert codec.classify_name(name) is None


def test_longest_inline_name(codec):
    key = "a" * 120
    name = codec.encode_key(key)
    assert len(name) == 8 + 160 + 5
    assert codec.decode_name(name) == key


@pytest.mark.parametrize(
    "name",
    [
        "session-hash-" + "A" * 42 + "B.json",   # non-zero trailing bits
        "session-hash-" + "A" * 42 + ".json",    # too short
        "session-hash-" + "A" * 44 + ".json",
        "session-hash-" + "A" * 42 + "+.json",
    ],
)
def test_non_canonical_hashed_names(codec, name):
    assert codec.classify_name(name) is None
    assert codec.decode_name(name) is None


def test_decode_requires_str(codec):
    with pytest.raises(TypeError, match="entry file name must be a str, not bytes"):
        codec.decode_name(b"session-YQ.json")
    with pytest.raises(TypeError, match="must be a str, not int"):
        codec.classify_name(3)


def test_decode_names_bulk(codec):
    names = [codec.encode_key(k) for k in REFERENCE_KEYS] + ["junk", ".x", codec.encode_key("z" * 200)]
    assert codec.decode_names(names) == REFERENCE_KEYS + [None, None, None]
    assert codec.decode_names(iter([])) == []
    with pytest.raises(TypeError):
        codec.decode_names(["session-YQ.json", 5])


def test_errors_survive_pickling(codec):
    for bad in ["", 7, "\ud800"]:
        with pytest.raises(InvalidKeyError) as info:
            codec.encode_key(bad)
        clone = pickle.loads(pickle.dumps(info.value))
        assert type(clone) is type(info.value)
        assert str(clone) == str(info.value)
        assert clone.key == info.value.key


def test_public_surface_matches(both_codecs):
    twin, compiled = both_codecs
    assert list(compiled.__all__) == list(twin.__all__)
    for name in twin.__all__:
        value = getattr(twin, name)
        if callable(value):
            assert getattr(compiled, name).__doc__ == value.__doc__, name
        else:
            assert getattr(compiled, name) == value, name
