"""Directory mode: ``sessions.d/`` with one file per session (SPEC §2, §4).

Commit protocol (every write holds the store lock):

* ``sessions.d/seq`` is a seqlock: 8 bytes, little-endian.  A writer makes
  it odd before it creates any file and even once the commit is complete, so
  an odd value with a free lock means a writer died mid-commit.
* A single-entry commit writes a temp file and renames it over the entry.
* A multi-entry commit writes every new entry as a temp file, then the commit
  record ``sessions.d/commit.json`` (renames + deletes + the new version),
  applies it, bumps ``state.json`` and removes the record.  Recovery replays a
  leftover record (idempotent: a rename whose temp file is gone was applied),
  so a crash at any instant leaves the old state or the new one.

Readers take no lock: single-entry reads see one file's old or new bytes;
full loads are made consistent by the seqlock (see :meth:`snapshot`).

The seqlock itself, the statistics file, the listing index's journal and
recovery live in :mod:`sessionsd._seqlock` (a mixin of :class:`DirectoryStore`).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Sequence
from typing import Any

from . import _faults, _json
from . import index as _index
from ._codec import (
    HASHED_PREFIX,
    KEY_WHITESPACE,
    prefetch_files,
    read_files,
    read_updated_at,
    scan_entries,
    scan_entries_with_skipped,
)
from ._documents import decode_document
from ._fsutil import (
    fsync_dir,
    is_temp_name,
    open_dir,
    read_regular,
    replace,
    temp_name,
    write_atomic,
    write_new,
)
from ._layout import BLOCKED_KEYS, State, StorePaths, read_state, state_bytes
from ._seqlock import CommitBookkeeping, Stats
from ._types import Durability, Entries, Entry, check_durability
from .errors import KeyCollisionError, UnsafeStoreError

__all__ = ["DirectoryStore", "Snapshot", "Change", "Stats"]

_log = logging.getLogger(__name__)

# Entry files per read_files() call in a full read: large enough that the
# per-call cost vanishes, small enough that a batch of big entries does not
# hold much more memory than one file at a time.
_READ_BATCH = 512


#: (name, key, bytes) to write an entry, (name, key, None) to delete one.
Change = tuple[str, str, bytes | None]


class Snapshot:
    """A consistent full read: entries by key, the file names, what was skipped."""

    __slots__ = ("token", "entries", "names", "skipped")

    def __init__(self, token: tuple[int, int], entries: Entries,
                 names: dict[str, str], skipped: list[tuple[str, str]]) -> None:
        self.token = token
        self.entries = entries
        self.names = names
        self.skipped = skipped


class _Retry(Exception):
    """A full read overlapped a commit."""


class DirectoryStore(CommitBookkeeping):
    """The on-disk operations of one directory store.  Stateless apart from
    settings and two per-process facts (recovery checked, case sensitivity)."""

    def __init__(self, paths: StorePaths, durability: Durability = "file",
                 bump_version_on_write: bool = False) -> None:
        self.paths = paths
        self.durability: Durability = check_durability(durability)
        self.bump_version_on_write = bump_version_on_write
        self.entry_prefix = paths.entries + os.sep
        self._commit_checked = False
        self._case_insensitive: bool | None = None
        self._stats: Stats | None = None
        self._stats_fd: int | None = None
        # The listing index's journal (sessionsd.index), open during a commit
        # when the store has an index; the entries/ mtime before the commit.
        self._journal_fd: int | None = None
        self._journal_mtime = 0
        self.index_path = os.path.join(paths.root, _index.INDEX_NAME)
        self.journal_path = os.path.join(paths.root, _index.LOG_NAME)
        #: Set by a commit whose journal outgrew its base (the caller compacts).
        self.index_compact_due = False
        #: (prev token, next token, ops) of this object's last journal record.
        self.last_journal: tuple[tuple[int, int, int], tuple[int, int, int], list[list[Any]]] | None = None

    # -- reads (no lock) ------------------------------------------------------

    def entry_path(self, name: str) -> str:
        """The path of entry file *name*."""
        return self.entry_prefix + name

    def read_entry(self, key: str, name: str) -> Entry | None:
        """The entry stored for *key* (already normalised), or ``None``.

        An entry file this process may not read raises ``PermissionError``:
        the session exists, and ``None`` ("no such session") would invite a
        caller to create it afresh over the one it cannot see.  Full loads
        skip such a file instead (see :meth:`_read_all`)."""
        data = read_regular(self.entry_prefix + name)
        if data is None:
            return None
        inline_key = None if name.startswith(HASHED_PREFIX) else key
        decoded = decode_document(data, name, inline_key)
        if isinstance(decoded, str) or decoded[0] != key:
            return None
        return decoded[1]

    def read_updated_at(self, key: str, name: str) -> tuple[bool, Any]:
        """``(found, entry["updatedAt"])``: the codec's fast path when the
        file's layout settles the answer, else a full parse -- the same
        answer :meth:`read_entry` gives.  Raises ``PermissionError`` like it."""
        quick = read_updated_at(self.entry_prefix + name, key)
        if quick is not None:
            return quick
        return self.read_updated_at_fully(key, name)

    def read_updated_at_fully(self, key: str, name: str) -> tuple[bool, Any]:
        """:meth:`read_updated_at` by a full parse of the entry file."""
        entry = self.read_entry(key, name)
        if entry is None:
            return (False, None)
        return (True, entry.get("updatedAt"))

    def snapshot(self, state: State, seq: int, reuse: Snapshot | None = None,
                 dirty: dict[str, str] | None = None) -> Snapshot:
        """Read every entry; raises :class:`_Retry` if a commit overlapped.

        With *reuse* (a cached snapshot of the same token, extended by this
        process's own writes listed in *dirty*), only the dirty files are read.
        """
        if reuse is not None:
            entries = dict(reuse.entries)
            names = dict(reuse.names)
            dirty = dirty or {}
            # A rewritten file is judged afresh: drop its old skip reason.
            skipped = [item for item in reuse.skipped if item[0] not in dirty]
            for name, key in dirty.items():
                entry = self.read_entry(key, name)
                if entry is None:
                    entries.pop(key, None)
                    names.pop(name, None)
                else:
                    entries[key] = entry
                    names[name] = key
        else:
            try:
                entries, names, skipped = self._read_all()
            except (FileNotFoundError, NotADirectoryError):
                raise _Retry from None  # entries/ moved away: a rollback or re-migration
        if os.path.lexists(self.paths.commit) or self.read_seq() != seq:
            raise _Retry
        after = read_state(self.paths)
        if after is None or after.version != state.version or after.identity != state.identity:
            raise _Retry
        return Snapshot((state.version, seq), entries, names, skipped)

    def _read_all(self) -> tuple[Entries, dict[str, str], list[tuple[str, str]]]:
        """Every entry in ``entries/``, its file name, and ``(name, reason)``
        for every other name there: non-entries first (the scan's reasons:
        temp file, dotfile, symlink, ...), then entry files that could not be
        used (unreadable, corrupt, impostor).  One unreadable file (EACCES)
        is skipped, not fatal: the rest of the store stays usable."""
        entries: Entries = {}
        names: dict[str, str] = {}
        loads = _json.loads
        blocked = BLOCKED_KEYS
        # Reads go through one open directory, a batch of files per call
        # (compiled: the whole batch in C without the GIL -- the per-file
        # cost of a cold load is mostly system calls and their wrappers).
        dir_fd = open_dir(self.paths.entries)
        pending = None
        try:
            found, skipped = scan_entries_with_skipped(self.paths.entries)
            where = self.paths.entries if dir_fd is None else dir_fd
            batches = [found[start:start + _READ_BATCH] for start in range(0, len(found), _READ_BATCH)]
            for number, batch in enumerate(batches):
                # The next batch is read (compiled: on a thread of its own)
                # while this one is parsed.
                contents = pending.result() if pending is not None else read_files(where, [n for n, _ in batch])
                pending = None
                if number + 1 < len(batches):
                    pending = prefetch_files(where, [n for n, _ in batches[number + 1]])
                for (name, inline_key), data in zip(batch, contents, strict=True):
                    if not isinstance(data, bytes):
                        if data is None:
                            skipped.append((name, "vanished or not a regular file"))
                            continue
                        if isinstance(data, PermissionError):
                            skipped.append((name, "permission denied"))
                            continue
                        raise data
                    if inline_key is not None:
                        # The common case, decided without decode_document's
                        # full rules: a document whose sessionKey is exactly the
                        # key its inline name encodes (such a key is already
                        # trimmed and valid UTF-8), with an object entry.
                        try:
                            doc = loads(data)
                        except ValueError:
                            doc = None
                        if type(doc) is dict:
                            key = doc.get("sessionKey")
                            entry = doc.get("entry")
                            if key == inline_key and type(key) is str and type(entry) is dict and key not in blocked:
                                entries[key] = entry
                                names[name] = key
                                continue
                    decoded = decode_document(data, name, inline_key)
                    if isinstance(decoded, str):
                        skipped.append((name, decoded))
                        continue
                    key, entry = decoded
                    entries[key] = entry
                    names[name] = key
        finally:
            if pending is not None:
                pending.close()  # before its directory descriptor is closed
            if dir_fd is not None:
                os.close(dir_fd)
        return entries, names, skipped

    def count_entries(self) -> tuple[int, int]:
        """(entry files, their bytes) by listing: the O(n) fallback."""
        count = size = 0
        prefix = self.entry_prefix
        for name, _key in scan_entries(self.paths.entries):
            try:
                size += os.lstat(prefix + name).st_size
            except FileNotFoundError:
                continue
            count += 1
        return count, size


    # -- the commit record (written by commit, replayed by recovery) ------------------

    def _replay(self) -> None:
        data = read_regular(self.paths.commit)
        record = None
        if data is not None:
            try:
                record = _json.loads(data)
            except ValueError:
                record = None
        if not isinstance(record, dict):
            # The record is written atomically: a bad one was never ours to
            # apply.  Leave it for `check` rather than guess.
            os.replace(self.paths.commit, self.paths.commit + f".invalid.{int(time.time() * 1000)}")
            return
        self._apply(record)
        os.unlink(self.paths.commit)

    def _apply(self, record: dict[str, Any]) -> None:
        prefix = self.entry_prefix
        for temp, name in record.get("renames", []):
            try:
                replace(prefix + temp, prefix + name)
            except FileNotFoundError:
                pass  # renamed before the crash: this part is already applied
            _faults.hit("multi:mid-renames")
        for name in record.get("deletes", []):
            self._unlink_entry(prefix + name)
        staged = record.get("state")
        if isinstance(staged, str) and is_temp_name(staged) and os.sep not in staged:
            # The new state.json was written before the commit was decided:
            # applying it is a rename, so recovery needs no new space.
            try:
                replace(os.path.join(self.paths.root, staged), self.paths.state)
            except FileNotFoundError:
                pass  # renamed before the crash: already applied
        else:
            version = record.get("version")
            if type(version) is int:  # a record written before state staging
                state = read_state(self.paths, check_safety=False)
                if state is not None and state.version < version:
                    write_atomic(self.paths.state, state_bytes(State(version, _now(), state.extra)),
                                 self.durability)
        if self.durability != "none":
            fsync_dir(self.paths.entries)

    # -- writes (the caller holds the lock and has checked the mode) --------------

    def _guard_target(self, path: str, key: str) -> int:
        """Refuse to replace a symlink or another key's document; returns
        the size of the file being replaced (-1 when there is none)."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return -1
        if stat.S_ISLNK(info.st_mode):
            raise UnsafeStoreError(
                f"cannot write session {key!r}: its entry path {path} is a symlink, which this "
                "store never replaces or follows; move it away", path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise UnsafeStoreError(
                f"cannot write session {key!r}: its entry path {path} is {kind}; move it away "
                "(`sessionsd check` lists what is in the way)", path)
        if self._is_case_insensitive():
            data = read_regular(path)
            if data is not None:
                try:
                    doc = _json.loads(data)
                except ValueError:
                    return info.st_size  # a corrupt file holds no session to protect
                other = doc.get("sessionKey") if isinstance(doc, dict) else None
                if isinstance(other, str) and other.strip(KEY_WHITESPACE) != key:
                    raise KeyCollisionError(
                        f"entry file {os.path.basename(path)} already holds session {other!r}; "
                        f"on this case-insensitive file system it cannot also hold {key!r}",
                        key, other, path,
                    )
        return info.st_size

    def _is_case_insensitive(self) -> bool:
        if self._case_insensitive is None:
            probe = os.path.join(self.paths.entries, f".sessionsd-case-probe-{os.getpid()}.tmp")
            write_new(probe, b"", "none")
            try:
                self._case_insensitive = os.path.lexists(
                    os.path.join(self.paths.entries, os.path.basename(probe).upper())
                )
            finally:
                os.unlink(probe)
        return self._case_insensitive

    @staticmethod
    def _unlink_entry(path: str, size: int | None = None) -> int:
        """Remove a regular entry file (*size*: what :func:`_regular_size`
        already said of it); its size, or -1 if nothing was removed."""
        if size is None:
            size = _regular_size(path)
        if size < 0:
            return -1  # missing, or a symlink or directory: not an entry, left in place
        try:
            os.unlink(path)
        except FileNotFoundError:
            return -1
        return size

    def _write_temp(self, name: str, key: str, data: bytes) -> tuple[str, int]:
        old_size = self._guard_target(self.entry_prefix + name, key)
        temp = temp_name(name)
        write_new(self.entry_prefix + temp, data, self.durability)
        return temp, old_size

    def write_one(self, name: str, key: str, data: bytes | None,
                  version: int, row: list[Any] | None = None) -> tuple[bool, int, Stats | None]:
        """Write (or, with ``data=None``, delete) one entry.

        Invariant: the entry file is replaced by one rename; seq is odd from
        before the temp file exists until after the rename.  A write stages
        the bumped ``state.json`` before its rename, so a full disk fails it
        before anything is visible; a delete bumps after its unlink (which
        frees space), and on a still-full disk leaves the bump to the next
        commit rather than fail a delete that happened.  *version* is the
        current state.json version; *row* the listing-index row of what
        *data* encodes (``index.entry_row``; parsed from *data* when not given).  Returns
        ``(changed, seq before the commit, store statistics after it or None
        when unknown)``.
        """
        target = self.entry_prefix + name
        old_size = _regular_size(target) if data is None else None
        if old_size is not None and old_size < 0:
            # Nothing to delete (or a symlink, left in place): no commit, so
            # other processes' cached snapshots stay valid.
            return False, self.read_seq(), None
        fd, odd = self._begin()
        stats = self._stats if self._stats is not None and self._stats.version == version else None
        try:
            _faults.hit("one:seq-odd")
            staged: tuple[str, State] | None = None
            if data is None:
                removed = self._unlink_entry(target, old_size)
                changed = removed >= 0
                if changed and stats is not None:
                    stats.count = max(0, stats.count - 1)  # a hand-added file (no version bump) is not counted
                    stats.bytes = max(0, stats.bytes - removed)
                if changed and self.bump_version_on_write:
                    try:
                        staged = self._stage_state()
                    except OSError as exc:
                        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                            raise
                        _log.warning("disk full: deleted an entry of %s without bumping state.json's "
                                     "version; reference readers may serve their cached copy until the "
                                     "next commit", self.paths.root)
            else:
                temp, old_size = self._write_temp(name, key, data)
                _faults.hit("one:after-temp")
                try:
                    if self.bump_version_on_write:
                        staged = self._stage_state()
                    replace(self.entry_prefix + temp, target)
                except BaseException:
                    _unlink_quietly(self.entry_prefix + temp)
                    if staged is not None:
                        _unlink_quietly(staged[0])
                    raise
                changed = True
                if stats is not None:
                    stats.count += old_size < 0
                    stats.bytes = max(0, stats.bytes + len(data) - max(old_size, 0))
            if changed and self.durability == "full":
                fsync_dir(self.paths.entries)
            _faults.hit("one:after-rename")
            if staged is not None:
                # After the entry (the reference's order): a reader that saw
                # the new version also sees the new entry.
                try:
                    replace(staged[0], self.paths.state)
                except BaseException:
                    _unlink_quietly(staged[0])
                    raise
                if self.durability == "full":
                    fsync_dir(self.paths.root)
                if stats is not None:
                    stats.version = staged[1].version
            if changed and self._journal_fd is not None:
                self._journal(version, staged[1].version if staged is not None else version, odd,
                              [[key]] if data is None else [self._row(name, key, data, row)])
        except BaseException:
            self._end(fd, odd, None)
            raise
        self._end(fd, odd, stats)
        return changed, odd - 1, stats

    def commit(self, changes: Sequence[Change],
               rows: dict[str, list[Any]] | None = None) -> tuple[int, Stats | None]:
        """Apply *changes* as one atomic commit and bump ``state.json``.
        *rows* (key -> ``index.entry_row``) are the listing-index rows of
        what is written (parsed from the bytes when missing).

        Returns the seq before the commit and the statistics after it.
        Invariant: nothing is visible until the commit record exists; from
        then on the commit is decided and is finished (here, or by recovery
        replaying the record), never undone -- so its temp files must stay.
        """
        fd, odd = self._begin()
        decided = False
        temps: list[str] = []
        temps_root: list[str] = []  # the staged state.json
        state = read_state(self.paths, check_safety=False)
        version = (state.version if state else 0) + 1
        stats = self._stats if self._stats is not None and state is not None \
            and self._stats.version == state.version else None
        try:
            renames: list[list[str]] = []
            deletes: list[str] = []
            _faults.hit("multi:seq-odd")
            for name, key, data in changes:
                if data is None:
                    deletes.append(name)
                    if stats is not None:
                        try:
                            info = os.lstat(self.entry_prefix + name)
                        except FileNotFoundError:
                            continue
                        if stat.S_ISREG(info.st_mode):
                            stats.count = max(0, stats.count - 1)  # a hand-added file (no version bump) is not counted
                            stats.bytes = max(0, stats.bytes - info.st_size)
                else:
                    temp, old_size = self._write_temp(name, key, data)
                    temps.append(temp)
                    renames.append([temp, name])
                    if stats is not None:
                        stats.count += old_size < 0
                        stats.bytes = max(0, stats.bytes + len(data) - max(old_size, 0))
                    _faults.hit("multi:after-temp")
            staged = temp_name("state.json")
            temps_root.append(staged)
            write_new(os.path.join(self.paths.root, staged),
                      state_bytes(State(version, _now(), state.extra if state else {})), self.durability)
            record = {"version": version, "renames": renames, "deletes": deletes, "state": staged}
            write_atomic(self.paths.commit, _json.dumps(record), self.durability)
            decided = True
            _faults.hit("multi:after-record")
            self._apply(record)
            _faults.hit("multi:after-apply")
            os.unlink(self.paths.commit)
            _faults.hit("multi:after-record-removed")
            if self._journal_fd is not None:
                # One record for the whole commit: a listing shows all of it or none.
                rows = rows or {}
                self._journal(state.version if state else 0, version, odd,
                              [[key] if data is None else self._row(name, key, data, rows.get(key))
                               for name, key, data in changes])
        except BaseException:
            if not decided:
                # Nothing visible happened: drop the temp files, close cleanly.
                for temp in temps:
                    _unlink_quietly(self.entry_prefix + temp)
                for temp in temps_root:
                    _unlink_quietly(os.path.join(self.paths.root, temp))
                self._end(fd, odd, None)
                raise
            try:
                self._replay()  # finish the decided commit (idempotent)
            except OSError:
                self._abandon(fd)  # seq stays odd: the next reader or writer recovers
            else:
                self._end(fd, odd, None)
            raise  # the original error
        if stats is not None:
            stats.version = version
        self._end(fd, odd, stats)
        return odd - 1, stats

    def _stage_state(self) -> tuple[str, State]:
        """The bumped state.json written to a temp file in sessions.d/
        (renamed into place by the caller): ``(temp path, new state)``."""
        state = read_state(self.paths, check_safety=False)
        new = State(state.version + 1 if state else 1, _now(), state.extra if state else {})
        temp = os.path.join(self.paths.root, temp_name("state.json"))
        write_new(temp, state_bytes(new), self.durability)
        return temp, new


def _now() -> int:
    return time.time_ns() // 1_000_000


def _regular_size(path: str) -> int:
    """The size of the regular file at *path* (never through a symlink), or -1."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return -1
    return info.st_size if stat.S_ISREG(info.st_mode) else -1


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # a leftover temp file is a dotfile: never loaded, removed by recovery
