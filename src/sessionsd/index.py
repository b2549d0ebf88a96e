"""The derived listing index of the directory backend.

Two files inside ``sessions.d/`` (this library's own, like ``seq`` and
``stats``; the reference ignores them):

* ``index`` -- the **base**: every session's listing row as of one store
  state.  A magic line (``sessionsd-index 2``), a one-line JSON header
  (generation, the token of the state it describes, the row count, where
  each section is), then sections:

  - ``head``: the first ``HEAD_ROWS`` rows, compact JSON, right after the
    header, so the read that gets the header usually gets the newest
    sessions too;
  - ``rows`` (JSON written with two-space indentation, so that each row
    starts with ``"\\n  ["``): ``[key, updatedAt, lastChannel, lastTo,
    bytes]`` per session, most recently updated first (ties: key
    ascending) -- a prefix of it is the most recent N, read without parsing
    the rest;
  - ``keys``: the keys alone, same order (``keys()`` parses only this);
  - ``updated``, ``channel``, ``to``: the summary fields as columns, same
    order (``summary()`` parses these and ``keys``: no per-row objects);
  - ``names``: each row's entry file name followed by a newline (ASCII);
  - ``stat``: binary, :data:`~sessionsd._codec.STAT_RECORD` (24) bytes per
    row, little-endian: ``st_ino`` (unsigned; 0: unknown, re-read on the
    next repair), ``st_mtime_ns``, ``st_size`` -- what a repair compares
    the directory with, in C, without a Python object per row;
  - ``skipped`` (JSON): entry-named files that are not loadable entries
    (corrupt, impostors), ``[name, reason, ino, mtime_ns, size]``, so a
    repair does not re-read them.

  An index of another format (version 1 had a JSON ``stat`` section and no
  ``names``) has another magic line: it is never read, only rebuilt.

* ``index.log`` -- the **journal**: a header line naming the base generation
  (and the base's size, for the compaction rule), then one compact JSON line
  per commit, appended inside the commit (seq odd) after its renames::

      [prev version, prev seq, prev entries mtime, next version, next seq,
       next entries mtime, [[key, updatedAt, lastChannel, lastTo, bytes] | [key], ...]]

  One commit is one line, whatever it touched, so a listing never shows half
  of a multi-entry commit.  A repair's record carries each re-read file's
  stat too (``[key, updatedAt, lastChannel, lastTo, bytes, name, ino,
  mtime_ns]``).

**Validity.**  The index describes exactly the store state named by its token
``(state identity, state.json version, seq, mtime_ns of entries/)``: the
base's token, advanced by every journal record whose *prev* equals the token
so far.  It is used only when that token equals the current one, read with
seq even.  A writer that does not keep it (the reference: entry renamed, then
version + 1) changes the version and the directory's mtime; a writer that
died mid-commit leaves seq odd, which recovery advances with no record; a
torn journal line (power loss) does not parse and ends the journal; a hand
edit that creates, renames or deletes a file changes the directory's mtime.
Each of these makes the token differ, and the reader then **repairs**: it
lists ``entries/``, lstats every file, and re-reads only files whose (inode,
mtime_ns, size) differ from the index or are unknown
(:func:`~sessionsd._codec.diff_entries`).  Not detected without a version
bump: a file rewritten *in place* (same inode, the directory untouched) --
until the next token change, when its new mtime or size is.

The index never changes what ``load()`` returns: ``load()`` reads every file.

This module holds the files (loading, the journal, writing) and repair; the
rows and the in-memory :class:`Index` are in :mod:`sessionsd._index_rows`.
"""

from __future__ import annotations

import functools
import os
import stat as _stat
import struct
import time
from collections.abc import Callable
from typing import Any

from . import _faults, _fsutil
from ._codec import STAT_RECORD, diff_entries
from ._documents import decode_document
from ._fsutil import NOT_A_FILE_ERRNOS, READ_FLAGS, fsync_dir, read_regular, replace, temp_name, write_new
from ._index_rows import (
    _STAT,
    HEAD_ROWS,
    Gone,
    Index,
    Row,
    StatRow,
    Token,
    _dump_line,
    _dump_section,
    _loads,
    _names_blob,
    _stat_blob,
    age,
    entry_row,
    order_key,
)
from ._types import Durability

__all__ = ["INDEX_NAME", "LOG_NAME", "Index", "load", "repair", "write", "entry_row", "record_line",
           "age", "order_key", "Gone", "Row", "Token"]

INDEX_NAME = "index"
LOG_NAME = "index.log"
MAGIC = b"sessionsd-index 2\n"
LOG_MAGIC = b"sessionsd-index-log 1 "
_FIRST_READ = 16384
_JOURNAL_READ = 65536
#: A file modified less than this long before it was stat'ed may be modified
#: again within the same timestamp tick (the "racy" case of git's index): its
#: stat is not trusted, so the next repair re-reads it.  Covers coarse
#: timestamps (2 s on FAT).
RACY_NS = 3_000_000_000
#: Journal sizes that trigger compaction: a reader compacts (if it can take
#: the lock without waiting) past ``max(READER_FLOOR, base / 4)``; a writer
#: past ``max(WRITER_FLOOR, 2 * base)`` -- rare, so a put stays O(1).
READER_FLOOR = 256 * 1024
WRITER_FLOOR = 4 * 1024 * 1024
_JSON_SECTIONS = ("head", "rows", "keys", "updated", "channel", "to", "skipped")
_SECTIONS = frozenset(_JSON_SECTIONS + ("names", "stat"))
_MAX_INO = (1 << 64) - 1
_MIN_I64, _MAX_I64 = -(1 << 63), (1 << 63) - 1

# -- journal lines ----------------------------------------------------------------

def record_line(prev: tuple[int, int, int], nxt: tuple[int, int, int], ops: list[Row]) -> bytes:
    """One journal line (see the module docstring).  Raises TypeError or
    ValueError for values the index cannot hold (the commit then leaves the
    index stale, and readers repair it)."""
    return _dump_line([prev[0], prev[1], prev[2], nxt[0], nxt[1], nxt[2], ops]) + b"\n"


def _valid_op(op: Any) -> bool:
    """A journal op as :meth:`Index.apply` takes it (anything else ends the
    journal: the index is then repaired, never misread)."""
    if type(op) is not list or not op or type(op[0]) is not str:
        return False
    if len(op) == 1:
        return True
    if len(op) == 5:
        return type(op[4]) is int
    return (len(op) == 8 and type(op[4]) is int and _MIN_I64 <= op[4] <= _MAX_I64
            and type(op[5]) is str and op[5].isascii() and "\n" not in op[5]
            and type(op[6]) is int and 0 <= op[6] <= _MAX_INO
            and type(op[7]) is int and _MIN_I64 <= op[7] <= _MAX_I64)


# -- reading the files ------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _paths(root: str) -> tuple[str, str]:
    return os.path.join(root, INDEX_NAME), os.path.join(root, LOG_NAME)


def _int(value: Any) -> bool:
    return type(value) is int


def load(root: str) -> Index | None:
    """The index stored in *root* (``sessions.d``): the base and every
    journal record that chains onto it.  ``None`` when there is none, it is
    unreadable, or of another format.  The caller compares ``token`` (and
    ``chained``) with the store's current token."""
    base_path, log_path = _paths(root)
    try:
        fd = os.open(base_path, READ_FLAGS)
    except OSError as exc:
        if exc.errno in NOT_A_FILE_ERRNOS:
            return None
        raise
    try:
        info = os.fstat(fd)
        if not _stat.S_ISREG(info.st_mode):
            return None
        head = os.pread(fd, _FIRST_READ, 0)
    finally:
        os.close(fd)
    try:
        if not head.startswith(MAGIC):
            return None  # none of ours, or another format version: rebuilt, never guessed at
        end = head.find(b"\n", len(MAGIC))
        if end < 0:
            return None
        header = _loads(head[len(MAGIC):end])
        token = tuple(header["token"])
        gen = header["gen"]
        count = header["count"]
        places = header["sections"]
        if (len(token) != 6 or {type(t) for t in token} != {int} or type(gen) is not str
                or type(count) is not int or count < 0 or type(places) is not dict or places.keys() != _SECTIONS):
            return None
        body = end + 1
        room = info.st_size - body
        sections: dict[str, tuple[int, int]] = {}
        for name, (offset, length) in places.items():
            if type(offset) is not int or type(length) is not int or offset < 0 or length < 0 or offset + length > room:
                return None
            sections[name] = (body + offset, length)
        if sections["stat"][1] != count * STAT_RECORD:
            return None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    index = Index(token, path=base_path, file_id=(info.st_dev, info.st_ino), sections=sections,
                  count=count, base_size=info.st_size)
    start, length = sections["head"]
    if start + length <= len(head):
        index._head_bytes = head[start:start + length]
    data = _read_journal(log_path)
    if data is None or not data.startswith(LOG_MAGIC):
        index.chained = data is None  # a missing journal is an empty one; a foreign file is not
        return index
    index.log_size = len(data)
    newline = data.find(b"\n")
    fields = data[len(LOG_MAGIC):newline].split() if newline > 0 else []
    if not fields or fields[0] != gen.encode("ascii", "replace"):
        # A journal of another base (a compaction died between its renames):
        # none of its records apply.
        index.chained = False
        return index
    running = token[3:]
    for record in _records(data[newline + 1:]):
        if (type(record) is not list or len(record) != 7 or not all(_int(v) for v in record[:6])
                or type(record[6]) is not list):
            index.chained = False
            break
        if tuple(record[:3]) != running:
            index.chained = False  # a commit the journal does not know of came in between
            break
        ops = record[6]
        if not all(_valid_op(op) for op in ops):
            index.chained = False
            break
        index.apply(ops)
        running = tuple(record[3:6])
    index.token = token[:3] + running
    return index


def _read_journal(path: str) -> bytes | None:
    """The journal's bytes (``None``: no journal): one read without an
    fstat when it is small, as it is between compactions."""
    # (Module attribute: tests count entry reads via index.read_regular.)
    data = _fsutil.read_regular(path, _JOURNAL_READ)
    if data is not None and len(data) >= _JOURNAL_READ:
        data = _fsutil.read_regular(path)
    return data


def _records(body: bytes) -> list[Any]:
    """The complete lines of the journal body, parsed, up to the first that
    does not parse (a torn tail)."""
    end = body.rfind(b"\n")
    if end < 0:
        return []
    body = body[:end]
    try:
        # One parse for the whole journal: every line is one JSON value.
        parsed = _loads(b"[" + body.replace(b"\n", b",") + b"]")
        if type(parsed) is list:
            return parsed
    except ValueError:
        pass
    records = []
    for line in body.split(b"\n"):
        try:
            records.append(_loads(line))
        except ValueError:
            break
    return records


def log_base_size(fd: int) -> int | None:
    """The base size named in the journal header of *fd*, if readable."""
    head = os.pread(fd, 128, 0)
    newline = head.find(b"\n")
    if not head.startswith(LOG_MAGIC) or newline < 0:
        return None
    fields = head[len(LOG_MAGIC):newline].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


# -- repair -----------------------------------------------------------------------------

def repair(entries: str, prior: Index | None, token: Token,
           read: Callable[[str], bytes | None] | None = None) -> Index:
    """An index of what ``entries/`` holds now, for *token*: lists the
    directory, lstats every entry file and compares the stats with the
    *prior* index's in one :func:`~sessionsd._codec.diff_entries` call (no
    Python object per unchanged file); reads and decodes only the files the
    prior does not know with the same (inode, mtime_ns, size) -- every file
    when there is no prior.  Decoding follows ``load()`` exactly
    (``decode_document``).  The caller checks that no commit overlapped.

    With a stored prior whose journal chains (the usual case after a
    foreign write), the result is that index plus the changes, and
    ``pending`` holds them as one journal record: storing the repair costs
    an append, not a rewrite of the base."""
    read = read or read_regular
    incremental = prior is not None and prior.path is not None and prior.chained
    names, stat, base_count = b"", b"", 0
    extra_keys: list[str] = []
    extra_rows: list[Row | None] = []
    known_skipped: dict[str, tuple[str, int, int, int]] = {}
    if prior is not None:
        try:
            names, stat, base_count, extra_keys, extra_rows = prior.stat_rows()
            known_skipped = prior.skipped_files()
        except (Gone, ValueError, OSError, UnicodeError, struct.error):
            prior, incremental = None, False
            names, stat, base_count, extra_keys, extra_rows = b"", b"", 0, [], []
            known_skipped = {}
    now = time.time_ns()
    trusted_before = now - RACY_NS
    # One call lists entries/, lstats every candidate relative to the open
    # directory and compares (compiled: without the GIL, no Python per file).
    changed, missing = diff_entries(entries, names, stat, trusted_before)
    base_keys: list[str] = []
    base_rows: list[Row] = []
    if prior is not None and (missing or not incremental or any(item[5] >= 0 for item in changed)):
        try:
            base_keys = prior._section("keys")
            if not incremental:
                base_rows = prior._section("rows")
            if len(base_keys) != base_count or (not incremental and len(base_rows) != base_count):
                raise ValueError("index keys do not match its rows")
        except (Gone, ValueError, OSError):
            return repair(entries, None, token, read)

    def live_key(row: int) -> str | None:
        """The key of a row that holds a session (None: none, or deleted)."""
        if row < 0:
            return None
        if row < base_count:
            return base_keys[row]
        return extra_keys[row - base_count] if extra_rows[row - base_count] is not None else None

    prefix = entries + os.sep
    fresh: list[tuple[Row, str, StatRow]] = []   # re-read rows (full mode)
    ops: list[Row] = []                           # what changed (incremental mode)
    skipped: list[list[Any]] = []
    for name, inline_key, ino, mtime, size, row in changed:
        trusted = mtime <= trusted_before
        was = live_key(row)
        gone = known_skipped.get(name) if was is None else None
        if gone is not None and gone[1:] == (ino, mtime, size):
            skipped.append([name, gone[0], ino if trusted else 0, mtime, size])
            continue
        try:
            data = read(prefix + name)
        except PermissionError:
            data, reason = None, "permission denied"
        else:
            reason = "vanished"
        if data is not None and len(data) != size:
            trusted = False  # changed between the lstat and the read
        decoded = decode_document(data, name, inline_key) if data is not None else reason
        if isinstance(decoded, str):
            if decoded != "vanished":
                skipped.append([name, decoded, ino if trusted and data is not None else 0, mtime, size])
            if was is not None and incremental:
                ops.append([was])  # no longer a loadable entry
            continue
        assert data is not None
        key, entry = decoded
        new_row = entry_row(key, entry, len(data))
        if incremental:
            if was is not None and was != key:
                ops.append([was])
            ops.append(new_row + [name, ino if trusted else 0, mtime])
        else:
            fresh.append((new_row, name, (ino if trusted else 0, mtime, len(data))))
    if incremental:
        assert prior is not None
        for row in missing:
            was = live_key(row)
            if was is not None:
                ops.append([was])
        return prior.extended(token, ops)
    if prior is not None:
        # Full mode from a prior that is not stored, or whose journal does
        # not chain: its unchanged rows are kept, the rest was re-read.
        touched = set(missing)
        touched.update(row for *_, row in changed if row >= 0)
        # (As diff_entries reads them: a damaged name matches no file.)
        listed = names.decode("ascii", "surrogateescape").split("\n")[:-1] if names else []
        counting = {name: row for row, name in enumerate(listed)}
        for name, row in counting.items():
            if row in touched:
                continue
            kept = base_rows[row] if row < base_count else extra_rows[row - base_count]
            if kept is not None:
                fresh.append((kept[:5], name, _STAT.unpack_from(stat, row * STAT_RECORD)))
    fresh.sort(key=lambda item: order_key(item[0]))
    return Index(token, rows=[item[0] for item in fresh], names=_names_blob(item[1] for item in fresh),
                 stat=_stat_blob(item[2] for item in fresh), skipped=skipped)


def append_pending(root: str, index: Index) -> bool:
    """Store a repair made by :meth:`Index.extended`: append its record if
    the journal is still the one it follows.  The caller holds the lock and
    has checked that the index's token is current."""
    assert index.pending is not None
    prev, nxt, ops, follows = index.pending
    try:
        fd = os.open(os.path.join(root, LOG_NAME), os.O_RDWR | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size != follows:
            return False  # appended to or replaced since it was read
        line = record_line((prev[0], prev[1], prev[2]), (nxt[0], nxt[1], nxt[2]), ops)
        os.write(fd, line)
    finally:
        os.close(fd)
    index.pending = None
    index.log_size = follows + len(line)
    return True


# -- writing ----------------------------------------------------------------------------

def write(root: str, index: Index, durability: Durability = "none") -> int:
    """Persist *index* (the caller holds the store lock and has checked
    that its token is current): a new base, then an empty journal of the new
    generation, each by rename.  Returns the base's size.

    Crash consistency: a reader pairs a base only with a journal of its
    generation, so a crash between the renames leaves a base whose journal
    is ignored -- valid for its own token, stale for any later one."""
    rows, names, stat, skipped = index.merged()
    rows = [row[:5] if len(row) > 5 else row for row in rows]
    sections = [("head", _dump_line(rows[:HEAD_ROWS])), ("rows", _dump_section(rows)),
                ("keys", _dump_line([row[0] for row in rows])),
                ("updated", _dump_line([row[1] for row in rows])), ("channel", _dump_line([row[2] for row in rows])),
                ("to", _dump_line([row[3] for row in rows])),
                ("names", names), ("stat", stat), ("skipped", _dump_line(skipped))]
    gen = os.urandom(8).hex()
    places = {}
    offset = 0
    for name, data in sections:
        places[name] = [offset, len(data)]
        offset += len(data)
    header = _dump_line({"gen": gen, "token": list(index.token), "count": len(rows), "sections": places})
    blob = b"".join([MAGIC, header, b"\n"] + [data for _name, data in sections])
    base_path, log_path = _paths(root)
    _remove_leftovers(root)
    _replace_with(base_path, blob, durability)
    _faults.hit("index:between-renames")
    _replace_with(log_path, LOG_MAGIC + f"{gen} {len(blob)}\n".encode("ascii"), durability)
    if durability == "full":
        fsync_dir(root)
    return len(blob)


def _replace_with(path: str, data: bytes, durability: Durability) -> None:
    directory, name = os.path.split(path)
    temp = os.path.join(directory, temp_name(name))
    write_new(temp, data, durability)
    _faults.hit("index:temp-written")
    try:
        replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass  # a leftover temp file is a dotfile that recovery removes
        raise


def _remove_leftovers(root: str) -> None:
    """Temp files of an index write that was killed: only lock holders
    write them, and the caller holds the lock, so any found are dead."""
    for name in os.listdir(root):
        if name.startswith((f".{INDEX_NAME}.", f".{LOG_NAME}.")) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(root, name))
            except FileNotFoundError:
                pass  # removed by another cleaner meanwhile


def remove(root: str) -> None:
    """Delete the index files (a store without an index keeps none)."""
    for path in _paths(root):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # already gone
