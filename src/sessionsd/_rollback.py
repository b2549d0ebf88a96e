"""Rollback: ``sessions.d`` → ``sessions.json`` (SPEC §6), and the rollback
marker that makes an interrupted rollback recognisable.

One responsibility: :func:`rollback` writes ``sessions.json`` from the
directory store, then renames ``sessions.d`` to ``sessions.d.bak.<ms>``.  A
legacy file already there is kept as a backup unless it holds exactly what
rollback writes.  Also here: reading, recognising and settling the marker a
dead rollback left (:func:`_rollback_leftover`, :func:`_settle_rollback`,
used by migration and ``check``), and removing temp files of dead
legacy-file writers.

Crash-consistency invariant: ``sessions.json`` is complete and durable
before ``sessions.d`` stops being active, and before ``sessions.json``
appears, a marker ``sessions.d/rollback.json`` names the file (device and
inode) about to become it.  So a rollback killed before the directory is
renamed leaves the directory store authoritative and a file the next
migration recognises: set aside as a backup, not merged (a merge would bring
back sessions deleted since).
"""

from __future__ import annotations

import logging
import os
import stat
from contextlib import closing
from typing import Any

from . import _faults, _json
from ._fsutil import fsync_dir, is_temp_name, read_regular, replace, temp_name, write_atomic, write_new
from ._layout import LEGACY_NAME, StorePaths, now_ms, read_state
from ._promotion import _backup_twin, _pid_alive, _retire_legacy, _unique_backup
from .damage import guard_write

__all__ = ["rollback"]

_log = logging.getLogger(__name__)


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


def _read_marker(paths: StorePaths) -> dict[str, Any] | None:
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


def _marked_file(marker: dict[str, Any] | None) -> tuple[int, ...] | None:
    """The file identity (see :func:`_file_identity`) a marker records, or
    None when it records none that is valid."""
    legacy = marker.get("legacy") if marker else None
    if not isinstance(legacy, dict):
        return None
    values: list[int] = []
    for name in _MARKED_FIELDS:
        value = legacy.get(name)
        if type(value) is not int:
            return None
        values.append(value)
    return tuple(values)


def _rollback_leftover(paths: StorePaths) -> tuple[str, bool] | None:
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


def _legacy_temp_pid(name: str) -> int | None:
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
    removed: list[str] = []
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


def _settle_rollback(paths: StorePaths, warnings: list[str]) -> str | None:
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
        identity = dict(zip(_MARKED_FIELDS, _file_identity(os.lstat(temp)), strict=True))
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


def rollback(store_path: str | os.PathLike[str], *, dry_run: bool = False,
             lock_timeout: float = 60.0) -> bool:
    """Restore ``sessions.json`` from the directory store; returns True if
    there was an active directory store to restore (or, with *dry_run*,
    would be).  The directory is renamed to ``sessions.d.bak.<ms>``, never
    deleted; a ``sessions.json`` already there is renamed to
    ``sessions.json.bak.<ms>`` first unless it holds exactly what is
    written.

    Raises :class:`~sessionsd.errors.DamagedStoreError` (or
    :class:`~sessionsd.errors.UnsafeStoreError`) for a damaged
    ``sessions.d``, :class:`~sessionsd.errors.StoreLockTimeout` when the
    lock is not acquired within *lock_timeout* seconds; ``OSError`` as the
    system reports it."""
    from ._file_backend import FileBackend

    with closing(FileBackend(store_path, lock_timeout=lock_timeout)) as store:
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
            state = read_state(paths)
            if state is None:  # cannot happen under the lock (recovery never deactivates)
                guard_write(paths)
                return False
            entries = store._dir_snapshot_locked(state).entries
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
