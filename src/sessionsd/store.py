"""The public store: :class:`SessionStore`.

One object per store path (the legacy ``sessions.json`` path).  It picks the
mode by the activity rule -- directory mode when ``sessions.d`` is an active
directory store, legacy mode otherwise -- and re-checks it under the lock on
every write and on every miss, so a migration or rollback done by another
process is followed.

Thread- and process-safe: every write takes the store lock inside; reads take
none.  Keys are normalised (trimmed, lower-cased unless ``lower_keys=False``)
the same way on every path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from . import index as _index
from ._codec import copy_json, encode_key, read_updated_at, same_json, validate_key
from ._directory import DirectoryStore, Snapshot, _Retry
from ._documents import encode_document
from ._fsutil import DURABILITY_MODES
from ._layout import BLOCKED_KEYS, StorePaths, read_state
from ._legacy import LegacySnapshot, LegacyStore
from ._lock import DEFAULT_TIMEOUT, StoreLock
from .errors import (
    BlockedKeyError,
    InvalidEntryError,
    InvalidKeyError,
    StoreClosedError,
    StoreLockTimeout,
)
from .maintenance import Maintainer, Maintenance, MaintenanceReport

__all__ = ["SessionStore", "DIRECTORY", "LEGACY"]

_log = logging.getLogger(__name__)

DIRECTORY = "directory"
LEGACY = "legacy"
#: Lock-free tries of a full load before it reads under the lock; a
#: commit in flight is waited out (a few ms at most) rather than blocked.
_SNAPSHOT_ATTEMPTS = 3
#: Reads that find the mode changed under them (a migration or rollback by
#: another process) look again this many times.
_FLIP_ATTEMPTS = 4

T = TypeVar("T")


def copy_entries(entries: Mapping[str, Any]) -> dict[str, Any]:
    return {key: copy_json(entry) for key, entry in entries.items()}


def _summary_of(entry: dict) -> dict[str, Any]:
    return {"lastChannel": copy_json(entry.get("lastChannel")), "lastTo": copy_json(entry.get("lastTo")),
            "updatedAt": copy_json(entry.get("updatedAt"))}


def _summarize(entries: Mapping[str, dict]) -> dict[str, dict[str, Any]]:
    return {key: _summary_of(entry) for key, entry in entries.items()}


def _entries_mtime(paths: StorePaths) -> int:
    """mtime_ns of ``entries/``: part of the index token, so an edit that
    creates, renames or removes an entry file is noticed without a version bump."""
    try:
        return os.lstat(paths.entries).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return -1


def _changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return [key for key, entry in after.items()
            if key not in before or not same_json(before[key], entry)]


def _check_serialisable(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Raise InvalidEntryError (naming the key) for a new or changed entry
    JSON cannot represent, before anything is written."""
    for key in _changed_keys(before, after):
        encode_document(key, after[key])


def _rebase(base: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """*base* with the change from *old* to *new* applied on top."""
    result = dict(base)
    for key in old:
        if key not in new:
            result.pop(key, None)
    for key in _changed_keys(old, new):
        result[key] = new[key]
    return result


class _Cache:
    """The per-process cache of one store, shared by its store objects.

    Directory mode: a snapshot valid for ``token`` = (state version, seq);
    ``dirty`` lists entry files this process rewrote since, so the next load
    re-reads just those.  Legacy mode: the parsed file and its stat token.
    """

    _registry: dict[tuple[str, bool], _Cache] = {}
    _registry_mutex = threading.Lock()

    @classmethod
    def for_path(cls, path: tuple[str, bool]) -> _Cache:
        with cls._registry_mutex:
            cache = cls._registry.get(path)
            if cache is None:
                cache = cls._registry[path] = cls()
            return cache

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.mutex = threading.Lock()
        self.snapshot: Snapshot | None = None
        self.token: tuple[int, int] | None = None
        self.dirty: dict[str, str] = {}
        self.legacy: LegacySnapshot | None = None
        #: The listing index (sessionsd.index) of the last directory listing.
        self.index: _index.Index | None = None

    def clear(self) -> None:
        with self.mutex:
            self.snapshot = None
            self.token = None
            self.dirty = {}
            self.legacy = None
            self.index = None


class SessionStore:
    """Per-session metadata store rooted at a ``sessions.json`` path.

    Parameters
    ----------
    path:
        The store path: the legacy ``sessions.json`` (it need not exist).
        The directory store lives beside it in ``sessions.d/``.
    lower_keys:
        Lower-case keys after trimming (the default; the reference store's
        rule).  ``False`` keeps their case.
    durability:
        ``"none"``: rename-atomic, survives process crashes.  ``"file"`` (the
        default): fsync each file before its rename, so power loss never
        leaves an empty or torn entry.  ``"full"``: also fsync the directory,
        so a write is on disk when the call returns.
    lock_timeout:
        Seconds to wait for the store lock before :class:`StoreLockTimeout`
        (negative: forever).
    sessionsd_only:
        Declare that only sessionsd touches this store (no reference host
        reads or writes it).  By default (``False``) every write also holds
        the reference's lock file ``sessions.json.lock`` in its own protocol,
        and every commit bumps ``state.json``'s version, which reference
        readers cache on.  ``True`` skips both: the fastest path, safe only
        while no reference process uses the store.  sessionsd processes
        always exclude each other and see each other's commits either way.
    cache:
        Keep the per-process snapshot cache that makes repeated ``load()``
        cheap.  Single-entry reads never use it.
    maintenance:
        :class:`~sessionsd.maintenance.Maintenance` settings (prune, cap,
        disk budget), applied on every write; ``None`` for none.
    index:
        Serve ``keys()``, ``len()``, ``summary()`` and ``recent()`` from the
        listing index ``sessions.d/index`` in directory mode (built on the
        first listing, kept by every commit, repaired after other writers;
        see :mod:`sessionsd.index`).  ``False`` reads every entry file for
        each listing and never creates the index (writes still keep one that
        exists).
    """

    def __init__(self, path, *, lower_keys: bool = True, durability: str = "file",
                 lock_timeout: float = DEFAULT_TIMEOUT, sessionsd_only: bool = False,
                 cache: bool = True, maintenance: Maintenance | None = None,
                 index: bool = True) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, not {durability!r}")
        self.paths = StorePaths.from_store_path(path)
        self.lower_keys = lower_keys
        self.durability = durability
        self.lock_timeout = lock_timeout
        self._lock = StoreLock.for_path(self.paths.lock)
        self.sessionsd_only = sessionsd_only
        self._dir = DirectoryStore(self.paths, durability, bump_version_on_write=not sessionsd_only)
        self._legacy = LegacyStore(self.paths, durability, self.normalize_key)
        # Legacy snapshots hold normalised keys, so the key rule is part of
        # what a cached view means.
        self._cache = _Cache.for_path((self.paths.store, lower_keys)) if cache else _Cache(enabled=False)
        self._mode: str | None = None
        self._state_memo: list = [None]
        self._closed = False
        #: (file name, reason) of entry files the last full load skipped.
        self.skipped: list[tuple[str, str]] = []
        #: Entry count and bytes after this object's last commit (None: unknown).
        self.last_stats = None
        self.maintenance = maintenance
        self._maintainer = Maintainer(self, maintenance) if maintenance and maintenance.active else None
        #: The report of the last maintenance sweep or check.
        self.last_maintenance: MaintenanceReport | None = None
        self.use_index = index

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Forget this object's state; every later call raises StoreClosedError.
        Nothing is buffered: every write was complete when it returned."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SessionStore:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self._mode or "mode not yet detected")
        return f"<SessionStore {self.paths.store!r} ({state})>"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"session store is closed: {self.paths.store}")

    def _hold(self):
        """The store lock, with the reference's lock file unless this store
        is declared sessionsd-only."""
        return self._lock.hold(self.lock_timeout, reference=not self.sessionsd_only)

    # -- keys and modes -----------------------------------------------------------

    def normalize_key(self, key: Any) -> str:
        """The store's form of *key*: trimmed, lower-cased unless disabled.
        Raises InvalidKeyError (a ValueError) for a bad key."""
        trimmed = validate_key(key)
        return trimmed.lower() if self.lower_keys else trimmed

    def _writable_key(self, key: Any) -> str:
        normalized = self.normalize_key(key)
        if normalized in BLOCKED_KEYS:
            raise BlockedKeyError(
                f"session key {normalized!r} is reserved (JavaScript readers of this store "
                "skip it, so it could never be read back)",
                key,
            )
        return normalized

    @property
    def mode(self) -> str:
        """``"directory"`` or ``"legacy"``, detected now."""
        self._check_open()
        return self._detect()

    def _detect(self) -> str:
        return DIRECTORY if self._detect_state() is not None else LEGACY

    def _detect_state(self):
        """The directory store's State when it is active (else None); sets the mode."""
        state = read_state(self.paths, memo=self._state_memo)
        self._mode = DIRECTORY if state is not None else LEGACY
        return state

    # -- single-entry reads: one file, no lock, no cache, no scan ----------------------

    def get(self, key: Any, default: Any = None) -> Any:
        """The entry of *key* (a fresh dict the caller owns), or *default*."""
        self._check_open()
        normalized = self.normalize_key(key)
        if normalized in BLOCKED_KEYS:
            return default
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
                return copy_json(entry)
            if self._legacy_stable(legacy):
                return default
        return default

    def updated_at(self, key: Any) -> Any:
        """``entry["updatedAt"]`` of *key* exactly as stored, or ``None``.

        Directory mode reads the head of one file (the whole file only when
        another writer put ``updatedAt`` elsewhere than first)."""
        if self._closed:
            self._check_open()
        normalized = validate_key(key)
        if self.lower_keys:
            normalized = normalized.lower()
        if normalized in BLOCKED_KEYS:
            return None
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

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    # -- single-entry writes: O(1) in store size ---------------------------------

    def put(self, key: Any, entry: dict) -> None:
        """Create or replace the entry of *key*."""
        self._check_open()
        normalized = self._writable_key(key)
        data = encode_document(normalized, entry)  # serialise outside the lock
        row = _index.entry_row(normalized, entry, len(data))  # the listing row of these very bytes
        with self._hold():
            state = self._detect_state()
            if state is not None:
                self._write_one(state, normalized, data, row)
                return
            self._legacy_update(lambda entries: entries.__setitem__(normalized, entry),
                                protect=frozenset({normalized}))

    def patch(self, key: Any, fields: Mapping[str, Any]) -> dict | None:
        """Shallow-merge *fields* into the entry of *key*; returns the merged
        entry, or ``None`` (writing nothing) when there is no such entry."""
        self._check_open()
        if not isinstance(fields, Mapping):
            raise InvalidEntryError(
                f"patch fields for session entry {key!r} must be a mapping (a dict), "
                f"not {type(fields).__name__}", key)

        def merge(current: dict | None) -> dict | None:
            return None if current is None else {**current, **fields}

        return self._update_one(key, merge, create=False)

    def update_entry(self, key: Any, fn: Callable[[dict | None], dict | None]) -> dict | None:
        """Read-modify-write one entry under the lock.

        *fn* gets a private copy of the entry (``None`` when missing) and
        returns the entry to store, or ``None`` to store nothing.  Returns the
        entry now stored (``None`` if there is none)."""
        self._check_open()
        return self._update_one(key, fn, create=True)

    def _update_one(self, key: Any, fn: Callable[[dict | None], dict | None],
                    create: bool) -> dict | None:
        normalized = self._writable_key(key)
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
            outcome: list[dict | None] = []

            def mutate(entries: dict) -> None:
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

    def delete(self, key: Any) -> bool:
        """Remove the entry of *key*; True if there was one.  A symlink or
        other non-regular file at the entry's path is left in place."""
        self._check_open()
        normalized = self.normalize_key(key)
        if normalized in BLOCKED_KEYS:
            return False
        with self._hold():
            state = self._detect_state()
            if state is not None:
                return self._write_one(state, normalized, None)
            removed: list[bool] = []
            self._legacy_update(lambda entries: removed.append(entries.pop(normalized, None) is not None))
            return removed[0]

    def _write_one(self, state, key: str, data: bytes | None, row: list | None = None) -> bool:
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

    def _remove_entries(self, keys: list[str], needs_entries: bool) -> dict[str, dict]:
        """Under the lock, directory mode: delete *keys* as one commit;
        returns their entries (when *needs_entries*) for callbacks."""
        state = read_state(self.paths, memo=self._state_memo, check_safety=False)
        removed: dict[str, dict] = {}
        changes = []
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

    def _note_commit(self, state, seq_before: int, version_after: int,
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

    def load(self) -> dict[str, dict]:
        """Every session, ``{key: entry}``: a snapshot-consistent read (no
        half-applied commit is ever visible), deep-copied for the caller."""
        self._check_open()
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
        """Every session key, in no particular order (``recent()`` sorts)."""
        return self._listing(lambda index: index.keys(), list)

    def __len__(self) -> int:
        return self._listing(len, len)

    def recent(self, limit: int = 50, offset: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """The most recently updated sessions: ``[(key, {"lastChannel",
        "lastTo", "updatedAt"}), ...]``, newest first, skipping the first
        *offset*, at most *limit*.

        Order: ``updatedAt`` descending; a missing or non-numeric
        ``updatedAt`` counts as oldest; ties by key, ascending.  In directory
        mode a page is read from the head of the listing index, without
        parsing the rest of it."""
        for name, value in (("limit", limit), ("offset", offset)):
            if type(value) is not int or value < 0:
                raise ValueError(f"recent() {name} must be an int >= 0, not {value!r}")

        def from_entries(entries: dict) -> list:
            rows = [[key, entry.get("updatedAt")] for key, entry in entries.items()]
            rows.sort(key=_index.order_key)
            return [(row[0], _summary_of(entries[row[0]])) for row in rows[offset:offset + limit]]

        return self._listing(lambda index: index.recent(limit, offset), from_entries)

    def update(self, mutator: Callable[[dict[str, dict]], T]) -> T:
        """Run *mutator* on a private copy of the whole store under the lock,
        then commit only what changed (added, changed and removed entries,
        compared by value) as one atomic commit.  Returns what *mutator*
        returns.  An unchanged store writes nothing."""
        self._check_open()
        with self._hold():
            state = self._detect_state()
            if state is not None:
                if self._dir.recover():  # a replayed commit bumps the version
                    state = read_state(self.paths)
                before = self._dir_snapshot_locked(state)
                work = copy_entries(before.entries)
                result = mutator(work)
                after = self._normalized_mapping(work)
                removed: dict[str, dict] = {}
                if self._maintainer is not None:
                    _report, removed = self._maintainer.apply_to_mapping(after, sizes=self._size_of())
                self._commit_diff(state, before, after)
                if removed:
                    self._maintainer._finish(_report, removed)
                return result
            holder: list[T] = []
            self._legacy_update(lambda entries: holder.append(mutator(entries)))
            return holder[0]

    def save(self, mapping: Mapping[str, dict]) -> None:
        """Make the store hold exactly *mapping*, writing only the difference."""
        if not isinstance(mapping, Mapping):
            raise InvalidEntryError(f"save() needs a mapping of key -> entry, not {type(mapping).__name__}")

        def replace_all(entries: dict) -> None:
            entries.clear()
            entries.update(mapping)

        self.update(replace_all)

    def _normalized_mapping(self, mapping: Mapping[Any, Any]) -> dict[str, dict]:
        result: dict[str, dict] = {}
        for raw_key, entry in mapping.items():
            key = self._writable_key(raw_key)
            if key in result:
                raise InvalidKeyError(
                    f"two keys normalise to {key!r}; keep one of them", raw_key)
            if not isinstance(entry, dict):
                raise InvalidEntryError(
                    f"session entry {key!r} must be a dict (a JSON object), "
                    f"not {type(entry).__name__}", raw_key)
            result[key] = entry
        return result

    def _size_of(self, settings: Maintenance | None = None) -> Callable[[str, dict], int] | None:
        """Entry sizes for the disk budget (serialised, as on disk), or None.
        *settings*: the sweep's (default: those of the maintainer in force)."""
        if settings is None:
            settings = self._maintainer.settings if self._maintainer is not None else self.maintenance
        if settings is None or settings.max_disk_bytes is None:
            return None
        return lambda key, entry: len(encode_document(key, entry))

    def _commit_diff(self, state, before: Snapshot, after: Mapping[str, dict]) -> None:
        old = before.entries
        changes = []
        rows: dict[str, list] = {}
        dirty: dict[str, str] = {}
        for key, entry in after.items():
            if key not in old or not same_json(old[key], entry):
                name = encode_key(key)
                data = encode_document(key, entry)
                changes.append((name, key, data))
                rows[key] = _index.entry_row(key, entry, len(data))
                dirty[name] = key
        for key in old:
            if key not in after:
                name = encode_key(key)
                changes.append((name, key, None))
                dirty[name] = key
        if not changes:
            return
        seq_before, self.last_stats = self._dir.commit(changes, rows)
        self._note_commit(state, seq_before, state.version + 1, dirty)
        if self._dir.index_compact_due:
            self._compact_index()

    # -- the listing index (directory mode) -------------------------------------------

    def _listing(self, answer: Callable[[_index.Index], T], fallback: Callable[[dict], T]) -> T:
        """*answer* from the current listing index in directory mode, else
        *fallback* of a full snapshot (legacy mode, ``index=False``, or a
        store that keeps flipping modes under us)."""
        self._check_open()
        if self.use_index:
            trust = True
            for _ in range(_FLIP_ATTEMPTS):
                try:
                    index = self._dir_index(trust)  # reads state.json: None when not active
                    if index is None:
                        if self._detect() != DIRECTORY:
                            break
                        continue  # flipped back meanwhile: look again
                    return answer(index)
                except _index.Gone:
                    continue  # its base file was compacted meanwhile: load the new one
                except ValueError as exc:
                    # A damaged base section: rebuild from the entry files.
                    _log.warning("session listing index of %s is unreadable (%s): rebuilding it",
                                 self.paths.root, exc)
                    trust = False
                    with self._cache.mutex:
                        self._cache.index = None
        return fallback(self._entries_snapshot())

    def _dir_index(self, trust: bool = True, build: bool = True) -> _index.Index | None:
        """The listing index valid for the current store state (seqlock as
        in :meth:`_dir_snapshot`), ``None`` if the store stopped being active
        -- or, with ``build=False``, if the stored index is not current (no
        repair, nothing written)."""
        for attempt in range(_SNAPSHOT_ATTEMPTS):
            seq = self._dir.read_seq()
            if seq & 1:
                time.sleep(0.0005 * (attempt + 1))  # a commit is in flight
                continue
            state = read_state(self.paths, memo=self._state_memo)
            if state is None:
                return None
            try:
                return self._index_at(state, seq, trust, build)
            except _Retry:
                continue
        if not build:
            return None
        with self._hold():
            if read_state(self.paths) is None:
                return None
            self._dir.recover()
            state = read_state(self.paths)
            return self._index_at(state, self._dir.read_seq(), trust, build)

    def _token(self, state, seq: int) -> tuple:
        return state.identity + (state.version, seq, _entries_mtime(self.paths))

    def _index_at(self, state, seq: int, trust: bool, build: bool = True) -> _index.Index | None:
        """The index for (state, seq): the cached one, the stored one, or a
        repair of either; raises _Retry when a commit overlapped a repair."""
        token = self._token(state, seq)
        cache = self._cache
        cached = None
        if cache.enabled and trust:
            with cache.mutex:
                cached = cache.index
            if cached is not None and cached.token == token:
                return cached
        loaded = _index.load(self.paths.root) if trust else None
        if loaded is not None and loaded.chained and loaded.token == token:
            result = loaded
            persist = loaded.log_size > max(_index.READER_FLOOR, loaded.base_size // 4)
        elif not build:
            return None
        else:
            prior = loaded if loaded is not None and loaded.token[:3] == token[:3] else None
            if prior is None and cached is not None and cached.token[:3] == token[:3]:
                prior = cached
            try:
                result = _index.repair(self.paths.entries, prior, token)
            except (FileNotFoundError, NotADirectoryError):
                raise _Retry from None  # entries/ moved away: a rollback or re-migration
            if os.path.lexists(self.paths.commit) or self._dir.read_seq() != seq:
                raise _Retry
            after = read_state(self.paths)
            if (after is None or after.version != state.version or after.identity != state.identity
                    or _entries_mtime(self.paths) != token[5]):
                raise _Retry
            persist = True
        if persist:
            self._persist_index(result)
        if cache.enabled:
            result.shared = True
            with cache.mutex:
                cache.index = result
        return result

    def _persist_index(self, index: _index.Index) -> None:
        """Store *index* if the lock is free right now and it is still
        current; otherwise it stays in memory (the next listing tries again)."""
        try:
            self._lock.acquire(0, reference=False)
        except StoreLockTimeout:
            return
        try:
            state = read_state(self.paths, check_safety=False)
            seq = self._dir.read_seq()
            if state is None or seq & 1 or os.path.lexists(self.paths.commit):
                return
            if self._token(state, seq) != index.token:
                return  # a commit came in between: its record is not in this index
            if (index.pending is not None
                    and index.log_size <= max(_index.READER_FLOOR, index.base_size // 4)
                    and _index.append_pending(self.paths.root, index)):
                return
            _index.write(self.paths.root, index, self.durability)
            index.pending = None
        except (OSError, TypeError, ValueError) as exc:
            # Disk full, or a value the index cannot hold: the index is
            # derived data, so listings go on from memory or by repair.
            _log.debug("session listing index of %s not written: %s", self.paths.root, exc)
        finally:
            self._lock.release()

    def _compact_index(self) -> None:
        """Under the lock, after a commit whose journal outgrew its base."""
        self._dir.index_compact_due = False
        try:
            self._dir_index()
        except (OSError, ValueError, _index.Gone) as exc:
            _log.debug("session listing index of %s not compacted: %s", self.paths.root, exc)

    def _maintenance_rows(self) -> list[tuple[list, str]] | None:
        """Under the lock, directory mode: (row, file name) of every session
        from the listing index, or None when listings do not use it."""
        if not self.use_index:
            return None
        try:
            # Only a current index: a sweep (a dry run too) writes nothing of its own.
            index = self._dir_index(build=False)
            return None if index is None else index.items_with_names()
        except (_index.Gone, ValueError):
            return None

    # -- snapshots -----------------------------------------------------------------

    def _entries_snapshot(self) -> dict[str, dict]:
        """The cached entries (never handed out without a copy).

        A migration or rollback by another process flips which store is
        authoritative; both keep every session readable at every instant
        (the new store is complete before the old one goes), so a read that
        saw the mode change under it simply looks again."""
        for _ in range(_FLIP_ATTEMPTS):
            if self._detect() == DIRECTORY:
                snapshot = self._dir_snapshot()
                if snapshot is not None:
                    self.skipped = snapshot.skipped
                    return snapshot.entries
                continue
            legacy = self._legacy_snapshot()
            if self._legacy_stable(legacy):
                return legacy.entries
        with self._hold():  # still flipping: read where nobody can change it
            if self._detect() == DIRECTORY:
                self._dir.recover()
                snapshot = self._dir_snapshot_locked(read_state(self.paths))
                self.skipped = snapshot.skipped
                return snapshot.entries
            return self._legacy_snapshot().entries

    def _dir_snapshot(self) -> Snapshot | None:
        """A consistent snapshot without the lock if possible (seqlock), under
        it after repeated overlaps; ``None`` if the store stopped being active."""
        for attempt in range(_SNAPSHOT_ATTEMPTS):
            seq = self._dir.read_seq()
            if seq & 1:
                time.sleep(0.0005 * (attempt + 1))  # a commit is in flight: ~18 ms in all
                continue
            state = read_state(self.paths)
            if state is None:
                return None
            try:
                return self._cached_or_read(state, seq)
            except _Retry:
                continue
        with self._hold():
            if read_state(self.paths) is None:
                return None
            self._dir.recover()
            state = read_state(self.paths)
            return self._dir_snapshot_locked(state)

    def _dir_snapshot_locked(self, state) -> Snapshot:
        seq = self._dir.read_seq()
        return self._cached_or_read(state, seq)

    def _cached_or_read(self, state, seq: int) -> Snapshot:
        # The identity (inodes of sessions.d and entries/) makes a cached
        # view die with its store: one rolled back and migrated again starts
        # from the same (version, seq).
        token = (state.identity, state.version, seq)
        cache = self._cache
        with cache.mutex:
            cached, cached_token, dirty = cache.snapshot, cache.token, dict(cache.dirty)
        if cached is not None and cached_token == token:
            if not dirty:
                return cached
            snapshot = self._dir.snapshot(state, seq, reuse=cached, dirty=dirty)
        else:
            snapshot = self._dir.snapshot(state, seq)
            if snapshot.skipped:
                for name, reason in snapshot.skipped:
                    # Temp files are writes in progress (ours or another
                    # program's): nothing an operator must act on.
                    _log.log(logging.DEBUG if reason == "temp file" else logging.WARNING,
                             "skipped entry file %s in %s: %s", name, self.paths.entries, reason)
        if not cache.enabled:
            return snapshot
        with cache.mutex:
            if cache.token in (None, cached_token, token):
                cache.snapshot = snapshot
                cache.token = token
                cache.dirty = {}
        return snapshot

    # -- legacy mode -------------------------------------------------------------------

    def _legacy_stable(self, snapshot: LegacySnapshot) -> bool:
        """Whether *snapshot* is still the answer: the store is in legacy
        mode now and ``sessions.json`` is the file that was read (or still
        missing).  A migration and a rollback between the read and this
        check (the file gone, then back) make it False: look again."""
        return self._detect() != DIRECTORY and self._legacy.token() == snapshot.token

    def _legacy_snapshot(self) -> LegacySnapshot:
        # -- damaged sessions.d (see sessionsd.damage): one lstat when there is
        # none; a WARNING once per damage; UnsafeStoreError for a symlink --
        from .damage import guard_read

        guard_read(self.paths)
        # -- end damaged sessions.d --
        cache = self._cache
        if not cache.enabled:
            return self._legacy.read()
        token = self._legacy.token()
        with cache.mutex:
            cached = cache.legacy
        if cached is not None and token is not None and cached.token == token:
            return cached
        snapshot = self._legacy.read()
        if snapshot.token != token:
            return snapshot  # changed while we read it: do not cache a guess
        with cache.mutex:
            cache.legacy = snapshot
        return snapshot

    def _legacy_update(self, mutate: Callable[[dict], None], protect: frozenset = frozenset()) -> None:
        """Under the lock, legacy mode: load, mutate a copy, rewrite if changed.

        The first save that changes a legacy store migrates it to directory
        mode (SPEC §5); an unchanged save writes nothing.  Maintenance rules
        apply to the saved mapping (never to the *protect*ed keys).
        Invariant: the file is replaced by one rename, or not at all.
        """
        # -- damaged sessions.d (see sessionsd.damage): never write around a
        # directory store that still holds sessions; raise instead --
        from .damage import guard_write
        from .migration import migrate_snapshot  # migration imports this module

        guard_write(self.paths)
        # -- end damaged sessions.d --
        # -- big legacy file (see sessionsd.migration.migrate_for_write): one
        # over 64 MiB is never loaded whole here; this write migrates it by
        # streaming first, then lands in directory mode --
        from .migration import migrate_for_write

        if migrate_for_write(self, mutate, protect):
            return
        # -- end big legacy file --

        before = self._legacy_snapshot()
        work = copy_entries(before.entries)
        mutate(work)
        after = self._normalized_mapping(work)
        _check_serialisable(before.entries, after)
        state = read_state(self.paths)
        if state is None:
            current = self._legacy_snapshot()
            if current.token != before.token:
                # A write nested in *mutate* (a put inside an update mutator)
                # rewrote the file meanwhile: apply our changes on top of it.
                after = _rebase(current.entries, before.entries, after)
                before = current
        removed: dict[str, dict] = {}
        if self._maintainer is not None:
            report, removed = self._maintainer.apply_to_mapping(after, protect=protect,
                                                                sizes=self._size_of())
        if state is not None:
            # A nested write migrated the store meanwhile: commit our changes
            # as a diff against what *mutate* saw, leaving the nested write alone.
            self._commit_diff(state, Snapshot((0, 0), before.entries, {}, []), after)
        elif before.is_object and same_json(after, before.entries):
            return
        elif before.exists and after:
            migrate_snapshot(self, after)
        elif not before.is_object and not after:
            return  # an array store saved empty: leave the file as it is
        else:
            self._legacy.write(after)
            with self._cache.mutex:
                self._cache.legacy = None
        if removed:
            self._maintainer._finish(report, removed)

    # -- maintenance -----------------------------------------------------------------

    def maintain(self, settings: Maintenance | None = None, *, dry_run: bool = False
                 ) -> MaintenanceReport:
        """Run a full maintenance sweep now (prune, cap, disk budget) with
        *settings* (default: the store's).  *dry_run* or ``mode="warn"``
        only reports what would go."""
        self._check_open()
        settings = settings or self.maintenance
        if settings is None:
            raise ValueError("no maintenance settings: pass settings= or open the store with maintenance=")
        maintainer = Maintainer(self, settings)
        with self._hold():
            state = self._detect_state()
            if state is not None:
                if self._dir.recover():
                    state = read_state(self.paths)
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
            return self.last_maintenance
