"""Where everything lives (SPEC §2) and the activity rule of ``state.json``."""

from __future__ import annotations

import math
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from . import _json
from ._fsutil import check_private_dir, read_regular

__all__ = [
    "STATE_KIND",
    "LAYOUT_VERSION",
    "BLOCKED_KEYS",
    "StorePaths",
    "State",
    "read_state",
    "parse_state",
    "state_bytes",
    "now_ms",
]

STATE_KIND = "openclaw-session-store-directory"
LAYOUT_VERSION = 1
#: Keys JavaScript readers of the same store skip (prototype pollution guard).
BLOCKED_KEYS = frozenset({"__proto__", "prototype", "constructor"})

LEGACY_NAME = "sessions.json"
ROOT_NAME = "sessions.d"
LOCK_NAME = "sessions.json.lock"


def now_ms() -> int:
    """The wall clock in whole milliseconds since the epoch (``updatedAt``'s unit)."""
    return time.time_ns() // 1_000_000


#: ``sessions.d/legacy-file``: the name of the store file a directory store
#: belongs to (sessionsd's addition, written when it creates the store).
LEGACY_FILE_RECORD = "legacy-file"

#: The legacy file's name in a store directory (the reference's default).
DEFAULT_STORE_NAME = "sessions.json"


@dataclass(frozen=True)
class StorePaths:
    """Every path derived from one store path (the legacy ``sessions.json``)."""

    store: str
    dir: str
    root: str
    entries: str
    state: str
    seq: str
    stats: str
    commit: str
    lock: str

    @classmethod
    def from_store_path(cls, store_path: str | os.PathLike[str]) -> StorePaths:
        """The paths of the store whose legacy file is *store_path* (made
        absolute; the lock is named after the directory's real path).

        A path ending in ``.json`` (or naming an existing file) is the store
        file.  Any other path names the store's directory, existing or not:
        the directory store ``…/sessions.d`` itself, or the directory holding
        it; either means ``<that directory>/sessions.json``.  (A directory
        named ``*.json`` is a store file that is not a file, and is reported
        as such.)"""
        store = os.path.abspath(os.fspath(store_path))
        if not store.endswith(".json") and not os.path.isfile(store):
            parent = os.path.dirname(store) if os.path.basename(store) == ROOT_NAME else store
            store = os.path.join(parent, DEFAULT_STORE_NAME)
        directory = os.path.dirname(store)
        root = os.path.join(directory, ROOT_NAME)
        return cls(
            store=store,
            dir=directory,
            root=root,
            entries=os.path.join(root, "entries"),
            state=os.path.join(root, "state.json"),
            seq=os.path.join(root, "seq"),
            stats=os.path.join(root, "stats"),
            commit=os.path.join(root, "commit.json"),
            # The same lock in both modes, on the real directory, so two
            # spellings of one store (symlinked parents) share it.
            lock=os.path.join(os.path.realpath(directory), LOCK_NAME),
        )

    def staging(self, pid: int, ms: int) -> str:
        """The staging directory a migration by process *pid* builds at time *ms*."""
        return os.path.join(self.dir, f"{ROOT_NAME}.staging-{pid}-{ms}")

    def orphan(self, ms: int) -> str:
        """Where an inactive ``sessions.d`` moved aside at time *ms* goes."""
        return os.path.join(self.dir, f"{ROOT_NAME}.orphan.{ms}")

    def legacy_backup(self, ms: int) -> str:
        """The backup name ``sessions.json.bak.<ms>`` of the legacy file."""
        return f"{self.store}.bak.{ms}"

    def directory_backup(self, ms: int) -> str:
        """The backup name ``sessions.d.bak.<ms>`` a rollback gives ``sessions.d``."""
        return f"{self.root}.bak.{ms}"


@dataclass(frozen=True)
class State:
    """A valid ``state.json``; ``extra`` keeps fields we do not know.

    ``identity`` names the store instance this state belongs to: the device
    and inode numbers of ``sessions.d`` and ``sessions.d/entries`` when it
    was read.  A store that was rolled back and migrated again starts from
    the same version, so a cached view must compare the identity too.
    """

    version: int
    updated_at: float
    extra: dict[str, Any]
    identity: tuple[int, ...] = ()
    #: mtime_ns of ``sessions.d/entries`` when it was read (-1: unknown): the
    #: listing index's token has it, and read_state lstats entries/ anyway.
    entries_mtime: int = field(default=-1, compare=False)

    def bumped(self) -> State:
        """The next state: version + 1, updated now, the same extra fields
        (no identity: it is the next read's to fill in)."""
        return State(self.version + 1, now_ms(), self.extra)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_state(data: bytes) -> State | None:
    """A :class:`State` if *data* is a valid state document, else ``None``."""
    try:
        doc = _json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    layout = doc.get("layoutVersion")
    version = doc.get("version")
    updated = doc.get("updatedAt")
    if doc.get("kind") != STATE_KIND:
        return None
    if not _is_number(layout) or layout != LAYOUT_VERSION:
        return None
    if not _is_integral(version) or version < 1:
        return None
    if not _is_number(updated) or not math.isfinite(updated):
        return None
    extra = {k: v for k, v in doc.items() if k not in ("kind", "layoutVersion", "version", "updatedAt")}
    return State(int(version), updated, extra)


def _is_integral(value: object) -> TypeGuard[int | float]:
    """An integer in value, as JavaScript's ``Number.isInteger`` sees it:
    ``3``, ``3.0`` and ``3e0`` count; bools, strings, ``3.5`` and
    non-finite floats do not."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def state_bytes(state: State) -> bytes:
    """The bytes of ``state.json`` for *state* (its known fields first,
    then the extra ones)."""
    doc: dict[str, Any] = {"kind": STATE_KIND, "layoutVersion": LAYOUT_VERSION,
                           "version": state.version, "updatedAt": state.updated_at}
    doc.update(state.extra)
    return _json.dumps(doc)


def read_state(paths: StorePaths, *, check_safety: bool = True,
               memo: list[tuple[tuple[int, ...] | None, State | None] | None] | None = None
               ) -> State | None:
    """The activity rule: the :class:`State` of an active directory store,
    ``None`` when ``sessions.d`` is not an active store (missing, a symlink,
    half-built, foreign, invalid ``state.json``).

    With *check_safety*, an active store whose directories others could write
    into raises :class:`~sessionsd.errors.UnsafeStoreError` instead of being
    used -- falling back to the legacy file would silently hide its sessions.

    *memo* (a one-item list owned by the caller) remembers the last parsed
    ``state.json`` with its lstat signature, so an unchanged file is not
    read and parsed again; the directories are checked every time.
    """
    infos = []
    for path in (paths.root, paths.entries):
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISDIR(info.st_mode):  # includes symlinks (lstat)
            return None
        infos.append((path, info))
    state: State | None
    signature: tuple[int, ...] | None = None
    if memo is not None:
        try:
            info = os.lstat(paths.state)
        except (FileNotFoundError, NotADirectoryError):
            return None
        # Every writer replaces state.json by rename: same inode, size and
        # times means the same bytes.
        signature = (info.st_ino, info.st_dev, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    remembered = memo[0] if memo is not None else None
    if remembered is not None and remembered[0] == signature:
        state = remembered[1]
    else:
        data = read_regular(paths.state)
        if data is None:
            return None
        state = parse_state(data)
        if memo is not None:
            memo[0] = (signature, state)  # one assignment: threads see a pair
    if state is not None:
        identity = (infos[0][1].st_dev, infos[0][1].st_ino, infos[1][1].st_ino)
        entries_mtime = infos[1][1].st_mtime_ns
        if state.identity != identity or state.entries_mtime != entries_mtime:
            state = State(state.version, state.updated_at, state.extra, identity, entries_mtime)
            if memo is not None:
                memo[0] = (signature, state)
    if state is not None and check_safety:
        for path, info in infos:
            check_private_dir(path, info)
    return state
