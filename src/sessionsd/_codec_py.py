"""Key codec and entry-directory scan, pure-Python twin of ``sessionsd._codec_c``.

This module is the reference for the compiled one: both expose the same
names, return equal results and raise the same exceptions with the same
messages (a differential test holds them to it).  Type checkers read this file.

The rules (SPEC §3):

* a key is trimmed of surrounding whitespace -- the ECMAScript ``trim()`` set,
  so a key names the same file here as in the reference implementation;
  an empty result, a non-``str`` or a key that is not valid Unicode (a lone
  surrogate) is an :class:`~sessionsd.errors.InvalidKeyError`;
* a trimmed key of at most 120 UTF-8 bytes is stored as
  ``session-<base64url(utf8)>.json`` (RFC 4648 §5 alphabet, no padding);
* a longer key is stored as ``session-hash-<base64url(sha256(utf8))>.json``,
  always 61 characters;
* a name decodes to a key only if re-encoding that key gives the name back,
  so exactly one name is accepted per key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from typing import Any, Iterable, Literal, Optional

from ._fsutil import open_for_reading
from .errors import InvalidKeyError, InvalidKeyTypeError

__all__ = [
    "ENTRY_PREFIX",
    "HASHED_PREFIX",
    "ENTRY_SUFFIX",
    "MAX_INLINE_KEY_BYTES",
    "HASHED_NAME_LENGTH",
    "KEY_WHITESPACE",
    "validate_key",
    "encode_key",
    "decode_name",
    "classify_name",
    "decode_names",
    "scan_entries",
    "HEADER_BYTES",
    "read_updated_at",
    "copy_json",
    "same_json",
]

ENTRY_PREFIX = "session-"
HASHED_PREFIX = "session-hash-"
ENTRY_SUFFIX = ".json"
MAX_INLINE_KEY_BYTES = 120
#: ``len("session-hash-") + 43 + len(".json")``
HASHED_NAME_LENGTH = 61

#: Characters removed from both ends of a key: ECMAScript's WhiteSpace and
#: LineTerminator sets (what ``String.prototype.trim`` removes).  Python's
#: ``str.strip()`` differs (it strips U+001C..U+001F and U+0085 but keeps
#: U+FEFF), which would map some keys to other files than the reference does.
KEY_WHITESPACE = (
    "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)

_PREFIX_LEN = len(ENTRY_PREFIX)
_SUFFIX_LEN = len(ENTRY_SUFFIX)
# base64url of 120 bytes is 160 characters: a longer middle can never be inline.
_MAX_INLINE_MIDDLE = 160
_B64URL_ALPHABET = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)
# 32 digest bytes fill 43 characters with 2 spare bits; canonical ones are 0,
# so the last character's alphabet index is a multiple of 4.
_HASH_LAST_CHARS = frozenset("AEIMQUYcgkosw048")


def _trimmed_utf8(key: object) -> tuple[str, bytes]:
    if not isinstance(key, str):
        raise InvalidKeyTypeError(
            f"session key must be a str, not {type(key).__name__}", key
        )
    trimmed = key.strip(KEY_WHITESPACE)
    if not trimmed:
        raise InvalidKeyError("session key is empty after trimming whitespace", key)
    try:
        raw = trimmed.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(
            f"session key has a lone surrogate at position {exc.start} "
            "and cannot be encoded as UTF-8",
            key,
        ) from exc
    return trimmed, raw


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def validate_key(key: object) -> str:
    """Return *key* trimmed of surrounding whitespace, or raise.

    Raises :class:`~sessionsd.errors.InvalidKeyTypeError` for a non-``str``
    and :class:`~sessionsd.errors.InvalidKeyError` for a key that is empty
    after trimming or holds a lone surrogate.
    """
    return _trimmed_utf8(key)[0]


def encode_key(key: object) -> str:
    """Return the entry file name of *key* (trimmed first; see module rules).

    ``encode_key("a") == "session-YQ.json"``.  Keys over 120 UTF-8 bytes get a
    61-character ``session-hash-…`` name.  Raises like :func:`validate_key`.
    """
    raw = _trimmed_utf8(key)[1]
    if len(raw) > MAX_INLINE_KEY_BYTES:
        return HASHED_PREFIX + _b64url(hashlib.sha256(raw).digest()) + ENTRY_SUFFIX
    return ENTRY_PREFIX + _b64url(raw) + ENTRY_SUFFIX


def decode_name(name: str) -> Optional[str]:
    """Return the key an inline entry file name encodes, or ``None``.

    ``None`` for hashed names (their key lives only in the document), dotfiles
    and every name that is not the canonical encoding of a key: padding,
    characters outside the base64url alphabet, non-zero trailing bits, invalid
    UTF-8, surrounding whitespace, a key over 120 bytes.  Raises ``TypeError``
    when *name* is not a ``str``.
    """
    if not isinstance(name, str):
        raise TypeError(f"entry file name must be a str, not {type(name).__name__}")
    if (
        not name.startswith(ENTRY_PREFIX)
        or not name.endswith(ENTRY_SUFFIX)
        or name.startswith(HASHED_PREFIX)
    ):
        return None
    middle = name[_PREFIX_LEN:-_SUFFIX_LEN]
    if not middle or len(middle) > _MAX_INLINE_MIDDLE:
        return None
    try:
        raw = base64.urlsafe_b64decode(middle + "=" * (-len(middle) % 4))
        key = raw.decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError covers UnicodeDecodeError
        return None
    # The decoder above is lenient (it skips stray characters); equality with
    # the canonical re-encoding is what makes the accepted set exact.
    try:
        if encode_key(key) != name:
            return None
    except InvalidKeyError:
        return None
    return key


def _is_canonical_hashed_name(name: str) -> bool:
    return (
        len(name) == HASHED_NAME_LENGTH
        and name.startswith(HASHED_PREFIX)
        and name.endswith(ENTRY_SUFFIX)
        and _B64URL_ALPHABET.issuperset(name[len(HASHED_PREFIX) : -_SUFFIX_LEN])
        and name[-_SUFFIX_LEN - 1] in _HASH_LAST_CHARS
    )


def classify_name(name: str) -> Optional[Literal["inline", "hashed"]]:
    """Return ``"inline"`` or ``"hashed"`` for a canonical entry file name,
    ``None`` for any other name.  Raises ``TypeError`` for a non-``str``.
    """
    if not isinstance(name, str):
        raise TypeError(f"entry file name must be a str, not {type(name).__name__}")
    if _is_canonical_hashed_name(name):
        return "hashed"
    if decode_name(name) is not None:
        return "inline"
    return None


def decode_names(names: Iterable[str]) -> list[Optional[str]]:
    """Return ``[decode_name(n) for n in names]``."""
    return [decode_name(name) for name in names]


def _scan_path(directory: object) -> str:
    path = os.fspath(directory)  # type: ignore[call-overload]
    if not isinstance(path, str):
        raise TypeError(
            f"directory must be a str or os.PathLike[str], not {type(path).__name__}"
        )
    return path


def scan_entries(directory: "str | os.PathLike[str]") -> list[tuple[str, Optional[str]]]:
    """List the candidate entry files of an ``entries/`` directory.

    Returns ``(name, key)`` pairs in directory order: ``key`` is the decoded
    key of an inline name and ``None`` for a hashed name.  Skipped: dotfiles,
    temp files and every other non-canonical name, symlinks (never followed),
    directories and other non-regular files.  Entry types come from the
    directory listing; where the file system does not report them, from
    ``lstat``.  A missing or unreadable directory raises ``OSError``.
    """
    path = _scan_path(directory)
    found: list[tuple[str, Optional[str]]] = []
    with os.scandir(path) as listing:
        for entry in listing:
            name = entry.name
            if name.startswith(HASHED_PREFIX):
                if not _is_canonical_hashed_name(name):
                    continue
                key = None
            else:
                key = decode_name(name)
                if key is None:
                    continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
            except OSError:
                # Removed or replaced between readdir and lstat: by the time
                # the caller opened it, it would not be this entry any more.
                continue
            found.append((name, key))
    return found


#: How many bytes of an entry file :func:`read_updated_at` reads.
HEADER_BYTES = 4096

# The head of a document in the layout this library and the reference write
# (``JSON.stringify(doc, null, 2)``) whose entry starts with ``updatedAt``.
# Deliberately narrow (that exact layout, a key without escapes, an integer of
# at most 18 digits); anything else is left to a full parse.
_HEADER = re.compile(
    rb'\{\n  "sessionKey": "([^"\\\x00-\x1f]*)",\n  "entry": \{\n    "updatedAt": '
    rb"(-?(?:0|[1-9][0-9]{0,17}))(?:,\n|\n  \})"
)
# In that layout a line holding just "}" is the document's last: a file that
# ends so is whole (not truncated, nothing appended).
_TAILS = (b"\n}", b"\n}\n")
_TAIL_BYTES = 3


def _read_head_and_tail(path: str) -> Optional[tuple[bytes, bytes]]:
    """The first HEADER_BYTES and the last 3 bytes of the regular file at
    *path* (never through a symlink); ``None`` when it is not one."""
    fd = open_for_reading(path)
    if fd is None:
        return None
    try:
        try:
            head = os.read(fd, HEADER_BYTES)
        except (IsADirectoryError, BlockingIOError):
            return None
        if len(head) < HEADER_BYTES:
            return head, head[-_TAIL_BYTES:]
        os.lseek(fd, -_TAIL_BYTES, os.SEEK_END)
        return head, os.read(fd, _TAIL_BYTES)
    finally:
        os.close(fd)


def read_updated_at(path: str, key: str) -> Optional[tuple[bool, Any]]:
    """The ``updatedAt`` fast path: read the first 4 KiB and the last bytes
    of the entry file at *path* (never through a symlink).

    Returns ``(True, updatedAt)`` when the file is a whole document of
    exactly *key*, in the reference layout, whose entry begins with an
    integer ``updatedAt``; ``(False, None)`` when there is no regular file
    at *path*; ``None`` when head and tail do not settle it (the caller then
    parses the whole file).  The middle of the file is not read: a file
    truncated or with bytes appended is caught by its tail, one damaged in
    place in its middle is not (full reads -- ``get``, ``load`` -- are).
    """
    found = _read_head_and_tail(path)
    if found is None:
        return (False, None)
    head, tail = found
    match = _HEADER.match(head)
    if match is None or match.group(1) != key.encode("utf-8") or not tail.endswith(_TAILS):
        return None
    return (True, int(match.group(2)))


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data: dicts and lists are copied (exact
    types only), every other value is shared."""
    kind = type(value)
    if kind is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if kind is list:
        return [copy_json(v) for v in value]
    return value


def same_json(a: Any, b: Any) -> bool:
    """Whether *a* and *b* are the same JSON value: dicts compare as
    mappings (key order is not data), lists item by item, and scalars only
    when their types are the same too -- ``True == 1`` and ``1 == 1.0`` in
    Python, but ``true``, ``1`` and ``1.0`` are different JSON."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            other = b.get(key, _MISSING)
            if other is _MISSING or not same_json(value, other):
                return False
        return True
    if kind is list:
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return bool(a == b)


_MISSING = object()
