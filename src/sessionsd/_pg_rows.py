"""The rows of the PostgreSQL backend: how an entry becomes a row of
``sessionsd_entries`` and back, the namespace row, and the per-process cache
of a namespace's full load.  No SQL runs here (see
:mod:`sessionsd._pg_backend`; the tables are :mod:`sessionsd._pg_schema`'s).

An entry is stored as compact JSON text, refused by the rules of the entry
files (a str-keyed JSON object, no NaN or infinity, no int beyond 64 bits),
with its summary fields in columns of their own when those hold them exactly
(:class:`Row`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import _json
from ._documents import encode_document
from ._types import Entries, Entry
from .errors import InvalidEntryError
from .index import age

__all__ = ["Row", "NsRow", "LoadCache", "encode", "decode", "sort_at", "summary_of", "key_bytes", "key_text"]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


# -- entries -------------------------------------------------------------------------------

if _json.IMPLEMENTATION.startswith("orjson"):
    import orjson as _orjson

    _OPTIONS = _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS

    def _refuse(value: Any) -> Any:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")

    def _dumps(value: Any) -> bytes:
        """Compact JSON (orjson), with the rules of the entry files."""
        return _orjson.dumps(value, option=_OPTIONS, default=_refuse)
else:  # pragma: no cover - interpreters without orjson
    def _dumps(value: Any) -> bytes:
        """The entry files' encoder (indented: byte-identical to orjson's there)."""
        return _json.dumps(value)

#: An entry (or a summary) from its stored JSON text.
decode = _json.loads


class Row(NamedTuple):
    """What the database stores for one entry (see ``sessionsd._pg_schema``)."""

    text: str
    updated_at: int | None
    sort_at: float
    last_channel: str | None
    last_to: str | None
    summary: str | None
    size: int


def _plain_text(value: Any) -> bool:
    return value is None or (type(value) is str and "\x00" not in value)


def encode(key: str, entry: Entry) -> Row:
    """The row of *entry* under *key*; raises InvalidEntryError (naming the
    key and the field) for anything the entry files would refuse."""
    try:
        data = _dumps(entry)
    except (TypeError, ValueError, OverflowError):
        encode_document(key, entry)  # raises the entry-file error, with the field path
        raise
    if _json.has_non_finite(entry, data):
        encode_document(key, entry)
        raise InvalidEntryError(f"session entry {key!r} holds NaN or an infinity", key)
    updated = entry.get("updatedAt")
    channel = entry.get("lastChannel")
    to = entry.get("lastTo")
    exact_updated = type(updated) is int and _INT64_MIN <= updated <= _INT64_MAX
    summary = None
    if not ((updated is None or exact_updated) and _plain_text(channel) and _plain_text(to)):
        summary = _dumps({"lastChannel": channel, "lastTo": to, "updatedAt": updated}).decode("utf-8")
    text = data.decode("utf-8")
    return Row(text, updated if exact_updated else None, sort_at(updated),
                channel if _plain_text(channel) else None, to if _plain_text(to) else None,
                summary, len(data))


def sort_at(updated: Any) -> float:
    """The listing order of an ``updatedAt`` (``index.age``: missing or
    non-numeric is -inf); an integer beyond a double's range is clamped."""
    try:
        return age(updated)
    except OverflowError:
        return math.inf if updated > 0 else -math.inf


def summary_of(updated_at: int | None, channel: str | None, to: str | None,
             summary: str | None) -> dict[str, Any]:
    if summary is not None:
        value: dict[str, Any] = decode(summary)
        return value
    return {"lastChannel": channel, "lastTo": to, "updatedAt": updated_at}


def key_bytes(key: str) -> bytes:
    return key.encode("utf-8")


def key_text(raw: bytes | memoryview) -> str:
    return bytes(raw).decode("utf-8")


# -- the per-process cache of load() ------------------------------------------------------------

class LoadCache:
    """The last full load of one namespace in this process, valid for
    ``token`` = (namespace row id, version); shared by every backend of the
    same conninfo and namespace."""

    _registry: dict[tuple[str, str], LoadCache] = {}
    _registry_mutex = threading.Lock()

    @classmethod
    def shared(cls, conninfo: str, namespace: str) -> LoadCache:
        with cls._registry_mutex:
            cache = cls._registry.get((conninfo, namespace))
            if cache is None:
                cache = cls._registry[(conninfo, namespace)] = cls()
            return cache

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.token: tuple[int, int] | None = None
        self.entries: Entries | None = None

    def apply(self, token_before: tuple[int, int], token_after: tuple[int, int],
              changes: Mapping[str, str | None]) -> None:
        """After this process committed *changes* (key -> the JSON text
        stored, None for a removal) as the one commit from *token_before*
        to *token_after* (the namespace lock makes that certain): keep the
        cached view current instead of dropping it.  The stored text is
        parsed, so the view holds what a fresh load would read (lists for
        tuples, plain str for str subclasses...)."""
        with self.mutex:
            if self.entries is None or self.token != token_before:
                return
            for key, text in changes.items():
                if text is None:
                    self.entries.pop(key, None)
                else:
                    self.entries[key] = decode(text)
            self.token = token_after

    def clear(self) -> None:
        with self.mutex:
            self.token = None
            self.entries = None


class NsRow(NamedTuple):
    """A namespace row: (id, version, entries, bytes, last_sweep)."""

    id: int
    version: int
    entries: int
    bytes: int
    last_sweep: int
