"""The store lock: one exclusive OS lock on ``sessions.json.lock``.

Every writer takes it inside the library.  Within a process one
:class:`StoreLock` exists per lock-file path; a re-entrant thread mutex
orders the threads, and only the outermost acquisition touches the OS lock,
so a thread that already holds it (say, a hot-path ``put`` inside an
``update`` mutator) never deadlocks on itself.

Two ways to take the OS lock, the same kind of lock either way (``flock``;
``flock`` and ``fcntl`` record locks do not exclude each other on Linux):

* *thin* -- a kept-open descriptor and ``flock(LOCK_EX | LOCK_NB)`` with a
  short backoff: about 1.5 µs uncontended, for the single-entry hot paths;
* *filelock* -- :class:`filelock.FileLock`, for whole-store operations,
  migration and rollback, and for every acquisition on Windows (no
  ``fcntl``; filelock uses ``msvcrt.locking`` there).
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import filelock

from ._fsutil import IS_WINDOWS
from .errors import StoreLockTimeout

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["StoreLock", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 30.0

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class StoreLock:
    """The process-wide handle on one store's lock file."""

    _registry: dict[str, "StoreLock"] = {}
    _registry_mutex = threading.Lock()

    @classmethod
    def for_path(cls, path: str) -> "StoreLock":
        with cls._registry_mutex:
            lock = cls._registry.get(path)
            if lock is None:
                lock = cls._registry[path] = cls(path)
            return lock

    def __init__(self, path: str) -> None:
        self.path = path
        self._mutex = threading.RLock()
        self._depth = 0
        self._owner: Optional[int] = None
        self._fd: Optional[int] = None
        self._filelock: Optional[filelock.BaseFileLock] = None

    # -- public -----------------------------------------------------------

    def held_by_me(self) -> bool:
        return self._depth > 0 and self._owner == threading.get_ident()

    @contextmanager
    def hold(self, timeout: float = DEFAULT_TIMEOUT, *, heavy: bool = False) -> Iterator[None]:
        """Hold the lock for the block.  *heavy* uses filelock (whole-store
        work); a negative *timeout* waits forever."""
        self.acquire(timeout, heavy=heavy)
        try:
            yield
        finally:
            self.release()

    def acquire(self, timeout: float = DEFAULT_TIMEOUT, *, heavy: bool = False) -> None:
        deadline = None if timeout < 0 else time.monotonic() + timeout
        if not self._mutex.acquire(timeout=-1 if deadline is None else max(0.0, timeout)):
            raise self._timeout(timeout)
        if self._depth == 0:
            try:
                if heavy or IS_WINDOWS or fcntl is None:
                    self._acquire_filelock(deadline, timeout)
                else:
                    self._acquire_thin(deadline, timeout)
            except BaseException:
                self._mutex.release()
                raise
            self._owner = threading.get_ident()
        self._depth += 1

    def release(self) -> None:
        if not self.held_by_me():
            raise RuntimeError(f"store lock {self.path} released by a thread that does not hold it")
        self._depth -= 1
        try:
            if self._depth == 0:
                self._owner = None
                self._release_os()
        finally:
            self._mutex.release()

    # -- OS lock ------------------------------------------------------------

    def _timeout(self, timeout: float) -> StoreLockTimeout:
        return StoreLockTimeout(
            f"timeout waiting for session store lock ({timeout:g} s): {self.path}",
            self.path,
            timeout,
        )

    def _open_fd(self) -> int:
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
        return self._fd

    def _acquire_thin(self, deadline: Optional[float], timeout: float) -> None:
        delay = 50e-6
        while True:
            fd = self._open_fd()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._timeout(timeout) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
                continue
            # Someone unlinked or replaced the lock file while we held a
            # descriptor on the old inode: a lock there excludes nobody.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._fd = None

    def _acquire_filelock(self, deadline: Optional[float], timeout: float) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        lock = filelock.FileLock(
            self.path,
            timeout=timeout,
            mode=0o600,
            thread_local=False,
            poll_interval=0.002,
            fallback_to_soft=False,  # a soft lock would not exclude thin flock holders
        )
        remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            lock.acquire(timeout=remaining)
        except filelock.Timeout:
            raise self._timeout(timeout) from None
        self._filelock = lock

    def _release_os(self) -> None:
        if self._filelock is not None:
            lock, self._filelock = self._filelock, None
            lock.release()
        elif self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _reset_after_fork(self) -> None:
        # The child shares the parent's open file descriptions: a flock held
        # through them would be the parent's.  Start from nothing.
        self._mutex = threading.RLock()
        self._depth = 0
        self._owner = None
        self._filelock = None
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
