"""Moving stores: :func:`copy_store` (``sessionsd copy SRC DST``) copies every
session of one store into another -- a legacy ``sessions.json``, a directory
store ``sessions.d/`` or a PostgreSQL namespace, in any direction.

The rules:

* **A prefix, never a torn entry.**  SRC is read once (one consistent
  snapshot, :meth:`~sessionsd.SessionStore.load`); its sessions are written to
  DST in sorted key order, in batches of *batch_size*, each batch one atomic
  commit (:meth:`~sessionsd.SessionStore.put_many`).  A copy that is killed
  or fails leaves DST holding the complete entries of the batches committed
  before, nothing of the one in flight.
* **DST must be empty** (no sessions; it need not exist yet) unless
  ``resume`` or ``replace`` is given -- a copy never silently merges two
  stores.
* ``resume=True`` continues a copy that stopped: entries of DST equal (by
  JSON value) to SRC's are skipped, the rest written, so a re-run after a
  crash finishes the job without redoing the committed batches.  Sessions
  DST holds that SRC does not are left alone (counted as ``extra``).
* ``replace=True`` makes DST hold exactly SRC: as ``resume``, then DST's
  sessions that SRC does not hold are removed, in one last commit.  (So a
  ``replace`` that stopped is finished by running it again.)
* **A quiescent source.**  A move expects nothing to write SRC while it
  runs.  SRC's version token (a PostgreSQL namespace's commit version; a
  directory store's ``state.json`` version, commit counter and ``entries/``
  change time; a legacy file's identity, size and change time) and session
  count are compared before and after: when they differ,
  :attr:`CopyResult.source_changed` is True (``sessionsd copy`` exits 1 and
  says so).  DST then holds SRC as of the start of the copy; copy again
  with ``replace=True`` once SRC is quiet.
* A file store DST is always written as a directory store (a write to a
  legacy ``sessions.json`` store migrates it, as every write does); a
  PostgreSQL DST gets the schema created when it has none.  SRC and DST
  must not be the same store; SRC must exist (a path that names no store,
  or a PostgreSQL namespace nothing was ever written to, is an error).
* Keys are copied as SRC normalised them; both stores are opened with the
  default key rule (``lower_keys=True``) when given as paths or URLs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ._codec import same_json
from ._facade import StoreFacade
from ._layout import ROOT_NAME, StorePaths, read_state
from ._open import is_url
from ._types import Entries
from .errors import SessionsdError
from .store import SessionStore

__all__ = ["copy_store", "CopyResult", "CopyError", "DEFAULT_BATCH_SIZE", "resolve_source_path"]

#: Sessions per commit on DST.
DEFAULT_BATCH_SIZE = 1000

Target = str | os.PathLike[str] | StoreFacade


class CopyError(SessionsdError, ValueError):
    """A copy refused to start: SRC names no store, DST is not empty (and
    neither ``resume`` nor ``replace`` was given), SRC and DST are the same
    store, or the options contradict each other.  Nothing was written."""


@dataclass
class CopyResult:
    """What :func:`copy_store` did.

    ``total`` sessions in SRC: ``copied`` were written to DST, ``skipped``
    were already equal there; ``removed`` DST sessions not in SRC were
    removed (``replace``), ``extra`` were left alone (``resume``).
    ``batches`` commits were made on DST, in ``seconds``.
    ``source_changed`` is True when SRC's version or count moved while the
    copy ran (see the module docs)."""

    source: str
    destination: str
    total: int = 0
    copied: int = 0
    skipped: int = 0
    removed: int = 0
    extra: int = 0
    batches: int = 0
    seconds: float = 0.0
    source_changed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (what ``sessionsd copy --json`` prints)."""
        return asdict(self)

    def summary(self) -> str:
        """One line: ``copied N sessions from SRC to DST in T s (skipped K equal)``."""
        details = [f"skipped {self.skipped} equal"]
        if self.removed:
            details.append(f"removed {self.removed} not in the source")
        if self.extra:
            details.append(f"left {self.extra} not in the source")
        return (f"copied {self.copied} sessions from {self.source} to {self.destination} "
                f"in {self.seconds:.2f} s ({', '.join(details)})")


# -- opening the two stores -----------------------------------------------------------------

def resolve_source_path(path: str | os.PathLike[str]) -> str:
    """The ``sessions.json`` path of the existing file store *path* names
    (the file, or a directory holding it or a ``sessions.d``).  Raises
    :class:`CopyError` naming the path when it names no store -- a typo must
    not read as an empty store."""
    text = os.fspath(path)
    paths = StorePaths.from_store_path(text)
    if os.path.lexists(paths.store) or os.path.lexists(paths.root):
        return paths.store
    if os.path.isdir(text):
        inside = StorePaths.from_store_path(os.path.join(text, os.path.basename(paths.store)))
        if os.path.lexists(inside.store) or os.path.lexists(inside.root):
            return inside.store
        raise CopyError(f"no session store in directory {text} (neither sessions.json nor {ROOT_NAME} "
                        "exists there)")
    if not os.path.isdir(paths.dir):
        raise CopyError(f"no session store at {text}: no such directory: {paths.dir}")
    raise CopyError(f"no session store at {text}: neither {os.path.basename(paths.store)} nor "
                    f"{ROOT_NAME} exists in {paths.dir}")


def _destination_path(path: str | os.PathLike[str]) -> str:
    """The ``sessions.json`` path of the file store DST names (it need not
    exist; its directory must)."""
    text = os.fspath(path)
    if os.path.isdir(text) and os.path.basename(os.path.normpath(text)) != ROOT_NAME:
        text = os.path.join(text, "sessions.json")
    paths = StorePaths.from_store_path(text)
    if not os.path.isdir(paths.dir):
        raise CopyError(f"destination {os.fspath(path)}: no such directory: {paths.dir}")
    return paths.store


def _open(target: str | os.PathLike[str], source: bool, connect_timeout: float) -> StoreFacade:
    if isinstance(target, str) and is_url(target):
        from ._pg_backend import probe
        from .postgres import PostgresStore

        if source:
            found = probe(target, connect_timeout=connect_timeout)
            if not found.exists:
                raise CopyError(f"no session store at {found.url}: namespace {found.namespace!r} "
                                "does not exist in that database (nothing was ever written there)")
        return PostgresStore(target, connect_timeout=connect_timeout)
    return SessionStore(resolve_source_path(target) if source else _destination_path(target))


def _identity(store: StoreFacade) -> tuple[str, str]:
    if isinstance(store, SessionStore):
        return ("file", os.path.realpath(store.paths.store))
    return ("other", store.location)


def _token(store: StoreFacade) -> tuple[Any, ...]:
    """SRC's version token: changes with every commit (see the module docs)."""
    if isinstance(store, SessionStore):
        paths = store.paths
        state = read_state(paths)
        parts: list[Any] = [store.mode, None if state is None else (state.version, state.identity)]
        for path in (paths.seq, paths.entries, paths.store):
            try:
                info = os.stat(path)
            except OSError:
                parts.append(None)
            else:
                parts.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
        return tuple(parts)
    stats = getattr(store._backend, "stats", None)
    if stats is not None:
        row = stats()
        return ("postgres", None if row is None else (row.id, row.version))
    return ("unknown", len(store))


# -- the copy ------------------------------------------------------------------------------------

def copy_store(source: Target, destination: Target, *, resume: bool = False, replace: bool = False,
               batch_size: int = DEFAULT_BATCH_SIZE,
               progress: Callable[[int, int], None] | None = None,
               on_batch: Callable[[int, Sequence[str]], None] | None = None,
               connect_timeout: float = 10.0) -> CopyResult:
    """Copy every session of *source* into *destination* (see the module
    docs for the rules).

    *source* and *destination* are store paths (a ``sessions.json``, or the
    directory holding it), ``postgresql://`` URLs, or open stores (which are
    left open).  *progress* is called as ``progress(done, total)`` after each
    commit (and once at the start); *on_batch* as ``on_batch(number, keys)``
    after batch *number* (from 1) committed.

    Raises:
        CopyError: SRC names no store, DST is not empty (without *resume*
            or *replace*), SRC and DST are the same store, or a bad option;
            nothing was written.
        StoreConnectionError: a PostgreSQL server cannot be reached.
    """
    if resume and replace:
        raise CopyError("give resume or replace, not both")
    if type(batch_size) is not int or batch_size < 1:
        raise CopyError(f"batch_size must be an int >= 1, not {batch_size!r}")
    started = time.monotonic()
    opened: list[StoreFacade] = []
    try:
        src = source if isinstance(source, StoreFacade) else _open(source, True, connect_timeout)
        if src is not source:
            opened.append(src)
        dst = destination if isinstance(destination, StoreFacade) else _open(destination, False, connect_timeout)
        if dst is not destination:
            opened.append(dst)
        if _identity(src) == _identity(dst):
            raise CopyError(f"source and destination are the same store: {src.location}")
        result = CopyResult(_name(src), _name(dst))

        before = (_token(src), len(src))
        entries = src.load()
        existing: Entries = dst.load() if len(dst) else {}
        if existing and not (resume or replace):
            raise CopyError(f"destination {result.destination} is not empty ({len(existing)} sessions): "
                            "give --resume to continue a copy, --replace to make it hold exactly the source")
        keys = sorted(entries)
        result.total = len(keys)
        pending = [key for key in keys if not (key in existing and same_json(existing[key], entries[key]))]
        result.skipped = len(keys) - len(pending)
        if progress is not None:
            progress(result.skipped, result.total)
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            dst.put_many({key: entries[key] for key in batch})
            result.copied += len(batch)
            result.batches += 1
            if progress is not None:
                progress(result.skipped + result.copied, result.total)
            if on_batch is not None:
                on_batch(result.batches, batch)
        others = [key for key in existing if key not in entries]
        if others and replace:
            gone = set(others)

            def remove(current: Entries) -> int:
                found = [key for key in current if key in gone]
                for key in found:
                    del current[key]
                return len(found)

            result.removed = dst.mutate(remove)
            result.batches += 1
        elif others:
            result.extra = len(others)
        result.source_changed = (_token(src), len(src)) != before
        result.seconds = time.monotonic() - started
        return result
    finally:
        for store in reversed(opened):
            store.close()


def _name(store: StoreFacade) -> str:
    if isinstance(store, SessionStore):
        return store.paths.store
    url = getattr(store, "url", None)
    return url if isinstance(url, str) else store.location
