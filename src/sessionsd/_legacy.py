"""Legacy mode: the monolithic ``sessions.json`` (SPEC §5).

Read as strict JSON first, then as JSON5 (comments, trailing commas).  Keys
are normalised on the way in, with case variants collapsed to the newest
entry, so both modes present one key rule.  A file holding an array (or any
other non-object) loads as an empty store and is never rewritten in place.
Writes replace the whole file atomically, mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from . import _json
from ._fsutil import write_atomic
from ._layout import BLOCKED_KEYS, StorePaths
from ._types import Durability, Entries, Entry, FileToken, KeyNormalizer, check_durability
from .errors import CorruptStoreError, InvalidKeyError

__all__ = ["LegacySnapshot", "LegacyStore", "parse_legacy", "normalize_entries"]


#: Legacy files up to this size that are neither JSON nor JSON with comments
#: and trailing commas get the full JSON5 grammar (unquoted keys, single
#: quotes, hex numbers ...).  Its pure-Python parser reads about 150 KB/s, so
#: a larger file gets only the linear-time reader of comments and trailing
#: commas -- what a person editing the file adds.
JSON5_MAX_BYTES = 64 * 1024

_BOM = b"\xef\xbb\xbf"
_FAILED = object()


def parse_legacy(data: bytes) -> tuple[Any, bool]:
    """``(value, used_json5)``; raises ``ValueError`` saying why when *data*
    is neither JSON nor JSON5.

    Time stays linear in the size, whatever the data: strict JSON first; the
    same without comments and trailing commas (a linear pre-pass, then the
    strict parser again) only when the strict parser stopped at one; the
    full, pure-Python JSON5 parser only for files up to ``JSON5_MAX_BYTES``
    and never for a truncated one (no JSON5 syntax closes an object the file
    ends inside).  Nesting deeper than a parser allows is reported as such,
    never as ``RecursionError``.
    JSON5 ``NaN`` and infinities read as ``None``: what the reference writes
    for them, and what a later save could write back.
    """
    try:
        return _json.loads(data), False
    except ValueError as exc:
        error = exc
    kind, offset = _json.decode_error(error, data)
    detail = str(error)
    if kind == "syntax" and offset is not None and _json5_extras_at(data, offset):
        cleaned = _json.strip_comments_and_trailing_commas(data)
        if cleaned is None:
            raise ValueError(f"not JSON ({error}), and with more than {_json.MAX_REMOVALS} "
                             "comments and trailing commas, more than are read") from None
        try:
            return _json.loads(cleaned), True
        except ValueError as exc:
            kind, _offset = _json.decode_error(exc, cleaned)
            detail = f"{exc}, once its comments and trailing commas are removed"
    if kind == "depth":
        raise ValueError(f"nesting too deep: arrays and objects nested deeper than the JSON parser "
                         f"allows ({detail})") from None
    if kind == "truncated":
        raise ValueError(f"the file ends inside the JSON document, so it looks truncated "
                         f"({detail})") from None
    if len(data) <= JSON5_MAX_BYTES:
        value = _parse_json5(data)
        if value is not _FAILED:
            return value, True
        raise ValueError(f"neither JSON nor JSON5: {detail}") from None
    raise ValueError(
        f"not JSON: {detail}; comments and trailing commas are read at any size, other JSON5 "
        f"syntax only in files up to {JSON5_MAX_BYTES // 1024} KiB"
    ) from None


def _json5_extras_at(data: bytes, offset: int) -> bool:
    """Whether the strict parser stopped where a comment, a trailing comma or
    a byte order mark -- what the pre-pass removes -- could be the reason."""
    if offset == 0 and data.startswith(_BOM):
        return True
    rest = data[offset:offset + 256].lstrip(b" \t\r\n")
    if not rest and offset + 256 < len(data):
        rest = data[offset:].lstrip(b" \t\r\n")
    return rest[:1] in (b"/", b",", b"]", b"}")


def _json5_constant(name: str) -> None:
    return None  # NaN, Infinity, -Infinity: JSON.stringify writes null


def _json5_float(text: str) -> float | None:
    value = float(text)
    return value if value - value == 0.0 else None  # 1e999 -> Infinity -> null


def _parse_json5(data: bytes) -> Any:
    """The value of *data* as full JSON5, or ``_FAILED``; raises the nesting
    error when the (recursive) JSON5 parser runs out of stack."""
    try:
        import json5
    except ImportError:  # pragma: no cover - json5 is a dependency
        return _FAILED
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _FAILED
    try:
        return json5.loads(text, parse_constant=_json5_constant, parse_float=_json5_float)
    except RecursionError:
        raise ValueError("nesting too deep: arrays and objects nested deeper than the JSON5 "
                         "parser allows") from None
    except ValueError:
        return _FAILED


def _updated_at(entry: Entry) -> float:
    value = entry.get("updatedAt")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return 0


def normalize_entries(source: Mapping[str, Any], normalize: KeyNormalizer
                      ) -> tuple[Entries, list[tuple[str, str]]]:
    """Normalise keys of a legacy object store.

    No session is dropped for its value: a value that is not a JSON object
    (an array, a string, a number, ``null``) becomes the document
    ``{"sessionKey": key, "entry": value}`` -- exactly what the reference
    reader returns for such a session once migrated, so both
    implementations, and both modes, read the same value.  Keys that are
    invalid, empty or blocked after normalisation are listed as dropped
    (they cannot be stored under any name); case variants of one key
    collapse to the entry with the greatest ``updatedAt`` (ties: the later
    one wins), the others listed.

    Returns ``(entries by normalised key, [(raw key, why it was dropped)])``.
    """
    result: Entries = {}
    origin: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    for raw_key, entry in source.items():
        if not isinstance(entry, dict):
            try:
                wrapped_key = normalize(raw_key)
            except InvalidKeyError:
                wrapped_key = raw_key
            entry = {"sessionKey": wrapped_key, "entry": entry}
        try:
            key = normalize(raw_key)
        except InvalidKeyError:
            dropped.append((raw_key, "key is empty or invalid"))
            continue
        if key in BLOCKED_KEYS:
            dropped.append((raw_key, "blocked key"))
            continue
        previous = result.get(key)
        if previous is not None and _updated_at(entry) < _updated_at(previous):
            dropped.append((raw_key, f"older case variant of {key!r}"))
            continue
        if previous is not None:
            dropped.append((origin[key], f"older case variant of {key!r}"))
        result[key] = entry
        origin[key] = raw_key
    return result, dropped


class LegacySnapshot:
    """What ``sessions.json`` held at one (device, inode, size, mtime)."""

    __slots__ = ("token", "entries", "exists", "is_object", "raw_count", "dropped", "used_json5")

    def __init__(self, token: FileToken | None, entries: Entries, *, exists: bool,
                 is_object: bool, raw_count: int, dropped: list[tuple[str, str]], used_json5: bool) -> None:
        self.token = token
        self.entries = entries
        self.exists = exists
        self.is_object = is_object
        self.raw_count = raw_count
        self.dropped = dropped
        self.used_json5 = used_json5


class LegacyStore:
    """The legacy ``sessions.json`` of one store: read whole, written whole.

    *durability* is that of every write (a ``ValueError`` names the
    accepted values when it is none of them); *normalize* is the store's
    key rule, applied to every key read."""

    def __init__(self, paths: StorePaths, durability: Durability,
                 normalize: KeyNormalizer) -> None:
        self.paths = paths
        self.durability: Durability = check_durability(durability)
        self.normalize = normalize

    def token(self) -> FileToken | None:
        """Validator of the file's content; ``None`` when there is no file.

        Our writes always rename a new inode into place, so an equal token
        means equal bytes."""
        try:
            info = os.stat(self.paths.store)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def read(self) -> LegacySnapshot:
        """Parse the file as it is now.  Raises CorruptStoreError when it is
        not JSON (nor JSON5): treating it as empty would let the next save
        destroy it."""
        token = self.token()
        try:
            with open(self.paths.store, "rb") as fh:
                data = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return LegacySnapshot(None, {}, exists=False, is_object=True, raw_count=0,
                                  dropped=[], used_json5=False)
        if not data.strip():
            return LegacySnapshot(token, {}, exists=True, is_object=True, raw_count=0,
                                  dropped=[], used_json5=False)
        try:
            value, used_json5 = parse_legacy(data)
        except ValueError as exc:
            raise CorruptStoreError(
                f"legacy session store is not valid JSON or JSON5: {self.paths.store}: {exc}",
                self.paths.store,
            ) from exc
        if not isinstance(value, dict):
            return LegacySnapshot(token, {}, exists=True, is_object=False, raw_count=0,
                                  dropped=[], used_json5=used_json5)
        entries, dropped = normalize_entries(value, self.normalize)
        return LegacySnapshot(token, entries, exists=True, is_object=True, raw_count=len(value),
                              dropped=dropped, used_json5=used_json5)

    def write(self, entries: Entries) -> None:
        """Replace the file with *entries* (temp file + rename, 0600)."""
        os.makedirs(self.paths.dir, mode=0o700, exist_ok=True)
        write_atomic(self.paths.store, _json.dumps(entries), self.durability)
