"""Migration between the legacy file and the directory store (SPEC §6).

* :func:`detect` -- read-only inspection of a store path.
* :func:`migrate` -- legacy ``sessions.json`` → ``sessions.d``: a fresh
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

All three hold the store lock, so concurrent migrations of one store end with
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
from ._codec import encode_key
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
    "MAX_LEGACY_BYTES",
    "Detection",
    "MigrationResult",
    "detect",
    "migrate",
    "rollback",
    "migrate_snapshot",
    "cleanup_stale_staging",
]

_log = logging.getLogger("sessionsd")

OUTCOMES = ("migrated", "already_directory", "skipped_empty", "skipped_invalid", "missing", "failed")
STATUSES = ("already_directory", "ready_to_migrate", "empty_legacy", "invalid_legacy", "missing")
#: Legacy files larger than this are not migrated automatically (64 MiB).
MAX_LEGACY_BYTES = 64 * 1024 * 1024

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
    entries: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _default_normalize(key: Any) -> str:
    from ._codec import validate_key

    return validate_key(key).lower()


def _inspect(paths: StorePaths, normalize: Callable[[Any], str],
             max_bytes: Optional[int]) -> _Inspection:
    if max_bytes is None:
        max_bytes = sys.maxsize - 1
    not_regular = _Inspection("invalid", warnings=["Legacy sessions.json is not a regular file."])
    too_big = _Inspection("invalid", warnings=["Legacy sessions.json exceeds the migration size limit."])
    try:
        info = os.lstat(paths.store)
    except (FileNotFoundError, NotADirectoryError):
        return _Inspection("missing")
    if not stat.S_ISREG(info.st_mode):
        return not_regular
    if info.st_size > max_bytes:
        return too_big
    # O_NOFOLLOW/O_NONBLOCK: a symlink or FIFO swapped in since the lstat is
    # refused, not followed or waited on.
    fd = open_for_reading(paths.store)
    if fd is None:
        return _Inspection("missing") if not os.path.lexists(paths.store) else not_regular
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return not_regular
        chunks = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(max_bytes + 1 - size, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:  # grew since lstat
        return too_big
    if not data.strip():
        return _Inspection("empty")
    warnings: list[str] = []
    try:
        value, used_json5 = parse_legacy(data)
    except ValueError as exc:
        return _Inspection("invalid", warnings=[f"Failed to parse legacy sessions.json: {exc}"])
    if used_json5:
        warnings.append("Legacy sessions.json is not strict JSON; it was read as JSON5.")
    if not isinstance(value, dict):
        return _Inspection("invalid", warnings=warnings + ["Legacy sessions.json does not contain an object store."])
    entries, _dropped = normalize_entries(value, normalize)
    if not entries:
        return _Inspection("empty", raw_count=len(value), warnings=warnings)
    return _Inspection("ready", raw_count=len(value), entries=entries, warnings=warnings)


def detect(store_path, *, normalize: Optional[Callable[[Any], str]] = None,
           max_bytes: Optional[int] = MAX_LEGACY_BYTES) -> Detection:
    """Read-only inspection of a store path: status, counts, warnings, preview."""
    paths = StorePaths.from_store_path(store_path)
    active = read_state(paths, check_safety=False) is not None
    inspection = _inspect(paths, normalize or _default_normalize, max_bytes)
    status = {
        "missing": "already_directory" if active else "missing",
        "invalid": "invalid_legacy",
        "empty": "empty_legacy",
        "ready": "ready_to_migrate",
    }[inspection.kind]
    count = len(inspection.entries)
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


def _flush_all(staging: str, paths_written: list[str]) -> None:
    """Make every written file durable before promotion: ``syncfs`` where
    there is one, else fsync each file."""
    if _syncfs(staging):
        return
    for path in paths_written:  # pragma: no cover - macOS/Windows
        fd = os.open(path, os.O_RDONLY)
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
    returns the path an inactive ``sessions.d`` was moved to, if any.

    Invariant: ``state.json`` is written last and the staging directory is
    renamed only after everything in it is durable; until that rename the
    legacy file stays authoritative.  Any failure removes the staging
    directory and re-raises."""
    cleanup_stale_staging(paths)
    if read_state(paths, check_safety=False) is not None:
        # Callers check this under the lock; promoting over an active store
        # would hide its sessions in an orphan directory.
        raise RuntimeError(f"directory session store is already active: {paths.root}")
    orphan = _quarantine_inactive(paths)
    staging = paths.staging(os.getpid(), now_ms())
    staging_entries = os.path.join(staging, "entries")
    try:
        os.mkdir(staging, 0o700)
        os.mkdir(staging_entries, 0o700)
        written = []
        total = 0
        prefix = staging_entries + os.sep
        for index, (key, entry) in enumerate(entries.items()):
            path = prefix + encode_key(key)
            data = encode_document(key, entry)
            write_new(path, data, "none")
            total += len(data)
            written.append(path)
            _faults.hit("migrate:staging-write")
            if progress is not None:
                progress(index + 1, len(entries))
        for name, data in DirectoryStore.initial_files(len(entries), total).items():
            write_new(os.path.join(staging, name), data, "none")
            written.append(os.path.join(staging, name))
        _flush_all(staging, written)
        fsync_dir(staging_entries)
        write_atomic(os.path.join(staging, "state.json"),
                     state_bytes(State(1, now_ms(), {})), "full")
        _faults.hit("migrate:before-promote")
        os.rename(staging, paths.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(paths.dir)
    _faults.hit("migrate:after-promote")
    return orphan


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


def migrate(store_path, *, lock_timeout: float = 60.0, max_bytes: Optional[int] = MAX_LEGACY_BYTES,
            lower_keys: bool = True, progress: Optional[Callable[[int, int], None]] = None
            ) -> MigrationResult:
    """Migrate one store to directory mode (idempotent, crash-safe).

    Exceptions propagate (the startup runner turns them into ``failed``).
    Nothing is logged above DEBUG: what an operator should see is in the
    result's ``warnings``.  *progress*, if given, is called as
    ``progress(done, total)`` while entry files are staged.
    """
    from .store import SessionStore

    store = SessionStore(store_path, lower_keys=lower_keys, lock_timeout=lock_timeout)
    paths = store.paths
    with store._lock.hold(lock_timeout, heavy=True):
        cleanup_stale_staging(paths)
        _remove_dead_legacy_temps(paths)
        active = read_state(paths) is not None
        if not active:
            guard_write(paths)  # a damaged sessions.d: never migrated around
        inspection = _inspect(paths, store.normalize_key, max_bytes)
        result = MigrationResult(paths.store, "missing", warnings=list(inspection.warnings))
        if active:
            warnings: list[str] = []
            set_aside = _settle_rollback(paths, warnings)
            if set_aside is not None:
                # A dead rollback's file: older than the directory store, so
                # nothing in it may win a merge.  Kept, never merged.
                result.outcome = "already_directory"
                result.warnings = warnings
                result.legacy_entries = inspection.raw_count
                result.backup_path = set_aside
                store._cache.clear()
                return result
        if inspection.kind == "missing":
            result.outcome = "already_directory" if active else "missing"
            return result
        twin = _backup_twin(paths) if active else None
        if twin is not None:
            # An earlier migration promoted this very file and died before
            # backing it up: finish that, whatever the file holds.
            result.outcome = "migrated"
            result.warnings = []
            result.legacy_entries = inspection.raw_count
            result.migrated_entries = len(inspection.entries)
            result.backup_path = _retire_legacy(paths, twin, result.warnings)
            store._cache.clear()
            _log.debug("finished an interrupted migration of %s (backup %s)", paths.store,
                       result.backup_path)
            return result
        if inspection.kind == "invalid":
            result.outcome = "skipped_invalid"
            return result
        result.legacy_entries = inspection.raw_count
        if inspection.kind == "empty":
            result.outcome = "skipped_empty"
            return result
        if active:
            # Merge: a legacy entry wins only if strictly newer.
            def merge(current: dict) -> int:
                for key, entry in inspection.entries.items():
                    existing = current.get(key)
                    if existing is None or _updated_at(entry) > _updated_at(existing):
                        current[key] = entry
                return len(current)

            result.migrated_entries = store.update(merge)
            _faults.hit("migrate:after-merge")
            twin = None
        else:
            twin, created = _link_backup(paths)
            try:
                orphan = _promote(paths, inspection.entries, progress)
            except BaseException:
                _drop_link(twin, created)
                raise
            if orphan is not None:
                result.warnings.append(f"moved an inactive session-store directory aside to {orphan}")
            result.migrated_entries = len(inspection.entries)
        result.outcome = "migrated"
        result.backup_path = _retire_legacy(paths, twin, result.warnings)
        store._cache.clear()
    _log.debug("migrated session store %s: %d entries", paths.store, result.migrated_entries)
    return result


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
