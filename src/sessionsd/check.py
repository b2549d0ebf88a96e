"""``check(store_path, fix=False)``: a consistency report of one store.

Reports stray temp files, a leftover commit record or an odd commit counter
(a writer died mid-commit), staging directories of dead processes, corrupt or
impostor entry files, and the orphans and backups earlier migrations left.
``fix=True`` repairs what is safe to repair -- it replays or discards the dead
writer's commit, removes temp files and stale staging directories -- and never
deletes user data: orphans, backups and corrupt entries are only listed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from ._directory import DirectoryStore
from ._fsutil import is_temp_name
from ._layout import StorePaths, read_state
from ._legacy import LegacyStore
from ._lock import StoreLock
from .errors import CorruptStoreError
from .migration import _default_normalize as _lower_key
from .migration import _pid_alive, cleanup_stale_staging

__all__ = ["CheckReport", "check"]

#: Temp files of other writers (the reference's ``<name>.<uuid>.tmp``) are
#: only removed once this old, in case such a writer is still running.
FOREIGN_TEMP_AGE = 60.0


@dataclass
class CheckReport:
    store_path: str
    mode: str
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
    legacy_error: Optional[str] = None

    @property
    def problems(self) -> list[str]:
        """What is wrong and still there (informational items excluded)."""
        found = [f"stray temp file {p}" for p in self.temp_files]
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
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["problems"] = self.problems
        data["ok"] = self.ok
        return data


def _temp_files(paths: StorePaths) -> list[str]:
    found = []
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


def _examine(report: CheckReport, paths: StorePaths, store: DirectoryStore) -> None:
    report.temp_files = _temp_files(paths)
    report.commit_record = os.path.lexists(paths.commit)
    report.odd_seq = bool(store.read_seq() & 1)
    entries, _names, skipped = store._read_all()
    report.sessions = len(entries)
    report.corrupt_entries = skipped


def check(store_path, *, fix: bool = False, lock_timeout: float = 60.0) -> CheckReport:
    """Inspect (and with *fix*, repair) the store at *store_path*."""
    paths = StorePaths.from_store_path(store_path)
    active = read_state(paths, check_safety=False) is not None
    report = CheckReport(paths.store, "directory" if active else "legacy")
    _inventory(report, paths)
    if not active:
        # Legacy mode: count what a load would see (never rewritten here).
        try:
            report.sessions = len(LegacyStore(paths, "none", _lower_key).read().entries)
        except CorruptStoreError as exc:
            report.legacy_error = str(exc.__cause__ or exc)
        except OSError as exc:
            report.legacy_error = str(exc)
        if fix and report.stale_staging:
            with StoreLock.for_path(paths.lock).hold(lock_timeout, heavy=True):
                report.fixed += [f"removed stale staging directory {p}" for p in cleanup_stale_staging(paths)]
            report.stale_staging = []
        return report
    store = DirectoryStore(paths)
    _examine(report, paths, store)
    if fix and not report.ok:
        with StoreLock.for_path(paths.lock).hold(lock_timeout, heavy=True):
            if store.recover():
                report.fixed.append("finished or discarded a dead writer's commit")
            now = time.time()
            for path in _temp_files(paths):
                ours = is_temp_name(os.path.basename(path))
                try:
                    if not ours and now - os.lstat(path).st_mtime < FOREIGN_TEMP_AGE:
                        continue  # maybe another program's write in progress
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                report.fixed.append(f"removed temp file {path}")
            report.fixed += [f"removed stale staging directory {p}" for p in cleanup_stale_staging(paths)]
        fixed = report.fixed
        report = CheckReport(paths.store, "directory", fixed=fixed)
        _inventory(report, paths)
        _examine(report, paths, store)
    return report

