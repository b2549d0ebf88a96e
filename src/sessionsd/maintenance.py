"""Maintenance: prune stale sessions, cap their number, keep a disk budget.

Settings live in :class:`Maintenance` (passed to ``SessionStore(...,
maintenance=...)``).  In ``"enforce"`` mode removals happen; in ``"warn"``
mode (the default) nothing is removed and a WARNING says what would be.

Cost model (SPEC §7): a hot-path write stays O(1) in store size when nothing
is due.  The entry count and bytes are kept by the commit protocol (the seq
file), so checking the cap and the budget is free; age sweeps -- the only
part that must look at every session -- run at most once per
``sweep_interval``; evicting the oldest sessions at the cap uses a sorted list
of candidates built by one scan and re-verified entry by entry, so a store
that sits at its cap pays one scan per many evictions, not one per write.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from ._layout import StorePaths, now_ms

__all__ = ["Maintenance", "MaintenanceReport", "plan_removals", "archive_transcript",
           "parse_duration"]

_log = logging.getLogger("sessionsd")

MODES = ("warn", "enforce")


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

    mode: str = "warn"
    prune_after: Optional[float] = None
    max_entries: Optional[int] = None
    max_disk_bytes: Optional[int] = None
    sweep_interval: float = 300.0
    on_removed: Optional[Callable[[str, dict], None]] = None
    archive_transcripts: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"maintenance mode must be one of {MODES}, not {self.mode!r}")
        for name in ("prune_after", "max_entries", "max_disk_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or value < 0 or not math.isfinite(value)):
                raise ValueError(f"maintenance {name} must be a non-negative number or None, not {value!r}")
        if self.sweep_interval < 0:
            raise ValueError("maintenance sweep_interval must be >= 0")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.prune_after, self.max_entries, self.max_disk_bytes))


@dataclass
class MaintenanceReport:
    """What a sweep removed (enforce) or would remove (warn, dry run)."""

    mode: str
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
        return self.pruned + self.evicted + self.over_budget

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["removed"] = self.removed
        return data

    def describe(self) -> str:
        return (f"{len(self.pruned)} stale, {len(self.evicted)} over the entry cap, "
                f"{len(self.over_budget)} over the disk budget "
                f"({self.entries_before} -> {self.entries_after} sessions, "
                f"{self.bytes_before} -> {self.bytes_after} bytes)")


def parse_duration(text: str) -> float:
    """Seconds from ``"30d"``, ``"12h"``, ``"45m"``, ``"90s"`` or a number."""
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
                  settings: Maintenance, now: int, *, protect: frozenset = frozenset(),
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


def archive_transcript(paths: StorePaths, entry: dict, real_dir: Optional[str] = None) -> Optional[str]:
    """Rename a removed session's transcript to ``<file>.deleted.<ms>``.

    Only a regular file (not a symlink) whose real location is inside the
    store directory is touched; anything else is left alone.  Returns the new
    path, or None.  *real_dir* is ``realpath(paths.dir)`` if the caller has it."""
    name = entry.get("sessionFile")
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    store_dir = real_dir or os.path.realpath(paths.dir)
    if os.sep not in name and (os.altsep is None or os.altsep not in name) and name not in (".", ".."):
        parent = store_dir  # a bare file name: the common case, no path walk
    else:
        candidate = name if os.path.isabs(name) else os.path.join(paths.dir, name)
        parent = os.path.realpath(os.path.dirname(candidate))
        name = os.path.basename(candidate)
    try:
        if os.path.commonpath([parent, store_dir]) != store_dir:
            return None
    except ValueError:
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


class Maintainer:
    """Applies one store's :class:`Maintenance` settings (per store object).

    Works through the store's own primitives and always runs under the
    store lock, which its callers hold."""

    def __init__(self, store, settings: Maintenance) -> None:
        self.store = store
        self.settings = settings
        # Oldest-last list of (age key, session key, file name, bytes) from
        # the last scan; popped from the end, each entry re-verified.
        self._candidates: Optional[list[tuple[float, str, str, int]]] = None
        self._last_warn = 0
        self._real_dir = os.path.realpath(store.paths.dir)

    # -- directory mode ----------------------------------------------------------

    def after_write(self, version: int, key: str, stats) -> None:
        """The O(1) check after a hot-path write; sweeps only when due."""
        settings = self.settings
        directory = self.store._dir
        if stats is None or stats.version != version:
            stats = directory.ensure_stats(version)
        now = now_ms()
        due_age = (settings.prune_after is not None
                   and now - stats.last_sweep >= settings.sweep_interval * 1000)
        due_cap = settings.max_entries is not None and stats.count > settings.max_entries
        due_disk = settings.max_disk_bytes is not None and stats.bytes > settings.max_disk_bytes
        if not (due_age or due_cap or due_disk):
            return
        if settings.mode == "warn" and now - self._last_warn < settings.sweep_interval * 1000:
            return  # warn at most once per interval: a warning must not cost O(n) per write
        self.sweep_directory(version, stats, protect=frozenset({key}), full=due_age, now=now)

    def _index(self) -> list[tuple[float, str, str, int]]:
        """Every session's (age key, key, file name, bytes): one scan."""
        from ._codec import read_updated_at, scan_entries
        from ._documents import decode_document
        from ._fsutil import read_regular

        directory = self.store._dir
        prefix = directory.entry_prefix
        want_size = self.settings.max_disk_bytes is not None
        items = []
        for name, inline_key in scan_entries(directory.paths.entries):
            path = prefix + name
            key = inline_key
            quick = read_updated_at(path, inline_key) if inline_key is not None else None
            if quick is not None:
                if not quick[0]:
                    continue
                updated = quick[1]
            else:
                data = read_regular(path)
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

    def _verified_oldest(self, stats, protect: frozenset) -> Optional[list[tuple[float, str, int]]]:
        """Enough verified oldest candidates to satisfy the cap and budget,
        or None when the cached list runs out (the caller rescans)."""
        from ._codec import read_updated_at

        settings = self.settings
        need_count = max(0, stats.count - settings.max_entries) if settings.max_entries is not None else 0
        need_bytes = max(0, stats.bytes - settings.max_disk_bytes) if settings.max_disk_bytes is not None else 0
        candidates = self._candidates
        if candidates is None:
            return None
        directory = self.store._dir
        chosen: list[tuple[float, str, int]] = []
        kept_back = []
        got_bytes = 0
        while len(chosen) < need_count or got_bytes < need_bytes:
            if not candidates:
                candidates.extend(reversed(kept_back))
                return None
            age, key, name, size = candidates.pop()
            if key in protect:
                kept_back.append((age, key, name, size))
                continue
            path = directory.entry_prefix + name
            current = read_updated_at(path, key)
            if current is None:
                entry = directory.read_entry(key, name)
                current = (entry is not None, entry.get("updatedAt") if entry else None)
            if not current[0] or sort_key(current[1]) != age:
                continue  # gone or updated since the scan: no longer this candidate
            if settings.max_disk_bytes is not None:
                try:
                    size = os.lstat(path).st_size
                except FileNotFoundError:
                    continue
            chosen.append((age, key, size))
            got_bytes += size
        candidates.extend(reversed(kept_back))
        return chosen

    def sweep_directory(self, version: int, stats, *, protect: frozenset = frozenset(),
                        full: bool = True, now: Optional[int] = None,
                        dry_run: bool = False) -> MaintenanceReport:
        """One sweep: plan, then (enforce, not dry run) remove as one commit."""
        settings = self.settings
        now = now_ms() if now is None else now
        items = None if full else self._verified_oldest(stats, protect)
        rescanned = items is None
        if rescanned:
            index = self._index()
            self._candidates = index
            items = [(age, key, size) for age, key, _name, size in index]
        pruned, evicted, over_budget = plan_removals(
            items, stats.count, stats.bytes, settings, now, protect=protect, prune=full)
        report = MaintenanceReport(settings.mode, entries_before=stats.count, bytes_before=stats.bytes)
        report.pruned, report.evicted, report.over_budget = pruned, evicted, over_budget
        if full:
            self.store._dir.set_last_sweep(now)
        removed = report.removed
        if removed and rescanned:
            # The fresh list still holds what this sweep removes (verified
            # candidates were popped already): drop them once, O(n) like the scan.
            gone = set(removed)
            self._candidates = [c for c in self._candidates if c[1] not in gone]
        if not removed or dry_run or settings.mode == "warn":
            report.entries_after, report.bytes_after = stats.count, stats.bytes
            if removed and settings.mode == "warn" and not dry_run:
                self._last_warn = now
                _log.warning("session maintenance (warn mode) would remove sessions from %s: %s",
                             self.store.paths.store, report.describe())
            self.store.last_maintenance = report
            return report
        entries = self.store._remove_entries(removed, needs_entries=self._needs_entries())
        self._finish(report, entries)
        stats_after = self.store.last_stats
        report.entries_after = stats_after.count if stats_after else stats.count - len(removed)
        report.bytes_after = stats_after.bytes if stats_after else 0
        report.applied = True
        _log.info("session maintenance removed %d sessions from %s", len(removed), self.store.paths.store)
        self.store.last_maintenance = report
        return report

    def _needs_entries(self) -> bool:
        return self.settings.on_removed is not None or self.settings.archive_transcripts

    def _finish(self, report: MaintenanceReport, entries: dict[str, dict]) -> None:
        """After the commit: archive transcripts, then call back."""
        for entry in entries.values():
            if self.settings.archive_transcripts:
                archived = archive_transcript(self.store.paths, entry, self._real_dir)
                if archived:
                    report.archived.append(archived)
        if self.settings.on_removed is not None:
            for key, entry in entries.items():
                self.settings.on_removed(key, entry)

    # -- whole-store saves (both modes) -------------------------------------------

    def apply_to_mapping(self, entries: dict[str, dict], *, protect: frozenset = frozenset(),
                         sizes: Optional[Callable[[str, dict], int]] = None,
                         dry_run: bool = False) -> tuple[MaintenanceReport, dict[str, dict]]:
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
        removed: dict[str, dict] = {}
        if report.removed and settings.mode == "enforce" and not dry_run:
            for key in report.removed:
                removed[key] = entries.pop(key)
            report.applied = True
            report.entries_after = len(entries)
            report.bytes_after = total - sum(item[2] for item in items if item[1] in removed)
        else:
            report.entries_after, report.bytes_after = len(entries), total
            if report.removed and settings.mode == "warn" and not dry_run:
                _log.warning("session maintenance (warn mode) would remove sessions from %s: %s",
                             self.store.paths.store, report.describe())
        self.store.last_maintenance = report
        return report, removed
