"""``sessionsd.open``: one call that opens any kind of store.

A path opens the file store (:class:`~sessionsd.SessionStore`: the
directory store ``sessions.d/`` beside a legacy ``sessions.json``); a
``postgresql://`` or ``postgres://`` URL opens a namespace of a PostgreSQL
database (:class:`~sessionsd.postgres.PostgresStore`, which needs the
``postgres`` extra: ``pip install 'sessionsd[postgres]'``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .store import SessionStore

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = ["open_store", "is_url"]

_URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: object) -> bool:
    """Whether *target* names a PostgreSQL store rather than a path."""
    return isinstance(target, str) and target.lower().startswith(_URL_SCHEMES)


def open_store(target: str | os.PathLike[str], /, **options: Any) -> SessionStore | PostgresStore:
    """Open the store *target* names, with the store's keyword *options*.

    ``open("…/sessions/sessions.json")`` (or the directory holding it) gives a
    :class:`~sessionsd.SessionStore`; ``open("postgresql://host/db?namespace=agents/main")``
    gives a :class:`~sessionsd.postgres.PostgresStore`.  Both are mutable
    mappings of session key to entry with the same operations.

    Raises:
        ImportError: a PostgreSQL URL, and psycopg is not installed (the
            message says which extra to install).
    """
    if isinstance(target, str) and is_url(target):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ImportError(
                f"opening {target.split('@')[-1]!s} needs psycopg 3: pip install 'sessionsd[postgres]' "
                f"({exc})") from exc
        return PostgresStore(os.fspath(target), **options)
    return SessionStore(target, **options)
