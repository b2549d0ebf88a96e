"""The seqlock of a directory store and what rides on it (SPEC §4): the
commit counter ``sessions.d/seq``, the statistics file ``sessions.d/stats``,
the listing index's journal (:mod:`sessionsd.index`) appended inside a
commit, the open/close of every commit (:meth:`~CommitBookkeeping._begin`,
:meth:`~CommitBookkeeping._end`) and recovery of a dead writer's commit (seq
made even, temp files dropped, statistics invalidated; the commit record
itself is replayed by :class:`~sessionsd._directory.DirectoryStore`).  A
mixin of :class:`sessionsd._directory.DirectoryStore`, split out along that
seam.
"""

from __future__ import annotations

import logging
import os
import struct
from typing import TYPE_CHECKING, Any

from . import _faults
from . import index as _index
from ._codec import HASHED_PREFIX
from ._documents import decode_document
from ._fsutil import is_temp_name, read_regular
from ._layout import StorePaths

__all__ = ["CommitBookkeeping", "Stats"]

_log = logging.getLogger(__name__)

_SEQ = struct.Struct("<Q")
# sessions.d/stats: this library's store statistics, kept by every commit
# under the lock so maintenance never has to count.  They are valid only for
# the seq, state.json version and mtime of entries/ recorded with them (the
# listing index's token): a writer that does not keep them (the reference
# code) bumps the version, a writer that died mid-commit leaves seq odd,
# whose recovery invalidates them, and a hand edit that creates, renames or
# removes an entry file without a version bump changes the mtime of entries/.
# (A stats file of 40 bytes, written before the mtime was recorded, is
# "unknown": recounted once.)
_STATS = struct.Struct("<QQQQQq")  # seq, version, entry count, entry bytes, last age sweep, entries/ mtime_ns
_NO_STATS = _STATS.pack(0, 0, 0, 0, 0, -1)  # version 0 never matches a state.json version


class Stats:
    """Entry count and bytes of a store, valid for one (seq, state.json
    version, mtime_ns of entries/)."""

    __slots__ = ("count", "bytes", "version", "last_sweep", "seq", "entries_mtime")

    def __init__(self, count: int, size: int, version: int, last_sweep: int = 0,
                 seq: int = 0, entries_mtime: int = -1) -> None:
        self.count = count
        self.bytes = size
        self.version = version
        self.last_sweep = last_sweep
        self.seq = seq
        self.entries_mtime = entries_mtime

    def pack(self, seq: int) -> bytes:
        """The 48 bytes of the stats file for these figures, written at *seq*."""
        return _STATS.pack(seq, self.version, self.count, self.bytes, self.last_sweep, self.entries_mtime)

    @classmethod
    def unpack(cls, data: bytes) -> Stats | None:
        """The figures in a stats file's bytes; None when they are not 48
        bytes or record "unknown" (version 0)."""
        if len(data) != _STATS.size:
            return None
        seq, version, count, size, last_sweep, entries_mtime = _STATS.unpack(data)
        return cls(count, size, version, last_sweep, seq, entries_mtime) if version else None

    def __repr__(self) -> str:
        return f"Stats(count={self.count}, bytes={self.bytes}, version={self.version})"


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class CommitBookkeeping:
    """The seqlock, statistics, journal and recovery side of
    :class:`~sessionsd._directory.DirectoryStore`."""

    # What the store provides (declared for the type checker).
    paths: StorePaths
    journal_path: str
    index_compact_due: bool
    last_journal: tuple[tuple[int, int, int], tuple[int, int, int], list[list[Any]]] | None
    _commit_checked: bool
    _stats: Stats | None
    _stats_fd: int | None
    _journal_fd: int | None
    _journal_mtime: int

    if TYPE_CHECKING:
        def count_entries(self) -> tuple[int, int]: ...
        def _replay(self) -> None: ...

    # -- the seqlock and the statistics -------------------------------------------

    def read_seq(self) -> int:
        """The commit counter (seqlock) now: odd while a commit is under
        way; 0 when there is no seq file (a store the reference wrote)."""
        data = read_regular(self.paths.seq, _SEQ.size)
        if data is None or len(data) < _SEQ.size:
            return 0  # a store written by the reference code has no seq
        seq: int = _SEQ.unpack(data)[0]
        return seq

    def _open_seq(self) -> tuple[int, int]:
        fd = os.open(self.paths.seq, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
        try:
            data = os.pread(fd, _SEQ.size, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd, (_SEQ.unpack(data)[0] if len(data) == _SEQ.size else 0)

    @staticmethod
    def _set_seq(fd: int, value: int) -> None:
        os.pwrite(fd, _SEQ.pack(value), 0)

    def _recorded_stats(self) -> Stats | None:
        data = read_regular(self.paths.stats, _STATS.size)
        return Stats.unpack(data) if data is not None else None

    def read_stats(self, seq: int) -> Stats | None:
        """The recorded statistics if they were written at *seq* and entries/
        has not changed since, else None."""
        stats = self._recorded_stats()
        if stats is None or stats.seq != seq or stats.entries_mtime != self.entries_mtime():
            return None
        return stats

    def entries_mtime(self) -> int:
        """mtime_ns of entries/ (-1 when it is gone)."""
        try:
            return os.lstat(self.paths.entries).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return -1

    def _write_stats(self, data: bytes, create: bool = True) -> None:
        """Overwrite the statistics in place (40 bytes: one pwrite)."""
        flags = os.O_WRONLY | _O_NOFOLLOW | _O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.paths.stats, flags, 0o600)
        except FileNotFoundError:
            return  # nothing recorded, so nothing to invalidate
        try:
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)

    def ensure_stats(self, version: int) -> Stats:
        """Under the lock: the store statistics, recounted if they are not
        valid for *version* and the current seq (after a foreign writer or a
        recovery)."""
        seq = self.read_seq()
        recorded = self._recorded_stats()
        mtime = self.entries_mtime()  # before counting: an edit while counting shows next time
        if (recorded is not None and recorded.seq == seq and recorded.version == version
                and recorded.entries_mtime == mtime):
            return recorded
        count, size = self.count_entries()
        stats = Stats(count, size, version, recorded.last_sweep if recorded else 0, seq, mtime)
        self._write_stats(stats.pack(seq))
        return stats

    def set_last_sweep(self, when_ms: int) -> None:
        """Under the lock: remember when the last age sweep ran."""
        stats = self.read_stats(self.read_seq())
        if stats is not None:
            stats.last_sweep = when_ms
            self._write_stats(stats.pack(stats.seq))

    def _begin(self) -> tuple[int, int]:
        """Open the commit: recover a dead writer's leftovers, make seq odd.
        The stats file stays open until :meth:`_end` (one open per commit)."""
        fd, seq = self._open_seq()
        try:
            # A leftover commit record with an even seq only survives power
            # loss (seq is not fsynced): look for one on the first write.
            if seq & 1 or not self._commit_checked:
                if seq & 1 or os.path.lexists(self.paths.commit):
                    seq = self._recover(fd, seq)
                self._commit_checked = True
            self._stats_fd = os.open(self.paths.stats, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC,
                                     0o600)
            stats = Stats.unpack(os.pread(self._stats_fd, _STATS.size, 0))
            # (The journal notes the same mtime: one lstat for both.)
            self._journal_mtime = self.entries_mtime()
            self._stats = stats if (stats is not None and stats.seq == seq
                                    and stats.entries_mtime == self._journal_mtime) else None
            self._open_journal()
            self._set_seq(fd, seq + 1)
        except BaseException:
            self._abandon(fd)
            raise
        return fd, seq + 1

    def _end(self, fd: int, odd: int, stats: Stats | None = None) -> None:
        """Close the commit: record the statistics (or that they are
        unknown), then make seq even."""
        try:
            stats_fd = self._stats_fd
            if stats_fd is not None:
                if stats is not None:
                    # After every rename of this commit: what the figures describe.
                    stats.entries_mtime = self.entries_mtime()
                os.pwrite(stats_fd, _NO_STATS if stats is None else stats.pack(odd + 1), 0)
            # else: the stats file was never opened (or already closed):
            # nothing is recorded at the new seq, which leaves the figures
            # "unknown" -- a recorded seq older than the new one never matches.
            self._set_seq(fd, odd + 1)
        finally:
            self._abandon(fd)

    def _abandon(self, fd: int) -> None:
        """Close the commit's descriptors, whatever state seq is in."""
        stats_fd, self._stats_fd = self._stats_fd, None
        journal_fd, self._journal_fd = self._journal_fd, None
        try:
            if stats_fd is not None:
                os.close(stats_fd)
            if journal_fd is not None:
                os.close(journal_fd)
        finally:
            os.close(fd)

    # -- the listing index's journal (see sessionsd.index) ----------------------------

    def _open_journal(self) -> None:
        """At the start of a commit (lock held, before any entry changes):
        open the journal if the store keeps an index (one failed open when
        it does not) and note the entries/ mtime the commit starts from."""
        self.last_journal = None
        try:
            self._journal_fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | _O_NOFOLLOW | _O_CLOEXEC)
        except OSError:
            self._journal_fd = None  # no index (or not a file): nothing to keep
            return
        # self._journal_mtime: noted by _begin, before this call

    def _journal(self, version_before: int, version_after: int, odd: int, ops: list[list[Any]]) -> None:
        """Append this commit's record: after every rename, while seq is
        still odd, so no reader uses it before the commit is complete.  A
        failed append is not the commit's failure: without its record the
        journal no longer chains to the store's token, and readers repair."""
        fd = self._journal_fd
        if fd is None or not ops:
            return
        try:
            prev = (version_before, odd - 1, self._journal_mtime)
            nxt = (version_after, odd + 1, os.lstat(self.paths.entries).st_mtime_ns)
            line = _index.record_line(prev, nxt, ops)
            _faults.hit("index:before-append")
            os.write(fd, line)
            _faults.hit("index:after-append")
            self.last_journal = (prev, nxt, ops)
            size = os.lseek(fd, 0, os.SEEK_END)
            if size > _index.WRITER_FLOOR:
                base = _index.log_base_size(fd)
                if base is None or size > 2 * base:
                    self.index_compact_due = True
        except (OSError, TypeError, ValueError) as exc:
            _log.debug("listing index journal not appended (%s): readers will repair it", exc)

    @staticmethod
    def _row(name: str, key: str, data: bytes, row: list[Any] | None) -> list[Any]:
        """The index row of an entry being written: *row* as the caller
        computed it with the bytes, else parsed from *data*."""
        if row is not None:
            return row
        decoded = decode_document(data, name, None if name.startswith(HASHED_PREFIX) else key)
        return _index.entry_row(key, decoded[1] if not isinstance(decoded, str) else {}, len(data))

    # -- recovery ---------------------------------------------------------------

    def recover(self) -> bool:
        """Under the lock: finish or discard a dead writer's commit.  Returns
        True when something had to be done.  A clean store is not touched."""
        if not (self.read_seq() & 1) and not os.path.lexists(self.paths.commit):
            return False
        fd, seq = self._open_seq()
        try:
            self._recover(fd, seq)
            return True
        finally:
            os.close(fd)

    def _recover(self, fd: int, seq: int) -> int:
        """Replay a commit record, drop temp files, make seq even; returns it."""
        if os.path.lexists(self.paths.commit):
            self._replay()
        for directory in (self.paths.entries, self.paths.root):
            with os.scandir(directory) as listing:
                for item in listing:
                    if is_temp_name(item.name) and item.is_file(follow_symlinks=False):
                        try:
                            os.unlink(item.path)
                        except FileNotFoundError:
                            pass  # another cleaner got there first
        if seq & 1:
            seq += 1
        # What the dead writer changed is not in the stats: invalidate them.
        self._write_stats(_NO_STATS, create=False)
        self._set_seq(fd, seq)
        return seq

    @staticmethod
    def initial_files(count: int, size: int, entries_mtime: int = -1) -> dict[str, bytes]:
        """The seq and stats files of a freshly built store (version 1)."""
        return {"seq": _SEQ.pack(0), "stats": Stats(count, size, 1, entries_mtime=entries_mtime).pack(0)}

