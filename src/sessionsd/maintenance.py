"""Maintenance: prune stale sessions, cap their number, keep a disk budget.

Settings live in :class:`Maintenance` (passed to ``SessionStore(...,
maintenance=...)``).  In ``"enforce"`` mode removals happen; in ``"warn"``
mode (the default) nothing is removed and a WARNING says what would be.

Cost model (SPEC §7): a hot-path write stays O(1) in store size when nothing
is due.  The entry count and bytes are kept by the commit protocol (the
``sessions.d/stats`` file, valid for one seq and state.json version), so
checking the cap and the budget is free; age sweeps -- the only part that
must look at every session -- run at most once per ``sweep_interval``, and so
do warn-mode reports (the time of the last sweep is in the stats, shared by
every process); evicting the oldest sessions at the cap uses a sorted list of
candidates built by one scan and re-verified entry by entry, so a store that
sits at its cap pays one scan per many evictions, not one per write.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._codec import encode_key
from ._layout import LOCK_NAME, ROOT_NAME, StorePaths, now_ms
from ._types import MAINTENANCE_MODES, Entries, Entry, MaintenanceMode, check_maintenance_mode

if TYPE_CHECKING:
    from ._directory import Stats
    from ._file_backend import FileBackend

__all__ = ["Maintenance", "MaintenanceReport", "plan_removals", "archive_transcript",
           "parse_duration"]

_log = logging.getLogger(__name__)

#: The accepted ``Maintenance.mode`` values, the default first.
MODES: tuple[MaintenanceMode, ...] = MAINTENANCE_MODES


@dataclass(frozen=True)
class Maintenance:
    """Maintenance settings.

    mode:            ``"warn"`` (report only) or ``"enforce"`` (remove).
    prune_after:     seconds; sessions whose ``updatedAt`` is older are pruned.
    max_entries:     at most this many sessions; the oldest beyond it go.
    max_disk_bytes:  bytes of entry files (directory mode) or of the legacy
                     file's entries (legacy mode); the oldest go first.
    sweep_interval:  seconds between age sweeps (and warn-mode reports).
    on_removed:      called as ``on_removed(key, entry)`` once per removed
                     session, after the removal is committed.
    archive_transcripts: rename a removed session's ``sessionFile`` that lies
                     inside the store directory to ``<file>.deleted.<ms>``;
                     files outside it are never touched.
    """

    mode: MaintenanceMode = "warn"
    prune_after: float | None = None
    max_entries: int | None = None
    max_disk_bytes: int | None = None
    sweep_interval: float = 300.0
    on_removed: Callable[[str, Entry], None] | None = None
    archive_transcripts: bool = True

    def __post_init__(self) -> None:
        # Raises ValueError naming the accepted values (MODES) for any other mode.
        check_maintenance_mode(self.mode)
        for name in ("prune_after", "max_entries", "max_disk_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or value < 0 or not math.isfinite(value)):
                raise ValueError(f"maintenance {name} must be a non-negative number or None, not {value!r}")
        interval = self.sweep_interval
        if (not isinstance(interval, (int, float)) or isinstance(interval, bool)
                or math.isnan(interval) or interval < 0):
            raise ValueError(f"maintenance sweep_interval must be a number >= 0, not {interval!r}")

    @property
    def active(self) -> bool:
        """Whether any limit is set (age, entry cap or disk budget)."""
        return any(v is not None for v in (self.prune_after, self.max_entries, self.max_disk_bytes))


@dataclass
class MaintenanceReport:
    """What a sweep removed (enforce) or would remove (warn, dry run)."""

    mode: MaintenanceMode
    applied: bool = False
    pruned: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    over_budget: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    entries_before: int = 0
    entries_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def removed(self) -> list[str]:
        """Every key removed (or that would be): stale, over the cap, over the budget."""
        return self.pruned + self.evicted + self.over_budget

    def as_dict(self) -> dict[str, Any]:
        """The fields and ``removed`` as a plain dict (for JSON output)."""
        data = dict(self.__dict__)
        data["removed"] = self.removed
        return data

    def describe(self) -> str:
        """One line of counts: stale, over the cap, over the budget, and the
        sessions and bytes before -> after."""
        return (f"{len(self.pruned)} stale, {len(self.evicted)} over the entry cap, "
                f"{len(self.over_budget)} over the disk budget "
                f"({self.entries_before} -> {self.entries_after} sessions, "
                f"{self.bytes_before} -> {self.bytes_after} bytes)")


def parse_duration(text: str) -> float:
    """Seconds from ``"30d"``, ``"12h"``, ``"45m"``, ``"90s"`` or a number.

    Raises ``ValueError`` for anything else.  (The command line accepts more
    forms: see :func:`sessionsd._units.parse_duration`.)"""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def sort_key(updated: Any) -> float:
    """Age order: a missing or non-numeric updatedAt counts as oldest."""
    if isinstance(updated, (int, float)) and not isinstance(updated, bool) and math.isfinite(updated):
        return float(updated)
    return float("-inf")


def plan_removals(items: Iterable[tuple[float, str, int]], count: int, size: int,
                  settings: Maintenance, now: int, *, protect: frozenset[str] = frozenset(),
                  prune: bool = True) -> tuple[list[str], list[str], list[str]]:
    """Decide what goes, oldest first: ``(pruned, evicted, over_budget)``.

    *items* are ``(age sort key, key, bytes)`` of every session (or of the
    oldest candidates, when the caller knows the rest are newer); *count*
    and *size* are the totals of the whole store.  Protected keys stay.
    """
    ordered = sorted(items, key=lambda item: (item[0], item[1]))
    pruned: list[str] = []
    kept: list[tuple[float, str, int]] = []
    cutoff = None if settings.prune_after is None or not prune else now - settings.prune_after * 1000
    for item in ordered:
        if cutoff is not None and item[0] < cutoff and item[1] not in protect:
            pruned.append(item[1])
            count -= 1
            size -= item[2]
        else:
            kept.append(item)
    evicted: list[str] = []
    over_budget: list[str] = []
    index = 0
    if settings.max_entries is not None:
        while count > settings.max_entries and index < len(kept):
            _, key, nbytes = kept[index]
            index += 1
            if key in protect:
                continue
            evicted.append(key)
            count -= 1
            size -= nbytes
    if settings.max_disk_bytes is not None:
        while size > settings.max_disk_bytes and index < len(kept):
            _, key, nbytes = kept[index]
            index += 1
            if key in protect:
                continue
            over_budget.append(key)
            count -= 1
            size -= nbytes
    return pruned, evicted, over_budget


def sweep_due(settings: Maintenance, *, count: int, size: int, last_sweep: int, last_warn: int,
              now: int) -> bool | None:
    """After a write, with the store's entry *count* and *size* (bytes) and
    the time (ms) of its last sweep: ``None`` when no sweep is due, else
    whether the due sweep must be a full one (the age rule is due, or in
    ``warn`` mode, where a warning is a full report).  Every store asks this
    the same way, so one write costs O(1) unless a sweep is due.

    A warning is given at most once per interval per store: *last_sweep* is
    shared by every process, *last_warn* is this object's own last one.  (A
    last sweep "in the future" means the clock went back: sweep now, which
    records the present, rather than never.)"""
    interval = settings.sweep_interval * 1000
    due_age = settings.prune_after is not None and not 0 <= now - last_sweep < interval
    due_cap = settings.max_entries is not None and count > settings.max_entries
    due_disk = settings.max_disk_bytes is not None and size > settings.max_disk_bytes
    if not (due_age or due_cap or due_disk):
        return None
    if settings.mode == "warn":
        return None if 0 <= now - max(last_sweep, last_warn) < interval else True
    return due_age


def archive_transcript(paths: StorePaths, entry: Entry, real_dir: str | None = None) -> str | None:
    """Rename a removed session's transcript to ``<file>.deleted.<ms>``.

    Only a regular file (not a symlink) whose real location is inside the
    store directory is touched, and never one of the store's own files;
    anything else is left alone.  Returns the new path, or None.  *real_dir*
    is ``realpath(paths.dir)`` if the caller has it."""
    name = entry.get("sessionFile")
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    store_dir = real_dir or os.path.realpath(paths.dir)
    if os.sep not in name and (os.altsep is None or os.altsep not in name):
        parent, first = store_dir, name  # a bare file name: the common case, no path walk
    else:
        candidate = name if os.path.isabs(name) else os.path.join(paths.dir, name)
        directory, name = os.path.split(candidate)
        # The real directory (symlinks and `..` resolved) must be the store
        # directory or below it.
        parent = store_dir if directory == paths.dir else os.path.realpath(directory)
        inside = store_dir if store_dir.endswith(os.sep) else store_dir + os.sep
        if parent == store_dir:
            first = name
        elif parent.startswith(inside):
            first = parent[len(inside):].split(os.sep, 1)[0]
        else:
            return None
    if not name or _is_store_name(paths, first):
        return None
    target = os.path.join(parent, name)
    try:
        info = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    archived = f"{target}.deleted.{now_ms()}"
    os.rename(target, archived)
    return archived


def _is_store_name(paths: StorePaths, first: str) -> bool:
    """Is *first* (a name in the store directory) one of the store's own:
    the legacy file and its backups, the lock, ``sessions.d`` and its
    backups, staging and orphan directories?  A hostile or mistaken
    ``sessionFile`` must not make maintenance rename those away."""
    legacy = os.path.basename(paths.store)
    return (first in (legacy, ROOT_NAME, LOCK_NAME, os.curdir, os.pardir)
            or first.startswith((legacy + ".", ROOT_NAME + ".")))


#: An eviction candidate: (age sort key, session key, entry file name, bytes).
_Candidate = tuple[float, str, str, int]


def _insert_candidate(candidates: list[_Candidate], item: _Candidate) -> None:
    """Insert *item* into the oldest-last *candidates* list, keeping its order."""
    order = (item[0], item[1])
    low, high = 0, len(candidates)
    while low < high:
        middle = (low + high) // 2
        if (candidates[middle][0], candidates[middle][1]) > order:
            low = middle + 1
        else:
            high = middle
    candidates.insert(low, item)


class Maintainer:
    """Applies one store's :class:`Maintenance` settings (per store object).

    Works through the store's own primitives and always runs under the
    store lock, which its callers hold.

    Evicting at the cap uses ``_candidates``: every session's (age key,
    session key, file name, bytes) from one scan, oldest last, popped from
    the end and re-verified one by one.  Invariant: a session missing from
    the list is at least as new as the newest one in it, so the verified end
    of the list is the oldest of the store.  This object's own writes keep it
    (a backdated or re-dated session is put back in its place); another
    writer's commits may not (its sessions are not in the list), so after one
    the list is rebuilt by the next eviction once it is ``sweep_interval``
    old: one scan per interval at most, like the age sweep.
    """

    def __init__(self, store: FileBackend, settings: Maintenance) -> None:
        self.store = store
        self.settings = settings
        self._candidates: list[_Candidate] | None = None
        self._scanned_at = 0     # when the list was built (ms)
        self._seq = -1           # the seq after the last commit this object knows of
        self._foreign = False    # another writer committed since the list was built
        self._last_warn = 0
        self._real_dir = os.path.realpath(store.paths.dir)

    # -- directory mode ----------------------------------------------------------

    def after_write(self, version: int, key: str, stats: Stats | None) -> None:
        """The O(1) check after a hot-path write; sweeps only when due."""
        settings = self.settings
        directory = self.store._dir
        if stats is None or stats.version != version:
            stats = directory.ensure_stats(version)
        now = now_ms()
        interval = settings.sweep_interval * 1000
        if self._candidates is not None:
            self._track_write(key, now, interval)
        full = sweep_due(settings, count=stats.count, size=stats.bytes, last_sweep=stats.last_sweep,
                         last_warn=self._last_warn, now=now)
        if full is not None:
            self.sweep_directory(version, stats, protect=frozenset({key}), full=full, now=now)

    def _track_write(self, key: str, now: int, interval: float) -> None:
        """Keep the candidate list's invariant across this object's write of
        *key* (under the lock, right after its commit)."""
        directory = self.store._dir
        seq = directory.read_seq()
        if seq != self._seq + 2:
            self._foreign = True  # someone else committed: their sessions are not listed
        self._seq = seq
        if self._foreign and now - self._scanned_at >= interval:
            self._candidates = None  # the next eviction rescans
            return
        candidates = self._candidates
        if not candidates:
            return  # an empty list rescans when it is needed
        name = encode_key(key)
        found, updated = directory.read_updated_at(key, name)
        if not found:
            return
        age = sort_key(updated)
        if (age, key) < (candidates[0][0], candidates[0][1]):
            # Older than a listed session (backdated, or re-dated): list it in
            # its place, or the next eviction would take a newer session.
            _insert_candidate(candidates, (age, key, name, self._size(directory.entry_prefix + name)))

    def _entry_bytes(self, key: str) -> int:
        """The size of *key*'s entry file now (0 if there is none)."""
        try:
            return os.lstat(self.store._dir.entry_prefix + encode_key(key)).st_size
        except (FileNotFoundError, NotADirectoryError):
            return 0

    def _size(self, path: str) -> int:
        if self.settings.max_disk_bytes is None:
            return 0
        try:
            return os.lstat(path).st_size
        except FileNotFoundError:
            return 0

    def _index(self) -> list[_Candidate]:
        """Every session's (age key, key, file name, bytes): from the listing
        index when the store uses one, else one scan."""
        from ._codec import read_updated_at, scan_entries
        from ._documents import decode_document
        from ._fsutil import read_regular

        directory = self.store._dir
        want_size = self.settings.max_disk_bytes is not None
        indexed = self.store._maintenance_rows()
        if indexed is not None:
            # The listing index (sessionsd.index): current, so no file is read.
            rows: list[_Candidate] = [(sort_key(row[1]), row[0], name, row[4] if want_size else 0)
                                      for row, name in indexed]
            rows.sort(key=lambda item: (item[0], item[1]), reverse=True)
            return rows
        prefix = directory.entry_prefix
        items: list[_Candidate] = []
        for name, inline_key in scan_entries(directory.paths.entries):
            path = prefix + name
            try:
                quick = read_updated_at(path, inline_key) if inline_key is not None else None
                data = read_regular(path) if quick is None else None
            except PermissionError:
                continue  # unreadable: skipped and reported by load() and check, never evicted
            if quick is not None and inline_key is not None:  # (quick implies an inline key)
                if not quick[0]:
                    continue
                key, updated = inline_key, quick[1]
            else:
                decoded = decode_document(data, name, inline_key) if data is not None else "gone"
                if isinstance(decoded, str):
                    continue  # corrupt or impostor files are `check`'s business, not ours
                key, entry = decoded
                updated = entry.get("updatedAt")
            size = 0
            if want_size:
                try:
                    size = os.lstat(path).st_size
                except FileNotFoundError:
                    continue
            items.append((sort_key(updated), key, name, size))
        items.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return items

    def _verified_oldest(self, stats: Stats, protect: frozenset[str]) -> list[tuple[float, str, int]] | None:
        """Enough verified oldest candidates to satisfy the cap and budget,
        or None when the cached list runs out (the caller rescans)."""
        settings = self.settings
        need_count = max(0, stats.count - settings.max_entries) if settings.max_entries is not None else 0
        need_bytes = max(0, stats.bytes - settings.max_disk_bytes) if settings.max_disk_bytes is not None else 0
        candidates = self._candidates
        if candidates is None:
            return None
        directory = self.store._dir
        chosen: list[tuple[float, str, int]] = []
        chosen_keys: set[str] = set()
        kept_back: list[_Candidate] = []
        got_bytes = 0
        try:
            while len(chosen) < need_count or got_bytes < need_bytes:
                if not candidates:
                    return None
                item = candidates.pop()
                age, key, name, size = item
                if key in chosen_keys:
                    continue  # a second record of one session (it was re-dated)
                if key in protect:
                    kept_back.append(item)
                    continue
                found, updated = directory.read_updated_at(key, name)
                if not found:
                    continue  # removed since the scan
                current = sort_key(updated)
                if current != age:
                    # Rewritten since the scan: back in at its new age, unless
                    # it is now newer than every listed session (then the
                    # invariant holds without it).
                    if candidates and (current, key) < (candidates[0][0], candidates[0][1]):
                        _insert_candidate(candidates, (current, key, name, size))
                    continue
                if settings.max_disk_bytes is not None:
                    try:
                        size = os.lstat(directory.entry_prefix + name).st_size
                    except FileNotFoundError:
                        continue
                chosen.append((age, key, size))
                chosen_keys.add(key)
                got_bytes += size
            return chosen
        finally:
            for item in kept_back:
                _insert_candidate(candidates, item)

    def sweep_directory(self, version: int, stats: Stats, *, protect: frozenset[str] = frozenset(),
                        full: bool = True, now: int | None = None,
                        dry_run: bool = False) -> MaintenanceReport:
        """One sweep: plan, then (enforce, not dry run) remove as one commit.
        A dry run or a warn-mode sweep changes nothing, not even the list."""
        settings = self.settings
        now = now_ms() if now is None else now
        keep_list = settings.mode == "enforce" and not dry_run
        chosen = None if (full or not keep_list) else self._verified_oldest(stats, protect)
        index: list[_Candidate] | None = None  # set when rescanned
        if chosen is None:
            index = self._index()
            items = [(age, key, size) for age, key, _name, size in index]
        else:
            items = chosen
        pruned, evicted, over_budget = plan_removals(
            items, stats.count, stats.bytes, settings, now, protect=protect, prune=full)
        report = MaintenanceReport(settings.mode, entries_before=stats.count, bytes_before=stats.bytes)
        report.pruned, report.evicted, report.over_budget = pruned, evicted, over_budget
        removed = report.removed
        if keep_list:
            gone = set(removed)
            if index is not None:
                # The fresh list without what this sweep removes: O(n) like the scan.
                self._candidates = [c for c in index if c[1] not in gone] if gone else index
                self._scanned_at = now
                self._foreign = False
            elif chosen is not None and self._candidates is not None:  # (chosen came from the list)
                for age, key, size in chosen:  # a verified candidate the plan kept stays listed
                    if key not in gone:
                        _insert_candidate(self._candidates, (age, key, encode_key(key), size))
        if full and not dry_run:
            self.store._dir.set_last_sweep(now)
        if not removed or dry_run or settings.mode == "warn":
            # A preview: the figures after what would be removed.
            report.entries_after = max(0, stats.count - len(removed))
            report.bytes_after = max(0, stats.bytes - sum(self._entry_bytes(key) for key in removed))
            if settings.mode == "warn" and not dry_run:
                self._last_warn = now
                if removed:
                    _log.warning("session maintenance (warn mode) would remove sessions from %s: %s",
                                 self.store.paths.store, report.describe())
        else:
            try:
                entries = self.store._remove_entries(removed, needs_entries=self._needs_entries())
            except BaseException:
                self._candidates = None  # what was removed is unknown: rescan next time
                raise
            stats_after = self.store.last_stats
            report.entries_after = stats_after.count if stats_after else stats.count - len(removed)
            report.bytes_after = stats_after.bytes if stats_after else 0
            report.applied = True
            _log.info("session maintenance removed %d sessions from %s", len(removed), self.store.paths.store)
            self._finish(report, entries)
        if keep_list:
            self._seq = self.store._dir.read_seq()
        self.store.last_maintenance = report
        return report

    def _needs_entries(self) -> bool:
        return self.settings.on_removed is not None or self.settings.archive_transcripts

    def _finish(self, report: MaintenanceReport, entries: Entries) -> None:
        """After the commit: archive transcripts, then call back.  The removal
        is done by now, so a failure here is logged, not raised: the write
        that triggered the sweep succeeded, and every other removed session
        still gets its archiving and its callback."""
        if self.settings.archive_transcripts:
            for key, entry in entries.items():
                try:
                    archived = archive_transcript(self.store.paths, entry, self._real_dir)
                except OSError as exc:
                    _log.warning("session maintenance could not archive the transcript of %r: %s", key, exc)
                    continue
                if archived:
                    report.archived.append(archived)
        if self.settings.on_removed is not None:
            for key, entry in entries.items():
                try:
                    self.settings.on_removed(key, entry)
                except Exception:  # noqa: BLE001 - a host bug must not fail the write
                    _log.exception("session maintenance: on_removed callback failed for %r", key)

    # -- whole-store saves (both modes) -------------------------------------------

    def apply_to_mapping(self, entries: Entries, *, protect: frozenset[str] = frozenset(),
                         sizes: Callable[[str, Entry], int] | None = None,
                         dry_run: bool = False) -> tuple[MaintenanceReport, Entries]:
        """Plan on a whole mapping; in enforce mode remove from it in place.
        Returns the report and the removed ``{key: entry}``."""
        settings = self.settings
        now = now_ms()
        items = [(sort_key(entry.get("updatedAt")), key, sizes(key, entry) if sizes else 0)
                 for key, entry in entries.items()]
        total = sum(item[2] for item in items)
        pruned, evicted, over_budget = plan_removals(items, len(entries), total, settings, now,
                                                     protect=protect)
        report = MaintenanceReport(settings.mode, pruned=pruned, evicted=evicted,
                                   over_budget=over_budget, entries_before=len(entries),
                                   bytes_before=total)
        removed: Entries = {}
        if report.removed and settings.mode == "enforce" and not dry_run:
            for key in report.removed:
                removed[key] = entries.pop(key)
            report.applied = True
            report.entries_after = len(entries)
            report.bytes_after = total - sum(item[2] for item in items if item[1] in removed)
        else:
            # A preview (dry run, warn mode): the figures after what would be removed.
            gone = set(report.removed)
            report.entries_after = len(entries) - len(gone)
            report.bytes_after = total - sum(item[2] for item in items if item[1] in gone)
            if report.removed and settings.mode == "warn" and not dry_run:
                _log.warning("session maintenance (warn mode) would remove sessions from %s: %s",
                             self.store.paths.store, report.describe())
        self.store.last_maintenance = report
        return report, removed
