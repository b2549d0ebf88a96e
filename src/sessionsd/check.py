"""``check(store_path, fix=False)``: a consistency report of one store.

Reports stray temp files, a leftover commit record or an odd commit counter
(a writer died mid-commit), staging directories of dead processes, corrupt or
impostor entry files, and the orphans and backups earlier migrations left.
It also reports a *damaged* directory store (``sessions.d`` holding entry
files while its ``state.json`` is missing or invalid, or a symlinked
``sessions.d``/``entries/``; see :mod:`sessionsd.damage`) and a legacy file an
interrupted rollback left beside the active directory store.

``fix=True`` repairs what is safe to repair -- it replays or discards the dead
writer's commit, removes temp files and stale staging directories, restores a
valid ``state.json`` in a damaged store whose directories are real, and sets
a dead rollback's legacy file aside -- and never deletes user data: orphans,
backups and corrupt entries are only listed.  What it will not repair (a
symlink where a store directory belongs) is listed in ``refused``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ._directory import DirectoryStore
from ._fsutil import is_temp_name
from ._layout import StorePaths, read_state
from ._legacy import LegacyStore
from ._lock import StoreLock
from ._promotion import _pid_alive, cleanup_stale_staging
from ._rollback import (
    _legacy_temp_pid,
    _read_marker,
    _remove_dead_legacy_temps,
    _rollback_leftover,
    _settle_rollback,
)
from .damage import inspect_directory, repair_state
from .errors import CorruptStoreError
from .migration import _default_normalize as _lower_key

__all__ = ["CheckReport", "check"]

#: Temp files of other writers (the reference's ``<name>.<uuid>.tmp``) are
#: only removed once this old, in case such a writer is still running.
FOREIGN_TEMP_AGE = 60.0


@dataclass
class CheckReport:
    """What :func:`check` found (and, with ``fix``, did) in one store.

    ``mode`` is the store's mode when it was looked at; ``problems`` lists
    what is wrong and still there, ``ok`` says there is nothing; ``fixed``,
    ``refused`` and ``notes`` say what a fix did, would not do, and what
    is worth knowing but not wrong.
    """

    store_path: str
    mode: Literal["directory", "legacy"]
    sessions: int = 0
    temp_files: list[str] = field(default_factory=list)
    commit_record: bool = False
    odd_seq: bool = False
    stale_staging: list[str] = field(default_factory=list)
    corrupt_entries: list[tuple[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    backups: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    #: Why the legacy ``sessions.json`` cannot be read (legacy mode), if so.
    legacy_error: str | None = None
    #: What is wrong with an inactive ``sessions.d`` that still holds
    #: sessions (or is a symlink), if so; its entry files; repairable?
    damage: str | None = None
    damaged_entries: int = 0
    damage_fixable: bool = False
    #: ``sessions.json`` written by a rollback that died before it renamed
    #: ``sessions.d`` away (the directory store is authoritative).
    rollback_leftover: str | None = None
    #: The marker of such a rollback is still in ``sessions.d``.
    rollback_marker: bool = False
    #: Temp files of legacy-file writes whose process is dead.
    legacy_temps: list[str] = field(default_factory=list)
    #: What ``fix`` would not repair, and why.
    refused: list[str] = field(default_factory=list)
    #: Informational lines (not problems).
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What is wrong and still there (informational items excluded)."""
        found: list[str] = []
        if self.damage:
            found.append(f"damaged directory store: {self.damage}")
        if self.rollback_leftover:
            found.append(f"legacy sessions.json left by an interrupted rollback beside the active "
                         f"directory store (stale; it is set aside, not merged): {self.rollback_leftover}")
        elif self.rollback_marker:
            found.append("leftover marker of an interrupted rollback (the directory store is authoritative)")
        found += [f"stray temp file {p}" for p in self.temp_files + self.legacy_temps]
        if self.commit_record:
            found.append("leftover commit record (a writer died mid-commit)")
        if self.odd_seq:
            found.append("odd commit counter (a writer died mid-commit)")
        found += [f"stale staging directory {p}" for p in self.stale_staging]
        found += [f"corrupt entry file {name}: {reason}" for name, reason in self.corrupt_entries]
        if self.legacy_error:
            found.append(f"unreadable legacy sessions.json: {self.legacy_error}")
        return found

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (:attr:`problems` is empty)."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The fields, ``problems`` and ``ok`` as a plain dict (for JSON output)."""
        data = dict(self.__dict__)
        data["problems"] = self.problems
        data["ok"] = self.ok
        return data


def _temp_files(paths: StorePaths) -> list[str]:
    found: list[str] = []
    for directory in (paths.entries, paths.root):
        try:
            listing = os.scandir(directory)
        except FileNotFoundError:
            continue
        with listing:
            for item in listing:
                if item.name.endswith(".tmp") and item.is_file(follow_symlinks=False):
                    found.append(item.path)
    return sorted(found)


def _inventory(report: CheckReport, paths: StorePaths) -> None:
    try:
        names = sorted(os.listdir(paths.dir))
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(paths.dir, name)
        if name.startswith("sessions.json.bak.") or name.startswith("sessions.d.bak."):
            report.backups.append(path)
        elif name.startswith("sessions.d.orphan."):
            report.orphans.append(path)
        elif name.startswith("sessions.d.staging-"):
            pid = name[len("sessions.d.staging-"):].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                report.stale_staging.append(path)


#: Skip reasons of the directory scan: not entry files, never read.
_NOT_ENTRY_REASONS = frozenset({"temp file", "dotfile", "name is not an entry name", "symlink",
                                "directory", "not a regular file"})


def _examine(report: CheckReport, paths: StorePaths, store: DirectoryStore) -> None:
    report.temp_files = _temp_files(paths)
    report.commit_record = os.path.lexists(paths.commit)
    report.odd_seq = bool(store.read_seq() & 1)
    entries, _names, skipped = store._read_all()
    report.sessions = len(entries)
    # Names that are not entry files at all (by name or file type) are
    # ignored by every reader: listed as notes, not problems.  Temp files
    # are already reported above.
    report.corrupt_entries = [(n, r) for n, r in skipped if r not in _NOT_ENTRY_REASONS]
    report.notes += [f"ignored in entries/: {n} ({r})" for n, r in skipped
                     if r in _NOT_ENTRY_REASONS and r != "temp file"]


def _dead_legacy_temps(paths: StorePaths) -> list[str]:
    try:
        names = os.listdir(paths.dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[str] = []
    for name in names:
        pid = _legacy_temp_pid(name)
        if pid is not None and not _pid_alive(pid):
            found.append(os.path.join(paths.dir, name))
    return sorted(found)


def _survey(paths: StorePaths) -> CheckReport:
    """What is there now (read-only)."""
    active = read_state(paths, check_safety=False) is not None
    report = CheckReport(paths.store, "directory" if active else "legacy")
    _inventory(report, paths)
    report.legacy_temps = _dead_legacy_temps(paths)
    if active:
        _examine(report, paths, DirectoryStore(paths))
        report.rollback_marker = _read_marker(paths) is not None
        leftover = _rollback_leftover(paths)
        report.rollback_leftover = leftover[0] if leftover else None
        return report
    # Legacy mode: count what a load would see (never rewritten here).
    try:
        report.sessions = len(LegacyStore(paths, "none", _lower_key).read().entries)
    except CorruptStoreError as exc:
        report.legacy_error = str(exc.__cause__ or exc)
    except OSError as exc:
        report.legacy_error = str(exc)
    if os.path.lexists(paths.root):
        damage = inspect_directory(paths, count=True)
        if damage is not None:
            report.damage = f"{damage.describe()}; {damage.hint()}"
            report.damaged_entries = damage.entry_files
            report.damage_fixable = damage.fixable
    return report


def _fix_locked(paths: StorePaths, report: CheckReport) -> None:
    """Under the lock: repair what is safe; record it in *report*."""
    fixed, refused, notes = report.fixed, report.refused, report.notes
    fixed += [f"removed stale staging directory {p}" for p in cleanup_stale_staging(paths)]
    fixed += [f"removed temp file {p}" for p in _remove_dead_legacy_temps(paths)]
    if read_state(paths, check_safety=False) is None:
        if not os.path.lexists(paths.root):
            return
        repair = repair_state(paths)
        if not repair.done:
            if repair.message != "nothing to repair":
                refused.append(repair.message)
            return
        fixed.append(repair.message)
        if os.path.lexists(paths.store):
            notes.append(f"a legacy {paths.store} is there too (written while the directory store was "
                         f"inactive); run `sessionsd migrate {paths.store}` to merge it (an entry in it "
                         "wins only if strictly newer)")
    store = DirectoryStore(paths)
    if store.recover():
        fixed.append("finished or discarded a dead writer's commit")
    now = time.time()
    for path in _temp_files(paths):
        ours = is_temp_name(os.path.basename(path))
        try:
            if not ours and now - os.lstat(path).st_mtime < FOREIGN_TEMP_AGE:
                continue  # maybe another program's write in progress
            os.unlink(path)
        except FileNotFoundError:
            continue
        fixed.append(f"removed temp file {path}")
    had_marker = _read_marker(paths) is not None
    warnings: list[str] = []
    backup = _settle_rollback(paths, warnings)
    if backup is not None:
        fixed.append(f"set aside the legacy sessions.json an interrupted rollback left as {backup}")
    elif had_marker:
        fixed.append("removed the marker of an interrupted rollback")


def check(store_path: str | os.PathLike[str], *, fix: bool = False,
          lock_timeout: float = 60.0) -> CheckReport:
    """Inspect (and with *fix*, repair) the store at *store_path*.

    Read-only without *fix*.  With it, the repairs run under the store lock
    (:class:`~sessionsd.errors.StoreLockTimeout` after *lock_timeout*
    seconds) and the store is surveyed again: the report says what is left,
    with ``fixed``, ``refused`` and ``notes`` from the repair."""
    paths = StorePaths.from_store_path(store_path)
    report = _survey(paths)
    if not fix or report.ok:
        return report
    done = CheckReport(paths.store, report.mode)
    with StoreLock.for_path(paths.lock).hold(lock_timeout, heavy=True):
        _fix_locked(paths, done)
    report = _survey(paths)
    report.fixed, report.refused, report.notes = done.fixed, done.refused, done.notes
    return report
