"""Finding stores under a state directory, and the startup migration runner.

Layout: ``<state>/agents/<agentId>/sessions/sessions.json`` per agent.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from typing import TypedDict, Unpack

from ._layout import StorePaths, read_state
from ._types import ProgressCallback
from .damage import inspect_directory
from .migration import MigrationResult, migrate

__all__ = [
    "agent_store_paths",
    "discover_stores",
    "migrate_or_fail",
    "run_startup_migration",
    "summary_line",
]

_log = logging.getLogger(__name__)

# A candidate that answers one of these is skipped, not fatal.
_SKIPPED_ERRNOS = {errno.EACCES, errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.EPERM,
                   getattr(errno, "ESTALE", -1)}


class _MigrateOptions(TypedDict, total=False):
    """The keyword arguments of :func:`~sessionsd.migration.migrate`."""

    lock_timeout: float
    max_bytes: int | None
    lower_keys: bool
    progress: ProgressCallback | None


def _dedupe(paths: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    result: list[str] = []
    for path in paths:
        if path not in seen:
            seen.add(path)
            result.append(path)
    return result


def agent_store_paths(state_dir: str | os.PathLike[str]) -> list[str]:
    """``<state>/agents/*/sessions/sessions.json`` for every agent sessions
    directory, whether or not a store exists there yet (sorted)."""
    agents = os.path.join(os.path.abspath(os.fspath(state_dir)), "agents")
    try:
        names = sorted(os.listdir(agents))
    except OSError as exc:
        if exc.errno in _SKIPPED_ERRNOS:
            return []
        raise
    result: list[str] = []
    for name in names:
        sessions = os.path.join(agents, name, "sessions")
        try:
            if stat.S_ISDIR(os.stat(sessions).st_mode):
                result.append(os.path.join(sessions, "sessions.json"))
        except OSError as exc:
            if exc.errno not in _SKIPPED_ERRNOS:
                raise
    return result


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives (Windows)
        return False


def discover_stores(state_dir: str | os.PathLike[str],
                    extra_paths: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """Every store under *state_dir* that exists: a regular ``sessions.json``,
    or an active ``sessions.d`` beside where it was (after migration the
    legacy file is gone), or a damaged one (see :mod:`sessionsd.damage`).
    Real paths must stay inside ``<state>/agents``; unreadable candidates
    are skipped.  *extra_paths* are appended; the
    result is deduplicated."""
    agents_root = os.path.realpath(os.path.join(os.fspath(state_dir), "agents"))
    found: list[str] = []
    for store in agent_store_paths(state_dir):
        try:
            info = os.lstat(store)
            if stat.S_ISREG(info.st_mode):
                if _inside(os.path.realpath(store), agents_root):
                    found.append(store)
                continue
        except OSError as exc:
            if exc.errno not in _SKIPPED_ERRNOS:
                raise
        paths = StorePaths.from_store_path(store)
        try:
            if read_state(paths, check_safety=False) is not None:
                if _inside(os.path.realpath(paths.state), agents_root):
                    found.append(store)
            elif os.path.lexists(paths.root) and inspect_directory(paths) is not None and _inside(
                os.path.realpath(paths.dir), agents_root
            ):
                # A damaged directory store is still a store: listed, so
                # the command run on it says what is wrong.
                found.append(store)
        except OSError as exc:
            if exc.errno not in _SKIPPED_ERRNOS:
                raise
    found.extend(os.path.abspath(os.fspath(p)) for p in extra_paths)
    return _dedupe(found)


def summary_line(results: Sequence[MigrationResult]) -> str:
    """The one-line startup summary (SPEC §6)."""
    counts = {outcome: 0 for outcome in
              ("migrated", "already_directory", "skipped_empty", "skipped_invalid", "missing", "failed")}
    for result in results:
        counts[result.outcome] += 1
    line = f"session-store migration summary: inspected={len(results)} " + " ".join(
        f"{name}={count}" for name, count in counts.items()
    )
    issues = []
    for result in results:  # one item per store, its reasons together
        reasons = list(result.warnings)
        if result.outcome == "skipped_invalid":
            reasons.insert(0, "invalid legacy store")
        if reasons:
            issues.append(f"{result.store_path} ({', '.join(reasons)})")
    if issues:
        line += "; issues: " + "; ".join(issues)
    return line


def migrate_or_fail(store_path: str | os.PathLike[str], **migrate_options: Unpack[_MigrateOptions]
                    ) -> MigrationResult:
    """:func:`~sessionsd.migration.migrate`, with an exception turned into a
    ``failed`` result whose warning is ``Migration failed: <error>``."""
    try:
        return migrate(store_path, **migrate_options)
    except Exception as exc:  # noqa: BLE001 - one store's failure never stops the others
        return MigrationResult(os.path.abspath(os.fspath(store_path)), "failed",
                               warnings=[f"Migration failed: {type(exc).__name__}: {exc}"])


def run_startup_migration(state_dir: str | os.PathLike[str] | None = None,
                          extra_paths: Sequence[str | os.PathLike[str]] = (),
                          logger: logging.Logger | None = None,
                          *, progress_for: Callable[[str], ProgressCallback] | None = None,
                          **migrate_options: Unpack[_MigrateOptions]) -> list[MigrationResult]:
    """Migrate every agent store under *state_dir* plus *extra_paths*, one
    at a time, and log exactly one summary line: WARNING when a store was
    invalid or failed, INFO otherwise, nothing when there was no target.  An
    exception in one store becomes its ``failed`` result; the others go on.

    *migrate_options* go to :func:`~sessionsd.migration.migrate` -- the same
    rule as everywhere: no size limit unless ``max_bytes=`` sets one.
    *progress_for*, if given, makes the ``progress`` callback of each store
    from its path."""
    log = logger or _log
    targets = _dedupe(
        (agent_store_paths(state_dir) if state_dir is not None else [])
        + [os.path.abspath(os.fspath(p)) for p in extra_paths]
    )
    results: list[MigrationResult] = []
    for target in targets:
        options = migrate_options.copy()
        if progress_for is not None:
            options["progress"] = progress_for(target)
        results.append(migrate_or_fail(target, **options))
    if results:
        bad = any(r.outcome in ("skipped_invalid", "failed") for r in results)
        log.log(logging.WARNING if bad else logging.INFO, "%s", summary_line(results))
    return results
