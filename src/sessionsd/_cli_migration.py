"""The migration commands of :mod:`sessionsd.cli`: ``detect``, ``migrate``
(one progress bar per store) and ``rollback``, over the named stores and
those under ``--state-dir``.  Split out of :mod:`sessionsd.cli`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ._cli_common import CommandError, _emit, _missing_store
from ._cli_progress import Progress
from ._layout import ROOT_NAME, StorePaths
from .discovery import discover_stores, migrate_or_fail, run_startup_migration, summary_line
from .errors import SessionsdError
from .migration import MigrationResult, detect, rollback


def cmd_detect(args: argparse.Namespace) -> int:
    """``sessionsd detect PATH``: what ``migrate`` would do, changing
    nothing; exit status 0 (CommandError when the directory is missing)."""
    directory = os.path.dirname(os.path.abspath(args.path))
    if not os.path.isdir(directory):  # "missing" is an answer; a mistyped directory is not
        raise CommandError(f"no session store at {args.path}: no such directory: {directory}")
    found = detect(args.path, max_bytes=args.max_bytes)
    lines = [found.preview, f"status: {found.status}",
             (f"legacy entries: {found.legacy_entry_count} "
              f"(normalized: {found.normalized_entry_count})"),
             f"directory active: {found.directory_active}"]
    lines += [f"warning: {w}" for w in found.warnings]
    _emit(args, found.as_dict(), "\n".join(lines))
    return 0


def _quiet_logger() -> logging.Logger:
    """A logger that drops what it gets (set up once per process)."""
    quiet = logging.getLogger("sessionsd.cli.startup")
    if not quiet.handlers:
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
    return quiet


def _store_label(path: str) -> str:
    """A short name for a store in a progress bar: the agent id of
    ``…/agents/<id>/sessions/sessions.json``, else the store's directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.basename(directory) == "sessions":
        directory = os.path.dirname(directory)
    return os.path.basename(directory) or directory


class _Bars:
    """One progress bar per store, each line ended before the next begins."""

    def __init__(self) -> None:
        self.current: Progress | None = None

    def __call__(self, path: str) -> Progress:
        self.close()
        self.current = Progress(f"migrating {_store_label(path)}")
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


def _targets(args: argparse.Namespace) -> list[str]:
    """The store paths named on the command line: positional and ``--store``."""
    return [*args.paths, *(args.store or ())]


def _check_state_dir(state_dir: str) -> None:
    if not os.path.exists(state_dir):
        raise CommandError(f"--state-dir {state_dir}: no such directory")
    if not os.path.isdir(state_dir):
        raise CommandError(f"--state-dir {state_dir}: not a directory")


def _no_stores_found(state_dir: str | None) -> str:
    where = os.path.join(state_dir, "agents", "*", "sessions") if state_dir else "the paths given"
    return f"No session stores found (looked in {where})."


# Outcomes that leave a store unmigrated and need an operator: the ones that
# make the library log its summary line as a WARNING, and exit status 1 here.
_NEEDS_ATTENTION = ("failed", "skipped_invalid")


def cmd_migrate(args: argparse.Namespace) -> int:
    """``sessionsd migrate``: migrate the stores named (and under
    ``--state-dir``); exit status 1 if one failed, was skipped as invalid
    or names no store, 2 when no store is given."""
    options = {"max_bytes": args.max_bytes}
    bars = _Bars()
    named = list(dict.fromkeys(os.path.abspath(p) for p in _targets(args)))
    if not named and not args.state_dir:
        print("sessionsd migrate: give a store path (PATH or --store PATH) or --state-dir DIR",
              file=sys.stderr)
        return 2
    if args.state_dir:
        _check_state_dir(args.state_dir)
    # A path named on the command line that holds no store is a typo until
    # shown otherwise: reported as missing and not handed to migrate (which
    # would create its directory).  Under --state-dir an agent directory
    # without a store is normal.
    absent = {path: problem for path in named if (problem := _missing_store(path)) is not None}
    present = [path for path in named if path not in absent]
    if args.state_dir:
        # The library logs the summary line for hosts; here it goes to stderr.
        results = run_startup_migration(args.state_dir, present, logger=_quiet_logger(),
                                        progress_for=bars, **options)
        results += [MigrationResult(path, "missing") for path in absent]
    else:
        results = [MigrationResult(path, "missing") if path in absent
                   else migrate_or_fail(path, progress=bars(path), **options) for path in named]
    bars.close()
    if args.state_dir:
        if results:
            print(summary_line(results), file=sys.stderr)
        elif not args.json:
            print(_no_stores_found(args.state_dir))
    lines = []
    for r in results:
        line = f"{r.outcome} {r.store_path} (legacy {r.legacy_entries}, migrated {r.migrated_entries})"
        if r.backup_path:
            line += f" backup {r.backup_path}"
        lines.append(line)
        lines += [f"  warning: {w}" for w in r.warnings]
    _emit(args, [r.as_dict() for r in results], "\n".join(lines))
    for problem in absent.values():
        print(f"sessionsd migrate: {problem}", file=sys.stderr)
    attention = [r for r in results if r.outcome in _NEEDS_ATTENTION]
    if attention:
        counts = ", ".join(f"{name}={sum(r.outcome == name for r in results)}" for name in _NEEDS_ATTENTION)
        print(f"sessionsd migrate: {len(attention)} store(s) not migrated ({counts}): "
              "fix or move them aside, then run migrate again", file=sys.stderr)
    return 1 if absent or attention else 0


def _rollback_skip_reason(store_path: str) -> str:
    """Why :func:`rollback` left *store_path* alone (it returned False)."""
    paths = StorePaths.from_store_path(store_path)
    if os.path.lexists(paths.root):
        return f"{ROOT_NAME} is not an active directory store (see: sessionsd check)"
    if os.path.lexists(paths.store):
        return f"already a legacy store (no {ROOT_NAME} to restore from)"
    return "no session store here"


def cmd_rollback(args: argparse.Namespace) -> int:
    """``sessionsd rollback``: restore ``sessions.json`` from each
    directory store named (and under ``--state-dir``); exit status 1 if one
    failed or names no store, 2 when no store is given."""
    named = _targets(args)
    if not named and not args.state_dir:
        print("sessionsd rollback: give a store path (PATH or --store PATH) or --state-dir DIR",
              file=sys.stderr)
        return 2
    targets = [os.path.abspath(p) for p in named]
    if args.state_dir:
        _check_state_dir(args.state_dir)
        targets += discover_stores(args.state_dir)
    targets = sorted(dict.fromkeys(targets))
    explicit = set(os.path.abspath(p) for p in named)
    restored = skipped = failed = 0
    rows = []
    for target in targets:
        problem = _missing_store(target) if target in explicit else None
        if problem is not None:
            print(f"sessionsd rollback: {problem}", file=sys.stderr)
            failed += 1
            rows.append({"store": target, "action": "failed", "error": problem})
            continue
        try:
            done = rollback(target, dry_run=args.dry_run)
        except (SessionsdError, OSError) as exc:
            # One store's failure does not stop the others; exit status 1.
            print(f"sessionsd rollback: {target}: {exc}", file=sys.stderr)
            failed += 1
            rows.append({"store": target, "action": "failed", "error": str(exc)})
            continue
        verb = ("would restore" if done else "would skip") if args.dry_run else (
            "restored" if done else "skipped")
        restored += done
        skipped += not done
        row = {"store": target, "action": verb}
        line = f"{verb} {target}"
        if not done:
            row["reason"] = _rollback_skip_reason(target)
            line += f": {row['reason']}"
        rows.append(row)
        if not args.json:
            print(line)
    if not targets and not args.json:
        print(_no_stores_found(args.state_dir))
        return 0
    summary = f"Summary: restored {restored}, skipped {skipped}"
    if failed:
        summary += f", failed {failed}"
    _emit(args, {"stores": rows, "restored": restored, "skipped": skipped, "failed": failed,
                 "dry_run": args.dry_run}, summary)
    return 1 if failed else 0
