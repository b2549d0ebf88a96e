"""The in-memory listing index (:mod:`sessionsd.index` holds its file
format, loading, writing and repair): a listing row and its order
(:func:`entry_row`, :func:`order_key`), the JSON codec of the index files,
and :class:`Index` -- a base read lazily from the ``index`` file (or held in
memory) plus the journal's overlay, and the answers of ``keys()``,
``len()``, ``summary()`` and ``recent()``.  Split out of
:mod:`sessionsd.index`, which re-exports the public names.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from . import _json
from ._codec import STAT_RECORD, copy_json, encode_key
from ._fsutil import READ_FLAGS

try:  # pragma: no cover - which branch runs depends on the interpreter
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

__all__ = ["Index", "Gone", "Row", "Token", "StatRow", "HEAD_ROWS", "age", "order_key", "entry_row"]

#: A listing row: ``[key, updatedAt, lastChannel, lastTo, bytes]``, in the
#: journal also ``+ [file name, ino, mtime_ns]`` when its file's stat is known.
Row: TypeAlias = list[Any]
#: ``(identity..., state.json version, seq, mtime_ns of entries/)``.
Token: TypeAlias = tuple[int, ...]
#: One stat row of the ``stat`` section: ``(st_ino, st_mtime_ns, st_size)``.
StatRow: TypeAlias = tuple[int, int, int]

_ROW_START = b"\n  ["
#: Rows in the head section: a page of ``recent()`` parses only these.
HEAD_ROWS = 64
_SCALARS = frozenset({str, int, float, bool, type(None)})
_STAT = struct.Struct("<Qqq")
assert _STAT.size == STAT_RECORD

if orjson is not None:
    _INDENT = orjson.OPT_INDENT_2

    def _dump_section(value: Any) -> bytes:
        return orjson.dumps(value, option=_INDENT)

    def _dump_line(value: Any) -> bytes:
        return orjson.dumps(value)

    _loads: Callable[[bytes], Any] = orjson.loads
else:  # pragma: no cover - exercised on interpreters without orjson
    def _dump_section(value: Any) -> bytes:
        return json.dumps(value, indent=2, ensure_ascii=True, allow_nan=False).encode("ascii")

    def _dump_line(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")

    _loads = _json.loads


class Gone(Exception):
    """The base file an index was loaded from was replaced: load again."""


# -- rows ---------------------------------------------------------------------------

def age(updated: Any) -> float:
    """Age order of an ``updatedAt``: missing or non-numeric counts as oldest
    (maintenance's rule)."""
    if type(updated) is int or (type(updated) is float and math.isfinite(updated)):
        return float(updated)
    if isinstance(updated, (int, float)) and not isinstance(updated, bool) and math.isfinite(updated):
        return float(updated)
    return float("-inf")


def order_key(row: Row) -> tuple[float, str]:
    """Listing order: most recently updated first, ties by key ascending."""
    return (-age(row[1]), row[0])


def _plain(value: Any) -> Any:
    """*value* as a JSON round trip gives it back (what ``load()`` would
    read from the file): exact scalars as they are, anything else (tuples,
    enums, UUIDs, ``str`` subclasses, containers) through the codec."""
    if type(value) in _SCALARS:
        return value
    return _json.loads(_json.dumps(value))


def entry_row(key: str, entry: dict[str, Any], size: int) -> Row:
    """The listing row of *entry* as stored under *key* in *size* bytes."""
    get = dict.get
    return [key, _plain(get(entry, "updatedAt")), _plain(get(entry, "lastChannel")),
            _plain(get(entry, "lastTo")), size]


def _holds_containers(rows: list[Row]) -> bool:
    """Do any summary values of *rows* need copying (a dict or list)?"""
    kinds = {dict, list}
    return any(type(row[1]) in kinds or type(row[2]) in kinds or type(row[3]) in kinds for row in rows)


def _summary(row: Row, copy: bool) -> dict[str, Any]:
    if copy:
        return {"lastChannel": copy_json(row[2]), "lastTo": copy_json(row[3]), "updatedAt": copy_json(row[1])}
    return {"lastChannel": row[2], "lastTo": row[3], "updatedAt": row[1]}


def _stat_blob(records: Iterable[StatRow]) -> bytes:
    pack = _STAT.pack
    return b"".join([pack(*record) for record in records])


def _names_blob(names: Iterable[str]) -> bytes:
    return "".join([name + "\n" for name in names]).encode("ascii")


# -- the in-memory index ----------------------------------------------------------------

class Index:
    """Listing rows of one store state (``token``): a base (sorted rows, read
    lazily from the base file or held in memory) plus an overlay of the
    journal's changes (key -> row, or None for a deleted session)."""

    def __init__(self, token: Token, *, rows: list[Row] | None = None, names: bytes | None = None,
                 stat: bytes | None = None, skipped: list[list[Any]] | None = None,
                 path: str | None = None, file_id: tuple[int, int] | None = None,
                 sections: dict[str, tuple[int, int]] | None = None, count: int | None = None,
                 base_size: int = 0) -> None:
        self.token = token
        self.chained = True          # every journal record applied in order
        self.path = path
        self.file_id = file_id
        self.sections: dict[str, tuple[int, int]] = sections or {}
        self.base_size = base_size
        self.log_size = 0
        self._rows = rows
        self._head: list[Row] | None = rows[:HEAD_ROWS] if rows is not None else None
        self._head_bytes: bytes | None = None
        self._keys: list[str] | None = [row[0] for row in rows] if rows is not None else None
        self._updated: list[Any] | None = None
        self._channel: list[Any] | None = None
        self._to: list[Any] | None = None
        self._names = names
        self._stat = stat
        self._skipped = skipped
        self._count = len(rows) if rows is not None else count
        self._keyset: set[str] | None = None
        #: keys() in code point order, computed once per index state.
        self._sorted: list[str] | None = None
        self.overlay: dict[str, Row | None] = {}
        #: True once the index is kept in a shared cache: values handed out are copied.
        self.shared = False
        #: (prev, next, ops, journal size it follows) of a repair not yet stored.
        self.pending: tuple[tuple[int, ...], tuple[int, ...], list[Row], int] | None = None

    # -- base sections --------------------------------------------------------------

    def _section(self, name: str) -> list[Any]:
        cached: list[Any] | None = getattr(self, "_" + name)
        if cached is not None:
            return cached
        if self.path is None:
            return []
        value = _loads(self._read(*self.sections[name]))
        if type(value) is not list:
            raise ValueError(f"index section {name} is not a list")
        setattr(self, "_" + name, value)
        return value

    def _blob(self, name: str) -> bytes:
        """A binary section (``names``, ``stat``)."""
        cached: bytes | None = getattr(self, "_" + name)
        if cached is not None:
            return cached
        if self.path is None:
            return b""
        value = self._read(*self.sections[name])
        setattr(self, "_" + name, value)
        return value

    def _read(self, offset: int, length: int) -> bytes:
        assert self.path is not None
        try:
            fd = os.open(self.path, READ_FLAGS)
        except FileNotFoundError:
            raise Gone from None
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) != self.file_id:
                raise Gone  # replaced by a compaction: this object's token may still be right, its file is not
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise ValueError("index file is shorter than its header says")
        return data

    def _rows_prefix(self, count: int) -> list[Row]:
        """The first *count* base rows, parsing no more than needed."""
        if self._rows is not None or self.path is None:
            return self._section("rows")[:count]
        if count <= HEAD_ROWS or (self._count is not None and self._count <= HEAD_ROWS):
            if self._head is None:
                data = self._head_bytes
                head = _loads(data if data is not None else self._read(*self.sections["head"]))
                if type(head) is not list:
                    raise ValueError("index head is not a list")
                self._head = head
            return self._head[:count]
        offset, length = self.sections["rows"]
        want = min(length, max(8192, count * 200))
        while True:
            data = self._read(offset, want)
            position = 0
            for _ in range(count + 1):
                position = data.find(_ROW_START, position + 1)
                if position < 0:
                    break
            if position > 0:
                value = _loads(data[:position].rstrip(b",") + b"\n]")
                break
            if want >= length:
                value = _loads(data)
                break
            want = min(length, want * 4)
        if type(value) is not list:
            raise ValueError("index rows are not a list")
        return value[:count]

    def _base_count(self) -> int:
        if self._count is None:
            self._count = len(self._section("keys"))
        return self._count

    # -- journal ------------------------------------------------------------------------

    def apply(self, ops: list[Row]) -> None:
        """Apply journal ops: ``[key]`` deletes, ``[key, updatedAt,
        lastChannel, lastTo, bytes]`` writes (a commit's), and the same plus
        ``file name, inode, mtime_ns`` (a repair's, whose stat is known)."""
        overlay = self.overlay
        for op in ops:
            overlay[op[0]] = op if len(op) > 1 else None
        self._keyset = None
        self._sorted = None

    def extended(self, token: Token, ops: list[Row]) -> Index:
        """A copy of this file-backed index with *ops* on top, for *token*;
        ``pending`` holds the journal record that makes the stored index
        say the same (see :func:`append_pending`)."""
        result = Index(token, path=self.path, file_id=self.file_id, sections=self.sections, count=self._count,
                       base_size=self.base_size)
        for name in ("_head", "_head_bytes", "_keys", "_updated", "_channel", "_to", "_names", "_stat",
                     "_skipped"):
            setattr(result, name, getattr(self, name))
        result._rows = self._rows
        result.overlay = dict(self.overlay)
        result.apply(ops)
        result.log_size = self.log_size
        result.pending = (self.token[3:], token[3:], ops, self.log_size)
        return result

    # -- answers ------------------------------------------------------------------------

    def _base_keyset(self) -> set[str]:
        if self._keyset is None:
            self._keyset = set(self._section("keys"))
        return self._keyset

    def __len__(self) -> int:
        overlay = self.overlay
        if not overlay:
            return self._base_count()
        base = self._base_keyset()
        count = len(base) if self._count is None else self._count
        for key, row in overlay.items():
            count += (row is not None) - (key in base)
        return count

    def sorted_keys(self) -> list[str]:
        """Every key in code point order: sorted once per index state (the
        same list is returned until the index changes: do not mutate it)."""
        if self._sorted is None:
            self._sorted = sorted(self.keys())
        return self._sorted

    def keys(self) -> list[str]:
        """Every key, in the index's own order."""
        overlay = self.overlay
        keys: list[str] = self._section("keys")
        if not overlay:
            return list(keys)
        result = [key for key in keys if key not in overlay]
        result += [key for key, row in overlay.items() if row is not None]
        return result

    def rows(self) -> list[Row]:
        """Every row: base rows not overridden, then the overlay's."""
        rows: list[Row] = self._section("rows")
        overlay = self.overlay
        if not overlay:
            return rows
        return [row for row in rows if row[0] not in overlay] + [row for row in overlay.values() if row is not None]

    def summary(self) -> dict[str, dict[str, Any]]:
        if self._rows is not None or self.path is None:
            rows = self.rows()
            if self.shared and _holds_containers(rows):
                return {row[0]: _summary(row, True) for row in rows}  # the caller's own copies
            return {row[0]: {"lastChannel": row[2], "lastTo": row[3], "updatedAt": row[1]} for row in rows}
        # From the columns: the only objects made are the answer's own.
        columns = (self._section("updated"), self._section("channel"), self._section("to"))
        kinds = {dict, list}
        if self.shared and any(type(value) in kinds for values in columns for value in values):
            return {row[0]: _summary(row, True) for row in self.rows()}
        result = {key: {"lastChannel": channel, "lastTo": to, "updatedAt": updated}
                  for key, updated, channel, to in zip(self._section("keys"), *columns, strict=True)}
        for key, overlay_row in self.overlay.items():
            if overlay_row is None:
                result.pop(key, None)
            else:
                result[key] = _summary(overlay_row, self.shared)
        return result

    def recent(self, limit: int, offset: int) -> list[tuple[str, dict[str, Any]]]:
        need = offset + limit
        overlay = self.overlay
        if need <= 0:
            return []
        prefix = self._rows_prefix(need + len(overlay))
        if overlay:
            # A base row past need + len(overlay) cannot be among the first
            # `need`: at most len(overlay) rows before it were overridden.
            merged = [row for row in prefix if row[0] not in overlay]
            merged += [row for row in overlay.values() if row is not None]
            merged.sort(key=order_key)
        else:
            merged = prefix
        return [(row[0], _summary(row, self.shared)) for row in merged[offset:need]]

    def _base_names(self) -> list[str]:
        names = self._blob("names")
        listed = names.decode("ascii").split("\n")[:-1] if names else []
        if len(listed) != self._base_count():
            raise ValueError("index names do not match its rows")
        return listed

    def items_with_names(self) -> list[tuple[Row, str]]:
        """(row, file name) of every session (maintenance)."""
        rows: list[Row] = self._section("rows")
        overlay = self.overlay
        result = [(row, name) for row, name in zip(rows, self._base_names(), strict=True)
                  if not overlay or row[0] not in overlay]
        result += [(row, row[5] if len(row) > 5 else encode_key(row[0])) for row in overlay.values() if row is not None]
        return result

    def stat_rows(self) -> tuple[bytes, bytes, int, list[str], list[Row | None]]:
        """What a repair compares ``entries/`` with (see
        :func:`~sessionsd._codec.diff_entries`): ``(names, stats, base count,
        overlay keys, overlay rows)``.  Rows ``0 .. base count - 1`` are the
        base's, the rest the overlay's in order (a session the overlay
        deleted, or whose file's stat it does not know: ino 0), each
        overriding the base row of its file name."""
        names = self._blob("names")
        stat = self._blob("stat")
        count = self._base_count()
        if len(stat) != count * STAT_RECORD or names.count(b"\n") != count or (names and names[-1:] != b"\n"):
            raise ValueError("index names and stat do not match its rows")
        if not self.overlay:
            return names, stat, count, [], []
        keys = list(self.overlay)
        rows = list(self.overlay.values())
        extra_names = []
        extra_stat = []
        for key, row in zip(keys, rows, strict=True):
            if row is not None and len(row) > 5:
                extra_names.append(row[5])
                extra_stat.append((row[6], row[7], row[4]))
            else:
                extra_names.append(encode_key(key))
                extra_stat.append((0, 0, row[4] if row is not None else -1))
        return names + _names_blob(extra_names), stat + _stat_blob(extra_stat), count, keys, rows

    def skipped_files(self) -> dict[str, tuple[str, int, int, int]]:
        """``{name: (reason, ino, mtime_ns, size)}`` of the skipped files
        whose stat is known."""
        return {item[0]: (item[1], item[2], item[3], item[4]) for item in self._section("skipped") if item[2]}

    def merged(self) -> tuple[list[Row], bytes, bytes, list[list[Any]]]:
        """The base this index amounts to: sorted rows, their names and
        stat sections, the skipped files (:func:`write` stores them)."""
        overlay = self.overlay
        if not overlay:
            names, stat = self._blob("names"), self._blob("stat")
            rows: list[Row] = self._section("rows")
            if len(stat) != len(rows) * STAT_RECORD or names.count(b"\n") != len(rows):
                raise ValueError("index names and stat do not match its rows")
            return rows, names, stat, self._section("skipped")
        base_stat = self._blob("stat")
        pairs: list[tuple[Row, str, StatRow]] = [
            (row, name, _STAT.unpack_from(base_stat, i * STAT_RECORD))
            for i, (row, name) in enumerate(zip(self._section("rows"), self._base_names(), strict=True))
            if row[0] not in overlay]
        for key, overlay_row in overlay.items():
            if overlay_row is None:
                continue
            if len(overlay_row) > 5:
                pairs.append((overlay_row[:5], overlay_row[5], (overlay_row[6], overlay_row[7], overlay_row[4])))
            else:
                pairs.append((overlay_row[:5], encode_key(key), (0, 0, overlay_row[4])))
        pairs.sort(key=lambda pair: order_key(pair[0]))
        overridden = {encode_key(key) for key in overlay}
        skipped = [item for item in self._section("skipped") if item[0] not in overridden]
        return ([pair[0] for pair in pairs], _names_blob(pair[1] for pair in pairs),
                _stat_blob(pair[2] for pair in pairs), skipped)
