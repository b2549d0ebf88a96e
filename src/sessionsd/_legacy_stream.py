"""Reading the legacy ``sessions.json`` for migration: streaming, in bounded
memory, into a sink (SPEC §6).

One responsibility: turn the legacy file at a path into normalised entries,
handed one at a time to a sink (:class:`_CountSink` counts, :class:`_DictSink`
keeps them, the staging sink of :mod:`sessionsd._promotion` writes them), and
say what the file held (:class:`_Inspection`), under the one size rule of
every migration path (:func:`_read_legacy`).

Write path: none -- this module only reads; anything written is the sink's.
Crash-consistency invariant: the legacy file is never modified, and a read
that is refused part-way (the file grew past the limit, or is not strict
JSON) resets the sink before anything else is done, so a sink never holds a
mix of two reads.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from . import _json
from ._codec import ObjectSplitter, SplitError
from ._fsutil import open_for_reading
from ._legacy import normalize_entries, parse_legacy
from ._types import Entries, Entry, KeyNormalizer, ProgressCallback

__all__ = ["WHOLE_FILE_BYTES"]

#: Migration has no size limit unless one is asked for (``max_bytes=``,
#: ``--max-bytes``): it reads the legacy file streaming, in bounded memory.
#: Only paths that hold the whole file in memory stop at this size (64 MiB):
#: the JSON5 fallback of migration (a file the strict reader refuses), and
#: the legacy-mode write path, which migrates a bigger file by streaming
#: before it writes (see :func:`~sessionsd.migration.migrate_for_write`).
WHOLE_FILE_BYTES = 64 * 1024 * 1024
#: The legacy file is read in chunks of this size.
_CHUNK_BYTES = 8 * 1024 * 1024


_Kind = Literal["missing", "invalid", "empty", "ready"]


@dataclass
class _Inspection:
    """What the legacy file held: its *kind*, how many members it had and
    how many entries they normalise to, and what to tell the operator."""

    kind: _Kind
    raw_count: int = 0
    count: int = 0
    warnings: list[str] = field(default_factory=list)


_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def _size_text(size: int) -> str:
    """``64 MiB``, ``1.5 GiB (1610612737 bytes)``, ``100 bytes``: a size as
    people read it, exact in bytes when the short form is rounded."""
    if size < 1024:
        return f"{size} bytes"
    exponent = min(len(_UNITS), (size.bit_length() - 1) // 10)
    unit = _UNITS[exponent - 1]
    whole, rest = divmod(size, 1024 ** exponent)
    if not rest:
        return f"{whole} {unit}"
    return f"{size / 1024 ** exponent:.1f} {unit} ({size} bytes)"


def _too_big(size: int, limit: int) -> _Inspection:
    return _Inspection("invalid", warnings=[
        f"Legacy sessions.json is {_size_text(size)}, over the migration limit of {_size_text(limit)} "
        "set by --max-bytes / max_bytes=; raise the limit or drop it (--max-bytes none, "
        "max_bytes=None) to migrate the file."])


_NOT_REGULAR = "Legacy sessions.json is not a regular file."
_NOT_OBJECT = "Legacy sessions.json does not contain an object store."
_READ_AS_JSON5 = "Legacy sessions.json is not strict JSON; it was read as JSON5."
_BOM = b"\xef\xbb\xbf"


# -- reading the legacy file: streaming -------------------------------------------------
#
# Every migration path reads sessions.json here, in chunks: the splitter of
# the codec (ObjectSplitter) finds each member of the top-level object, the
# strict JSON parser parses that member alone, and the entry goes to a sink
# (the staging directory, a dict, or nowhere when only counting) before the
# next one is read.  Memory: one chunk, the largest entry, and a small record
# per session key.  The result is exactly normalize_entries(json.loads(file)):
# a key seen twice keeps its last value (at its first position), case
# variants of one key collapse to the greatest updatedAt (ties: the later
# key), and a value that is not an object is kept wrapped.  A later
# occurrence that changes which one wins rewrites the staged entry (an
# earlier occurrence is read again from the file: nothing else is kept).
#
# A file the strict splitter refuses is read whole by parse_legacy (JSON5:
# comments, trailing commas ...) only when it is at most WHOLE_FILE_BYTES.

class _NotStrict(Exception):
    """The file is not one strict JSON object (the message says why)."""

    def __init__(self, message: str, not_object: bool = False, empty: bool = False) -> None:
        super().__init__(message)
        self.not_object = not_object
        self.empty = empty


class _Grown(Exception):
    """More bytes were read than the limit allows (the file grew)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size = size
        self.limit = limit


class _Sink(Protocol):
    """Where the entries read go, one at a time."""

    def put(self, key: str, entry: Entry) -> None:
        """Take the entry of a key not seen before."""

    def replace(self, key: str, entry: Entry) -> None:
        """Take a new winner for a key already put (a later duplicate or
        case variant)."""

    def reset(self) -> None:
        """Forget everything put so far (the read was refused part-way)."""


class _CountSink:
    """Keeps nothing (detection: counts only)."""

    def put(self, key: str, entry: Entry) -> None:
        pass

    replace = put

    def reset(self) -> None:
        pass


class _DictSink:
    """Keeps the entries (the merge into an active directory store)."""

    def __init__(self) -> None:
        self.entries: Entries = {}

    def put(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry

    replace = put

    def reset(self) -> None:
        self.entries = {}


def _updated_at(entry: Entry) -> float:
    value = entry.get("updatedAt")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return 0


def _pread(fd: int, length: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        chunks = []
        while length > 0:
            chunk = os.pread(fd, length, offset)
            if not chunk:
                break
            chunks.append(chunk)
            length -= len(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    position = os.lseek(fd, 0, os.SEEK_CUR)  # pragma: no cover - Windows
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, length)
    finally:
        os.lseek(fd, position, os.SEEK_SET)


#: A member's place in the file, packed into one int: start * _SPAN + length.
_SPAN = 1 << 40


class _Collector:
    """Turns the members of the legacy object into normalised entries for a
    sink, exactly as ``normalize_entries(json.loads(file))`` would."""

    def __init__(self, fd: int, normalize: KeyNormalizer, sink: _Sink) -> None:
        self.fd = fd
        self.normalize = normalize
        self.sink = sink
        # Normalised key -> where its first member is (packed).  Keys seen
        # more than once (duplicates, case variants) also get `variants`:
        # raw key -> [first position, updatedAt, packed place of its last
        # value], and `staged`: the packed place of the value in the sink.
        self.first: dict[str, int] = {}
        self.variants: dict[str, dict[str, list[Any]]] = {}
        self.staged: dict[str, int] = {}
        self.dropped: set[str] = set()  # raw keys no entry can be stored under

    @property
    def raw_count(self) -> int:
        return (len(self.first) + len(self.dropped)
                + sum(len(variants) - 1 for variants in self.variants.values()))

    def _entry(self, raw_key: str, value: Any) -> tuple[str, Entry] | None:
        normalized, _dropped = normalize_entries({raw_key: value}, self.normalize)
        if not normalized:
            return None
        return next(iter(normalized.items()))

    def _parse(self, data: bytes | bytearray, key_span: tuple[int, int], value_span: tuple[int, int],
               start: int) -> tuple[str, Any]:
        try:
            raw_key = _json.loads(data[key_span[0]:key_span[1]])
        except ValueError as exc:
            raise _NotStrict(f"{exc} (in the key at byte {start})") from None
        try:
            value = _json.loads(data[value_span[0]:value_span[1]])
        except ValueError as exc:
            raise _NotStrict(f"{exc} (in the value of {raw_key!r}, the member at byte {start})") from None
        return raw_key, value

    def _reread(self, packed: int) -> tuple[str, Entry]:
        """The raw key and normalised entry of the member at *packed*."""
        start, length = divmod(packed, _SPAN)
        data = b"{" + _pread(self.fd, length, start) + b"}"
        [(k0, k1, v0, v1)] = ObjectSplitter().scan(data, 0, final=True)
        raw_key, value = self._parse(data, (k0, k1), (v0, v1), start)
        normalized = self._entry(raw_key, value)
        if normalized is None:
            # It gave an entry when first read: the file changed in place.
            raise _NotStrict(f"the member at byte {start} changed while the file was read")
        return raw_key, normalized[1]

    def add(self, data: bytes | bytearray, base: int, member: tuple[int, int, int, int]) -> None:
        """Parse *member* (its key start, key end, value start and value
        end, as file offsets; *data* holds the file from offset *base*) and
        hand its entry to the sink, or record why it has none."""
        start, key_end, value_start, value_end = member
        raw_key, value = self._parse(data, (start - base, key_end - base),
                                     (value_start - base, value_end - base), start)
        normalized = self._entry(raw_key, value)
        if normalized is None:
            self.dropped.add(raw_key)
            return
        key, entry = normalized
        packed = start * _SPAN + (value_end - start)
        first = self.first.get(key)
        if first is None:
            self.first[key] = packed
            self.sink.put(key, entry)
            return
        # Seen before: a duplicate or a case variant (rare; any cost is fine).
        variants = self.variants.get(key)
        if variants is None:
            first_raw, first_entry = self._reread(first)
            variants = self.variants[key] = {first_raw: [first // _SPAN, _updated_at(first_entry), first]}
            self.staged[key] = first
        record = variants.get(raw_key)
        if record is None:
            variants[raw_key] = [start, _updated_at(entry), packed]
        else:  # the same key again: its last value counts, at its first position
            record[1], record[2] = _updated_at(entry), packed
        winner = max(variants.values(), key=lambda r: (r[1], r[0]))[2]
        if winner != self.staged[key]:
            self.sink.replace(key, entry if winner == packed else self._reread(winner)[1])
            self.staged[key] = winner


def _stream(fd: int, normalize: KeyNormalizer, sink: _Sink, max_bytes: int | None,
            size: int, progress: ProgressCallback | None,
            chunk_bytes: int | None = None) -> tuple[int, int, bool]:
    """Split, parse and hand over every entry of the legacy file open at
    *fd*: ``(raw count, normalised count, had a byte order mark)``.  Raises
    _NotStrict or _Grown."""
    chunk_bytes = chunk_bytes or _CHUNK_BYTES
    splitter = ObjectSplitter()
    collector = _Collector(fd, normalize, sink)
    buffer = bytearray()
    base = 0     # the file offset of buffer[0]
    done = 0     # bytes read
    bom = False
    while True:
        chunk = os.read(fd, max(chunk_bytes, len(_BOM)) if done == 0 else chunk_bytes)
        if max_bytes is not None and done + len(chunk) > max_bytes:
            raise _Grown(done + len(chunk), max_bytes)
        if done == 0 and chunk.startswith(_BOM):
            # What JSON5 (and so the whole-file reader) accepts: read past it.
            chunk = b"   " + chunk[3:]
            bom = True
        done += len(chunk)
        buffer += chunk
        try:
            members = splitter.scan(buffer, base, final=not chunk)
        except SplitError as exc:
            raise _NotStrict(str(exc), not_object=exc.kind == "not_object",
                             empty=exc.kind == "empty") from None
        for member in members:
            collector.add(buffer, base, member)
        keep = splitter.keep_from
        del buffer[:keep - base]
        base = keep
        if progress is not None:
            progress(done, max(size, done))
        if not chunk:
            return collector.raw_count, len(collector.first), bom


def _read_whole(fd: int, normalize: KeyNormalizer, sink: _Sink) -> _Inspection:
    """The whole-file reader (small files the strict splitter refused):
    strict JSON, then JSON5, as legacy mode reads them."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, _CHUNK_BYTES)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        return _Inspection("empty")
    warnings: list[str] = []
    try:
        value, used_json5 = parse_legacy(data)
    except ValueError as exc:
        return _Inspection("invalid", warnings=[f"Failed to parse legacy sessions.json: {exc}"])
    if used_json5:
        warnings.append(_READ_AS_JSON5)
    if not isinstance(value, dict):
        return _Inspection("invalid", warnings=warnings + [_NOT_OBJECT])
    entries, _dropped = normalize_entries(value, normalize)
    for key, entry in entries.items():
        sink.put(key, entry)
    return _Inspection("ready" if entries else "empty", raw_count=len(value), count=len(entries),
                       warnings=warnings)


def _read_legacy(path: str, normalize: KeyNormalizer, max_bytes: int | None, sink: _Sink,
                 progress: ProgressCallback | None = None) -> _Inspection:
    """Read the legacy file at *path* into *sink*; what it holds.

    The one rule of every migration path (SPEC §6): a symlink or a
    non-regular file is invalid; a file over *max_bytes* (when given) is
    invalid, with a warning naming the limit and how to lift it; otherwise it
    is read streaming, whatever its size (see above).  *progress* gets
    ``(bytes read, file size)`` after every chunk."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return _Inspection("missing")
    if not stat.S_ISREG(info.st_mode):
        return _Inspection("invalid", warnings=[_NOT_REGULAR])
    if max_bytes is not None and info.st_size > max_bytes:
        return _too_big(info.st_size, max_bytes)
    # O_NOFOLLOW/O_NONBLOCK: a symlink or FIFO swapped in since the lstat is
    # refused, not followed or waited on.
    fd = open_for_reading(path)
    if fd is None:
        if not os.path.lexists(path):
            return _Inspection("missing")
        return _Inspection("invalid", warnings=[_NOT_REGULAR])
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return _Inspection("invalid", warnings=[_NOT_REGULAR])
        size = info.st_size
        if max_bytes is not None and size > max_bytes:
            return _too_big(size, max_bytes)
        try:
            raw, count, bom = _stream(fd, normalize, sink, max_bytes, size, progress)
            if progress is not None:
                progress(size, size)  # read to the end (the file may have shrunk)
        except _Grown as grown:
            sink.reset()
            return _too_big(grown.size, grown.limit)
        except _NotStrict as failure:
            sink.reset()
            if failure.empty:
                return _Inspection("empty")
            if size <= WHOLE_FILE_BYTES:
                return _read_whole(fd, normalize, sink)
            if failure.not_object:
                return _Inspection("invalid", warnings=[_NOT_OBJECT])
            return _Inspection("invalid", warnings=[
                f"Failed to parse legacy sessions.json: {failure}; a file over "
                f"{_size_text(WHOLE_FILE_BYTES)} is read as strict JSON only (JSON5 -- comments, "
                "trailing commas -- is read in smaller files)"])
    finally:
        os.close(fd)
    warnings = [_READ_AS_JSON5] if bom else []
    return _Inspection("ready" if count else "empty", raw_count=raw, count=count, warnings=warnings)
