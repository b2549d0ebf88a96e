"""Exceptions raised by sessionsd.

Every exception derives from :class:`SessionsdError` and, where a caller would
naturally catch a builtin, from that builtin too (``InvalidKeyError`` is a
``ValueError``).  Context travels as attributes (``.key``, ``.path``) and every
class survives pickling, so errors can cross process boundaries intact.

Plain ``OSError`` (disk full, permission denied, a failed rename) is never
wrapped: it propagates unchanged so callers can inspect ``errno``.

This module must not import anything else from the package: the compiled
codec imports it while the package is still initialising.
"""

from __future__ import annotations

from typing import Self

__all__ = [
    "SessionsdError",
    "InvalidKeyError",
    "InvalidKeyTypeError",
    "BlockedKeyError",
    "KeyCollisionError",
    "InvalidEntryError",
    "UnsafeStoreError",
    "StoreLockTimeout",
    "StoreClosedError",
    "CorruptStoreError",
    "DamagedStoreError",
    "SharedStoreError",
    "StoreConnectionError",
    "SchemaVersionError",
]


class SessionsdError(Exception):
    """Base class of every error raised by sessionsd itself."""


class InvalidKeyError(SessionsdError, ValueError):
    """A session key cannot be stored: empty after trimming, or not encodable.

    ``key`` holds the offending value as given by the caller.
    """

    def __init__(self, message: str, key: object = None) -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:  # keep .key across pickling (multiprocessing)
        return (type(self), (self.args[0], self.key))


class InvalidKeyTypeError(InvalidKeyError, TypeError):
    """A session key is not a ``str``.

    It is both a ``ValueError`` (as every bad key is) and a ``TypeError``
    (as Python code expects for a wrong type).
    """


class BlockedKeyError(InvalidKeyError):
    """The key is ``__proto__``, ``prototype`` or ``constructor``.

    Readers of the same store in JavaScript skip these keys, so a session
    stored under one could never be read back there: writing it is refused.
    """


class KeyCollisionError(SessionsdError, ValueError):
    """Two different keys map to one entry file.

    On a case-insensitive file system (default macOS and Windows volumes) two
    base64url names that differ only in letter case are one file; a write that
    would replace another session's document raises this instead.  ``key`` is
    the key being written, ``existing_key`` the one already in the file.
    """

    def __init__(self, message: str, key: object = None, existing_key: object = None,
                 path: object = None) -> None:
        super().__init__(message)
        self.key = key
        self.existing_key = existing_key
        self.path = path

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        return (type(self), (self.args[0], self.key, self.existing_key, self.path))


class InvalidEntryError(SessionsdError, ValueError):
    """An entry is not a JSON object, or cannot be serialised as JSON (a
    set, bytes, a cycle, NaN ...).  ``key`` is the session key; ``field``
    the path of the offending value inside the entry (``"stats.ratio"``,
    ``"tags[0]"``) when one is to blame, else ``None``."""

    def __init__(self, message: str, key: object = None, field: object = None) -> None:
        super().__init__(message)
        self.key = key
        self.field = field

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        return (type(self), (self.args[0], self.key, self.field))


class _PathError(SessionsdError):
    """An error about one path of the store: ``path`` names it, kept across
    pickling; ``str()`` is the message alone (even for ``OSError`` kinds)."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        return (type(self), (self.args[0], self.path))


class UnsafeStoreError(_PathError, PermissionError):
    """A store path is unsafe to use: a symlink where a directory belongs, a
    group/world-writable directory, or one owned by another user.  ``path``
    names it.  It is a ``PermissionError`` (an ``OSError``)."""


class StoreLockTimeout(SessionsdError, TimeoutError):
    """The store lock was not acquired within the timeout.  ``path`` is the
    lock file, ``timeout`` the seconds waited."""

    def __init__(self, message: str, path: object = None, timeout: object = None) -> None:
        super().__init__(message)
        self.path = path
        self.timeout = timeout

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        return (type(self), (self.args[0], self.path, self.timeout))


class StoreClosedError(SessionsdError, ValueError):
    """An operation was attempted on a closed store."""


class CorruptStoreError(_PathError, ValueError):
    """A store file cannot be parsed (say, a legacy ``sessions.json`` that is
    neither JSON nor JSON5).  Nothing is written over it.  ``path`` names it."""


class DamagedStoreError(_PathError):
    """``sessions.d`` holds sessions but is not an active store (its
    ``state.json`` is missing, invalid or of the wrong kind), so a write or
    migration would bury them: a new legacy file would hide them and the
    next migration would move them aside.  Nothing is written;
    ``sessionsd check --fix PATH`` repairs what is safe to repair.  ``path``
    names the damaged ``sessions.d``."""


class SharedStoreError(_PathError, ValueError):
    """Two store files in one directory would share its ``sessions.d``: the
    directory store there belongs to another legacy file (``users.json`` and
    ``orders.json`` side by side).  ``path`` names the ``sessions.d``.  Give
    each store a directory of its own."""


class StoreConnectionError(SessionsdError, ConnectionError):
    """The PostgreSQL server of a store could not be reached, or the
    connection was lost while a call ran (a server restart, a network
    failure).  ``url`` is the store URL without its password; ``in_doubt``
    is True when the call was a write whose commit may have happened (the
    connection broke while the commit was in flight), False when nothing
    was committed.  The store stays usable: its pool reconnects, and later
    calls succeed once the server is back."""

    def __init__(self, message: str, url: object = None, in_doubt: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.in_doubt = in_doubt

    def __str__(self) -> str:
        """The message alone (not OSError's ``[Errno ...]`` form)."""
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        """Pickling keeps ``url`` and ``in_doubt`` (errors cross processes)."""
        return (type(self), (self.args[0], self.url, self.in_doubt))


class SchemaVersionError(SessionsdError):
    """The database's sessionsd schema is newer than this library knows:
    a newer sessionsd upgraded it.  Upgrade sessionsd.  ``url`` names the
    store, ``found`` and ``supported`` are the two versions."""

    def __init__(self, message: str, url: object = None, found: object = None,
                 supported: object = None) -> None:
        super().__init__(message)
        self.url = url
        self.found = found
        self.supported = supported

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        """Pickling keeps ``url``, ``found`` and ``supported``."""
        return (type(self), (self.args[0], self.url, self.found, self.supported))
