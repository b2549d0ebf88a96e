"""The store façade every kind of store shares: :class:`StoreFacade`.

What a caller meets is the same whatever holds the sessions: keys are
normalised one way (trimmed; lower-cased unless ``lower_keys=False``), bad
input is refused before anything is touched with errors naming the store,
the key and the field, the reserved keys ``__proto__``, ``prototype`` and
``constructor`` are never written (JavaScript readers skip them) and read as
missing, a closed store refuses every call, and the mapping conventions of
:mod:`sessionsd._mapping` hold.  The storage below is a backend
(:mod:`sessionsd._backend`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._backend import Backend
from ._codec import validate_key
from ._layout import BLOCKED_KEYS
from ._mapping import StoreMapping
from ._types import Entries, Entry
from .errors import BlockedKeyError, InvalidEntryError, InvalidKeyError, StoreClosedError
from .maintenance import Maintenance, MaintenanceReport

__all__ = ["StoreFacade", "normalize_key", "check_mapping"]

T = TypeVar("T")


def normalize_key(key: Any, lower: bool) -> str:
    """*key* trimmed (and lower-cased when *lower*): the one key rule of
    every store.  Raises InvalidKeyError (a ValueError) for a bad key."""
    trimmed = validate_key(key)
    return trimmed.lower() if lower else trimmed


def writable_key(key: Any, lower: bool) -> str:
    """:func:`normalize_key`, refusing the keys JavaScript readers skip."""
    normalized = normalize_key(key, lower)
    if normalized in BLOCKED_KEYS:
        raise BlockedKeyError(
            f"session key {normalized!r} is reserved (JavaScript readers of this store "
            "skip it, so it could never be read back)",
            key,
        )
    return normalized


def check_entry(key: Any, entry: object, location: str) -> Entry:
    """*entry*, which must be a dict (a JSON object)."""
    if not isinstance(entry, dict):
        raise InvalidEntryError(
            f"session entry {key!r} of {location} must be a dict (a JSON object), "
            f"not {type(entry).__name__}", key)
    return entry


def check_mapping(mapping: Mapping[Any, Any], lower: bool, location: str) -> Entries:
    """*mapping* with normalised keys, checked: unique after normalisation,
    writable, every entry a dict."""
    result: Entries = {}
    for raw_key, entry in mapping.items():
        key = writable_key(raw_key, lower)
        if key in result:
            raise InvalidKeyError(f"two keys normalise to {key!r}; keep one of them", raw_key)
        result[key] = check_entry(key, entry, location)
    return result


class StoreFacade(StoreMapping):
    """The public operations of a store, over its backend ``self._backend``.

    Subclasses set ``_backend``, ``lower_keys`` and ``maintenance`` in their
    constructor, then call nothing else: every operation is here."""

    _backend: Backend
    lower_keys: bool
    maintenance: Maintenance | None
    _closed: bool = False

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close the store: every later call raises
        :class:`~sessionsd.StoreClosedError`.  Nothing is buffered (every
        write was complete when it returned); what the store holds --
        descriptors, connections, cached snapshots -- is given back.
        Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (every later call raises
        :class:`~sessionsd.StoreClosedError`)."""
        return self._closed

    def __enter__(self: T) -> T:
        self._check_open()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._backend.mode
        return f"<{type(self).__name__} {self._backend.location!r} ({state})>"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"session store is closed: {self._backend.location}")

    @property
    def location(self) -> str:
        """What this store is: its ``sessions.json`` path, or its URL
        (without password) and namespace."""
        return self._backend.location

    @property
    def mode(self) -> str:
        """Where the sessions are now: ``"directory"``, ``"legacy"`` or ``"postgres"``."""
        self._check_open()
        return self._backend.mode

    # -- keys and entries ---------------------------------------------------------

    def normalize_key(self, key: Any) -> str:
        """The store's form of *key*: trimmed, lower-cased unless disabled.
        Raises InvalidKeyError (a ValueError) for a bad key."""
        return normalize_key(key, self.lower_keys)

    def _writable_key(self, key: Any) -> str:
        return writable_key(key, self.lower_keys)

    def _check_entry(self, key: Any, entry: object) -> Entry:
        return check_entry(key, entry, self._backend.location)

    def _normalized_mapping(self, mapping: Mapping[Any, Any]) -> Entries:
        return check_mapping(mapping, self.lower_keys, self._backend.location)

    # -- single-entry reads ------------------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        """The entry of *key* (a fresh dict the caller owns), or *default*."""
        if self._closed:
            self._check_open()
        normalized = self.normalize_key(key)
        if normalized in BLOCKED_KEYS:
            return default
        entry = self._backend.get(normalized)
        return default if entry is None else entry

    def updated_at(self, key: Any) -> Any:
        """``entry["updatedAt"]`` of *key* exactly as stored, or ``None``.

        The directory store reads one file and parses no JSON for it; the
        PostgreSQL store reads one indexed column."""
        if self._closed:
            self._check_open()
        normalized = validate_key(key)
        if self.lower_keys:
            normalized = normalized.lower()
        if normalized in BLOCKED_KEYS:
            return None
        return self._backend.updated_at(normalized)

    def __contains__(self, key: Any) -> bool:
        if self._closed:
            self._check_open()
        normalized = self.normalize_key(key)
        return normalized not in BLOCKED_KEYS and self._backend.contains(normalized)

    # -- single-entry writes -------------------------------------------------------------

    def put(self, key: Any, entry: Entry) -> None:
        """Create or replace the entry of *key*."""
        self._check_open()
        normalized = self._writable_key(key)
        self._backend.put(normalized, self._check_entry(normalized, entry))

    def patch(self, key: Any, fields: Mapping[str, Any]) -> Entry | None:
        """Shallow-merge *fields* into the entry of *key*; returns the merged
        entry, or ``None`` (writing nothing) when there is no such entry."""
        self._check_open()
        if not isinstance(fields, Mapping):
            raise InvalidEntryError(
                f"patch fields for session entry {key!r} must be a mapping (a dict), "
                f"not {type(fields).__name__}", key)
        fields = dict(fields)

        def merge(current: Entry | None) -> Entry | None:
            return None if current is None else {**current, **fields}

        return self._backend.update_one(self._writable_key(key), merge, create=False)

    def update_entry(self, key: Any, fn: Callable[[Entry | None], Entry | None]) -> Entry | None:
        """Read-modify-write one entry under the store's lock.

        *fn* gets a private copy of the entry (``None`` when missing) and
        returns the entry to store, or ``None`` to store nothing.  Returns the
        entry now stored (``None`` if there is none).  The reference's
        ``updateSessionStoreEntry``."""
        self._check_open()
        normalized = self._writable_key(key)

        def checked(current: Entry | None) -> Entry | None:
            new = fn(current)
            return None if new is None else self._check_entry(normalized, new)

        return self._backend.update_one(normalized, checked, create=True)

    def delete(self, key: Any) -> bool:
        """Remove the entry of *key*; True if there was one (no KeyError:
        ``del store[key]`` raises one)."""
        self._check_open()
        normalized = self.normalize_key(key)
        if normalized in BLOCKED_KEYS:
            return False
        return self._backend.delete(normalized)

    def take(self, key: Any) -> Entry | None:
        """Remove the entry of *key* and return it, or ``None`` when there is
        none: one atomic step (what ``pop()`` does)."""
        self._check_open()
        normalized = self.normalize_key(key)
        if normalized in BLOCKED_KEYS:
            return None
        return self._backend.take(normalized)

    # -- whole-store operations ------------------------------------------------------------

    def put_many(self, entries: Mapping[Any, Entry]) -> None:
        """Create or replace every ``key: entry`` of *entries* as one atomic
        commit (what ``update(mapping)`` does).  Entries not named are left
        alone."""
        self._check_open()
        if not isinstance(entries, Mapping):
            raise InvalidEntryError(f"put_many() needs a mapping of key -> entry, not {type(entries).__name__}")
        normalized = self._normalized_mapping(entries)
        if normalized:
            self._backend.put_many(normalized)

    def mutate(self, mutator: Callable[[Entries], T]) -> T:
        """Run *mutator* on a private copy of the whole store under the lock,
        then commit only what changed (added, changed and removed entries,
        compared by value) as one atomic commit.  Returns what *mutator*
        returns.  An unchanged store writes nothing.

        The reference's ``updateSessionStore``; :meth:`update_store` is the
        same method under that name.  (``update()`` is the mapping's: it
        takes entries, not a function.)"""
        self._check_open()
        return self._backend.mutate(mutator, self._normalized_mapping)

    #: The reference's name (``updateSessionStore``) for :meth:`mutate`.
    update_store = mutate

    def save(self, mapping: Mapping[str, Entry]) -> None:
        """Make the store hold exactly *mapping*, writing only the difference
        (the reference's ``saveSessionStore``)."""
        if not isinstance(mapping, Mapping):
            raise InvalidEntryError(f"save() needs a mapping of key -> entry, not {type(mapping).__name__}")
        wanted = dict(mapping)

        def replace_all(entries: Entries) -> None:
            entries.clear()
            entries.update(wanted)

        self.mutate(replace_all)

    def load(self) -> Entries:
        """Every session, ``{key: entry}``: a snapshot-consistent read (no
        half-applied commit is ever visible), the caller's to mutate."""
        self._check_open()
        return self._backend.load()

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{key: {"lastChannel", "lastTo", "updatedAt"}}`` for every session,
        from one consistent state (the directory store answers from its
        listing index, PostgreSQL from indexed columns)."""
        self._check_open()
        return self._backend.summary()

    def _key_list(self) -> list[str]:
        self._check_open()
        return self._backend.keys()

    def __len__(self) -> int:
        """The number of sessions."""
        self._check_open()
        return self._backend.count()

    def recent(self, limit: int = 50, offset: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """The most recently updated sessions: ``[(key, {"lastChannel",
        "lastTo", "updatedAt"}), ...]``, newest first, skipping the first
        *offset*, at most *limit*.

        Order: ``updatedAt`` descending; a missing or non-numeric
        ``updatedAt`` counts as oldest; ties by key, ascending."""
        self._check_open()
        for name, value in (("limit", limit), ("offset", offset)):
            if type(value) is not int or value < 0:
                raise ValueError(f"recent() {name} must be an int >= 0, not {value!r}")
        return self._backend.recent(limit, offset)

    def maintain(self, settings: Maintenance | None = None, *, dry_run: bool = False
                 ) -> MaintenanceReport:
        """Run a full maintenance sweep now (prune, cap, disk budget) with
        *settings* (default: the store's).  *dry_run* or ``mode="warn"``
        only reports what would go."""
        self._check_open()
        settings = settings or self.maintenance
        if settings is None:
            raise ValueError("no maintenance settings: pass settings= or open the store with maintenance=")
        return self._backend.maintain(settings, dry_run)
