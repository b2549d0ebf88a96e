"""The reference host's store lock file, spoken from Python.

The reference TypeScript host takes ``<realpath(dir)>/sessions.json.lock``
by creating it exclusively and writing an owner record (JSON with ``pid``,
``createdAt`` as an ISO-8601 string and, in newer revisions, the process
``starttime`` from ``/proc/<pid>/stat``).  A file is *stale*, and deleted by
whoever finds it so, when its record has no valid pid or ``createdAt``
(at once, after 5 s, or after ``staleMs`` by mtime, depending on the
revision), when the pid is dead or was recycled (a different start time), or
when ``createdAt`` is older than ``staleMs`` (30 s for the store lock).

sessionsd holds the file as a live owner in that protocol:

* the file appears with its record already in it: a prepared owner file is
  hard-linked to the lock name (``link`` fails if the name exists), so no
  reader ever sees a record-less file of ours;
* a young record-less file is someone creating a lock (the reference writes
  its record after creating the file): it is treated as live;
* a long hold is kept fresh by a heartbeat thread that rewrites the record
  (new ``createdAt``, by rename) well before ``staleMs``;
* a stale file is reclaimed by renaming it aside and checking that the file
  moved is the one judged stale; a newer owner's file caught in between is
  put back;
* release removes the file only while it is still ours (same inode).

A dead sessionsd holder leaves a record with a dead pid: stale for both
sides at once.
"""

from __future__ import annotations

import datetime
import errno
import itertools
import json
import logging
import os
import sys
import threading
import time

from .errors import StoreLockTimeout

__all__ = ["ReferenceLockFile", "STALE_MS", "LockRecord", "read_record", "process_starttime",
           "pid_alive"]

_log = logging.getLogger(__name__)

#: The reference's ``staleMs`` for the store lock.
STALE_MS = 30_000
#: A record-less file younger than this is someone mid-creation: live.
RECORDLESS_GRACE_MS = 5_000
#: Our owner file is re-made when older than this (it is linked as a new
#: lock's record, so its ``createdAt`` must stay young).
TEMPLATE_MAX_AGE_S = 5.0
#: A held lock's record is rewritten when older than this.
REFRESH_AFTER_S = 10.0
HEARTBEAT_INTERVAL_S = 1.0

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_counter = itertools.count()


def process_starttime(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), as the
    reference records it; ``None`` where there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        # Fields after the command name (which may hold spaces and parens).
        rest = data[data.rindex(b")") + 2:].split()
        return int(rest[19])
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process *pid* exists (signal 0); True when that cannot be
    told (Windows, or an error other than "no such process")."""
    if sys.platform == "win32":  # pragma: no cover - os.kill(pid, 0) would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _iso_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _parse_iso_ms(text: str) -> float | None:
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp() * 1000.0


class LockRecord:
    """What a lock file said, and the verdict on it."""

    __slots__ = ("pid", "created_ms", "starttime", "ino", "mtime_ms", "stale", "reason")

    def __init__(self, pid: int | None, created_ms: float | None, starttime: int | None,
                 ino: int, mtime_ms: float) -> None:
        self.pid = pid
        self.created_ms = created_ms
        self.starttime = starttime
        self.ino = ino
        self.mtime_ms = mtime_ms
        self.stale = False
        self.reason = ""

    def judge(self, now_ms: float, own_pid: int, held_here: bool) -> LockRecord:
        """Set :attr:`stale` and :attr:`reason` by the reference's rules, at
        *now_ms* (wall clock, ms), for process *own_pid*, which holds the
        lock itself when *held_here*; returns this record."""
        if self.pid is None or self.created_ms is None:
            # Being created right now (the reference writes its record after
            # creating the file), or a creator died before writing: live
            # until it has been record-less for the grace period.
            if now_ms - self.mtime_ms > RECORDLESS_GRACE_MS:
                self.stale, self.reason = True, "no owner record"
            return self
        if self.pid == own_pid and not held_here:
            self.stale, self.reason = True, "left by this process"
        elif not pid_alive(self.pid):
            self.stale, self.reason = True, f"owner pid {self.pid} is dead"
        elif self.starttime is not None:
            current = process_starttime(self.pid)
            if current is not None and current != self.starttime:
                self.stale, self.reason = True, f"owner pid {self.pid} was recycled"
        if not self.stale and now_ms - self.created_ms > STALE_MS:
            self.stale, self.reason = True, f"older than {STALE_MS} ms"
        return self


def read_record(path: str) -> LockRecord | None:
    """The record at *path* (never through a symlink), or None if there is
    no file.  A file that is not a record gives a record of Nones."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        # A symlink or something unreadable: judged by its own lstat.
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        return LockRecord(None, None, None, info.st_ino, info.st_mtime_ns / 1e6)
    try:
        info = os.fstat(fd)
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    pid = created = starttime = None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict):
        value = doc.get("pid")
        if type(value) is int and value > 0:
            pid = value
        value = doc.get("createdAt")
        if isinstance(value, str):
            created = _parse_iso_ms(value)
        value = doc.get("starttime")
        if type(value) is int and value >= 0:
            starttime = value
    return LockRecord(pid, created, starttime, info.st_ino, info.st_mtime_ns / 1e6)


class ReferenceLockFile:
    """One store's ``sessions.json.lock`` as this process holds it.

    Callers serialise access (the store lock's layer 1 is held around every
    call), so there is no locking here except with the heartbeat thread.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.directory = os.path.dirname(path)
        self._held_ino: int | None = None
        self._held_since = 0.0
        self._refreshed_at = 0.0
        self._template: str | None = None
        self._template_ino = 0
        self._template_made = 0.0
        self._warned_full = False
        self._mutex = threading.Lock()  # with the heartbeat

    # -- acquire / release ------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether this process holds the lock file now."""
        return self._held_ino is not None

    def acquire(self, deadline: float | None, timeout: float) -> None:
        """Take the lock file, reclaiming a stale one; waits until
        *deadline* (``time.monotonic()``; None: forever), then raises
        :class:`StoreLockTimeout` naming *timeout* and the owner."""
        delay = 0.001
        while True:
            if self._try_link():
                return
            record = read_record(self.path)
            if record is None:
                continue  # released between our link and our look: try again
            record.judge(time.time() * 1000.0, os.getpid(), self.held)
            if record.stale:
                self._reclaim(record)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                owner = f" (held by pid {record.pid})" if record.pid else " (owner record not written yet)"
                raise StoreLockTimeout(
                    f"timeout waiting for session store lock ({timeout:g} s): {self.path}{owner}",
                    self.path, timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        """Remove the lock file if it is still ours (same inode); a file
        removed or taken over meanwhile is only logged."""
        with self._mutex:
            ino, self._held_ino = self._held_ino, None
        _HEARTBEAT.forget(self)
        if ino is None:
            return
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            _log.warning("session store lock file vanished while held: %s", self.path)
            return
        if info.st_ino != ino:
            _log.warning("session store lock file was taken over while held: %s", self.path)
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass  # removed by someone who judged it stale: nothing left to release

    def discard_template(self) -> None:
        """When no store object uses this lock any more: remove our owner
        file (the lock file itself is never held here)."""
        with self._mutex:
            template, self._template = self._template, None
        if template is not None:
            _OWNER_FILES.discard(template)
            _unlink_quietly(template)

    def forget(self) -> None:
        """After fork: the child holds nothing (the parent's file stays)."""
        self._held_ino = None
        self._template = None
        self._mutex = threading.Lock()

    # -- internals ----------------------------------------------------------------

    def _record_bytes(self) -> bytes:
        pid = os.getpid()
        record: dict[str, object] = {"pid": pid, "createdAt": _iso_now()}
        starttime = process_starttime(pid)
        if starttime is not None:
            record["starttime"] = starttime
        record["owner"] = "sessionsd"
        return json.dumps(record, indent=2).encode("utf-8")

    def _write_owner_file(self) -> str:
        """A fresh owner file (a dotfile beside the lock) holding our record."""
        path = os.path.join(self.directory,
                            f".sessions.json.lock.sessionsd-{os.getpid()}-{next(_counter)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
        try:
            data = self._record_bytes()
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)
            raise
        os.close(fd)
        return path

    def _refresh_in_place(self, path: str) -> bool:
        """Rewrite our (unlinked-as-lock) owner file's record in place: the
        record has a fixed length for a process, so this needs no new space
        (a full disk must not stop the lock).  False if that failed."""
        try:
            fd = os.open(path, os.O_WRONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except OSError:
            return False
        try:
            data = self._record_bytes()
            if os.fstat(fd).st_size != len(data) or os.pwrite(fd, data, 0) != len(data):
                return False
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def _fresh_template(self) -> str | None:
        """Our owner file with a young record; None when none can be written
        (a full disk)."""
        now = time.monotonic()
        if self._template is not None and now - self._template_made > TEMPLATE_MAX_AGE_S \
                and self._refresh_in_place(self._template):
            self._template_made = now
        if self._template is None or now - self._template_made > TEMPLATE_MAX_AGE_S:
            old = self._template
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            try:
                template = self._write_owner_file()
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                return None
            self._template = template
            self._template_ino = os.lstat(template).st_ino
            self._template_made = now
            _OWNER_FILES.add(template)
            if old is not None:
                _OWNER_FILES.discard(old)
                _unlink_quietly(old)
            else:
                _clean_dead_templates(self.directory)
        return self._template

    def _try_link(self) -> bool:
        template = self._fresh_template()
        if template is None:
            # No space for an owner record: hold the store by sessionsd's own
            # exclusion alone, once no reference process holds it (a reference
            # writer needs space to write too).
            if os.path.lexists(self.path):
                return False  # judged, waited for or reclaimed by the caller
            if not self._warned_full:
                self._warned_full = True
                _log.warning("disk full: holding session store %s without the reference lock file "
                             "(no space for its owner record)", self.path)
            self._held_ino = None
            return True
        self._warned_full = False
        try:
            os.link(template, self.path)
        except FileExistsError:
            return False
        except FileNotFoundError:
            # Our owner file was removed from outside: make a new one.
            self._template = None
            return self._try_link()
        ino = self._template_ino
        now = time.monotonic()
        with self._mutex:
            self._held_ino = ino
            self._held_since = now
            self._refreshed_at = self._template_made
        _HEARTBEAT.watch(self)
        return True

    def _reclaim(self, record: LockRecord) -> None:
        """Remove a stale lock file, and only that one."""
        aside = os.path.join(self.directory,
                             f".sessions.json.lock.stale-{os.getpid()}-{next(_counter)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else reclaimed it first
        try:
            moved = os.lstat(aside).st_ino
            if moved != record.ino:
                # A new owner's file replaced the stale one after we read it:
                # put it back (link fails only if yet another appeared).
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    _log.warning("session store lock: a new owner's lock file was displaced "
                                 "while reclaiming a stale one: %s", self.path)
                return
            _log.warning("removed stale session store lock %s (%s)", self.path, record.reason)
        finally:
            _unlink_quietly(aside)

    def refresh_if_due(self) -> None:
        """Heartbeat: rewrite our record before anyone could call it stale."""
        with self._mutex:
            if self._held_ino is None or time.monotonic() - self._refreshed_at < REFRESH_AFTER_S:
                return
            try:
                fresh = self._write_owner_file()
            except OSError as exc:
                _log.warning("could not refresh session store lock %s: %s", self.path, exc)
                return
            try:
                current = os.lstat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != self._held_ino:
                _unlink_quietly(fresh)
                _log.warning("session store lock file was removed or taken over while held: %s",
                             self.path)
                return
            new_ino = os.lstat(fresh).st_ino
            os.replace(fresh, self.path)
            self._held_ino = new_ino
            self._refreshed_at = time.monotonic()


class _Heartbeat:
    """One daemon thread per process refreshing every held lock file."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._watched: set[ReferenceLockFile] = set()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def watch(self, lock: ReferenceLockFile) -> None:
        with self._mutex:
            self._watched.add(lock)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sessionsd-lock-heartbeat",
                                                daemon=True)
                self._thread.start()

    def forget(self, lock: ReferenceLockFile) -> None:
        with self._mutex:
            self._watched.discard(lock)

    def _run(self) -> None:
        while True:
            self._wake.wait(HEARTBEAT_INTERVAL_S)
            with self._mutex:
                watched = list(self._watched)
            for lock in watched:
                try:
                    lock.refresh_if_due()
                except Exception:  # noqa: BLE001 - a heartbeat must never die
                    _log.exception("session store lock heartbeat failed for %s", lock.path)

    def reset_after_fork(self) -> None:
        self._mutex = threading.Lock()
        self._watched = set()
        self._thread = None
        self._wake = threading.Event()

    def release_all(self) -> None:
        """At exit: remove the lock files this process still holds, then
        its owner files."""
        with self._mutex:
            watched = list(self._watched)
        for lock in watched:
            try:
                lock.release()
            except OSError:
                pass  # best effort at exit; a dead pid's record is stale anyway
        for path in list(_OWNER_FILES):
            _unlink_quietly(path)
        _OWNER_FILES.clear()


_HEARTBEAT = _Heartbeat()
#: This process's owner files (one per store it has locked), removed at exit.
_OWNER_FILES: set[str] = set()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # a leftover owner file is a dotfile nobody reads; cleaned by pid later


def _clean_dead_templates(directory: str) -> None:
    """Remove owner files left by dead sessionsd processes."""
    prefix = ".sessions.json.lock."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        tail = name[len(prefix):]
        kind, _, rest = tail.partition("-")
        if kind not in ("sessionsd", "stale"):
            continue
        pid_text = rest.split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not pid_alive(int(pid_text)):
            _unlink_quietly(os.path.join(directory, name))


def _reset_after_fork() -> None:
    _HEARTBEAT.reset_after_fork()
    _OWNER_FILES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

import atexit  # noqa: E402 - registered once the heartbeat exists

atexit.register(_HEARTBEAT.release_all)
