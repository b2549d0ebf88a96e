"""A damaged directory store: found, reported loudly, repaired where safe.

The activity rule (SPEC §2) makes a ``sessions.d`` whose ``state.json`` is
missing, unparsable or of the wrong kind *inactive*, and the legacy file
authoritative.  That rule is shared with the reference implementation and
stays as it is.  But such a directory may still hold every session of the
store: left alone, reads would silently show an empty store, the next write
would start a fresh legacy file beside it and the migration after that would
move the sessions aside as an orphan.

:func:`inspect_directory` tells a *damaged* store (an inactive ``sessions.d``
that holds entry files, or a symlink where a store directory belongs) from
the legitimate leftovers a migration may move aside (an empty or half-built
directory, a plain file, a foreign directory without entry files).  The store
uses it only when ``read_state`` said "not active" and ``sessions.d`` exists,
so the usual legacy and fresh-install cases cost one ``lstat``:

* reads (:func:`guard_read`) log one WARNING per distinct damage, naming the
  store, what is wrong and the command that repairs it; a symlinked
  ``sessions.d`` or ``entries/`` raises :class:`UnsafeStoreError`;
* writes and migration (:func:`guard_write`) raise
  :class:`DamagedStoreError` (or :class:`UnsafeStoreError`) instead of
  writing around the damaged store;
* ``sessionsd check --fix`` calls :func:`repair_state`, which writes a fresh
  valid ``state.json`` where that is safe.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from dataclasses import dataclass
from typing import Literal

from . import _json
from ._codec import classify_name, scan_entries
from ._directory import DirectoryStore
from ._fsutil import check_private_dir, read_regular, write_atomic
from ._layout import LAYOUT_VERSION, STATE_KIND, State, StorePaths, now_ms, parse_state, state_bytes
from .errors import DamagedStoreError, UnsafeStoreError

__all__ = ["Damage", "inspect_directory", "guard_read", "guard_write", "repair_state"]

_log = logging.getLogger(__name__)

#: How much of a damaged state.json or a commit record is searched for versions.
_STATE_LIMIT = 1 << 16


@dataclass(frozen=True)
class Damage:
    """What is wrong with an inactive ``sessions.d`` that must not be ignored.

    ``path`` is the part that is wrong (``sessions.d``, ``entries/`` or
    ``state.json``); ``reason`` says what, in a few words; ``entry_files``
    counts the entry files found (a lower bound of 1 when the inspection
    stopped at the first); ``fixable`` is true when ``check --fix`` can
    restore a valid ``state.json``; ``refusal`` says why not otherwise.
    """

    store_path: str
    root: str
    path: str
    kind: Literal["symlink", "state"]
    reason: str
    entry_files: int = 0
    counted: bool = False
    fixable: bool = False
    refusal: str = ""

    @property
    def unsafe(self) -> bool:
        """Whether the damage is a symlink where a store directory belongs
        (reads refuse it too, not only writes)."""
        return self.kind == "symlink"

    def describe(self) -> str:
        """What is wrong, in one sentence naming the path."""
        if self.unsafe:
            return f"{self.reason}: {self.path}"
        files = (f"{self.entry_files} session file(s)" if self.counted
                 else "session files")
        return (f"directory store {self.root} is not active ({self.reason}) "
                f"but holds {files} that are not being used")

    def hint(self) -> str:
        """What to do about it: the ``check --fix`` command, or what to repair by hand."""
        if self.fixable:
            return f"run `sessionsd check --fix {self.store_path}` to repair it"
        return f"repair it by hand ({self.refusal}), then run `sessionsd check {self.store_path}`"

    def error(self) -> UnsafeStoreError | DamagedStoreError:
        """The exception a write (or migration) raises for this damage."""
        if self.unsafe:
            return UnsafeStoreError(f"refusing to use symlinked directory session store path: {self.path}",
                                    self.path)
        return DamagedStoreError(
            f"{self.describe()}; refusing to write around it (a new legacy store would hide those "
            f"sessions); {self.hint()}",
            self.root,
        )


def _signature(info: os.stat_result | None) -> tuple[int, ...] | None:
    if info is None:
        return None
    return (info.st_dev, info.st_ino, info.st_mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _state_problem(data: bytes) -> tuple[str | None, bool, str]:
    """``(reason, fixable, refusal)`` for the bytes of a state.json; reason
    ``None`` when they are valid (the store is active after all)."""
    if parse_state(data) is not None:
        return None, True, ""
    if not data.strip():
        return "state.json is empty", True, ""
    try:
        doc = _json.loads(data)
    except ValueError:
        return "state.json is not valid JSON", True, ""
    if not isinstance(doc, dict):
        return "state.json is not a JSON object", True, ""
    kind = doc.get("kind")
    if kind != STATE_KIND:
        return f"state.json has the wrong kind ({kind!r})", True, ""
    layout = doc.get("layoutVersion")
    if isinstance(layout, (int, float)) and not isinstance(layout, bool) and layout > LAYOUT_VERSION:
        return (f"state.json has layoutVersion {layout}", False,
                f"it may have been written by a newer version; sessionsd reads layout {LAYOUT_VERSION} only")
    if layout != LAYOUT_VERSION or isinstance(layout, bool):
        return f"state.json has an invalid layoutVersion ({layout!r})", True, ""
    version = doc.get("version")
    if not (isinstance(version, (int, float)) and not isinstance(version, bool)) or version < 1:
        return f"state.json has an invalid version ({version!r})", True, ""
    if isinstance(version, float) and not version.is_integer():
        return f"state.json has an invalid version ({version!r})", True, ""
    return f"state.json has an invalid updatedAt ({doc.get('updatedAt')!r})", True, ""


def _has_entry_file(entries: str) -> bool:
    """True when *entries* holds at least one regular entry file (stops at
    the first: cheap even for a big store)."""
    try:
        listing = os.scandir(entries)
    except OSError:  # gone, or unreadable: nothing we could tell apart
        return False
    with listing:
        for item in listing:
            name = item.name
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                if classify_name(name) and item.is_file(follow_symlinks=False):
                    return True
            except OSError:
                continue
    return False


def inspect_directory(paths: StorePaths, *, count: bool = False) -> Damage | None:
    """The damage of ``sessions.d`` if it is inactive and must not be
    ignored, else ``None`` (no ``sessions.d``, an active store, or an
    inactive one that holds no entry files and may be moved aside).

    Damaged: ``sessions.d`` or ``entries/`` is a symlink (never followed);
    or ``entries/`` is a real directory holding entry files while
    ``state.json`` is missing, not a regular file, or invalid.  With
    *count*, every entry file is counted (a full listing); otherwise the
    listing stops at the first.
    """
    root = _lstat(paths.root)
    if root is None:
        return None
    if stat.S_ISLNK(root.st_mode):
        return Damage(paths.store, paths.root, paths.root, "symlink",
                      "the directory store path is a symlink", refusal="sessions.d is a symlink")
    if not stat.S_ISDIR(root.st_mode):
        return None  # a plain file: holds no sessions, may be moved aside
    entries = _lstat(paths.entries)
    if entries is None:
        return None
    if stat.S_ISLNK(entries.st_mode):
        return Damage(paths.store, paths.root, paths.entries, "symlink",
                      "the entries directory is a symlink", refusal="entries/ is a symlink")
    if not stat.S_ISDIR(entries.st_mode):
        return None
    state = _lstat(paths.state)
    fixable, refusal = True, ""
    if state is None:
        reason = "state.json is missing"
    elif stat.S_ISLNK(state.st_mode):
        reason, fixable, refusal = "state.json is a symlink", False, "state.json is a symlink"
    elif stat.S_ISDIR(state.st_mode):
        reason, fixable, refusal = "state.json is a directory", False, "state.json is a directory"
    elif not stat.S_ISREG(state.st_mode):
        reason, fixable, refusal = ("state.json is not a regular file", False,
                                    "state.json is not a regular file")
    else:
        try:
            data = read_regular(paths.state)
        except OSError as exc:  # EACCES, EIO: say so, never guess
            reason, fixable, refusal = (f"state.json cannot be read ({exc.strerror})", False,
                                        "state.json cannot be read")
        else:
            if data is None:
                return None  # replaced meanwhile: look again next time
            problem, fixable, refusal = _state_problem(data)
            if problem is None:
                return None  # valid: active (or becoming active) after all
            reason = problem
    if count:
        try:
            files = len(scan_entries(paths.entries))
        except OSError:
            files = 0
        if not files:
            return None
    elif not _has_entry_file(paths.entries):
        return None  # half-built or emptied: nothing to lose by moving it aside
    else:
        files = 1
    return Damage(paths.store, paths.root, paths.state, "state", reason, files, count, fixable, refusal)


# -- the store's hooks ---------------------------------------------------------------------

_mutex = threading.Lock()
#: root -> (signature of sessions.d, entries/ and state.json, the verdict).
_memo: dict[str, tuple[tuple[tuple[int, ...] | None, ...], Damage | None]] = {}
#: (root, path, reason) of damage already warned about in this process.
_warned: set[tuple[str, str, str]] = set()


def _inspect_cached(paths: StorePaths) -> Damage | None:
    """:func:`inspect_directory`, remembered while ``sessions.d``,
    ``entries/`` and ``state.json`` keep their lstat signatures (adding or
    removing an entry file changes the directory's mtime)."""
    signature = (_signature(_lstat(paths.root)), _signature(_lstat(paths.entries)),
                 _signature(_lstat(paths.state)))
    with _mutex:
        remembered = _memo.get(paths.root)
    if remembered is not None and remembered[0] == signature:
        return remembered[1]
    damage = inspect_directory(paths)
    with _mutex:
        _memo[paths.root] = (signature, damage)
        if damage is None:
            # Repaired (or gone): damage that comes back is news again.
            for item in [w for w in _warned if w[0] == paths.root]:
                _warned.discard(item)
    return damage


def guard_read(paths: StorePaths) -> None:
    """For a read in legacy mode: nothing when there is no ``sessions.d``
    (one ``lstat``); :class:`UnsafeStoreError` for a symlinked
    ``sessions.d`` or ``entries/``; one WARNING per distinct damage."""
    if not os.path.lexists(paths.root):
        return
    damage = _inspect_cached(paths)
    if damage is None:
        return
    if damage.unsafe:
        raise damage.error()
    key = (damage.root, damage.path, damage.reason)
    with _mutex:
        if key in _warned:
            return
        _warned.add(key)
    _log.warning("session store %s: %s; reads use the legacy file and writes are refused until "
                 "it is repaired: %s", paths.store, damage.describe(), damage.hint())


def guard_write(paths: StorePaths) -> None:
    """For a write in legacy mode (or a migration): raise when
    ``sessions.d`` is damaged, rather than write around it."""
    if not os.path.lexists(paths.root):
        return
    damage = inspect_directory(paths)
    if damage is not None:
        raise damage.error()


# -- repair ------------------------------------------------------------------------------

_VERSION_RE = re.compile(rb'"version"\s*:\s*(\d{1,15})')


def _versions_seen(paths: StorePaths) -> list[int]:
    """Every store version still recorded anywhere in ``sessions.d``: the
    damaged state.json (leniently), the statistics file and a commit
    record.  The repaired version must exceed them all, so readers that
    cache on the version reload."""
    seen: list[int] = []
    data = read_regular(paths.state, _STATE_LIMIT) if _is_regular(paths.state) else None
    if data:
        try:
            doc = _json.loads(data)
        except ValueError:
            doc = None
        version = doc.get("version") if isinstance(doc, dict) else None
        if isinstance(version, (int, float)) and not isinstance(version, bool) and version == version \
                and abs(version) < 2 ** 53:
            seen.append(int(version))
        seen += [int(m) for m in _VERSION_RE.findall(data)]
    stats = DirectoryStore(paths)._recorded_stats()
    if stats is not None:
        seen.append(stats.version)
    record = read_regular(paths.commit, _STATE_LIMIT) if _is_regular(paths.commit) else None
    if record:
        seen += [int(m) for m in _VERSION_RE.findall(record)]
    return seen


def _is_regular(path: str) -> bool:
    info = _lstat(path)
    return info is not None and stat.S_ISREG(info.st_mode)


@dataclass
class Repair:
    """What :func:`repair_state` did (``done``) or why it did not."""

    done: bool
    message: str
    version: int = 0
    kept: str | None = None


def repair_state(paths: StorePaths) -> Repair:
    """Under the store lock: make a damaged store active again by writing a
    fresh, valid ``state.json`` -- only where that is safe: ``sessions.d``
    and ``entries/`` are real private directories, entries/ holds entry
    files and ``state.json`` is missing or a regular file that is invalid
    (its bytes are kept beside it as ``state.json.damaged.<ms>``).  The new
    version is greater than any recorded in the store and than the clock
    in ms."""
    damage = inspect_directory(paths, count=True)
    if damage is None:
        return Repair(False, "nothing to repair")
    if not damage.fixable:
        return Repair(False, f"not repaired: {damage.describe()}; {damage.hint()}")
    for path in (paths.root, paths.entries):
        try:
            check_private_dir(path, os.lstat(path))
        except UnsafeStoreError as exc:
            return Repair(False, f"not repaired: {exc}")
    # The version the damaged state.json held may be lost with it, and
    # readers that cache a whole load on the version alone (the reference's)
    # must not mistake the repaired store for one they cached: the new
    # version exceeds every version still recorded in the store, and the
    # clock in ms, which no store bumping once per write ever reaches.
    version = max(max([0, *_versions_seen(paths)]) + 1, now_ms())
    kept = None
    if _is_regular(paths.state):
        kept = f"{paths.state}.damaged.{now_ms()}"
        while os.path.lexists(kept):
            kept = f"{paths.state}.damaged.{int(kept.rsplit('.', 1)[1]) + 1}"
        os.rename(paths.state, kept)
    write_atomic(paths.state, state_bytes(State(version, now_ms(), {})), "full")
    message = (f"restored {paths.state} (version {version}; it was: {damage.reason}); "
               f"the directory store with {damage.entry_files} session file(s) is active again")
    if kept:
        message += f"; the damaged state.json is kept as {kept}"
    return Repair(True, message, version, kept)
