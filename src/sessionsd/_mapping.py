"""The mapping face every store shares: :class:`StoreMapping`.

A store is a :class:`collections.abc.MutableMapping` of session key to entry
(a JSON object as a ``dict``), the way ``shelve``, ``dbm``, ``sqlitedict`` and
``diskcache.Index`` are mappings.  This module builds that face from a
handful of operations each store implements itself (``get``, ``put``,
``delete``, ``take``, ``put_many``, ``load``, ``update_entry`` and a key
listing), so every store behaves the same way as a mapping:

* ``store[key]`` raises :class:`KeyError` for a missing session;
  ``del store[key]`` too.
* Iteration, ``keys()``, ``values()`` and ``items()`` go in **sorted key
  order** (code point order, what ``sorted()`` gives), and each call works
  on one snapshot taken when it is made: a store is shared with other
  processes, and a live view would mix states.  ``values()`` and
  ``items()`` read every entry once (one snapshot-consistent ``load()``).
* ``update(mapping)`` writes all its entries as **one atomic commit**.
* ``pop``, ``popitem`` and ``setdefault`` are atomic read-modify-writes.
* ``clear()`` empties the store in one commit.

The whole-store read-modify-write that takes a function is ``mutate(fn)``
(the reference's ``updateSessionStore``; ``update_store`` is its alias).
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from typing import Any, TypeVar, overload

__all__ = ["StoreMapping"]

T = TypeVar("T")
Entry = dict[str, Any]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class _KeysSnapshot(KeysView[str]):
    """The keys of one moment, in sorted order."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys
        self._set: frozenset[str] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __contains__(self, key: object) -> bool:
        if self._set is None:
            self._set = frozenset(self._keys)
        return key in self._set

    def __repr__(self) -> str:
        return f"KeysSnapshot({self._keys!r})"


class _ValuesSnapshot(ValuesView[Entry]):
    """The entries of one snapshot, in sorted key order."""

    def __init__(self, entries: dict[str, Entry]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return (self._entries[key] for key in sorted(self._entries))

    def __contains__(self, value: object) -> bool:
        return any(entry == value for entry in self._entries.values())

    def __repr__(self) -> str:
        return f"ValuesSnapshot({list(self)!r})"


class _ItemsSnapshot(ItemsView[str, Entry]):
    """``(key, entry)`` pairs of one snapshot, in sorted key order."""

    def __init__(self, entries: dict[str, Entry]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        entries = self._entries
        return ((key, entries[key]) for key in sorted(entries))

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        key, value = item
        return key in self._entries and self._entries[key] == value

    def __repr__(self) -> str:
        return f"ItemsSnapshot({list(self)!r})"


class StoreMapping(MutableMapping[str, Entry]):
    """:class:`~collections.abc.MutableMapping` methods over a store's own
    operations (see the module documentation for the conventions)."""

    __slots__ = ()

    # -- what a store provides ------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def put(self, key: Any, entry: Entry) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def delete(self, key: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def take(self, key: Any) -> Entry | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def put_many(self, entries: Mapping[Any, Entry]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self) -> dict[str, Entry]:  # pragma: no cover - abstract
        raise NotImplementedError

    def update_entry(self, key: Any,
                     fn: Callable[[Entry | None], Entry | None]) -> Entry | None:  # pragma: no cover
        raise NotImplementedError

    def _key_list(self) -> list[str]:  # pragma: no cover - abstract
        """Every key, sorted (the store's backends answer in that order)."""
        raise NotImplementedError

    # -- the mapping ----------------------------------------------------------

    def __getitem__(self, key: Any) -> Entry:
        entry = self.get(key, _MISSING)
        if entry is _MISSING:
            raise KeyError(key)
        return entry  # type: ignore[no-any-return]

    def __setitem__(self, key: Any, entry: Entry) -> None:
        self.put(key, entry)

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> KeysView[str]:
        """Every session key, sorted, as of this call."""
        return _KeysSnapshot(self._key_list())

    def values(self) -> ValuesView[Entry]:
        """Every entry (fresh dicts the caller owns), in sorted key order,
        from one snapshot-consistent ``load()``."""
        return _ValuesSnapshot(self.load())

    def items(self) -> ItemsView[str, Entry]:
        """``(key, entry)`` for every session, in sorted key order, from one
        snapshot-consistent ``load()``."""
        return _ItemsSnapshot(self.load())

    @overload
    def pop(self, key: Any) -> Entry: ...

    @overload
    def pop(self, key: Any, default: Entry | T) -> Entry | T: ...

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove the entry of *key* and return it (atomically); *default*
        if there is none, or :class:`KeyError` without a default."""
        entry = self.take(key)
        if entry is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return entry

    def popitem(self) -> tuple[str, Entry]:
        """Remove and return one ``(key, entry)``: the first in key order
        that is still there.  :class:`KeyError` when the store is empty."""
        for key in self.keys():
            entry = self.take(key)
            if entry is not None:
                return key, entry
        raise KeyError("popitem(): the session store is empty")

    def setdefault(self, key: Any, default: Entry | None = None) -> Entry:
        """The entry of *key*; if there is none, store *default* (which must
        be a dict: a store holds only JSON objects) and return it.  Atomic."""
        if default is None:
            default = {}

        def keep_or_create(current: Entry | None) -> Entry | None:
            return default if current is None else None

        entry = self.update_entry(key, keep_or_create)
        return default if entry is None else entry

    def update(self, other: Any = (), /, **kwargs: Entry) -> None:
        """Put every ``(key, entry)`` of *other* (a mapping, or an iterable of
        pairs) and of *kwargs*, as one atomic commit: other processes see all
        of them or none.  Like ``dict.update``, a later duplicate key wins --
        after normalisation, so ``"A"`` and ``"a"`` in one call is an error
        rather than a silent choice.

        To run a function over the whole store, use :meth:`mutate`."""
        if callable(other) and not isinstance(other, Mapping):
            raise TypeError(
                "update() takes a mapping of key -> entry (or (key, entry) pairs), as dict.update "
                "does; to apply a function to the whole store atomically, call mutate(fn)")
        pairs: list[tuple[Any, Entry]] = []
        if isinstance(other, Mapping):
            pairs.extend((key, other[key]) for key in other)
        elif hasattr(other, "keys"):
            pairs.extend((key, other[key]) for key in other.keys())  # noqa: SIM118 - not a Mapping
        else:
            for item in _pairs(other):
                pairs.append(item)
        pairs.extend(kwargs.items())
        merged: dict[Any, Entry] = {}
        for key, entry in pairs:
            merged.pop(key, None)
            merged[key] = entry
        if merged:
            self.put_many(merged)

    def clear(self) -> None:
        """Remove every session, as one commit."""
        self.save({})

    def save(self, mapping: Mapping[str, Entry]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _pairs(items: Iterable[Any]) -> Iterator[tuple[Any, Entry]]:
    for position, item in enumerate(items):
        try:
            key, entry = item
        except (TypeError, ValueError):
            raise TypeError(
                f"update() element #{position} is {item!r}: each element must be a (key, entry) pair") from None
        yield key, entry
