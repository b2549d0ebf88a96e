"""Atomic file primitives: safe reads, temp-file writes, renames, fsyncs.

Every write goes to a fresh temp file in the target's directory, created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, and is renamed over the
target: a reader sees the old bytes or the new bytes, never a mix.  Reads
never follow a symlink.  ``OSError`` propagates unchanged.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import sys
import time

from ._types import DURABILITY_MODES, Durability, check_durability
from .errors import UnsafeStoreError

__all__ = [
    "DURABILITY_MODES",
    "IS_WINDOWS",
    "open_for_reading",
    "read_regular",
    "write_new",
    "write_atomic",
    "replace",
    "fsync_dir",
    "temp_name",
    "is_temp_name",
    "ensure_private_dir",
    "check_private_dir",
]

IS_WINDOWS = sys.platform == "win32"
# DURABILITY_MODES is re-exported from ._types (its home): the modes' names.

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted in entries/ must not block open()
_O_BINARY = getattr(os, "O_BINARY", 0)
READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK | _O_BINARY
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY

# What a path that is not (or is no longer) a regular file answers to open():
# missing, a symlink (O_NOFOLLOW), a directory, a path through a non-directory.
NOT_A_FILE_ERRNOS = {errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENOTDIR, errno.ENXIO}

_counter = itertools.count()
TEMP_SUFFIX = ".tmp"


def temp_name(target_name: str) -> str:
    """A temp-file name for *target_name*: a dotfile (never loaded as an
    entry, by this library or the reference) unique to this process."""
    return f".{target_name}.{os.getpid()}-{next(_counter)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """True for names :func:`temp_name` makes."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def open_for_reading(path: str) -> int | None:
    """A read descriptor on *path*, never through a symlink, or ``None`` when
    it is missing, a symlink or a directory.  Other errors propagate."""
    try:
        return os.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno in NOT_A_FILE_ERRNOS:
            return None
        raise


def read_regular(path: str, limit: int | None = None) -> bytes | None:
    """The bytes of the regular file at *path* (at most *limit*), or ``None``
    when it is missing, a symlink (never followed), a directory or any other
    non-regular file.  Other errors (EACCES, EIO …) propagate."""
    fd = open_for_reading(path)
    if fd is None:
        return None
    try:
        if limit is not None:
            # No fstat on the prefix path: O_NOFOLLOW excluded symlinks, a
            # directory fails read() with EISDIR and a FIFO reads as empty.
            try:
                return os.read(fd, limit)
            except (IsADirectoryError, BlockingIOError):
                return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        # Grew since fstat (a writer appending in place -- not ours, we
        # rename): read to the end.
        chunks = [data]
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


_SMALL_READ = 65536
_HAVE_DIR_FD = os.open in getattr(os, "supports_dir_fd", ())


def open_dir(path: str) -> int | None:
    """A descriptor of directory *path* for :func:`read_regular_at` (None
    where ``dir_fd`` is not supported: callers then use full paths)."""
    if not _HAVE_DIR_FD:
        return None  # pragma: no cover - Windows
    return os.open(path, os.O_RDONLY | _O_CLOEXEC | getattr(os, "O_DIRECTORY", 0))


def read_regular_at(dir_fd: int, name: str) -> bytes | None:
    """:func:`read_regular` of *name* inside the directory *dir_fd*, with the
    same answers, in fewer system calls for the common case: the name is
    resolved relative to the open directory, and a file that one read of
    64 KiB returns whole (neither empty nor filling the buffer) needs no
    ``fstat`` -- only a regular file reads that way (O_NOFOLLOW refuses
    symlinks, a directory fails the read, a FIFO reads empty, a device
    fills the buffer; those take the fstat path)."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in NOT_A_FILE_ERRNOS:
            return None
        raise
    try:
        try:
            data = os.read(fd, _SMALL_READ)
        except (IsADirectoryError, BlockingIOError):
            return None
        if 0 < len(data) < _SMALL_READ:
            return data
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        chunks = [data]
        while True:
            chunk = os.read(fd, max(_SMALL_READ, info.st_size + 1 - sum(map(len, chunks))))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_new(path: str, data: bytes, durability: Durability) -> None:
    """Create *path* (which must not exist) holding *data*, mode 0600; fsync
    it unless *durability* is ``"none"``.  A partial file is removed.

    Raises ``ValueError`` for a *durability* that is not a :data:`Durability`
    (before anything is created), ``OSError`` as the system reports it."""
    if durability not in DURABILITY_MODES:
        check_durability(durability)  # raises, naming the accepted values
    fd = os.open(path, CREATE_FLAGS, 0o600)
    try:
        _write_all(fd, data)
        if durability != "none":
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # best effort: the temp file is a dotfile that loads never read


def replace(source: str, target: str) -> None:
    """``os.replace``, retried on Windows where a reader holding the target
    open makes the rename fail with a transient ``PermissionError``."""
    if not IS_WINDOWS:
        os.replace(source, target)
        return
    delay = 0.005
    for attempt in range(10):  # pragma: no cover - Windows only
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == 9:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def fsync_dir(path: str) -> None:
    """fsync a directory so renames inside it survive power loss (POSIX;
    Windows has no directory fsync and NTFS journals metadata)."""
    if IS_WINDOWS:  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, durability: Durability = "file") -> None:
    """Replace *path* with *data* atomically (temp file + rename), mode 0600.

    ``durability``: ``"none"`` survives process crashes; ``"file"`` also
    fsyncs the temp file before the rename, so power loss can never leave an
    empty or partial file; ``"full"`` also fsyncs the directory, so the
    rename itself is durable when this returns.  Another *durability*
    raises ``ValueError`` before anything is written.
    """
    if durability not in DURABILITY_MODES:
        check_durability(durability)  # raises, naming the accepted values
    directory, name = os.path.split(path)
    temp = os.path.join(directory, temp_name(name))
    write_new(temp, data, durability)
    try:
        replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    if durability == "full":
        fsync_dir(directory or ".")


def check_private_dir(path: str, info: os.stat_result) -> None:
    """Refuse a directory others could write into (POSIX): a symlink, a
    non-directory, group/world-writable, or owned by another user."""
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeStoreError(f"refusing symlinked session-store directory: {path}", path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStoreError(f"expected a directory: {path}", path)
    if IS_WINDOWS:  # pragma: no cover - no POSIX modes or owners
        return
    if info.st_mode & 0o022:
        raise UnsafeStoreError(
            f"refusing writable session-store directory: {path} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}; expected no group/other write)",
            path,
        )
    if info.st_uid != os.geteuid():
        raise UnsafeStoreError(
            f"refusing session-store directory owned by another user: {path} "
            f"(uid {info.st_uid}, we are {os.geteuid()})",
            path,
        )


def ensure_private_dir(path: str) -> None:
    """Create *path* mode 0700 if missing, then :func:`check_private_dir`."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    check_private_dir(path, os.lstat(path))
