"""The file backend: :class:`FileBackend` (see :mod:`sessionsd._backend`).

One object per store path (the legacy ``sessions.json`` path), below the
façade :class:`sessionsd.SessionStore`.  Keys arrive normalised.

Thread- and process-safe: every write takes the store lock inside; reads take
none.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from . import index as _index
from ._backend import Normalizer
from ._cache import _Cache, collected, release_collected
from ._codec import copy_json, encode_key, read_updated_at, same_json
from ._directory import Change, DirectoryStore, Snapshot, Stats
from ._documents import encode_document
from ._facade import check_mapping, normalize_key
from ._file_legacy import LegacyMode, copy_entries
from ._file_reads import _FLIP_ATTEMPTS, FileReads
from ._layout import LEGACY_FILE_RECORD, State, StorePaths, read_state
from ._legacy import LegacyStore
from ._lock import DEFAULT_TIMEOUT, StoreLock
from ._types import Durability, Entries, Entry, check_durability
from .errors import (
    InvalidEntryError,
    SharedStoreError,
)
from .maintenance import Maintainer, Maintenance, MaintenanceReport

__all__ = ["FileBackend", "DIRECTORY", "LEGACY"]

_log = logging.getLogger(__name__)

DIRECTORY = "directory"
LEGACY = "legacy"

T = TypeVar("T")




def _summary_of(entry: Entry) -> dict[str, Any]:
    return {"lastChannel": copy_json(entry.get("lastChannel")), "lastTo": copy_json(entry.get("lastTo")),
            "updatedAt": copy_json(entry.get("updatedAt"))}


def _summarize(entries: Mapping[str, Entry]) -> dict[str, dict[str, Any]]:
    return {key: _summary_of(entry) for key, entry in entries.items()}










def _legacy_file_record(paths: StorePaths) -> str | None:
    """The store file name ``sessions.d/legacy-file`` records, if any."""
    try:
        fd = os.open(os.path.join(paths.root, LEGACY_FILE_RECORD), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None  # no record: a store made by the reference or an older sessionsd
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").strip() or None


class FileBackend(FileReads, LegacyMode):
    """The file store: the directory store ``sessions.d/`` and the legacy
    ``sessions.json`` beside it, as one backend (see :mod:`sessionsd._backend`).

    It picks the mode by the activity rule -- directory mode when
    ``sessions.d`` is an active directory store, legacy mode otherwise -- and
    re-checks it under the lock on every write and on every miss, so a
    migration or rollback done by another process is followed.  The options
    are :class:`~sessionsd.SessionStore`'s.
    """

    def __init__(self, path: str | os.PathLike[str], *, lower_keys: bool = True, durability: Durability = "file",
                 lock_timeout: float = DEFAULT_TIMEOUT, sessionsd_only: bool = False,
                 cache: bool = True, maintenance: Maintenance | None = None,
                 index: bool = True) -> None:
        durability = check_durability(durability)
        self.paths = StorePaths.from_store_path(path)
        self.lower_keys = lower_keys
        self.durability = durability
        self.lock_timeout = lock_timeout
        release_collected()
        self._lock = StoreLock.attach(self.paths.lock)
        self.sessionsd_only = sessionsd_only
        self._dir = DirectoryStore(self.paths, durability, bump_version_on_write=not sessionsd_only)
        self._legacy = LegacyStore(self.paths, durability, self.normalize_key)
        # Legacy snapshots hold normalised keys, so the key rule is part of
        # what a cached view means.
        self._cache = _Cache.attach((self.paths.store, lower_keys)) if cache else _Cache(enabled=False)
        # close() -- or garbage collection of a store never closed -- gives
        # back the shared lock descriptor and cache when the last user goes.
        self._collected = weakref.finalize(self, collected, self._lock, self._cache)
        self._mode: str | None = None
        self._state_memo: list[Any] = [None]
        #: (file name, reason) of entry files the last full load skipped.
        self.skipped: list[tuple[str, str]] = []
        #: Entry count and bytes after this object's last commit (None: unknown).
        self.last_stats: Stats | None = None
        self.maintenance = maintenance
        self._maintainer = Maintainer(self, maintenance) if maintenance and maintenance.active else None
        #: The report of the last maintenance sweep or check.
        self.last_maintenance: MaintenanceReport | None = None
        self.use_index = index

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Give back what this object holds: when it is the last open store
        object for its directory in this process, the lock's file
        descriptor, its owner file and the cached snapshot go too."""
        if self._collected.detach() is not None:  # the first close() only
            self._lock.detach()
            self._cache.detach()
        release_collected()

    @property
    def location(self) -> str:
        """The store path (``…/sessions.json``)."""
        return self.paths.store

    def _hold(self) -> AbstractContextManager[None]:
        """The store lock, with the reference's lock file unless this store
        is declared sessionsd-only."""
        return self._lock.hold(self.lock_timeout, reference=not self.sessionsd_only)

    # -- keys and modes -----------------------------------------------------------

    def normalize_key(self, key: Any) -> str:
        """The store's form of *key* (the legacy file's keys are normalised
        when it is read)."""
        return normalize_key(key, self.lower_keys)

    def _normalized_mapping(self, mapping: Mapping[Any, Any]) -> Entries:
        return check_mapping(mapping, self.lower_keys, self.paths.store)

    @property
    def mode(self) -> str:
        """``"directory"`` or ``"legacy"``, detected now."""
        return self._detect()

    def _detect(self) -> str:
        return DIRECTORY if self._detect_state() is not None else LEGACY

    def _detect_state(self) -> State | None:
        """The directory store's State when it is active (else None); sets the mode."""
        state = read_state(self.paths, memo=self._state_memo)
        if state is not None and self._mode != DIRECTORY:
            self._check_not_shared()
        self._mode = DIRECTORY if state is not None else LEGACY
        return state

    def _locked_state(self) -> State:
        """Under the lock, after recovery: the active store's State.  It
        cannot be missing here (recovery never deactivates a store, and every
        writer of sessions.d holds this lock); a clear error if it is."""
        state = read_state(self.paths)
        if state is None:
            raise RuntimeError(f"directory session store stopped being active while locked: {self.paths.root}")
        return state

    def _check_not_shared(self) -> None:
        """Refuse a directory store that another store file in this
        directory created (``users.json`` and ``orders.json`` side by side
        would otherwise share one ``sessions.d``)."""
        owner = _legacy_file_record(self.paths)
        if owner is not None and owner != os.path.basename(self.paths.store):
            raise SharedStoreError(
                f"{self.paths.root} belongs to the session store {os.path.join(self.paths.dir, owner)}, "
                f"so {self.paths.store} cannot use it: store files in one directory would share "
                "its sessions.d. Give each store a directory of its own.", self.paths.root)

    # -- single-entry reads: one file, no lock, no cache, no scan ----------------------

    def get(self, normalized: str) -> Entry | None:
        """The entry of *normalized* (a fresh dict the caller owns), or None."""
        default = None
        # Directory mode is remembered (a miss re-checks it); legacy mode is
        # re-checked on every read, since another process may have migrated.
        # A miss that crossed a migration or rollback looks again.
        for _ in range(_FLIP_ATTEMPTS):
            if (self._mode if self._mode == DIRECTORY else self._detect()) == DIRECTORY:
                name = encode_key(normalized)
                entry = self._dir.read_entry(normalized, name)
                if entry is not None:
                    return entry
                # A miss is an answer only when it was read in the store that
                # is active before and after the read: the one read may have
                # been rolled back, and a new one migrated, meanwhile.
                before = self._detect_state()
                if before is not None:
                    entry = self._dir.read_entry(normalized, name)
                    if entry is not None:
                        return entry
                    after = self._detect_state()
                    if after is not None and after.identity == before.identity:
                        return default
                    continue
            legacy = self._legacy_snapshot()
            entry = legacy.entries.get(normalized)
            if entry is not None:
                copied: Entry = copy_json(entry)
                return copied
            if self._legacy_stable(legacy):
                return default
        return default

    def updated_at(self, normalized: str) -> Any:
        """``entry["updatedAt"]`` of *normalized* exactly as stored, or ``None``.

        Directory mode reads one file and parses no JSON (the whole file only
        when another writer put ``updatedAt`` elsewhere than first)."""
        for _ in range(_FLIP_ATTEMPTS):
            if (self._mode if self._mode == DIRECTORY else self._detect()) == DIRECTORY:
                name = encode_key(normalized)
                # Hot path: one C call reads and parses the file's head.
                quick = read_updated_at(self._dir.entry_prefix + name, normalized)
                if quick is None:
                    quick = self._dir.read_updated_at_fully(normalized, name)
                if quick[0]:
                    return quick[1]
                before = self._detect_state()  # confirm the miss, as get() does
                if before is not None:
                    quick = self._dir.read_updated_at(normalized, name)
                    if quick[0]:
                        return quick[1]
                    after = self._detect_state()
                    if after is not None and after.identity == before.identity:
                        return None
                    continue
            legacy = self._legacy_snapshot()
            entry = legacy.entries.get(normalized)
            if entry is not None:
                return entry.get("updatedAt")
            if self._legacy_stable(legacy):
                return None
        return None

    def contains(self, normalized: str) -> bool:
        """Whether *normalized* has an entry."""
        return self.get(normalized) is not None

    # -- single-entry writes: O(1) in store size ---------------------------------

    def put(self, normalized: str, entry: Entry) -> None:
        """Create or replace the entry of *normalized*."""
        data = encode_document(normalized, entry)  # serialise outside the lock
        row = _index.entry_row(normalized, entry, len(data))  # the listing row of these very bytes
        with self._hold():
            state = self._detect_state()
            if state is not None:
                self._write_one(state, normalized, data, row)
                return
            self._legacy_update(lambda entries: entries.__setitem__(normalized, entry),
                                protect=frozenset({normalized}))

    def update_one(self, normalized: str, fn: Callable[[Entry | None], Entry | None],
                   create: bool) -> Entry | None:
        """Read-modify-write one entry under the lock (see the backend protocol)."""
        key = normalized
        name = encode_key(normalized)
        with self._hold():
            state = self._detect_state()
            if state is not None:
                current = self._dir.read_entry(normalized, name)
                if current is None and not create:
                    return None
                new = fn(None if current is None else copy_json(current))
                if new is None:
                    return current
                data = encode_document(normalized, new)
                self._write_one(state, normalized, data, _index.entry_row(normalized, new, len(data)))
                return new
            outcome: list[Entry | None] = []

            def mutate(entries: Entries) -> None:
                current = entries.get(normalized)
                if current is None and not create:
                    outcome.append(None)
                    return
                new = fn(None if current is None else copy_json(current))
                if new is None:
                    outcome.append(current)
                    return
                if not isinstance(new, dict):
                    raise InvalidEntryError(
                        f"session entry {normalized!r} must be a dict (a JSON object), "
                        f"not {type(new).__name__}", key)
                entries[normalized] = new
                outcome.append(new)

            self._legacy_update(mutate, protect=frozenset({normalized}))
            return outcome[0]

    def delete(self, normalized: str) -> bool:
        """Remove the entry of *normalized*; True if there was one.  A symlink
        or other non-regular file at the entry's path is left in place."""
        with self._hold():
            state = self._detect_state()
            if state is not None:
                return self._write_one(state, normalized, None)
            removed: list[bool] = []
            self._legacy_update(lambda entries: removed.append(entries.pop(normalized, None) is not None))
            return removed[0]

    def _write_one(self, state: State, key: str, data: bytes | None, row: list[Any] | None = None) -> bool:
        name = encode_key(key)
        changed, seq_before, stats = self._dir.write_one(name, key, data, state.version, row)
        self.last_stats = stats
        if self._dir.index_compact_due:
            self._compact_index()
        version = state.version + (1 if changed and self._dir.bump_version_on_write else 0)
        if changed:
            self._note_commit(state, seq_before, version, {name: key})
        if data is not None and self._maintainer is not None:
            # O(1) unless a sweep is due; never evicts the session just written.
            self._maintainer.after_write(version, key, stats)
        return changed

    def _remove_entries(self, keys: list[str], needs_entries: bool) -> Entries:
        """Under the lock, directory mode: delete *keys* as one commit;
        returns their entries (when *needs_entries*) for callbacks."""
        state = read_state(self.paths, memo=self._state_memo, check_safety=False)
        if state is None:
            raise RuntimeError(f"directory session store stopped being active while locked: {self.paths.root}")
        removed: Entries = {}
        changes: list[Change] = []
        for key in keys:
            name = encode_key(key)
            if needs_entries:
                entry = self._dir.read_entry(key, name)
                if entry is not None:
                    removed[key] = entry
            else:
                removed[key] = {}
            changes.append((name, key, None))
        if len(changes) == 1:
            name, key, _ = changes[0]
            changed, seq_before, self.last_stats = self._dir.write_one(name, key, None, state.version)
            if changed:
                version = state.version + (1 if self._dir.bump_version_on_write else 0)
                self._note_commit(state, seq_before, version, {name: key})
        elif changes:
            seq_before, self.last_stats = self._dir.commit(changes)
            self._note_commit(state, seq_before, state.version + 1,
                              {name: key for name, key, _ in changes})
        if self._dir.index_compact_due:
            self._compact_index()
        return removed

    def _note_commit(self, state: State, seq_before: int, version_after: int,
                     dirty: dict[str, str]) -> None:
        """Keep the cache valid across this process's own commit (the lock is
        held, so nobody else committed in between)."""
        cache = self._cache
        if not cache.enabled:
            return
        with cache.mutex:
            if cache.snapshot is not None and cache.token == (state.identity, state.version, seq_before):
                cache.token = (state.identity, version_after, seq_before + 2)
                cache.dirty.update(dirty)
            else:
                cache.snapshot = None
                cache.token = None
                cache.dirty = {}

    # -- whole-store operations ----------------------------------------------------

    def load(self) -> Entries:
        """Every session, ``{key: entry}``: a snapshot-consistent read (no
        half-applied commit is ever visible), deep-copied for the caller."""
        if not self._cache.enabled:
            # Nothing keeps this snapshot: it is the caller's already, no copy needed.
            return self._entries_snapshot()
        return copy_entries(self._entries_snapshot())

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{key: {"lastChannel", "lastTo", "updatedAt"}}`` for every session.

        Directory mode answers from the listing index (no entry file is read
        when it is current); the result is what a full ``load()`` at the same
        instant would give."""
        return self._listing(lambda index: index.summary(), _summarize)

    def keys(self) -> list[str]:
        """Every key in code point order (from the listing index in
        directory mode, sorted once per index state)."""
        return self._listing(lambda index: index.sorted_keys(), sorted)

    def count(self) -> int:
        """The number of sessions (from the listing index in directory mode)."""
        return self._listing(len, len)

    def recent(self, limit: int, offset: int) -> list[tuple[str, dict[str, Any]]]:
        """The most recently updated sessions: ``[(key, {"lastChannel",
        "lastTo", "updatedAt"}), ...]``, newest first, skipping the first
        *offset*, at most *limit*.

        Order: ``updatedAt`` descending; a missing or non-numeric
        ``updatedAt`` counts as oldest; ties by key, ascending.  In directory
        mode a page is read from the head of the listing index, without
        parsing the rest of it."""
        def from_entries(entries: Entries) -> list[tuple[str, dict[str, Any]]]:
            rows: list[list[Any]] = [[key, entry.get("updatedAt")] for key, entry in entries.items()]
            rows.sort(key=_index.order_key)
            return [(str(row[0]), _summary_of(entries[row[0]])) for row in rows[offset:offset + limit]]

        return self._listing(lambda index: index.recent(limit, offset), from_entries)

    def mutate(self, mutator: Callable[[Entries], T], normalize: Normalizer | None = None,
               protect: frozenset[str] = frozenset()) -> T:
        """Run *mutator* on a private copy of the whole store under the lock,
        then commit only what changed (added, changed and removed entries,
        compared by value) as one atomic commit.  Returns what *mutator*
        returns.  An unchanged store writes nothing.

        The reference's ``updateSessionStore``; :meth:`update_store` is the
        same method under that name.  (``update()`` is the mapping's: it
        takes entries, not a function.)  *normalize* checks what *mutator*
        left (default: this store's own rule)."""
        normalize = normalize or self._normalized_mapping
        with self._hold():
            state = self._detect_state()
            if state is not None:
                if self._dir.recover():  # a replayed commit bumps the version
                    state = self._locked_state()
                before = self._dir_snapshot_locked(state)
                work = copy_entries(before.entries)
                result = mutator(work)
                after = normalize(work)
                removed: Entries = {}
                if self._maintainer is not None:
                    _report, removed = self._maintainer.apply_to_mapping(after, protect=protect,
                                                                         sizes=self._size_of())
                self._commit_diff(state, before, after)
                if removed and self._maintainer is not None:
                    self._maintainer._finish(_report, removed)
                return result
            holder: list[T] = []
            self._legacy_update(lambda entries: holder.append(mutator(entries)), protect=protect)
            return holder[0]

    def put_many(self, normalized: Entries) -> None:
        """Create or replace every ``key: entry`` of *normalized* as one
        atomic commit.  Entries not named are left alone; nothing else is read."""
        encoded = {key: encode_document(key, entry) for key, entry in normalized.items()}  # outside the lock
        if self._maintainer is not None:
            # Maintenance rules look at the whole store: the general path,
            # never evicting what is being written (as put() never does).
            self.mutate(lambda current: current.update(normalized), protect=frozenset(normalized))
            return
        with self._hold():
            state = self._detect_state()
            if state is None:
                self._legacy_update(lambda current: current.update(normalized),
                                    protect=frozenset(normalized))
                return
            if len(encoded) == 1:
                [(key, data)] = encoded.items()
                self._write_one(state, key, data, _index.entry_row(key, normalized[key], len(data)))
                return
            if self._dir.recover():  # a replayed commit bumps the version
                state = self._locked_state()
            self._commit_entries(state, normalized, encoded=encoded)

    def take(self, normalized: str) -> Entry | None:
        """Remove the entry of *normalized* and return it (``None`` when there
        is none), as one atomic step."""
        with self._hold():
            state = self._detect_state()
            if state is not None:
                entry = self._dir.read_entry(normalized, encode_key(normalized))
                if entry is None:
                    return None
                self._write_one(state, normalized, None)
                return entry
            taken: list[Entry | None] = []
            self._legacy_update(lambda entries: taken.append(entries.pop(normalized, None)))
            return taken[0]

    def _size_of(self, settings: Maintenance | None = None) -> Callable[[str, Entry], int] | None:
        """Entry sizes for the disk budget (serialised, as on disk), or None.
        *settings*: the sweep's (default: those of the maintainer in force)."""
        if settings is None:
            settings = self._maintainer.settings if self._maintainer is not None else self.maintenance
        if settings is None or settings.max_disk_bytes is None:
            return None
        return lambda key, entry: len(encode_document(key, entry))

    def _commit_diff(self, state: State, before: Snapshot, after: Mapping[str, Entry]) -> None:
        old = before.entries
        writes = {key: entry for key, entry in after.items()
                  if key not in old or not same_json(old[key], entry)}
        self._commit_entries(state, writes, [key for key in old if key not in after])

    def _commit_entries(self, state: State, writes: Mapping[str, Entry], deletes: Iterable[str] = (),
                        encoded: Mapping[str, bytes] | None = None) -> None:
        """Under the lock, directory mode: write *writes* (their bytes from
        *encoded* when the caller serialised them already) and remove
        *deletes*, as one multi-entry commit.  Nothing to do: nothing written."""
        changes: list[Change] = []
        rows: dict[str, list[Any]] = {}
        dirty: dict[str, str] = {}
        for key, entry in writes.items():
            name = encode_key(key)
            data = encoded[key] if encoded is not None else encode_document(key, entry)
            changes.append((name, key, data))
            rows[key] = _index.entry_row(key, entry, len(data))
            dirty[name] = key
        for key in deletes:
            name = encode_key(key)
            changes.append((name, key, None))
            dirty[name] = key
        if not changes:
            return
        seq_before, self.last_stats = self._dir.commit(changes, rows)
        self._note_commit(state, seq_before, state.version + 1, dirty)
        if self._dir.index_compact_due:
            self._compact_index()

    # -- maintenance -----------------------------------------------------------------

    def maintain(self, settings: Maintenance, dry_run: bool) -> MaintenanceReport:
        """Run a full maintenance sweep now (prune, cap, disk budget) with
        *settings*.  *dry_run* or ``mode="warn"`` only reports what would go."""
        maintainer = Maintainer(self, settings)
        with self._hold():
            state = self._detect_state()
            if state is not None:
                if self._dir.recover():
                    state = self._locked_state()
                stats = self._dir.ensure_stats(state.version)
                return maintainer.sweep_directory(state.version, stats, full=True, dry_run=dry_run)
            snapshot = self._legacy_snapshot()
            if dry_run or settings.mode == "warn":
                report, _ = maintainer.apply_to_mapping(copy_entries(snapshot.entries),
                                                        sizes=self._size_of(settings), dry_run=dry_run)
                return report
            previous, self._maintainer = self._maintainer, maintainer
            try:
                self._legacy_update(lambda entries: None)
            finally:
                self._maintainer = previous
            if self.last_maintenance is None:  # the sweep always reports; never None here
                raise RuntimeError(f"maintenance sweep of {self.paths.store} made no report")
            return self.last_maintenance
