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
import stat as _stat
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, cast

from ._fsutil import _HAVE_DIR_FD, read_regular, read_regular_at
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
    "scan_entries_with_skipped",
    "stat_entries",
    "diff_entries",
    "STAT_RECORD",
    "read_files",
    "prefetch_files",
    "HEADER_BYTES",
    "read_updated_at",
    "copy_json",
    "same_json",
    "SPLIT_MAX_DEPTH",
    "SplitError",
    "ObjectSplitter",
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


def decode_name(name: str) -> str | None:
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


def classify_name(name: str) -> Literal["inline", "hashed"] | None:
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


def decode_names(names: Iterable[str]) -> list[str | None]:
    """Return ``[decode_name(n) for n in names]``."""
    return [decode_name(name) for name in names]


def _scan_path(directory: object) -> str:
    path = os.fspath(directory)  # type: ignore[call-overload]
    if not isinstance(path, str):
        raise TypeError(
            f"directory must be a str or os.PathLike[str], not {type(path).__name__}"
        )
    return path


def scan_entries(directory: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """List the candidate entry files of an ``entries/`` directory.

    Returns ``(name, key)`` pairs in directory order: ``key`` is the decoded
    key of an inline name and ``None`` for a hashed name.  Skipped: dotfiles,
    temp files and every other non-canonical name, symlinks (never followed),
    directories and other non-regular files.  Entry types come from the
    directory listing; where the file system does not report them, from
    ``lstat``.  A missing or unreadable directory raises ``OSError``.
    """
    return _scan(_scan_path(directory), None)


def scan_entries_with_skipped(
    directory: str | os.PathLike[str],
) -> tuple[list[tuple[str, str | None]], list[tuple[str, str]]]:
    """:func:`scan_entries`, plus every other name in the directory.

    Returns ``(found, skipped)``: *found* is exactly what
    :func:`scan_entries` returns; *skipped* holds ``(name, reason)`` for each
    other name, in directory order, with the first reason that applies:
    ``"temp file"`` (the name ends with ``.tmp``), ``"dotfile"``, ``"name is
    not an entry name"``, then, for a canonical name, ``"symlink"``,
    ``"directory"`` or ``"not a regular file"``.  Names are judged before
    types, so a skipped name costs no system call beyond what the scan makes
    anyway.  Undecodable bytes in a name appear as ``os.fsdecode`` gives them.
    """
    skipped: list[tuple[str, str]] = []
    return _scan(_scan_path(directory), skipped), skipped


def _name_reason(name: str) -> str:
    """Why a name that is not canonical is not an entry (see
    :func:`scan_entries_with_skipped`)."""
    if name.endswith(_TEMP_SUFFIX):
        return "temp file"
    if name.startswith("."):
        return "dotfile"
    return "name is not an entry name"


def _type_reason(entry: os.DirEntry[str]) -> str:
    """Why a canonical name that is not a regular file is not an entry."""
    try:
        if entry.is_symlink():
            return "symlink"
        if entry.is_dir(follow_symlinks=False):
            return "directory"
    except OSError:
        pass  # gone or unreadable since the listing: not a regular file either way
    return "not a regular file"


def _scan(path: str, skipped: list[tuple[str, str]] | None) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    with os.scandir(path) as listing:
        for entry in listing:
            name = entry.name
            if name.startswith(HASHED_PREFIX):
                key = None
                if not _is_canonical_hashed_name(name):
                    if skipped is not None:
                        skipped.append((name, _name_reason(name)))
                    continue
            else:
                key = decode_name(name)
                if key is None:
                    if skipped is not None:
                        skipped.append((name, _name_reason(name)))
                    continue
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                # Removed or replaced between readdir and lstat: by the time
                # the caller opened it, it would not be this entry any more.
                regular = False
            if not regular:
                if skipped is not None:
                    skipped.append((name, _type_reason(entry)))
                continue
            found.append((name, key))
    return found


# -- batches: many files of one directory per call ------------------------------------

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_batch_dir(directory: object) -> tuple[int | None, str | None, bool]:
    """(descriptor or None, path or None, whether we opened the descriptor)."""
    if isinstance(directory, int) and not isinstance(directory, bool):
        return directory, None, False
    path = _scan_path(directory)
    if not _HAVE_DIR_FD:  # pragma: no cover - Windows
        return None, path, False
    return os.open(path, _DIR_FLAGS), path, True


def _check_batch_name(name: object) -> bytes:
    """The file-system bytes of a batch name, or the error every backend raises."""
    if not isinstance(name, str):
        raise TypeError(f"entry file name must be a str, not {type(name).__name__}")
    if "/" in name or "\x00" in name:
        raise ValueError(f"not a name inside the directory: {name!r}")
    return os.fsencode(name)


def _batch_error(exc: OSError, name: str) -> OSError:
    # The same error for every backend: errno, its message, the name.
    return OSError(exc.errno, os.strerror(exc.errno), name) if exc.errno else exc


def read_files(
    directory: int | str | os.PathLike[str], names: Sequence[str],
) -> list[bytes | None | OSError]:
    """Read whole files of one directory: for each of *names*, in order,
    its bytes; ``None`` when it is not a regular file or is gone (a symlink,
    never followed; a directory, a FIFO, a device, a missing name); or the
    ``OSError`` that reading it met (``PermissionError`` for EACCES ...),
    returned, not raised, with ``filename`` the name.  The rules of
    :func:`sessionsd._fsutil.read_regular_at`.

    *directory* is a path or an open directory descriptor (not closed).
    Every name must be a ``str`` naming a file directly inside it (no ``/``,
    no NUL): ``TypeError`` / ``ValueError`` otherwise, before anything is
    read.  The compiled backend reads the whole batch without the GIL.
    """
    names = list(names)
    for name in names:
        _check_batch_name(name)
    dir_fd, path, owned = _open_batch_dir(directory)
    results: list[bytes | None | OSError] = []
    try:
        for name in names:
            try:
                if dir_fd is None:  # pragma: no cover - Windows
                    results.append(read_regular(os.path.join(path, name)))  # type: ignore[arg-type]
                else:
                    results.append(read_regular_at(dir_fd, name))
            except OSError as exc:
                results.append(_batch_error(exc, name))
    finally:
        if owned:
            os.close(dir_fd)  # type: ignore[arg-type]
    return results


class _PrefetchedFiles:
    """What :func:`prefetch_files` returns (here the reads happen in
    :meth:`result`)."""

    _owned = False

    def __init__(self, directory: object, names: Sequence[str]) -> None:
        self._names = list(names)
        for name in self._names:
            _check_batch_name(name)
        self._fd, self._path, self._owned = _open_batch_dir(directory)
        self._done = False

    def result(self) -> list[bytes | None | OSError]:
        if self._done:
            raise ValueError("result() was already collected")
        self._done = True
        try:
            return read_files(self._fd if self._fd is not None else self._path, self._names)  # type: ignore[arg-type]
        finally:
            self._close_fd()

    def close(self) -> None:
        """Wait for the batch and drop what it read."""
        self._done = True
        self._close_fd()

    def _close_fd(self) -> None:
        if self._owned:
            self._owned = False
            os.close(self._fd)  # type: ignore[arg-type]

    def __del__(self) -> None:
        self._close_fd()


def prefetch_files(directory: int | str | os.PathLike[str], names: Sequence[str]) -> _PrefetchedFiles:
    """Start :func:`read_files` of *names*; ``.result()`` returns what it
    would have returned (once), ``.close()`` drops it.  Names and the
    directory are checked now, with the same errors.  The compiled backend
    reads on a thread of its own, without Python, so the caller can parse
    one batch while the next is read; a descriptor passed as *directory*
    must stay open until then."""
    return _PrefetchedFiles(directory, names)


def stat_entries(
    directory: str | os.PathLike[str],
) -> list[tuple[str, str | None, int, int, int]]:
    """:func:`scan_entries` with each file's ``lstat``: ``(name, key, st_ino,
    st_mtime_ns, st_size)`` for every candidate entry file that is a regular
    file when stat'ed (never through a symlink), in directory order.  A
    name gone between the listing and its stat is left out; any other stat
    error raises ``OSError``.  The compiled backend stats the whole listing
    without the GIL, relative to the listed directory."""
    path = _scan_path(directory)
    found = _scan(path, None)
    return _stat_found(path, found)


def _stat_found(path: str, found: list[tuple[str, str | None]]) -> list[tuple[str, str | None, int, int, int]]:
    dir_fd = os.open(path, _DIR_FLAGS) if _HAVE_DIR_FD else None
    results = []
    lstat = os.lstat
    is_regular = _stat.S_ISREG
    try:
        for name, key in found:
            try:
                info = lstat(name, dir_fd=dir_fd) if dir_fd is not None else lstat(os.path.join(path, name))
            except FileNotFoundError:
                continue
            if is_regular(info.st_mode):
                results.append((name, key, info.st_ino, info.st_mtime_ns, info.st_size))
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return results



# -- comparing entries/ with the stat rows of an index ---------------------------------

_STAT_RECORD = struct.Struct("<Qqq")
#: Bytes per row of :func:`diff_entries`' *stats*: ``st_ino`` (unsigned),
#: ``st_mtime_ns``, ``st_size``, little-endian.
STAT_RECORD = _STAT_RECORD.size


def _check_diff_args(names: object, stats: object) -> None:
    """The argument errors every backend raises, before anything is listed."""
    for what, value in (("names", names), ("stats", stats)):
        if type(value) is not bytes:
            raise TypeError(f"diff_entries() {what} must be bytes, not {type(value).__name__}")
    if len(stats) % STAT_RECORD:  # type: ignore[arg-type]
        raise ValueError(f"diff_entries() stats must be a whole number of {STAT_RECORD}-byte rows")


def _diff_mismatch() -> None:
    raise ValueError("diff_entries() names must hold one newline-ended name per stats row")


def _diff_rows(names: bytes, stats: bytes) -> tuple[list[str], list[tuple[int, int, int]]]:
    records = list(_STAT_RECORD.iter_unpack(stats))
    if names and not names.endswith(b"\n"):
        _diff_mismatch()
    # Entry names are ASCII; other bytes (a damaged section) can match no
    # candidate, and stay distinct from each other.
    listed = names.decode("ascii", "surrogateescape").split("\n")[:-1] if names else []
    if len(listed) != len(records):
        _diff_mismatch()
    return listed, records


def diff_entries(
    directory: str | os.PathLike[str], names: bytes, stats: bytes, trusted_before: int,
) -> tuple[list[tuple[str, str | None, int, int, int, int]], list[int]]:
    """Compare ``entries/`` with the stat rows of an index: what changed,
    without a Python object per unchanged file.

    Row *i* is the *i*-th newline-ended name of *names* with the *i*-th
    :data:`STAT_RECORD`-byte record of *stats* (``st_ino``, ``st_mtime_ns``,
    ``st_size``; ino 0: unknown).  For each name only its last row counts.
    The directory is listed and lstat'ed as by :func:`stat_entries`; a
    candidate is unchanged when the row of its name has its very (ino,
    mtime_ns, size), ino not 0, and its mtime is at most *trusted_before*
    (younger files may still change within their timestamp's tick).

    Returns ``(changed, missing)``: *changed* holds ``(name, key, st_ino,
    st_mtime_ns, st_size, row)`` for every other candidate, in directory
    order, ``row`` being the row of its name or -1; *missing* the rows that
    count whose name is not a candidate any more, ascending.  ``TypeError``
    unless *names* and *stats* are ``bytes``, ``ValueError`` when they do
    not hold the same number of rows; listing errors as
    :func:`stat_entries`.  The compiled backend lstats and compares without
    the GIL (the lstats on two threads for large directories)."""
    _check_diff_args(names, stats)
    path = _scan_path(directory)
    listed, records = _diff_rows(names, stats)
    last = {name: row for row, name in enumerate(listed)}
    seen: set[int] = set()
    changed: list[tuple[str, str | None, int, int, int, int]] = []
    for name, key, ino, mtime, size in _stat_found(path, _scan(path, None)):
        row = last.get(name, -1)
        if row >= 0:
            seen.add(row)
            was_ino, was_mtime, was_size = records[row]
            if was_ino and (was_ino, was_mtime, was_size) == (ino, mtime, size) and mtime <= trusted_before:
                continue
        changed.append((name, key, ino, mtime, size, row))
    missing = sorted(row for row in last.values() if row not in seen)
    return changed, missing

_TEMP_SUFFIX = ".tmp"

#: Entry files up to this size are read by the compiled
#: :func:`read_updated_at` into a buffer on the stack, larger ones into one
#: heap buffer.  (Both backends read the whole file: see there.)
HEADER_BYTES = 4096

# The head of a document in the layout this library and the reference write
# (``JSON.stringify(doc, null, 2)``) whose entry starts with ``updatedAt``.
# Deliberately narrow (that exact layout, a key without escapes, an integer of
# at most 18 digits); anything else is left to a full parse.
_HEADER = re.compile(
    rb'\{\n  "sessionKey": "([^"\\\x00-\x1f]*)",\n  "entry": \{\n    "updatedAt": '
    rb"(-?(?:0|[1-9][0-9]{0,17}))"
)
# In that layout the entry closes at indent 2 and the document at column 0,
# on the last two lines (a trailing newline is allowed).
_END = b"\n  }\n}"
# Between head and end, a line start that is not the layout: a line indented
# less than 4 spaces (every line there belongs to the entry -- a shallower one
# is the "}" of an appended document, a second "entry", an empty line), or
# another "updatedAt" field of the entry itself (exactly 4 spaces).  One regex
# pass; the compiled twin walks the newlines with memchr.
_STRAY_LINE = re.compile(rb'\n(?!    (?! *"updatedAt":))')


def read_updated_at(path: str, key: str) -> tuple[bool, Any] | None:
    """The ``updatedAt`` fast path for the entry file at *path* (never
    through a symlink): one read of the file and a scan of its line starts,
    no JSON parse.

    Returns ``(True, updatedAt)`` when the file is a document of exactly
    *key* in the layout this library and the reference write
    (``JSON.stringify(doc, null, 2)``) whose entry begins with an integer
    ``updatedAt``; ``(False, None)`` when there is no regular file at *path*;
    ``None`` when the layout does not settle it (the caller then parses the
    whole file).  Settled means all of:

    * the head is ``{``, ``"sessionKey"`` (exactly *key*, no escapes),
      ``"entry": {``, ``"updatedAt": <integer>``, one per line;
    * the file ends with the entry's ``}`` at indent 2 and the document's
      ``}`` at column 0 (one trailing newline allowed): bytes appended to a
      whole document -- ``"\\n}"``, ``" }"``, a second document -- end it
      otherwise or leave a shallower line before it;
    * every line between them is indented at least 4 spaces (a field of the
      entry or deeper), and no line, at any indent, starts with another
      ``"updatedAt":`` (JSON parsers keep the last of duplicated fields; a
      nested ``updatedAt`` only costs the full parse).

    It reads every byte but checks only the head, the last two lines and
    the first bytes of each line in between -- not the rest of a line, nor
    that brackets balance.  So it cannot see damage in the middle that keeps
    those intact: bytes changed, removed or inserted inside a line (a value
    cut short, a lost quote, comma or colon, invalid UTF-8), whole lines at
    indent 4 or deeper added or removed (an unbalanced bracket), or a
    duplicated ``updatedAt`` written outside the layout (on one line after
    another field, or spelled with escapes such as ``"updat\\u0065dAt"``).  For such a file this answers while a full
    read (``get``, ``load``) skips it as invalid JSON or reads another value.
    A file as sessionsd or the reference wrote it is never among them.
    """
    data = read_regular(path)
    if data is None:
        return (False, None)
    match = _HEADER.match(data)
    if match is None or match.group(1) != key.encode("utf-8"):
        return None
    value_end = match.end()
    end = len(data) - len(_END)
    if data.endswith(b"\n"):
        end -= 1
    if end < value_end or data[end : end + len(_END)] != _END:
        return None
    if end > value_end and (  # more fields follow updatedAt
            data[value_end : value_end + 1] != b"," or _STRAY_LINE.search(data, value_end, end)):
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
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_MISSING = object()


# -- splitting the legacy sessions.json into its members ---------------------------------
#
# Migration reads a legacy file of any size in bounded memory: this scanner
# walks the one top-level object once, fed chunk by chunk, and reports where
# each member's key (the string token, quotes included) and value (its JSON
# text) lie, as absolute byte offsets.  It checks the object's own structure
# -- ``{``, string keys, ``:``, ``,``, ``}``, nothing but whitespace after it,
# nesting at most ``max_depth`` deep -- and finds where each value ends (its
# strings, escapes and brackets); the values themselves, and the keys'
# escapes, are left to the strict JSON parser, one member at a time.
# Results and errors do not depend on where the chunks are cut.

#: The deepest nesting the splitter accepts, the top-level object counted:
#: orjson's limit, so a file it splits is one the strict parser could read.
SPLIT_MAX_DEPTH = 1024

(_S_START, _S_FIRST_KEY, _S_KEY, _S_IN_KEY, _S_COLON, _S_VALUE, _S_IN_STRING, _S_IN_CONTAINER,
 _S_IN_NESTED_STRING, _S_IN_SCALAR, _S_AFTER_VALUE, _S_END) = range(12)

_WS_BYTES = frozenset(b" \t\n\r")
_SKIP_WS = re.compile(rb"[ \t\n\r]*+")
# The rest of a string from inside it: stops at its closing quote, at the
# end of the data, or before a backslash that is the last byte.
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)
# Inside a container: everything but brackets, complete strings included;
# stops at a bracket, at the quote of a string the data ends in, or at the end.
_CONTAINER_REST = re.compile(rb'(?:[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.S)
# A scalar (number, true, false, null -- or text the parser will refuse)
# runs to whitespace or one of , : [ ] { } ".
_SCALAR_REST = re.compile(rb'[^ \t\n\r,:\[\]{}"]*+')
# A whole member from its key to its value's first byte, in one match (the
# fast path; anything else goes through the state machine byte by byte).
_MEMBER_HEAD = re.compile(rb'[ \t\n\r]*+("[^"\\]*+(?:\\.[^"\\]*+)*+")[ \t\n\r]*+:[ \t\n\r]*+', re.S)
# The patterns above but _MEMBER_HEAD match the empty string, so their
# match() never returns None: typed as such (bound methods, no wrapper).
_MatchAt = Callable[[Any, int], "re.Match[bytes]"]
_skip_ws = cast(_MatchAt, _SKIP_WS.match)
_string_rest = cast(_MatchAt, _STRING_REST.match)
_container_rest = cast(_MatchAt, _CONTAINER_REST.match)
_scalar_rest = cast(_MatchAt, _SCALAR_REST.match)


class SplitError(ValueError):
    """The input is not one JSON object the splitter can split.

    ``kind`` is ``"empty"`` (nothing but whitespace), ``"not_object"`` (the
    document is not an object), ``"syntax"``, ``"truncated"`` (it ends
    inside the object), ``"trailing"`` (more after the object) or
    ``"depth"`` (nested deeper than allowed); ``offset`` is the byte offset
    the message names."""

    def __init__(self, message: str, kind: str, offset: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.offset = offset

    def __reduce__(self) -> tuple[type[SplitError], tuple[str, str, int]]:  # picklable, like the ValueError it is
        return (type(self), (str(self), self.kind, self.offset))


def _describe_byte(byte: int) -> str:
    if 0x20 < byte < 0x7F:
        return f"'{chr(byte)}'"
    return f"byte 0x{byte:02x}"


def _split_error(kind: str, offset: int, byte: int = -1, max_depth: int = 0) -> SplitError:
    """The splitter's error (both twins build their messages here)."""
    found = _describe_byte(byte) if byte >= 0 else ""
    if kind == "empty":
        message = "the document is empty (only whitespace)"
    elif kind == "not_object":
        message = f"not a JSON object: the document starts with {found} at byte {offset}"
    elif kind == "truncated":
        message = f"the data ends inside the top-level object (at byte {offset}), so it looks truncated"
    elif kind == "trailing":
        message = f"unexpected {found} at byte {offset} after the end of the top-level object"
    elif kind == "depth":
        message = f"arrays and objects nested deeper than {max_depth} levels (at byte {offset})"
    elif kind == "key":
        kind, message = "syntax", f"expected a string key at byte {offset}, found {found}"
    elif kind == "key_or_end":
        kind, message = "syntax", f"expected a string key or '}}' at byte {offset}, found {found}"
    elif kind == "colon":
        kind, message = "syntax", f"expected ':' after the key at byte {offset}, found {found}"
    elif kind == "value":
        kind, message = "syntax", f"expected a value at byte {offset}, found {found}"
    else:  # "comma"
        kind, message = "syntax", f"expected ',' or '}}' after a value at byte {offset}, found {found}"
    return SplitError(message, kind, offset)


class ObjectSplitter:
    """Splits one top-level JSON object, fed in chunks, into its members.

    Call :meth:`scan` with consecutive windows of the input: *data* holds the
    input's bytes from absolute offset *offset* on, and must cover every
    byte from :attr:`keep_from` to where the previous window ended (more is
    fine).  It returns ``(key_start, key_end, value_start, value_end)`` for
    each member completed in this window -- absolute offsets; the key span
    is the string token, quotes included -- and raises :class:`SplitError`
    (a ``ValueError``) at the first byte that cannot belong to one object.
    Pass ``final=True`` with the last window: the input ends there.
    """

    def __init__(self, max_depth: int = SPLIT_MAX_DEPTH) -> None:
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, not {max_depth}")
        self.max_depth = max_depth
        self._mode = _S_START
        self._depth = 0
        self._position = 0       # absolute offset of the next byte to scan
        self._member_start = -1  # the key's opening quote, while in a member
        self._key_end = -1
        self._value_start = -1
        self._done = False
        self._error: SplitError | None = None

    @property
    def keep_from(self) -> int:
        """The first absolute offset the next window must still hold."""
        return self._member_start if self._member_start >= 0 else self._position

    @property
    def finished(self) -> bool:
        """Whether the final window was scanned without an error."""
        return self._done

    def scan(self, data: bytes | bytearray | memoryview, offset: int,
             final: bool = False) -> list[tuple[int, int, int, int]]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"scan() needs bytes, bytearray or memoryview, not {type(data).__name__}")
        n = len(data)
        i = self.keep_from - offset
        if offset < 0 or i < 0 or self._position - offset > n:
            raise ValueError(f"scan() needs the data from byte {self.keep_from} on; "
                             f"got bytes {offset} to {offset + n}")
        if self._error is not None:
            raise self._error
        if self._done:
            raise ValueError("scan() after the final window")
        i = self._position - offset
        mode, depth, max_depth = self._mode, self._depth, self.max_depth
        member_start, key_end, value_start = self._member_start, self._key_end, self._value_start
        members: list[tuple[int, int, int, int]] = []
        try:
            while True:
                if mode == _S_AFTER_VALUE:
                    i = _skip_ws(data, i).end()
                    if i >= n:
                        break
                    c = data[i]
                    if c == 0x2C:  # ,
                        i += 1
                        match = _MEMBER_HEAD.match(data, i)
                        if match is not None:
                            # The fast path: key, colon and the value's first byte.
                            member_start, key_end = offset + match.start(1), offset + match.end(1)
                            i = match.end()
                            mode = _S_VALUE
                            continue
                        mode = _S_KEY
                    elif c == 0x7D:  # }
                        i += 1
                        mode = _S_END
                    else:
                        raise _split_error("comma", offset + i, c)
                elif mode == _S_IN_CONTAINER:
                    i = _container_rest(data, i).end()
                    if i >= n:
                        break
                    c = data[i]
                    if c == 0x22:  # a string the data ends in
                        i += 1
                        mode = _S_IN_NESTED_STRING
                    elif c == 0x7B or c == 0x5B:
                        depth += 1
                        if depth >= max_depth:
                            raise _split_error("depth", offset + i, max_depth=max_depth)
                        i += 1
                    else:  # ] or }
                        depth -= 1
                        i += 1
                        if depth == 0:
                            members.append((member_start, key_end, value_start, offset + i))
                            member_start = -1
                            mode = _S_AFTER_VALUE
                elif mode == _S_VALUE:
                    i = _skip_ws(data, i).end()
                    if i >= n:
                        break
                    c = data[i]
                    value_start = offset + i
                    i += 1
                    if c == 0x22:
                        mode = _S_IN_STRING
                    elif c == 0x7B or c == 0x5B:
                        depth = 1
                        if depth >= max_depth:
                            raise _split_error("depth", offset + i - 1, max_depth=max_depth)
                        mode = _S_IN_CONTAINER
                    elif c in b",:]}":
                        raise _split_error("value", offset + i - 1, c)
                    else:
                        mode = _S_IN_SCALAR
                elif mode in (_S_IN_STRING, _S_IN_KEY, _S_IN_NESTED_STRING):
                    i = _string_rest(data, i).end()
                    if i >= n or data[i] != 0x22:  # the end, or a backslash at the end
                        break
                    i += 1
                    if mode == _S_IN_NESTED_STRING:
                        mode = _S_IN_CONTAINER
                    elif mode == _S_IN_KEY:
                        key_end = offset + i
                        mode = _S_COLON
                    else:
                        members.append((member_start, key_end, value_start, offset + i))
                        member_start = -1
                        mode = _S_AFTER_VALUE
                elif mode == _S_IN_SCALAR:
                    i = _scalar_rest(data, i).end()
                    if i >= n and not final:
                        break
                    members.append((member_start, key_end, value_start, offset + i))
                    member_start = -1
                    mode = _S_AFTER_VALUE
                elif mode == _S_COLON:
                    i = _skip_ws(data, i).end()
                    if i >= n:
                        break
                    c = data[i]
                    if c != 0x3A:
                        raise _split_error("colon", offset + i, c)
                    i += 1
                    mode = _S_VALUE
                elif mode in (_S_KEY, _S_FIRST_KEY):
                    i = _skip_ws(data, i).end()
                    if i >= n:
                        break
                    c = data[i]
                    if c == 0x22:
                        member_start = offset + i
                        i += 1
                        mode = _S_IN_KEY
                    elif c == 0x7D and mode == _S_FIRST_KEY:
                        i += 1
                        mode = _S_END
                    else:
                        raise _split_error("key" if mode == _S_KEY else "key_or_end", offset + i, c)
                elif mode == _S_START:
                    i = _skip_ws(data, i).end()
                    if i >= n:
                        break
                    c = data[i]
                    if c != 0x7B:
                        raise _split_error("not_object", offset + i, c)
                    i += 1
                    mode = _S_FIRST_KEY
                else:  # _S_END
                    i = _skip_ws(data, i).end()
                    if i >= n:
                        break
                    raise _split_error("trailing", offset + i, data[i])
            if final:
                if mode == _S_START:
                    raise _split_error("empty", offset + n)
                if mode != _S_END:
                    raise _split_error("truncated", offset + n)
                self._done = True
        except SplitError as exc:
            self._error = exc  # the splitter stays failed
            raise
        finally:
            self._mode, self._depth, self._position = mode, depth, offset + i
            self._member_start, self._key_end, self._value_start = member_start, key_end, value_start
        return members
