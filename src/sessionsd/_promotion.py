"""Promotion of a migration: the staging directory becomes ``sessions.d``,
the legacy file gets its backup name (SPEC §6).

One responsibility: the write path of a migration -- entries staged in
``sessions.d.staging-<pid>-<ms>`` (:class:`_StagingSink`, :func:`_promote`),
made durable and promoted with one rename, the legacy file moved to
``sessions.json.bak.<ms>`` (never deleted), and the leftovers of dead
processes (stale staging directories) cleaned up.

Crash-consistency invariant: ``state.json`` is written last and the staging
directory is renamed to ``sessions.d`` only after everything in it is
durable, so until that rename the legacy file stays authoritative; the
legacy file gets its backup name as a second hard link *before* the
promotion, so a crash between the promotion and the backup leaves a
``sessions.json`` the next run recognises as already migrated (backed up,
not merged).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys

from . import _faults
from ._codec import encode_key
from ._directory import DirectoryStore
from ._documents import encode_document
from ._fsutil import fsync_dir, write_atomic, write_new
from ._layout import LEGACY_FILE_RECORD, State, StorePaths, now_ms, read_state, state_bytes
from ._reference_lock import pid_alive
from ._types import Entries, Entry, ProgressCallback
from .damage import guard_write
from .errors import UnsafeStoreError

__all__ = ["cleanup_stale_staging"]


class _StagingSink:
    """Writes each entry into ``sessions.d.staging-<pid>-<ms>/entries`` as it
    comes (created on the first one); :meth:`promote` makes it the store."""

    def __init__(self, paths: StorePaths, progress: ProgressCallback | None = None,
                 expected: int = 0) -> None:
        self.paths = paths
        self.staging: str | None = None
        self.prefix = ""
        self.count = 0
        self.total = 0
        self.progress = progress
        self.expected = expected

    def _open(self) -> str:
        """Create the staging directory; returns its path."""
        staging = self.paths.staging(os.getpid(), now_ms())
        os.mkdir(staging, 0o700)
        self.staging = staging
        os.mkdir(os.path.join(staging, "entries"), 0o700)
        self.prefix = os.path.join(staging, "entries") + os.sep
        return staging

    def put(self, key: str, entry: Entry) -> None:
        if self.staging is None:
            self._open()
        data = encode_document(key, entry)
        write_new(self.prefix + encode_key(key), data, "none")
        self.count += 1
        self.total += len(data)
        _faults.hit("migrate:staging-write")
        if self.progress is not None:
            self.progress(self.count, self.expected)

    def replace(self, key: str, entry: Entry) -> None:
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

    def promote(self) -> str | None:
        """Finish the staging directory and promote it to ``sessions.d``
        with one rename; returns where an inactive ``sessions.d`` was moved.

        Invariant: ``state.json`` is written last and the staging directory
        is renamed only after everything in it is durable; until that rename
        the legacy file stays authoritative.  Any failure removes the staging
        directory and re-raises."""
        paths = self.paths
        try:
            staging = self.staging if self.staging is not None else self._open()
            if read_state(paths, check_safety=False) is not None:
                # Callers check this under the lock; promoting over an active
                # store would hide its sessions in an orphan directory.
                raise RuntimeError(f"directory session store is already active: {paths.root}")
            # Every entry is written: the mtime of entries/ the figures describe.
            entries_mtime = os.lstat(os.path.join(staging, "entries")).st_mtime_ns
            for name, data in DirectoryStore.initial_files(self.count, self.total, entries_mtime).items():
                write_new(os.path.join(staging, name), data, "none")
            _flush_all(staging)
            fsync_dir(os.path.join(staging, "entries"))
            # Which store file this directory store belongs to (two store
            # files in one directory must not share it: see SessionStore).
            write_new(os.path.join(staging, LEGACY_FILE_RECORD),
                      os.path.basename(paths.store).encode("utf-8") + b"\n", "none")
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


def _pid_alive(pid: int) -> bool:
    """Whether the staging directory's writer *pid* may still be running
    (a pid of 0 or below names no process here)."""
    return pid > 0 and pid_alive(pid)


def cleanup_stale_staging(paths: StorePaths) -> list[str]:
    """Remove staging directories of dead processes; returns their paths.
    Only ``sessions.d.staging-<pid>-<ms>`` names are touched."""
    removed: list[str] = []
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


def _quarantine_inactive(paths: StorePaths) -> str | None:
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


def _promote(paths: StorePaths, entries: Entries, progress: ProgressCallback | None = None) -> str | None:
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


def _backup_twin(paths: StorePaths) -> str | None:
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


def _link_backup(paths: StorePaths) -> tuple[str | None, bool]:
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


def _drop_link(path: str | None, created: bool) -> None:
    if path is not None and created:
        try:
            os.unlink(path)
        except OSError:
            pass  # a second name of the legacy file: harmless if it stays


def _retire_legacy(paths: StorePaths, twin: str | None,
                   warnings: list[str] | None) -> str | None:
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
