"""The backend protocol: what a store's storage does, below the façade.

A store is one façade (:class:`sessionsd._facade.StoreFacade`: key
normalisation, validation, errors, the mapping conventions, lifecycle) over
one backend.  The backends:

* :class:`sessionsd._file_backend.FileBackend` -- the file store: the
  directory store ``sessions.d/`` (:mod:`sessionsd._directory`) and the legacy
  ``sessions.json`` (:mod:`sessionsd._legacy`), switched between by the
  activity rule so migrations and rollbacks by other processes are followed;
* :class:`sessionsd._pg_backend.PostgresBackend` -- one namespace of a
  PostgreSQL database.

The contract every backend keeps (``tests/test_conformance.py`` checks it on
each):

* Keys arrive normalised and writable (the façade refused bad and blocked
  ones); entries arrive as dicts.  Serialising an entry may still fail
  (``InvalidEntryError``, naming the key and the field).
* Every entry returned is a fresh object the caller owns.
* ``put``, ``update_one``, ``delete``, ``take``, ``put_many`` and ``mutate``
  are atomic, and concurrent read-modify-writes from any number of threads
  and processes lose no update.  ``put_many`` and ``mutate`` commit all of
  their changes or none; no reader ever sees part of one.
* ``load``, ``keys``, ``count``, ``summary`` and ``recent`` each answer from
  one consistent state of the store.
* ``recent`` orders by ``updatedAt`` descending (a missing or non-numeric
  one counts as oldest), ties by key ascending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from ._types import Entries, Entry
from .maintenance import Maintenance, MaintenanceReport

__all__ = ["Backend", "Normalizer"]

T = TypeVar("T")

#: The façade's check of a whole mapping (keys normalised and unique,
#: entries dicts), which ``mutate`` applies to what its function left.
Normalizer = Callable[[Mapping[Any, Any]], Entries]


class Backend(Protocol):
    """The operations a store's storage provides (see the module docstring)."""

    @property
    def mode(self) -> str:
        """``"directory"``, ``"legacy"`` or ``"postgres"``, as of now."""

    @property
    def location(self) -> str:
        """What the store is, for messages: a path, or a URL without its password."""

    def get(self, key: str) -> Entry | None:
        """The entry of *key*, or ``None``."""

    def updated_at(self, key: str) -> Any:
        """``entry["updatedAt"]`` exactly as stored, or ``None``."""

    def contains(self, key: str) -> bool:
        """Whether *key* has an entry."""

    def put(self, key: str, entry: Entry) -> None:
        """Create or replace the entry of *key*."""

    def update_one(self, key: str, fn: Callable[[Entry | None], Entry | None],
                   create: bool) -> Entry | None:
        """Read-modify-write *key* under the store's lock: *fn* gets a copy
        of the entry (``None`` when missing, and then only if *create*) and
        returns the entry to store or ``None`` to store nothing.  Returns the
        entry stored now (``None`` if there is none)."""

    def delete(self, key: str) -> bool:
        """Remove *key*'s entry; whether there was one."""

    def take(self, key: str) -> Entry | None:
        """Remove *key*'s entry and return it (``None`` if there was none)."""

    def put_many(self, entries: Entries) -> None:
        """Create or replace every entry of *entries*, as one commit.  A
        maintenance sweep it triggers never removes the entries just written."""

    def mutate(self, fn: Callable[[Entries], T], normalize: Normalizer) -> T:
        """Run *fn* on a private copy of every entry under the lock, pass
        what it left through *normalize*, commit the difference as one
        commit, and return what *fn* returned."""

    def load(self) -> Entries:
        """Every entry, from one consistent state."""

    def keys(self) -> list[str]:
        """Every key, in code point order (what ``sorted()`` gives); the
        caller does not mutate the list."""

    def count(self) -> int:
        """The number of sessions."""

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{key: {"lastChannel", "lastTo", "updatedAt"}}`` for every session."""

    def recent(self, limit: int, offset: int) -> list[tuple[str, dict[str, Any]]]:
        """The page ``[offset:offset + limit]`` of the recency order."""

    def maintain(self, settings: Maintenance, dry_run: bool) -> MaintenanceReport:
        """A full maintenance sweep with *settings*."""

    def close(self) -> None:
        """Give back what the backend holds (descriptors, connections, caches)."""
