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

__all__ = [
    "SessionsdError",
    "InvalidKeyError",
    "InvalidKeyTypeError",
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

    def __reduce__(self):  # keep .key across pickling (multiprocessing)
        return (type(self), (self.args[0], self.key))


class InvalidKeyTypeError(InvalidKeyError, TypeError):
    """A session key is not a ``str``.

    It is both a ``ValueError`` (as every bad key is) and a ``TypeError``
    (as Python code expects for a wrong type).
    """
