"""The public file store: :class:`SessionStore`.

The store façade (:mod:`sessionsd._facade`: keys, validation, errors, the
mapping conventions) over the file backend (:mod:`sessionsd._file_backend`:
the directory store ``sessions.d/`` and the legacy ``sessions.json``,
following migrations and rollbacks by other processes).

Thread- and process-safe: every write takes the store lock inside; reads take
none.  Keys are normalised (trimmed, lower-cased unless ``lower_keys=False``)
the same way on every path.
"""

from __future__ import annotations

import os

from ._directory import Stats
from ._facade import StoreFacade
from ._file_backend import DIRECTORY, LEGACY, FileBackend
from ._layout import StorePaths
from ._lock import DEFAULT_TIMEOUT
from ._types import Durability
from .maintenance import Maintenance, MaintenanceReport

__all__ = ["SessionStore", "DIRECTORY", "LEGACY"]


class SessionStore(StoreFacade):
    """Per-session metadata store rooted at a ``sessions.json`` path: a
    :class:`~collections.abc.MutableMapping` of session key to entry.

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

    _backend: FileBackend

    def __init__(self, path: str | os.PathLike[str], *, lower_keys: bool = True, durability: Durability = "file",
                 lock_timeout: float = DEFAULT_TIMEOUT, sessionsd_only: bool = False,
                 cache: bool = True, maintenance: Maintenance | None = None,
                 index: bool = True) -> None:
        self.lower_keys = lower_keys
        self.maintenance = maintenance
        self._backend = FileBackend(path, lower_keys=lower_keys, durability=durability,
                                    lock_timeout=lock_timeout, sessionsd_only=sessionsd_only,
                                    cache=cache, maintenance=maintenance, index=index)

    # -- what the file store adds ---------------------------------------------------

    @property
    def paths(self) -> StorePaths:
        """Every path of the store: ``paths.store`` is ``sessions.json``,
        ``paths.root`` the directory store ``sessions.d``."""
        return self._backend.paths

    @property
    def durability(self) -> Durability:
        """The durability the store writes with."""
        return self._backend.durability

    @property
    def sessionsd_only(self) -> bool:
        """Whether the store was declared sessionsd-only (see the class docs)."""
        return self._backend.sessionsd_only

    @property
    def lock_timeout(self) -> float:
        """Seconds a write waits for the store lock."""
        return self._backend.lock_timeout

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(file name, reason)`` of the entry files the last full load skipped."""
        return self._backend.skipped

    @property
    def last_stats(self) -> Stats | None:
        """Entry count and bytes after this object's last commit (None: unknown)."""
        return self._backend.last_stats

    @property
    def last_maintenance(self) -> MaintenanceReport | None:
        """The report of the last maintenance sweep or check."""
        return self._backend.last_maintenance

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self._backend._mode or "mode not yet detected")
        return f"<SessionStore {self.paths.store!r} ({state})>"
