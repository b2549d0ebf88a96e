"""The store lock: sessionsd's own exclusion plus the reference's lock file.

Two layers, always taken in this order and released in reverse:

1. **sessionsd's exclusion**: ``flock`` on the store *directory* itself
   (the real directory holding ``sessions.json``).  A directory that holds
   the store cannot be deleted or replaced under a holder, so no other
   program's clean-up can break it; ``flock`` dies with its process.  Within
   a process a re-entrant thread mutex orders the threads, and only the
   outermost acquisition touches the OS lock, so a thread that already holds
   it (a ``put`` inside an ``update`` mutator) never deadlocks on itself.
2. **the reference's lock file** (:mod:`._reference_lock`):
   ``sessions.json.lock`` holding an owner record, the protocol the
   reference TypeScript host speaks.  Taken unless the store is declared
   sessionsd-only.  sessionsd's exclusion never depends on it: the reference
   deletes such files when it judges them stale.

On Windows (no ``fcntl``) layer 1 is :class:`filelock.FileLock` on
``.sessionsd.lock`` beside the store, a file the reference never touches.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import filelock

from ._fsutil import IS_WINDOWS
from ._reference_lock import ReferenceLockFile
from .errors import StoreLockTimeout

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["StoreLock", "DEFAULT_TIMEOUT", "FALLBACK_LOCK_NAME"]

DEFAULT_TIMEOUT = 30.0
#: Where layer 1 lives where a directory cannot be flocked (Windows, some
#: network file systems).
FALLBACK_LOCK_NAME = ".sessionsd.lock"

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class StoreLock:
    """The process-wide handle on one store's lock (one per real directory)."""

    _registry: dict[str, StoreLock] = {}
    _registry_mutex = threading.Lock()
    #: Store objects attached (see :meth:`attach`); set in ``__init__``.
    _users: int

    @classmethod
    def for_path(cls, path: str) -> StoreLock:
        """The lock of the store whose reference lock file is *path*
        (``<realpath(dir)>/sessions.json.lock``)."""
        with cls._registry_mutex:
            lock = cls._registry.get(path)
            if lock is None:
                lock = cls._registry[path] = cls(path)
            return lock

    @classmethod
    def attach(cls, path: str) -> StoreLock:
        """:meth:`for_path`, counted: a store object attaches when it opens
        and :meth:`detach`es when it closes, so the last one out closes the
        descriptor and removes the owner file.  The object itself stays in
        the registry: one path must keep one lock object in a process (two
        would not be re-entrant with each other), and it costs a few
        hundred bytes; the descriptor is opened again on the next hold."""
        with cls._registry_mutex:
            lock = cls._registry.get(path)
            if lock is None:
                lock = cls._registry[path] = cls(path)
            lock._users += 1
            return lock

    def detach(self) -> None:
        """One user fewer (see :meth:`attach`); the last one releases what
        the lock keeps open, unless some thread holds it right now."""
        with StoreLock._registry_mutex:
            self._users = max(0, self._users - 1)
            if self._users or self._depth:
                return
        self.close()
        self.reference.discard_template()

    def __init__(self, path: str) -> None:
        self._users = 0
        self.path = path
        self.directory = os.path.dirname(path)
        self.reference = ReferenceLockFile(path)
        self._mutex = threading.RLock()
        self._depth = 0
        self._owner: int | None = None
        self._fd: int | None = None
        self._filelock: filelock.BaseFileLock | None = None
        self._reference_held = False

    # -- public -----------------------------------------------------------

    def held_by_me(self) -> bool:
        """Whether the calling thread holds the lock (at any depth)."""
        return self._depth > 0 and self._owner == threading.get_ident()

    @contextmanager
    def hold(self, timeout: float = DEFAULT_TIMEOUT, *, reference: bool = True,
             heavy: bool = False) -> Iterator[None]:
        """Hold the lock for the block.  *reference*: also hold the
        reference's lock file (mixed deployments).  A negative *timeout*
        waits forever.  *heavy* is accepted for older callers: every
        acquisition is the same lock now."""
        self.acquire(timeout, reference=reference)
        try:
            yield
        finally:
            self.release()

    def acquire(self, timeout: float = DEFAULT_TIMEOUT, *, reference: bool = True) -> None:
        """Take the lock (re-entrant within a thread); pair with :meth:`release`.

        *reference*: also hold the reference's lock file.  A negative
        *timeout* waits forever; otherwise :class:`StoreLockTimeout` is
        raised once *timeout* seconds have passed without the lock."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        if not self._mutex.acquire(timeout=-1 if deadline is None else max(0.0, timeout)):
            raise self._timeout(timeout)
        try:
            if self._depth == 0:
                self._acquire_os(deadline, timeout)
                self._owner = threading.get_ident()
            self._depth += 1
            if reference and not self._reference_held:
                # A nested acquisition may be the first that needs the
                # reference's file; it is then kept to the outermost release.
                try:
                    self.reference.acquire(deadline, timeout)
                except BaseException:
                    self._depth -= 1
                    if self._depth == 0:
                        self._owner = None
                        self._release_os()
                    raise
                self._reference_held = True
        except BaseException:
            self._mutex.release()
            raise

    def release(self) -> None:
        """Undo one :meth:`acquire`; the outermost release frees the OS lock
        and the reference's lock file.  ``RuntimeError`` if the calling
        thread does not hold the lock."""
        if not self.held_by_me():
            raise RuntimeError(f"store lock {self.path} released by a thread that does not hold it")
        self._depth -= 1
        try:
            if self._depth == 0:
                self._owner = None
                try:
                    if self._reference_held:
                        self._reference_held = False
                        self.reference.release()
                finally:
                    self._release_os()
        finally:
            self._mutex.release()

    # -- layer 1 ------------------------------------------------------------

    def _timeout(self, timeout: float, owner: str = "") -> StoreLockTimeout:
        return StoreLockTimeout(
            f"timeout waiting for session store lock ({timeout:g} s): {self.path}{owner}",
            self.path,
            timeout,
        )

    def _open_fd(self) -> int:
        if self._fd is None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            try:
                self._fd = os.open(self.directory, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
            except OSError:
                self._fd = self._open_fallback()
        return self._fd

    def _open_fallback(self) -> int:
        path = os.path.join(self.directory, FALLBACK_LOCK_NAME)
        return os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)

    def _acquire_os(self, deadline: float | None, timeout: float) -> None:
        if IS_WINDOWS or fcntl is None:
            self._acquire_filelock(deadline, timeout)
            return
        delay = 50e-6
        patient_until = time.monotonic() + 1.0
        while True:
            fd = self._open_fd()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            except OSError as exc:
                # A file system that cannot flock a directory (EBADF on some
                # network mounts): use the fallback file, on every process
                # alike, since they all see the same file system.
                if exc.errno not in (errno.EBADF, errno.EINVAL, errno.ENOLCK) or fd != self._fd:
                    raise
                os.close(fd)
                self._fd = self._open_fallback()
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout(timeout) from None
            time.sleep(delay)
            # Poll often for a second (commits are short, and a slow poller
            # loses every race to a writer in a loop), then back off.
            delay = min(delay * 2, 0.0005 if time.monotonic() < patient_until else 0.01)

    def _acquire_filelock(self, deadline: float | None, timeout: float) -> None:  # pragma: no cover
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        lock = filelock.FileLock(
            os.path.join(self.directory, FALLBACK_LOCK_NAME),
            timeout=timeout,
            mode=0o600,
            thread_local=False,
            poll_interval=0.002,
        )
        remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            lock.acquire(timeout=remaining)
        except filelock.Timeout:
            raise self._timeout(timeout) from None
        self._filelock = lock

    def _release_os(self) -> None:
        if self._filelock is not None:  # pragma: no cover - Windows
            lock, self._filelock = self._filelock, None
            lock.release()
        elif self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the descriptor kept for layer 1 (when the lock is free)."""
        with self._mutex:
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)

    def _reset_after_fork(self) -> None:
        # The child shares the parent's open file descriptions: a flock held
        # through them would be the parent's.  Start from nothing.
        self._mutex = threading.RLock()
        self._depth = 0
        self._owner = None
        self._filelock = None
        self._reference_held = False
        self.reference.forget()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass  # already closed in the child: nothing to release
            self._fd = None


def _reset_all_after_fork() -> None:
    StoreLock._registry_mutex = threading.Lock()
    for lock in StoreLock._registry.values():
        lock._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
