"""Hypothesis strategies for keys, entry file names and entry directories."""

from __future__ import annotations

import base64
import sys
import unicodedata

from hypothesis import strategies as st

from sessionsd._codec_py import KEY_WHITESPACE

# Every code point, lone surrogates included (Hypothesis leaves them out by default).
any_char = st.characters(exclude_categories=())
ascii_char = st.characters(min_codepoint=0, max_codepoint=127)
tricky_char = st.sampled_from(
    ["\x00", "/", "\\", ":", "%", "+", "=", ".", "-", "_", " ", "\t", "\n", "\x1c",
     "\x85", "\xa0", "\u2028", "\ufeff", "\u3000", "é", "€", "𝄞", "\ud800", "\udfff"]
)
whitespace = st.text(st.sampled_from(KEY_WHITESPACE + "\x1c\x1d\x1e\x1f\x85\u180e"), max_size=3)


def _near_boundary(unit: str, target: int) -> st.SearchStrategy[str]:
    """Keys of `unit` repeated to land within a few bytes of `target`."""
    width = len(unit.encode("utf-8"))
    return st.integers(target // width - 2, target // width + 2).map(lambda n: unit * n)


realistic_key = st.builds(
    lambda kind, n, u: {
        0: f"agent:main:telegram:dm:{n}",
        1: f"agent:main:cron:{u}:run:{u[::-1]}",
        2: f"agent:main:subagent:{u}",
        3: f"agent:main:discord:channel:{n}",
    }[kind],
    st.integers(0, 3),
    st.integers(0, 10**12),
    st.uuids().map(str),
)

boundary_key = st.one_of(
    *[_near_boundary(unit, 120) for unit in ("a", "é", "€", "𝄞")],
    st.tuples(st.text("abc", min_size=116, max_size=120), st.sampled_from(["é", "€", "𝄞"])).map(
        lambda t: t[0] + t[1]
    ),
)

keys = st.one_of(
    st.text(any_char, max_size=40),
    st.text(st.one_of(tricky_char, ascii_char), max_size=40),
    st.builds(lambda a, k, b: a + k + b, whitespace, st.text(any_char, max_size=20), whitespace),
    realistic_key,
    boundary_key,
    st.text(any_char, min_size=100, max_size=400),
)

non_str_keys = st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.floats(),
                         st.lists(st.integers(), max_size=2))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _mutate(name_and_choice):
    name, choice = name_and_choice
    middle = name[len("session-"):-len(".json")]
    return [
        name,                                            # canonical (maybe)
        "session-" + middle + "=.json",                  # padding
        "session-" + middle + "==.json",
        "session-" + middle.replace("-", "+").replace("_", "/") + ".json",  # std alphabet
        "." + name,                                      # dotfile
        name + ".tmp",                                   # temp file
        name + ".1234.tmp",
        "session-" + middle[:-1] + ".json",              # truncated
        "session-" + middle + "A.json",                  # extended
        "Session-" + middle + ".json",                   # wrong prefix case
        "session-" + middle + ".JSON",
        "session-" + middle + " .json",
        "session-hash-" + middle[:43] + ".json",
    ][choice]


names = st.one_of(
    st.tuples(keys.filter(lambda k: k.strip(KEY_WHITESPACE) != ""), st.integers(0, 12)).map(
        lambda t: (_safe_encode(t[0]), t[1])
    ).filter(lambda t: t[0] is not None).map(_mutate),
    st.binary(min_size=0, max_size=125).map(lambda b: "session-" + _b64(b).rstrip("=") + ".json"),
    st.binary(min_size=1, max_size=125).map(lambda b: "session-" + _b64(b) + ".json"),
    st.binary(min_size=32, max_size=32).map(lambda b: "session-hash-" + _b64(b).rstrip("=") + ".json"),
    st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/="),
            max_size=170).map(lambda m: "session-" + m + ".json"),
    st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            min_size=43, max_size=43).map(lambda m: "session-hash-" + m + ".json"),
    st.text(any_char, max_size=30),
)


def _safe_encode(key):
    from sessionsd._codec_py import encode_key
    from sessionsd.errors import InvalidKeyError

    try:
        return encode_key(key)
    except InvalidKeyError:
        return None


# A directory listing: (name, kind) with kind one of file/dir/symlink/fifo.
# Names the file system cannot hold as given are filtered out: on POSIX NUL,
# '/', '.' and '..'; on Windows also its reserved characters and device names
# and trailing dots and spaces (which it strips, so the name would change).
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10)]
)


def _posix_ok(name: str) -> bool:
    if name in ("", ".", ".."):
        return False
    if "\x00" in name or "/" in name:
        return False
    try:
        if len(name.encode("utf-8")) > 255:
            return False
    except UnicodeEncodeError:
        return False
    if sys.platform == "win32":
        if any(c in '<>:"\\|?*' or c < " " for c in name) or name[-1] in ". ":
            return False
        if name.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
            return False
    return True


def _fs_identity(entry) -> str:
    """Two names with the same identity may be one file on a case-insensitive,
    normalisation-insensitive volume (default macOS APFS, Windows NTFS):
    a listing holds at most one of them, so what it creates is what it says."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", entry[0]).casefold())


dir_entries = st.lists(
    st.tuples(names.filter(_posix_ok), st.sampled_from(["file", "file", "file", "dir", "symlink", "dangling", "fifo"])),
    max_size=25,
    unique_by=_fs_identity,
)
