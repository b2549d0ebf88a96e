"""Migration between the legacy file and the directory store (SPEC §6).

* :func:`detect` -- read-only inspection of a store path.
* :func:`migrate` -- legacy ``sessions.json`` → ``sessions.d``: the legacy
  file is read streaming, in bounded memory, whatever its size (no size
  limit unless ``max_bytes`` sets one; see :mod:`sessionsd._legacy_stream`).  A fresh
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
* :func:`rollback` -- ``sessions.d`` → ``sessions.json`` (see
  :mod:`sessionsd._rollback`, re-exported here).

* :func:`migrate_for_write` -- the first write into a legacy file over
  64 MiB: migrates it streaming, then applies the write in directory mode.

All of them hold the store lock, so concurrent migrations of one store end with
exactly one ``migrated`` and the others ``already_directory``.

Split by responsibility: the streaming reader of the legacy file is
:mod:`sessionsd._legacy_stream`, staging, promotion and the legacy file's
backup are :mod:`sessionsd._promotion`, rollback and its marker are
:mod:`sessionsd._rollback`.  None of them imports this module.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _faults
from ._codec import copy_json, encode_key
from ._layout import StorePaths, read_state

# Re-exported for the modules and tests that import them from here
# (check.py; tests/test_big_legacy.py).
from ._legacy_stream import (  # noqa: F401
    _CHUNK_BYTES,
    WHOLE_FILE_BYTES,
    _CountSink,
    _DictSink,
    _NotStrict,
    _read_legacy,
    _size_text,
    _stream,
    _updated_at,
)
from ._promotion import (
    _backup_twin,
    _drop_link,
    _link_backup,
    _pid_alive,  # noqa: F401
    _promote,
    _retire_legacy,
    _StagingSink,
    cleanup_stale_staging,
)
from ._rollback import (  # noqa: F401
    _legacy_temp_pid,
    _read_marker,
    _remove_dead_legacy_temps,
    _rollback_leftover,
    _settle_rollback,
    rollback,
)
from ._types import DetectionStatus, Entries, Entry, KeyNormalizer, MigrationOutcome, ProgressCallback
from .damage import guard_write, inspect_directory

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

    from ._file_backend import FileBackend
    from ._layout import State

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

_log = logging.getLogger(__name__)

OUTCOMES: tuple[MigrationOutcome, ...] = (
    "migrated", "already_directory", "skipped_empty", "skipped_invalid", "missing", "failed")
STATUSES: tuple[DetectionStatus, ...] = (
    "already_directory", "ready_to_migrate", "empty_legacy", "invalid_legacy", "missing")
#: The former name of :data:`WHOLE_FILE_BYTES` (once the default migration
#: limit; there is none now).
MAX_LEGACY_BYTES = WHOLE_FILE_BYTES

_PREVIEW: dict[DetectionStatus, str] = {
    "already_directory": "Directory-backed session store is already active.",
    "missing": "No legacy sessions.json store was found.",
    "invalid_legacy": "Legacy sessions.json exists but could not be migrated safely.",
    "empty_legacy": "Legacy sessions.json contains no valid session entries to migrate.",
}


@dataclass
class Detection:
    """What :func:`detect` found (nothing is written to find it)."""

    store_path: str
    status: DetectionStatus
    legacy_exists: bool
    directory_active: bool
    legacy_entry_count: int = 0
    normalized_entry_count: int = 0
    warnings: list[str] = field(default_factory=list)
    preview: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON output)."""
        return dict(self.__dict__)


@dataclass
class MigrationResult:
    """The outcome of one :func:`migrate` call."""

    store_path: str
    outcome: MigrationOutcome
    legacy_entries: int = 0
    migrated_entries: int = 0
    backup_path: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON output)."""
        return dict(self.__dict__)


def _default_normalize(key: Any) -> str:
    from ._codec import validate_key

    return validate_key(key).lower()


def detect(store_path: str | os.PathLike[str], *, normalize: KeyNormalizer | None = None,
           max_bytes: int | None = None) -> Detection:
    """Read-only inspection of a store path: status, counts, warnings, preview.

    The legacy file is read the way :func:`migrate` reads it (streaming, in
    bounded memory), with the same *max_bytes* rule: no limit by default."""
    paths = StorePaths.from_store_path(store_path)
    active = read_state(paths, check_safety=False) is not None
    inspection = _read_legacy(paths.store, normalize or _default_normalize, max_bytes, _CountSink())
    statuses: dict[str, DetectionStatus] = {
        "missing": "already_directory" if active else "missing",
        "invalid": "invalid_legacy",
        "empty": "empty_legacy",
        "ready": "ready_to_migrate",
    }
    status = statuses[inspection.kind]
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


def migrate_snapshot(store: FileBackend, entries: Entries) -> MigrationResult:
    """Save-time migration (the caller, a FileBackend, holds the lock):
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


def migrate(store_path: str | os.PathLike[str], *, lock_timeout: float = 60.0,
            max_bytes: int | None = None, lower_keys: bool = True,
            progress: ProgressCallback | None = None) -> MigrationResult:
    """Migrate one store to directory mode (idempotent, crash-safe).

    The legacy file is read streaming, whatever its size: memory stays
    bounded by the largest entry (plus a read chunk and a small record per
    session).  There is no size limit unless *max_bytes* sets one; a file
    over it is ``skipped_invalid`` with a warning naming the limit.
    *progress*, if given, is called as ``progress(bytes read, file size)``
    while the legacy file is read (its entries are staged as they come).

    Exceptions propagate (the startup runner turns them into ``failed``):
    :class:`~sessionsd.errors.DamagedStoreError` for a damaged
    ``sessions.d``, :class:`~sessionsd.errors.StoreLockTimeout`, ``OSError``.
    Nothing is logged above DEBUG: what an operator should see is in the
    result's ``warnings``.
    """
    from ._file_backend import FileBackend

    with closing(FileBackend(store_path, lower_keys=lower_keys, lock_timeout=lock_timeout)) as store:
        if not os.path.isdir(store.paths.dir):
            # Nothing to migrate, and taking the lock would create the directory.
            return MigrationResult(store.paths.store, "missing")
        with store._lock.hold(lock_timeout, heavy=True):
            result = _migrate_locked(store, max_bytes, progress)
    _log.debug("migration of session store %s: %s (%d entries)", result.store_path, result.outcome,
               result.migrated_entries)
    return result


def _migrate_locked(store: FileBackend, max_bytes: int | None,
                    progress: ProgressCallback | None) -> MigrationResult:
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

    def merge(current: Entries) -> int:
        for key, entry in sink.entries.items():
            existing = current.get(key)
            if existing is None or _updated_at(entry) > _updated_at(existing):
                current[key] = entry
        return len(current)

    result.migrated_entries = store.mutate(merge)
    _faults.hit("migrate:after-merge")
    result.outcome = "migrated"
    result.backup_path = _retire_legacy(paths, None, result.warnings)
    store._cache.clear()
    return result


def _migrate_fresh(store: FileBackend, max_bytes: int | None,
                   progress: ProgressCallback | None) -> MigrationResult:
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
            outcomes: dict[str, MigrationOutcome] = {
                "missing": "missing", "invalid": "skipped_invalid", "empty": "skipped_empty"}
            result.outcome = outcomes[inspection.kind]
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

def migrate_for_write(store: FileBackend, mutate: Callable[[dict[str, Any]], object],
                      protect: frozenset[str] = frozenset()) -> bool:
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


def _write_through_view(store: FileBackend, mutate: Callable[[dict[str, Any]], object],
                        protect: frozenset[str]) -> None:
    from ._directory import Snapshot
    from ._file_legacy import _check_serialisable

    state = _active_state(store)
    view = _DirectoryView(store, state)
    mutate(view)
    before, after = view.changes()
    after = store._normalized_mapping(after)
    _check_serialisable(before, after)
    store._commit_diff(state, Snapshot((0, 0), before, {}, []), after)
    if store._maintainer is not None:
        # Directory-mode maintenance: one sweep of the new store.
        state = _active_state(store)
        stats = store._dir.ensure_stats(state.version)
        store._maintainer.sweep_directory(state.version, stats, protect=protect, full=True)


def _active_state(store: FileBackend) -> State:
    """The state of *store*'s directory store, which the caller (holding
    the lock) has just made active; RuntimeError if it is not."""
    state = read_state(store.paths)
    if state is None:
        raise RuntimeError(f"directory session store is not active after its migration: {store.paths.root}")
    return state


class _DirectoryView(dict[str, Any]):
    """The directory store as the dict a legacy-mode write expects, read
    lazily: a key-based access (``[]``, ``get``, ``in``, ``pop``,
    ``setdefault``, assignment, ``del``) reads that one entry; anything else
    -- and any key not in the store's normal form -- loads every entry first.
    :meth:`changes` gives what to diff: the entries read and their new
    values, or the whole store before and after."""

    def __init__(self, store: FileBackend, state: State) -> None:
        super().__init__()
        self._store = store
        self._state = state
        self._read: dict[str, Entry | None] = {}
        self._whole: Entries | None = None

    def _load(self, key: object) -> None:
        if self._whole is not None or key in self._read:
            return
        try:
            normal = isinstance(key, str) and self._store.normalize_key(key) == key
        except ValueError:
            normal = False
        if not normal or not isinstance(key, str):
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

    def changes(self) -> tuple[Entries, dict[str, Any]]:
        """``(before, after)``: only the keys read, unless all were loaded."""
        if self._whole is not None:
            return self._whole, dict(dict.items(self))
        before = {key: entry for key, entry in self._read.items() if entry is not None}
        after = {key: dict.__getitem__(self, key) for key in self._read if dict.__contains__(self, key)}
        return before, after

    # key-based: one entry
    def __getitem__(self, key: str) -> Any:
        self._load(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of *key*, or *default* (reads that one entry)."""
        self._load(key)
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        self._load(key)
        return dict.__contains__(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._load(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._load(key)
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        """Remove *key* and return its value (or *default*), as ``dict.pop``."""
        self._load(key)
        return dict.pop(self, key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """As ``dict.setdefault`` (reads that one entry first)."""
        self._load(key)
        return dict.setdefault(self, key, default)

    # the rest: the whole store
    def __iter__(self) -> Iterator[str]:
        self._everything()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._everything()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._everything()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self._everything()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._everything()
        return dict.__ne__(self, other)

    __hash__ = None

    def __repr__(self) -> str:
        self._everything()
        return dict.__repr__(self)

    def __or__(self, other: Any) -> Any:
        self._everything()
        return dict.__or__(self, other)

    def __ror__(self, other: Any) -> Any:
        self._everything()
        return dict.__ror__(self, other)

    def __ior__(self, other: Any) -> Any:
        self._everything()
        return dict.__ior__(self, other)

    def keys(self) -> dict_keys[str, Any]:
        """Every key of the store (loads it all)."""
        self._everything()
        return dict.keys(self)

    def values(self) -> dict_values[str, Any]:
        """Every entry of the store (loads it all)."""
        self._everything()
        return dict.values(self)

    def items(self) -> dict_items[str, Any]:
        """Every ``(key, entry)`` of the store (loads it all)."""
        self._everything()
        return dict.items(self)

    def clear(self) -> None:
        """Remove every session (loads the store first, to know them)."""
        self._everything()
        dict.clear(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """As ``dict.update`` (loads the store first)."""
        self._everything()
        dict.update(self, *args, **kwargs)

    def popitem(self) -> tuple[str, Any]:
        """As ``dict.popitem`` (loads the store first)."""
        self._everything()
        return dict.popitem(self)

    def copy(self) -> dict[str, Any]:
        """A plain dict of the whole store (loads it all)."""
        self._everything()
        return dict.copy(self)

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        self._everything()
        return (dict, (dict(dict.items(self)),))
