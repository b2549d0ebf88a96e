"""What the command modules of :mod:`sessionsd.cli` share: the error a
command reports (:class:`CommandError`), the output helpers (``--json`` or
text, keys escaped onto one line) and the opening of the existing store a
PATH or ``postgresql://`` URL names (a typo must not read as an empty
store).  Split out of :mod:`sessionsd.cli`; it imports no command module.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ._facade import StoreFacade
from ._layout import ROOT_NAME, StorePaths
from ._open import is_url
from .store import SessionStore

#: Seconds a command waits for a PostgreSQL server before giving up.
CONNECT_TIMEOUT = 10.0


class CommandError(Exception):
    """A failure the command reports as ``sessionsd CMD: <message>`` (exit 1)."""


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(payload, ensure_ascii=False, default=str))
    elif text:
        print(text)


def _printable(text: str) -> str:
    """*text* on one line: a backslash, a control character (tab, newline,
    escape ...), a line or paragraph separator or a lone surrogate is
    written as a JSON string escape (``\\\\``, ``\\t``, ``\\n``,
    ``\\u001b``); everything else as it is."""
    if all(_plain(ch) for ch in text):
        return text
    out = []
    for ch in text:
        if _plain(ch):
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _plain(ch: str) -> bool:
    code = ord(ch)
    return not (code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029)
                or 0xD800 <= code < 0xE000 or ch == "\\")


def _missing_store(path: str) -> str | None:
    """Why *path* names no store (None when it names one)."""
    paths = StorePaths.from_store_path(path)
    if os.path.lexists(paths.store) or os.path.lexists(paths.root):
        return None
    if not os.path.isdir(paths.dir):
        return f"no session store at {path}: no such directory: {paths.dir}"
    return (f"no session store at {path}: neither {os.path.basename(paths.store)} "
            f"nor {ROOT_NAME} exists in {paths.dir}")


def _store_path(path: str) -> str:
    """The store path of *path* for a command that needs an existing store:
    its ``sessions.json``, or a directory holding one (or a ``sessions.d``).
    Raises CommandError naming the path otherwise -- a typo must not read
    as an empty store."""
    if os.path.isdir(path):
        inside = StorePaths.from_store_path(path).store  # <dir>/sessions.json, also for <dir>/sessions.d
        if _missing_store(inside) is None:
            return inside
        raise CommandError(f"no session store in directory {path} (neither sessions.json "
                           f"nor {ROOT_NAME} exists there)")
    problem = _missing_store(path)
    if problem is not None:
        raise CommandError(problem)
    return path


def _probe_url(url: str) -> Any:
    """What the server of *url* holds (:func:`sessionsd._pg_backend.probe`),
    refusing a URL that names no store: no sessionsd schema in the database,
    or a namespace nothing was ever written to (a typo must not read as an
    empty store, and a read-only command creates nothing)."""
    try:
        from ._pg_backend import probe
    except ImportError as exc:
        raise CommandError(f"a PostgreSQL store URL needs psycopg 3: pip install 'sessionsd[postgres]' "
                           f"({exc})") from None
    try:
        found = probe(url, connect_timeout=CONNECT_TIMEOUT)
    except ValueError as exc:
        raise CommandError(f"bad store URL: {exc}") from None
    if found.schema_version == 0:
        raise CommandError(f"no session store at {found.url}: the database has no sessionsd schema")
    if not found.exists:
        raise CommandError(f"no session store at {found.url}: namespace {found.namespace!r} does not "
                           "exist in that database (nothing was ever written there)")
    return found


def _open_store(path: str, **options: Any) -> StoreFacade:
    """The existing store *path* names: a file store (as :func:`_store_path`
    finds it) or, for a ``postgresql://`` URL, a PostgreSQL namespace that
    :func:`_probe_url` accepts."""
    if not is_url(path):
        return SessionStore(_store_path(path), **options)
    from .postgres import PostgresStore

    _probe_url(path)
    return PostgresStore(path, connect_timeout=CONNECT_TIMEOUT, **options)
