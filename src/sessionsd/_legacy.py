"""Legacy mode: the monolithic ``sessions.json`` (SPEC §5).

Read as strict JSON first, then as JSON5 (comments, trailing commas).  Keys
are normalised on the way in, with case variants collapsed to the newest
entry, so both modes present one key rule.  A file holding an array (or any
other non-object) loads as an empty store and is never rewritten in place.
Writes replace the whole file atomically, mode 0600.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from . import _json
from ._fsutil import write_atomic
from ._layout import BLOCKED_KEYS, StorePaths
from .errors import CorruptStoreError, InvalidKeyError

__all__ = ["LegacySnapshot", "LegacyStore", "parse_legacy", "normalize_entries"]


def parse_legacy(data: bytes) -> tuple[Any, bool]:
    """``(value, used_json5)``; raises ``ValueError`` when neither parses."""
    try:
        return _json.loads(data), False
    except ValueError as strict_error:
        try:
            import json5
        except ImportError:  # pragma: no cover - json5 is a dependency
            raise strict_error from None
        try:
            return json5.loads(data.decode("utf-8")), True
        except (ValueError, UnicodeDecodeError):
            raise strict_error from None


def _updated_at(entry: dict) -> float:
    value = entry.get("updatedAt")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return 0


def normalize_entries(source: dict, normalize: Callable[[Any], str]
                      ) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Normalise keys of a legacy object store.

    Non-object entries and keys that are invalid, empty or blocked after
    normalisation are dropped (and listed); case variants of one key collapse
    to the entry with the greatest ``updatedAt`` (ties: the later one wins).
    """
    result: dict[str, dict] = {}
    origin: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    for raw_key, entry in source.items():
        if not isinstance(entry, dict):
            dropped.append((raw_key, "entry is not a JSON object"))
            continue
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

    def __init__(self, token: Optional[tuple], entries: dict[str, dict], *, exists: bool,
                 is_object: bool, raw_count: int, dropped: list, used_json5: bool) -> None:
        self.token = token
        self.entries = entries
        self.exists = exists
        self.is_object = is_object
        self.raw_count = raw_count
        self.dropped = dropped
        self.used_json5 = used_json5


class LegacyStore:
    def __init__(self, paths: StorePaths, durability: str,
                 normalize: Callable[[Any], str]) -> None:
        self.paths = paths
        self.durability = durability
        self.normalize = normalize

    def token(self) -> Optional[tuple]:
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

    def write(self, entries: dict[str, dict]) -> None:
        """Replace the file with *entries* (temp file + rename, 0600)."""
        os.makedirs(self.paths.dir, mode=0o700, exist_ok=True)
        write_atomic(self.paths.store, _json.dumps(entries), self.durability)
