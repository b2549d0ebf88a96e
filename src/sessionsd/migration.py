"""Migration between the legacy file and the directory store (SPEC §6).

* :func:`detect` -- read-only inspection of a store path.
* :func:`migrate` -- legacy ``sessions.json`` → ``sessions.d``: the legacy
  file is read streaming, in bounded memory, whatever its size (no size
  limit unless ``max_bytes`` sets one; see "reading the legacy file"
  below).  A fresh
  migration stages every entry in ``sessions.d.staging-<pid>-<ms>``, fsyncs,
  writes ``state.json`` last and promotes the staging directory with one
  rename; the legacy file is then renamed to ``sessions.json.bak.<ms>``.
  When the directory is already active and a legacy file written back by an
  old process appears, the legacy entries are merged in -- only strictly
  newer ones win -- as one atomic commit.  The legacy file that was promoted
  gets its backup name as a second hard link *before* the promotion, so a
  crash between the promotion and the backup leaves a file the next run
  recognises as already migrated: it is backed up, not merged (a merge would
  bring back sessions deleted since).
* :func:`rollback` -- ``sessions.d`` → ``sessions.json`` (written and
  fsynced first), then ``sessions.d`` renamed to ``sessions.d.bak.<ms>``.
  A legacy file already there is kept as a backup unless it holds exactly
  what rollback writes.  Before ``sessions.json`` appears, a marker
  ``sessions.d/rollback.json`` names the file (device and inode) about to
  become it, so a rollback killed before the directory is renamed leaves a
  file the next migration recognises: the directory store stayed
  authoritative, so that file is set aside as a backup, not merged (a merge
  would bring back sessions deleted since).

* :func:`migrate_for_write` -- the first write into a legacy file over
  64 MiB: migrates it streaming, then applies the write in directory mode.

All of them hold the store lock, so concurrent migrations of one store end with
exactly one ``migrated`` and the others ``already_directory``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import _faults, _json
from ._codec import ObjectSplitter, SplitError, copy_json, encode_key
from ._directory import DirectoryStore
from ._documents import encode_document
from ._fsutil import (
    IS_WINDOWS,
    fsync_dir,
    is_temp_name,
    open_for_reading,
    read_regular,
    replace,
    temp_name,
    write_atomic,
    write_new,
)
from ._layout import LEGACY_NAME, State, StorePaths, now_ms, read_state, state_bytes
from ._legacy import normalize_entries, parse_legacy
from .damage import guard_write, inspect_directory
from .errors import UnsafeStoreError

__all__ = [
    "OUTCOMES",
    "STATUSES",
    "WHOLE_FILE_BYTES",
    "MAX_LEGACY_BYTES",
    "Detection",
    "MigrationResult",
    "detect",
    "migrate",
    "rollback",
    "migrate_snapshot",
    "migrate_for_write",
    "cleanup_stale_staging",
]

_log = logging.getLogger("sessionsd")

OUTCOMES = ("migrated", "already_directory", "skipped_empty", "skipped_invalid", "missing", "failed")
STATUSES = ("already_directory", "ready_to_migrate", "empty_legacy", "invalid_legacy", "missing")
#: Migration has no size limit unless one is asked for (``max_bytes=``,
#: ``--max-bytes``): it reads the legacy file streaming, in bounded memory.
#: Only paths that hold the whole file in memory stop at this size (64 MiB):
#: the JSON5 fallback of migration (a file the strict reader refuses), and
#: the legacy-mode write path, which migrates a bigger file by streaming
#: before it writes (see :func:`migrate_for_write`).
WHOLE_FILE_BYTES = 64 * 1024 * 1024
#: The former name of :data:`WHOLE_FILE_BYTES` (once the default migration
#: limit; there is none now).
MAX_LEGACY_BYTES = WHOLE_FILE_BYTES
#: The legacy file is read in chunks of this size.
_CHUNK_BYTES = 8 * 1024 * 1024

_PREVIEW = {
    "already_directory": "Directory-backed session store is already active.",
    "missing": "No legacy sessions.json store was found.",
    "invalid_legacy": "Legacy sessions.json exists but could not be migrated safely.",
    "empty_legacy": "Legacy sessions.json contains no valid session entries to migrate.",
}


@dataclass
class Detection:
    """What :func:`detect` found (nothing is written to find it)."""

    store_path: str
    status: str
    legacy_exists: bool
    directory_active: bool
    legacy_entry_count: int = 0
    normalized_entry_count: int = 0
    warnings: list[str] = field(default_factory=list)
    preview: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MigrationResult:
    """The outcome of one :func:`migrate` call."""

    store_path: str
    outcome: str
    legacy_entries: int = 0
    migrated_entries: int = 0
    backup_path: Optional[str] = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Inspection:
    kind: str  # missing | invalid | empty | ready
    raw_count: int = 0
    count: int = 0
    warnings: list[str] = field(default_factory=list)


def _default_normalize(key: Any) -> str:
    from ._codec import validate_key

    return validate_key(key).lower()


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

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _CountSink:
    """Keeps nothing (detection: counts only)."""

    def put(self, key: str, entry: dict) -> None:
        pass

    replace = put

    def reset(self) -> None:
        pass


class _DictSink:
    """Keeps the entries (the merge into an active directory store)."""

    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}

    def put(self, key: str, entry: dict) -> None:
        self.entries[key] = entry

    replace = put

    def reset(self) -> None:
        self.entries = {}


class _StagingSink:
    """Writes each entry into ``sessions.d.staging-<pid>-<ms>/entries`` as it
    comes (created on the first one); :meth:`promote` makes it the store."""

    def __init__(self, paths: StorePaths, progress: Optional[Callable[[int, int], None]] = None,
                 expected: int = 0) -> None:
        self.paths = paths
        self.staging: Optional[str] = None
        self.prefix = ""
        self.count = 0
        self.total = 0
        self.progress = progress
        self.expected = expected

    def _open(self) -> None:
        staging = self.paths.staging(os.getpid(), now_ms())
        os.mkdir(staging, 0o700)
        self.staging = staging
        os.mkdir(os.path.join(staging, "entries"), 0o700)
        self.prefix = os.path.join(staging, "entries") + os.sep

    def put(self, key: str, entry: dict) -> None:
        if self.staging is None:
            self._open()
        data = encode_document(key, entry)
        write_new(self.prefix + encode_key(key), data, "none")
        self.count += 1
        self.total += len(data)
        _faults.hit("migrate:staging-write")
        if self.progress is not None:
            self.progress(self.count, self.expected)

    def replace(self, key: str, entry: dict) -> None:
        path = self.prefix + encode_key(key)
        data = encode_document(key, entry)
        self.total -= os.lstat(path).st_size
        os.unlink(path)
        write_new(path, data, "none")
        self.total += len(data)

    def reset(self) -> None:
        self.discard()
        self.count = self.total = 0

    def discard(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def promote(self) -> Optional[str]:
        """Finish the staging directory and promote it to ``sessions.d``
        with one rename; returns where an inactive ``sessions.d`` was moved.

        Invariant: ``state.json`` is written last and the staging directory
        is renamed only after everything in it is durable; until that rename
        the legacy file stays authoritative.  Any failure removes the staging
        directory and re-raises."""
        paths = self.paths
        try:
            if self.staging is None:
                self._open()
            if read_state(paths, check_safety=False) is not None:
                # Callers check this under the lock; promoting over an active
                # store would hide its sessions in an orphan directory.
                raise RuntimeError(f"directory session store is already active: {paths.root}")
            staging = self.staging
            for name, data in DirectoryStore.initial_files(self.count, self.total).items():
                write_new(os.path.join(staging, name), data, "none")
            _flush_all(staging)
            fsync_dir(os.path.join(staging, "entries"))
            write_atomic(os.path.join(staging, "state.json"), state_bytes(State(1, now_ms(), {})), "full")
            orphan = _quarantine_inactive(paths)
            _faults.hit("migrate:before-promote")
            os.rename(staging, paths.root)
        except BaseException:
            self.discard()
            raise
        self.staging = None
        fsync_dir(paths.dir)
        _faults.hit("migrate:after-promote")
        return orphan


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

    def __init__(self, fd: int, normalize: Callable[[Any], str], sink) -> None:
        self.fd = fd
        self.normalize = normalize
        self.sink = sink
        # Normalised key -> where its first member is (packed).  Keys seen
        # more than once (duplicates, case variants) also get `variants`:
        # raw key -> [first position, updatedAt, packed place of its last
        # value], and `staged`: the packed place of the value in the sink.
        self.first: dict[str, int] = {}
        self.variants: dict[str, dict[str, list]] = {}
        self.staged: dict[str, int] = {}
        self.dropped: set[str] = set()  # raw keys no entry can be stored under

    @property
    def raw_count(self) -> int:
        return (len(self.first) + len(self.dropped)
                + sum(len(variants) - 1 for variants in self.variants.values()))

    def _entry(self, raw_key: str, value: Any) -> Optional[tuple[str, dict]]:
        normalized, _dropped = normalize_entries({raw_key: value}, self.normalize)
        if not normalized:
            return None
        return next(iter(normalized.items()))

    def _parse(self, data, key_span: tuple[int, int], value_span: tuple[int, int],
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

    def _reread(self, packed: int) -> tuple[str, dict]:
        """The raw key and normalised entry of the member at *packed*."""
        start, length = divmod(packed, _SPAN)
        data = b"{" + _pread(self.fd, length, start) + b"}"
        [(k0, k1, v0, v1)] = ObjectSplitter().scan(data, 0, final=True)
        raw_key, value = self._parse(data, (k0, k1), (v0, v1), start)
        return raw_key, self._entry(raw_key, value)[1]

    def add(self, data, base: int, member: tuple[int, int, int, int]) -> None:
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


def _stream(fd: int, normalize: Callable[[Any], str], sink, max_bytes: Optional[int],
            size: int, progress: Optional[Callable[[int, int], None]],
            chunk_bytes: Optional[int] = None) -> tuple[int, int, bool]:
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
            raise _Grown(done + len(chunk))
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


def _read_whole(fd: int, normalize: Callable[[Any], str], sink) -> _Inspection:
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


def _read_legacy(path: str, normalize: Callable[[Any], str], max_bytes: Optional[int], sink,
                 progress: Optional[Callable[[int, int], None]] = None) -> _Inspection:
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
            return _too_big(grown.size, max_bytes)
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


def detect(store_path, *, normalize: Optional[Callable[[Any], str]] = None,
           max_bytes: Optional[int] = None) -> Detection:
    """Read-only inspection of a store path: status, counts, warnings, preview.

    The legacy file is read the way :func:`migrate` reads it (streaming, in
    bounded memory), with the same *max_bytes* rule: no limit by default."""
    paths = StorePaths.from_store_path(store_path)
    active = read_state(paths, check_safety=False) is not None
    inspection = _read_legacy(paths.store, normalize or _default_normalize, max_bytes, _CountSink())
    status = {
        "missing": "already_directory" if active else "missing",
        "invalid": "invalid_legacy",
        "empty": "empty_legacy",
        "ready": "ready_to_migrate",
    }[inspection.kind]
    count = inspection.count
    if active and inspection.kind != "missing" and _backup_twin(paths) is not None:
        inspection.warnings.append("Legacy sessions.json was already migrated by an interrupted "
                                   "migration; migrating again only finishes its backup.")
    if active and inspection.kind != "missing" and _rollback_leftover(paths) is not None:
        inspection.warnings.append("Legacy sessions.json was written by an interrupted rollback; the "
                                   "directory store stayed authoritative, so migrating sets the file "
                                   "aside as a backup instead of merging it.")
    if not active and os.path.lexists(paths.root):
        damage = inspect_directory(paths)
        if damage is not None:
            inspection.warnings.append(f"{damage.describe()}; migration is refused: {damage.hint()}.")
    preview = _PREVIEW.get(status) or (
        f"Legacy sessions.json is ready to migrate ({count} normalized entries)."
    )
    return Detection(
        store_path=paths.store,
        status=status,
        legacy_exists=inspection.kind != "missing",
        directory_active=active,
        legacy_entry_count=inspection.raw_count,
        normalized_entry_count=count,
        warnings=inspection.warnings,
        preview=preview,
    )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if IS_WINDOWS:  # pragma: no cover - no signal 0 on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def cleanup_stale_staging(paths: StorePaths) -> list[str]:
    """Remove staging directories of dead processes; returns their paths.
    Only ``sessions.d.staging-<pid>-<ms>`` names are touched."""
    removed = []
    try:
        names = os.listdir(paths.dir)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith("sessions.d.staging-"):
            continue
        pid_text = name[len("sessions.d.staging-"):].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        path = os.path.join(paths.dir, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _syncfs(directory: str) -> bool:
    """Linux ``syncfs(2)`` on the file system holding *directory*: one call
    that waits for its write-back, instead of thousands of fsyncs -- and,
    unlike ``os.sync()``, without flushing every other disk of the host."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # no libc symbol (old or unusual libc)
        return False
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), directory)
    finally:
        os.close(fd)
    return True


def _flush_all(staging: str) -> None:
    """Make every file written under *staging* durable before promotion:
    ``syncfs`` where there is one, else fsync each file."""
    if _syncfs(staging):
        return
    for parent, _dirs, files in os.walk(staging):  # pragma: no cover - macOS/Windows
        for name in files:
            fd = os.open(os.path.join(parent, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _quarantine_inactive(paths: StorePaths) -> Optional[str]:
    """Move an inactive ``sessions.d`` out of the way (never deleted);
    returns where it went."""
    try:
        info = os.lstat(paths.root)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeStoreError(f"refusing to use symlinked directory session store path: {paths.root}",
                               paths.root)
    # Only what holds no sessions is moved aside (a half-built or emptied
    # directory, a plain file): a damaged store that still holds entry
    # files raises instead -- `sessionsd check --fix` repairs it.
    guard_write(paths)
    target = paths.orphan(now_ms())
    while os.path.lexists(target):  # never rename over an earlier orphan
        target = paths.orphan(int(target.rsplit(".", 1)[1]) + 1)
    os.rename(paths.root, target)
    return target


def _promote(paths: StorePaths, entries: dict[str, dict], progress=None) -> Optional[str]:
    """Stage *entries* and promote them to ``sessions.d`` with one rename;
    returns the path an inactive ``sessions.d`` was moved to, if any (see
    :meth:`_StagingSink.promote` for the invariant)."""
    cleanup_stale_staging(paths)
    if read_state(paths, check_safety=False) is not None:
        raise RuntimeError(f"directory session store is already active: {paths.root}")
    sink = _StagingSink(paths, progress, len(entries))
    try:
        for key, entry in entries.items():
            sink.put(key, entry)
    except BaseException:
        sink.discard()
        raise
    return sink.promote()


# -- the legacy file's backup ----------------------------------------------------------
#
# A fresh migration gives the legacy file its backup name as a second hard
# link *before* the promotion and drops the ``sessions.json`` name after it.
# A crash in between leaves ``sessions.json`` sharing its inode with a
# ``sessions.json.bak.<ms>``: the next run knows that file is already in the
# directory store and only finishes the backup.  Merging it instead would
# bring back every session deleted from the directory store since.  Where
# hard links are not supported the backup is a plain rename afterwards, and
# such a crash leads to the merge of SPEC §6.

_BACKUP_PREFIX = "sessions.json.bak."


def _unique_backup(paths: StorePaths) -> str:
    ms = now_ms()
    while os.path.lexists(paths.legacy_backup(ms)):  # never rename over an earlier backup
        ms += 1
    return paths.legacy_backup(ms)


def _backup_twin(paths: StorePaths) -> Optional[str]:
    """A ``sessions.json.bak.<ms>`` that is the same file as ``sessions.json``
    (a migration promoted it and died before dropping the legacy name)."""
    try:
        info = os.lstat(paths.store)
        if info.st_nlink < 2 or not stat.S_ISREG(info.st_mode):
            return None
        names = sorted(os.listdir(paths.dir))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for name in names:
        if not name.startswith(_BACKUP_PREFIX):
            continue
        path = os.path.join(paths.dir, name)
        try:
            other = os.lstat(path)
        except FileNotFoundError:
            continue
        if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
            return path
    return None


def _link_backup(paths: StorePaths) -> tuple[Optional[str], bool]:
    """Before a promotion: ``(backup path, created by us)`` -- the legacy
    file's backup name as a hard link, or ``(None, False)`` when there is no
    legacy file or the file system has no hard links."""
    twin = _backup_twin(paths)
    if twin is not None:
        return twin, False
    try:
        if not stat.S_ISREG(os.lstat(paths.store).st_mode):
            return None, False  # a symlink (never followed) or worse: rename afterwards
        backup = _unique_backup(paths)
        os.link(paths.store, backup)
    except OSError:
        return None, False  # no legacy file, or no hard links here: rename afterwards
    return backup, True


def _drop_link(path: Optional[str], created: bool) -> None:
    if path is not None and created:
        try:
            os.unlink(path)
        except OSError:
            pass  # a second name of the legacy file: harmless if it stays


def _retire_legacy(paths: StorePaths, twin: Optional[str],
                   warnings: Optional[list[str]]) -> Optional[str]:
    """While the directory store is authoritative: move ``sessions.json`` to
    a backup name (never deleted); returns the backup path.  A failed rename
    is a warning in *warnings*, or raises when *warnings* is None.

    The file is always *renamed* -- whatever is at ``sessions.json`` now, even
    a file another program just wrote, ends up under a backup name -- and only
    then, if it is the same file as *twin*, the duplicate name is dropped."""
    backup = _unique_backup(paths)
    try:
        os.rename(paths.store, backup)
    except FileNotFoundError:
        return twin
    except OSError as exc:
        if warnings is None:
            raise
        # The directory store is already authoritative; the legacy file is
        # merely still there (the next migration retries this).
        warnings.append(f"failed to back up legacy session store after directory migration: {exc}")
        return twin
    if twin is not None:
        try:
            if os.path.samestat(os.lstat(twin), os.lstat(backup)):
                os.unlink(backup)  # one of two names of one file: nothing is lost
                backup = twin
        except FileNotFoundError:
            pass  # the twin is gone: keep the new name
    fsync_dir(paths.dir)
    return backup


# -- the rollback marker ------------------------------------------------------------------
#
# Rollback writes sessions.json while the directory store is still active
# and renames sessions.d away only afterwards.  Killed in between, it leaves
# the directory authoritative with a complete but soon stale sessions.json
# beside it, which a migration would otherwise merge (a legacy file beside an
# active store is normally one an old process wrote back) -- bringing back
# every session deleted since.  So before the file gets its name, rollback
# writes ``sessions.d/rollback.json`` naming it by device and inode (it is
# written under a temp name first, and renamed: both stay; size and mtime
# are recorded too).  Whoever later holds the lock and finds the marker in
# an *active* store knows the rollback died (a live one would hold the
# lock): a sessions.json that is still that very file is set aside as a
# backup, never merged; a different file (every writer replaces
# sessions.json by rename, so one written since by someone else is a new
# inode) is merged as usual.  A completed rollback takes the marker along
# into sessions.d.bak.<ms>.

_MARKER_NAME = "rollback.json"
_MARKER_KIND = "sessionsd-rollback"


def _marker_path(paths: StorePaths) -> str:
    return os.path.join(paths.root, _MARKER_NAME)


def _read_marker(paths: StorePaths) -> Optional[dict]:
    """The rollback marker of *paths*, or ``None`` when there is none.  It
    is written atomically, so anything else at its name (not a regular
    file, not our JSON) is not ours: ignored, and never removed."""
    try:
        data = read_regular(_marker_path(paths))
    except OSError:
        return None
    if data is None:
        return None
    try:
        marker = _json.loads(data)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and marker.get("kind") == _MARKER_KIND else None


_MARKED_FIELDS = ("dev", "ino", "size", "mtimeNs")


def _file_identity(info: os.stat_result) -> tuple[int, int, int, int]:
    """Device, inode, size and mtime: a rename keeps all four.  The first
    two name the file; the last two tell whether it changed since."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _marked_file(marker: Optional[dict]) -> Optional[tuple]:
    legacy = marker.get("legacy") if marker else None
    if not isinstance(legacy, dict):
        return None
    values = tuple(legacy.get(name) for name in _MARKED_FIELDS)
    if any(type(value) is not int for value in values):
        return None
    return values


def _rollback_leftover(paths: StorePaths) -> Optional[tuple[str, bool]]:
    """``(sessions.json, changed since)`` if it is the very file (device
    and inode) an interrupted rollback wrote, as its marker names it, else
    ``None``.  Read-only.

    A file changed in place since (size or mtime differ) still counts: it
    began as a copy of the directory store, so merging it could bring back
    sessions deleted since; it is set aside too (never lost)."""
    marked = _marked_file(_read_marker(paths))
    if marked is None:
        return None
    try:
        info = os.lstat(paths.store)
    except (FileNotFoundError, NotADirectoryError):
        return None
    identity = _file_identity(info)
    if stat.S_ISREG(info.st_mode) and identity[:2] == marked[:2]:
        return paths.store, identity != marked
    return None


def _legacy_temp_pid(name: str) -> Optional[int]:
    """The pid in a temp name of a legacy-file write
    (``.sessions.json.<pid>-<n>.tmp``), else ``None``."""
    prefix = f".{LEGACY_NAME}."
    if not (name.startswith(prefix) and is_temp_name(name)):
        return None
    pid = name[len(prefix):-len(".tmp")].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _remove_dead_legacy_temps(paths: StorePaths) -> list[str]:
    """Under the lock: remove temp files of legacy-file writes (a rollback
    or a legacy save) whose process is dead; returns their paths."""
    removed = []
    try:
        names = os.listdir(paths.dir)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in names:
        pid = _legacy_temp_pid(name)
        if pid is None or _pid_alive(pid):
            continue
        path = os.path.join(paths.dir, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def _settle_rollback(paths: StorePaths, warnings: list[str]) -> Optional[str]:
    """Under the lock, directory store active: finish what a dead rollback
    left.  A ``sessions.json`` that is the file it wrote is renamed to a
    backup (returned, and said in *warnings*); then the marker goes."""
    marker = _read_marker(paths)
    if marker is None:
        return None
    backup = None
    leftover = _rollback_leftover(paths)
    if leftover is not None:
        backup = _unique_backup(paths)
        os.rename(paths.store, backup)
        fsync_dir(paths.dir)
        _faults.hit("migrate:after-set-aside")
        changed = " (it was changed in place since)" if leftover[1] else ""
        warnings.append("Legacy sessions.json was written by an interrupted rollback; the directory "
                        f"store stayed authoritative, so the file{changed} was set aside instead of "
                        f"merged: {backup}")
    # The marker goes last: killed before this, the next run looks again
    # (and finds no sessions.json, or one written since: merged as usual).
    try:
        os.unlink(_marker_path(paths))
    except FileNotFoundError:
        pass
    return backup


def _write_legacy_for_rollback(paths: StorePaths, data: bytes) -> None:
    """Give ``sessions.json`` the bytes *data*, durably, the marker naming
    the file first.  Invariant: whenever a sessions.json written here
    exists beside an active directory store, the marker names it."""
    temp = os.path.join(paths.dir, temp_name(LEGACY_NAME))
    write_new(temp, data, "file")  # fsynced: complete before it can count
    try:
        _faults.hit("rollback:after-temp")
        identity = dict(zip(_MARKED_FIELDS, _file_identity(os.lstat(temp))))
        marker = {"kind": _MARKER_KIND, "pid": os.getpid(), "createdAt": now_ms(),
                  "legacy": {**identity, "temp": os.path.basename(temp)}}
        write_atomic(_marker_path(paths), _json.dumps(marker), "full")
        _faults.hit("rollback:after-marker")
        replace(temp, paths.store)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    fsync_dir(paths.dir)


def migrate_snapshot(store, entries: dict[str, dict]) -> MigrationResult:
    """Save-time migration (the caller, a SessionStore, holds the lock):
    promote *entries* -- the store as the caller wants it saved -- and back
    up whatever legacy file was there."""
    paths = store.paths
    warnings: list[str] = []
    twin, created = _link_backup(paths)
    try:
        orphan = _promote(paths, entries)
    except BaseException:
        _drop_link(twin, created)
        raise
    backup = _retire_legacy(paths, twin, warnings)
    store._cache.clear()
    if orphan is not None:
        _log.warning("moved an inactive session-store directory aside: %s -> %s", paths.root, orphan)
    for warning in warnings:
        _log.warning("%s: %s", paths.store, warning)
    _log.info("migrated session store to directory mode on save: %s (%d entries)",
              paths.store, len(entries))
    return MigrationResult(paths.store, "migrated", len(entries), len(entries), backup, warnings)


def _updated_at(entry: dict) -> float:
    value = entry.get("updatedAt")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return 0


def migrate(store_path, *, lock_timeout: float = 60.0, max_bytes: Optional[int] = None,
            lower_keys: bool = True, progress: Optional[Callable[[int, int], None]] = None
            ) -> MigrationResult:
    """Migrate one store to directory mode (idempotent, crash-safe).

    The legacy file is read streaming, whatever its size: memory stays
    bounded by the largest entry (plus a read chunk and a small record per
    session).  There is no size limit unless *max_bytes* sets one; a file
    over it is ``skipped_invalid`` with a warning naming the limit.
    *progress*, if given, is called as ``progress(bytes read, file size)``
    while the legacy file is read (its entries are staged as they come).

    Exceptions propagate (the startup runner turns them into ``failed``).
    Nothing is logged above DEBUG: what an operator should see is in the
    result's ``warnings``.
    """
    from .store import SessionStore

    store = SessionStore(store_path, lower_keys=lower_keys, lock_timeout=lock_timeout)
    with store._lock.hold(lock_timeout, heavy=True):
        result = _migrate_locked(store, max_bytes, progress)
    _log.debug("migration of session store %s: %s (%d entries)", result.store_path, result.outcome,
               result.migrated_entries)
    return result


def _migrate_locked(store, max_bytes: Optional[int],
                    progress: Optional[Callable[[int, int], None]]) -> MigrationResult:
    """:func:`migrate` for a caller holding the store lock."""
    paths = store.paths
    cleanup_stale_staging(paths)
    _remove_dead_legacy_temps(paths)
    if read_state(paths) is None:
        guard_write(paths)  # a damaged sessions.d: never migrated around
        return _migrate_fresh(store, max_bytes, progress)
    normalize = store.normalize_key
    result = MigrationResult(paths.store, "already_directory")
    counted = None
    if _rollback_leftover(paths) is not None:
        counted = _read_legacy(paths.store, normalize, max_bytes, _CountSink())
    warnings: list[str] = []
    set_aside = _settle_rollback(paths, warnings)
    if set_aside is not None:
        # A dead rollback's file: older than the directory store, so nothing
        # in it may win a merge.  Kept, never merged.
        result.warnings = warnings
        result.legacy_entries = counted.raw_count if counted is not None else 0
        result.backup_path = set_aside
        store._cache.clear()
        return result
    if not os.path.lexists(paths.store):
        return result
    twin = _backup_twin(paths)
    if twin is not None:
        # An earlier migration promoted this very file and died before
        # backing it up: finish that, whatever the file holds.
        counted = _read_legacy(paths.store, normalize, max_bytes, _CountSink())
        result.outcome = "migrated"
        result.legacy_entries = counted.raw_count
        result.migrated_entries = counted.count
        result.backup_path = _retire_legacy(paths, twin, result.warnings)
        store._cache.clear()
        _log.debug("finished an interrupted migration of %s (backup %s)", paths.store,
                   result.backup_path)
        return result
    # Merge (an old process wrote the legacy file back): one atomic commit,
    # so the legacy entries are held in memory; a legacy entry wins only if
    # strictly newer.
    sink = _DictSink()
    inspection = _read_legacy(paths.store, normalize, max_bytes, sink, progress)
    result.warnings = list(inspection.warnings)
    if inspection.kind == "missing":
        return result
    if inspection.kind == "invalid":
        result.outcome = "skipped_invalid"
        return result
    result.legacy_entries = inspection.raw_count
    if inspection.kind == "empty":
        result.outcome = "skipped_empty"
        return result

    def merge(current: dict) -> int:
        for key, entry in sink.entries.items():
            existing = current.get(key)
            if existing is None or _updated_at(entry) > _updated_at(existing):
                current[key] = entry
        return len(current)

    result.migrated_entries = store.update(merge)
    _faults.hit("migrate:after-merge")
    result.outcome = "migrated"
    result.backup_path = _retire_legacy(paths, None, result.warnings)
    store._cache.clear()
    return result


def _migrate_fresh(store, max_bytes: Optional[int],
                   progress: Optional[Callable[[int, int], None]]) -> MigrationResult:
    """Under the lock, no directory store active: stream the legacy file
    into a staging directory, then promote it (SPEC §6, fresh migration)."""
    paths = store.paths
    result = MigrationResult(paths.store, "missing")
    sink = _StagingSink(paths)
    try:
        inspection = _read_legacy(paths.store, store.normalize_key, max_bytes, sink, progress)
        result.warnings = list(inspection.warnings)
        if inspection.kind != "ready":
            sink.discard()
            result.outcome = {"missing": "missing", "invalid": "skipped_invalid",
                              "empty": "skipped_empty"}[inspection.kind]
            if inspection.kind == "empty":
                result.legacy_entries = inspection.raw_count
            return result
        twin, created = _link_backup(paths)
        try:
            orphan = sink.promote()
        except BaseException:
            _drop_link(twin, created)
            raise
    except BaseException:
        sink.discard()
        raise
    if orphan is not None:
        result.warnings.append(f"moved an inactive session-store directory aside to {orphan}")
    result.outcome = "migrated"
    result.legacy_entries = inspection.raw_count
    result.migrated_entries = inspection.count
    result.backup_path = _retire_legacy(paths, twin, result.warnings)
    store._cache.clear()
    return result


# -- the first write into a big legacy file -------------------------------------------------

def migrate_for_write(store, mutate: Callable[[dict], None], protect: frozenset = frozenset()) -> bool:
    """Legacy mode, under the store lock, before a write: a legacy file
    over :data:`WHOLE_FILE_BYTES` is never loaded whole to be rewritten --
    the write migrates it by streaming first (as :func:`migrate` does, with
    no size limit), then applies *mutate* in directory mode.  Returns
    whether it did; ``False`` leaves the write to the legacy path (a smaller
    file, or one streaming cannot migrate: not a JSON object, JSON5 ...).

    *mutate* gets a dict that reads the entries it asks for one at a time;
    anything that needs the whole store (iterating, ``len``, ``clear`` ...)
    loads it all first, as a whole-store ``update`` does in directory mode.
    Only what changed is committed, as one commit.  The store stays migrated
    even when *mutate* then raises or changes nothing."""
    paths = store.paths
    try:
        info = os.lstat(paths.store)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size <= WHOLE_FILE_BYTES:
        return False
    if read_state(paths) is not None:
        return False
    result = _migrate_locked(store, None, None)
    if result.outcome != "migrated":
        return False
    for warning in result.warnings:
        _log.warning("%s: %s", paths.store, warning)
    _log.info("migrated session store to directory mode on write (streaming, %s): %s "
              "(%d entries)", _size_text(info.st_size), paths.store, result.migrated_entries)
    _write_through_view(store, mutate, protect)
    return True


def _write_through_view(store, mutate: Callable[[dict], None], protect: frozenset) -> None:
    from ._directory import Snapshot
    from .store import _check_serialisable

    state = read_state(store.paths)
    view = _DirectoryView(store, state)
    mutate(view)
    before, after = view.changes()
    after = store._normalized_mapping(after)
    _check_serialisable(before, after)
    store._commit_diff(state, Snapshot((0, 0), before, {}, []), after)
    if store._maintainer is not None:
        # Directory-mode maintenance: one sweep of the new store.
        state = read_state(store.paths)
        stats = store._dir.ensure_stats(state.version)
        store._maintainer.sweep_directory(state.version, stats, protect=protect, full=True)


class _DirectoryView(dict):
    """The directory store as the dict a legacy-mode write expects, read
    lazily: a key-based access (``[]``, ``get``, ``in``, ``pop``,
    ``setdefault``, assignment, ``del``) reads that one entry; anything else
    -- and any key not in the store's normal form -- loads every entry first.
    :meth:`changes` gives what to diff: the entries read and their new
    values, or the whole store before and after."""

    def __init__(self, store, state) -> None:
        super().__init__()
        self._store = store
        self._state = state
        self._read: dict[str, Optional[dict]] = {}
        self._whole: Optional[dict[str, dict]] = None

    def _load(self, key: Any) -> None:
        if self._whole is not None or key in self._read:
            return
        try:
            normal = isinstance(key, str) and self._store.normalize_key(key) == key
        except ValueError:
            normal = False
        if not normal:
            self._everything()
            return
        entry = self._store._dir.read_entry(key, encode_key(key))
        self._read[key] = entry
        if entry is not None:
            dict.__setitem__(self, key, copy_json(entry))

    def _everything(self) -> None:
        if self._whole is not None:
            return
        entries = self._store._dir_snapshot_locked(self._state).entries
        touched = {key: dict.__getitem__(self, key) for key in dict.keys(self)}
        dict.clear(self)
        for key, entry in entries.items():
            if key not in self._read:
                dict.__setitem__(self, key, copy_json(entry))
        dict.update(self, touched)
        self._whole = entries

    def changes(self) -> tuple[dict[str, dict], dict[str, Any]]:
        """``(before, after)``: only the keys read, unless all were loaded."""
        if self._whole is not None:
            return self._whole, dict(dict.items(self))
        before = {key: entry for key, entry in self._read.items() if entry is not None}
        after = {key: dict.__getitem__(self, key) for key in self._read if dict.__contains__(self, key)}
        return before, after

    # key-based: one entry
    def __getitem__(self, key):
        self._load(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._load(key)
        return dict.get(self, key, default)

    def __contains__(self, key):
        self._load(key)
        return dict.__contains__(self, key)

    def __setitem__(self, key, value):
        self._load(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        self._load(key)
        dict.__delitem__(self, key)

    def pop(self, key, *default):
        self._load(key)
        return dict.pop(self, key, *default)

    def setdefault(self, key, default=None):
        self._load(key)
        return dict.setdefault(self, key, default)

    # the rest: the whole store
    def __iter__(self):
        self._everything()
        return dict.__iter__(self)

    def __reversed__(self):
        self._everything()
        return dict.__reversed__(self)

    def __len__(self):
        self._everything()
        return dict.__len__(self)

    def __eq__(self, other):
        self._everything()
        return dict.__eq__(self, other)

    def __ne__(self, other):
        self._everything()
        return dict.__ne__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self):
        self._everything()
        return dict.__repr__(self)

    def __or__(self, other):
        self._everything()
        return dict.__or__(self, other)

    def __ror__(self, other):
        self._everything()
        return dict.__ror__(self, other)

    def __ior__(self, other):
        self._everything()
        return dict.__ior__(self, other)

    def keys(self):
        self._everything()
        return dict.keys(self)

    def values(self):
        self._everything()
        return dict.values(self)

    def items(self):
        self._everything()
        return dict.items(self)

    def clear(self):
        self._everything()
        dict.clear(self)

    def update(self, *args, **kwargs):
        self._everything()
        dict.update(self, *args, **kwargs)

    def popitem(self):
        self._everything()
        return dict.popitem(self)

    def copy(self):
        self._everything()
        return dict.copy(self)

    def __reduce__(self):
        self._everything()
        return (dict, (dict(dict.items(self)),))


def rollback(store_path, *, dry_run: bool = False, lock_timeout: float = 60.0) -> bool:
    """Restore ``sessions.json`` from the directory store; returns True if
    there was an active directory store to restore (or, with *dry_run*,
    would be).  The directory is renamed to ``sessions.d.bak.<ms>``, never
    deleted; a ``sessions.json`` already there is renamed to
    ``sessions.json.bak.<ms>`` first unless it holds exactly what is
    written."""
    from .store import SessionStore

    store = SessionStore(store_path, lock_timeout=lock_timeout)
    paths = store.paths
    if dry_run:
        if read_state(paths, check_safety=False) is None:
            guard_write(paths)  # a damaged store: say so rather than "skip"
            return False
        return True
    with store._lock.hold(lock_timeout, heavy=True):
        if read_state(paths) is None:
            guard_write(paths)
            return False
        store._dir.recover()
        _remove_dead_legacy_temps(paths)
        entries = store._dir_snapshot_locked(read_state(paths)).entries
        data = _json.dumps(entries)
        # Invariant: sessions.json is complete and durable before sessions.d
        # stops being active; a crash in between leaves the directory active
        # (it wins; the marker lets the next migration set the file aside)
        # and the next rollback starts over.  A legacy file found here (an
        # old process wrote it, or a migration died before backing it up)
        # may hold sessions the directory lacks: keep it.  (One a dead
        # rollback wrote is only an older copy of the directory: backed up
        # too, unless it holds exactly what is written now.)
        if os.path.lexists(paths.store) and not _holds(paths.store, data):
            _retire_legacy(paths, _backup_twin(paths), None)
            _faults.hit("rollback:after-legacy-backup")
        _write_legacy_for_rollback(paths, data)
        _faults.hit("rollback:after-legacy-write")
        backup = paths.directory_backup(now_ms())
        while os.path.lexists(backup):
            backup = paths.directory_backup(int(backup.rsplit(".", 1)[1]) + 1)
        os.rename(paths.root, backup)
        _faults.hit("rollback:after-directory-backup")
        fsync_dir(paths.dir)
        store._cache.clear()
    _log.info("rolled back session store %s to legacy sessions.json (directory kept as %s)",
              paths.store, backup)
    return True


def _holds(path: str, data: bytes) -> bool:
    """True if *path* is a regular file holding exactly *data*."""
    from ._fsutil import read_regular

    try:
        return read_regular(path) == data
    except OSError:
        return False
