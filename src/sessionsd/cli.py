"""Command line: ``python -m sessionsd`` / ``sessionsd``.

Data goes to stdout, diagnostics to stderr.  Exit codes: 0 success, 1 failure,
2 usage error.  ``--json`` gives machine-readable output (before or after the
subcommand).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from typing import Any, Callable, Optional, Sequence

from . import __version__, _codec, _json
from .check import check
from .discovery import discover_stores, migrate_or_fail, run_startup_migration, summary_line
from .errors import SessionsdError
from .migration import detect, rollback
from .store import SessionStore


def version_line() -> str:
    return (f"sessionsd {__version__} ({_codec.BACKEND} codec, {_json.IMPLEMENTATION}, "
            f"Python {sys.version.split()[0]})")


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(payload, ensure_ascii=False, default=str))
    elif text:
        print(text)


def _short_size(size: float) -> str:
    """``512 B``, ``7.9 KiB``, ``440.2 MiB``, ``1.02 GiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.2f} {unit}" if size < 10 and unit in ("GiB", "TiB") else f"{size:.1f} {unit}"


def _duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``1h02m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal: called
    as ``progress(done, total)`` -- bytes of the legacy file read when
    *unit* is ``"bytes"`` (migration), items otherwise -- it shows the bar,
    the percentage, the amount, the rate and the time left, redrawn at most
    ten times a second, and the time it took once done."""

    def __init__(self, label: str, stream=None, unit: str = "bytes",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.unit = unit
        self.clock = clock
        self._started = clock()
        self._drawn = float("-inf")
        self._width = 0
        self._finished = False

    def _amount(self, value: float) -> str:
        return _short_size(value) if self.unit == "bytes" else f"{int(value)}"

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0 or self._finished:
            return
        now = self.clock()
        finished = done >= total
        if not finished and now - self._drawn < 0.1:
            return
        self._drawn = now
        elapsed = now - self._started
        percent = min(100, done * 100 // total)
        filled = percent * 30 // 100
        bar = f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%"
        rate = done / elapsed if elapsed > 0 else 0.0
        rate_text = f"{self._amount(rate)}/s" if self.unit == "bytes" else f"{rate:.0f}/s"
        if finished:
            line = f"{bar} {self._amount(total)} in {_duration(elapsed)}"
            if elapsed > 0:
                line += f" ({rate_text})"
        else:
            line = f"{bar} {self._amount(done)}/{self._amount(total)}"
            if rate > 0:
                line += f" {rate_text} ETA {_duration((total - done) / rate)}"
        self._draw(line)
        if finished:
            self._finished = True
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line if it is still open (a migration that stopped
        before the end of the file)."""
        if self.enabled and self._width and not self._finished:
            self._finished = True
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, line: str) -> None:
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)


# -- codec helpers ------------------------------------------------------------------

def cmd_encode(args: argparse.Namespace) -> int:
    rows = [{"key": key, "name": _codec.encode_key(key)} for key in args.keys]
    _emit(args, rows, "\n".join(row["name"] for row in rows))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    rows = [
        {"name": name, "kind": _codec.classify_name(name), "key": _codec.decode_name(name)}
        for name in args.names
    ]
    lines = []
    for row in rows:
        if row["kind"] == "inline":
            lines.append(row["key"])
        elif row["kind"] == "hashed":
            lines.append(f"<hashed: the key is inside {row['name']}>")
        else:
            lines.append(f"<not an entry file name: {row['name']}>")
    _emit(args, rows, "\n".join(lines))
    return 0 if all(row["kind"] for row in rows) else 1


def cmd_scan(args: argparse.Namespace) -> int:
    found = _codec.scan_entries(args.directory)
    rows = [{"name": name, "key": key} for name, key in sorted(found)]
    text = "\n".join(f"{row['name']}\t{row['key'] if row['key'] is not None else '<hashed>'}"
                     for row in rows)
    _emit(args, rows, text if rows else "(no entry files)")
    return 0


# -- store commands -----------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    from ._layout import read_state

    with SessionStore(args.path) as store:
        count = len(store)
        state = read_state(store.paths)
        info = {
            "store": store.paths.store,
            "mode": store.mode,
            "version": state.version if state else None,
            "seq": store._dir.read_seq() if state else None,
            "sessions": count,
            "skipped_files": len(store.skipped),
            "legacy_file": os.path.exists(store.paths.store),
            "backend": _codec.BACKEND,
            "json": _json.IMPLEMENTATION,
        }
    text = "\n".join(f"{k + ':':<14}{v}" for k, v in info.items())
    _emit(args, info, text)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with SessionStore(args.path) as store:
        entry = store.get(args.key)
    if entry is None:
        print(f"sessionsd: no session {args.key!r} in {args.path}", file=sys.stderr)
        return 1
    _emit(args, entry, json.dumps(entry, indent=2, ensure_ascii=False))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    with SessionStore(args.path) as store:
        if args.recent is not None or args.offset:
            # Most recently updated first, from the head of the listing index.
            rows = store.recent(args.recent if args.recent is not None else len(store), args.offset)
        else:
            rows = sorted(store.summary().items())
    payload = [{"key": key, **fields} for key, fields in rows]
    text = "\n".join(f"{key}\t{fields['updatedAt']}" for key, fields in rows)
    _emit(args, payload, text)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
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
        self.current: Optional[Progress] = None

    def __call__(self, path: str) -> Progress:
        self.close()
        self.current = Progress(f"migrating {_store_label(path)}")
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    options = {"max_bytes": args.max_bytes}
    bars = _Bars()
    if args.state_dir:
        # The library logs the summary line for hosts; here it goes to stderr.
        results = run_startup_migration(args.state_dir, args.store or (), logger=_quiet_logger(),
                                        progress_for=bars, **options)
        bars.close()
        if results:
            print(summary_line(results), file=sys.stderr)
        elif not args.json:
            print("No session stores found.")
    else:
        if not args.store:
            print("sessionsd migrate: give a store path or --state-dir", file=sys.stderr)
            return 2
        results = [migrate_or_fail(path, progress=bars(path), **options) for path in args.store]
        bars.close()
    lines = []
    for r in results:
        line = f"{r.outcome} {r.store_path} (legacy {r.legacy_entries}, migrated {r.migrated_entries})"
        if r.backup_path:
            line += f" backup {r.backup_path}"
        lines.append(line)
        lines += [f"  warning: {w}" for w in r.warnings]
    _emit(args, [r.as_dict() for r in results], "\n".join(lines))
    return 1 if any(r.outcome in ("failed", "skipped_invalid") for r in results) else 0


def cmd_rollback(args: argparse.Namespace) -> int:
    if not args.store and not args.state_dir:
        print("sessionsd rollback: give --store PATH (repeatable) or --state-dir DIR", file=sys.stderr)
        return 2
    targets = [os.path.abspath(p) for p in args.store or ()]
    if args.state_dir:
        targets += discover_stores(args.state_dir)
    targets = sorted(dict.fromkeys(targets))
    restored = skipped = failed = 0
    rows = []
    for target in targets:
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
        rows.append({"store": target, "action": verb})
        if not args.json:
            print(f"{verb} {target}")
    if not targets and not args.json:
        print("No session stores found.")
        return 0
    _emit(args, {"stores": rows, "restored": restored, "skipped": skipped, "failed": failed,
                 "dry_run": args.dry_run},
          f"Summary: restored {restored}, skipped {skipped}")
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    report = check(args.path, fix=args.fix)
    lines = [f"store: {report.store_path} ({report.mode}, {report.sessions} sessions)"]
    lines += [f"fixed: {item}" for item in report.fixed]
    lines += [f"refused: {item}" for item in report.refused]
    lines += [f"problem: {item}" for item in report.problems]
    lines += [f"note: {item}" for item in report.notes]
    lines += [f"backup: {p}" for p in report.backups]
    lines += [f"orphan: {p}" for p in report.orphans]
    lines.append("ok" if report.ok else f"{len(report.problems)} problem(s)"
                 + ("" if args.fix else "; run with --fix to repair what is safe to repair"))
    _emit(args, report.as_dict(), "\n".join(lines))
    return 0 if report.ok else 1


def cmd_maintain(args: argparse.Namespace) -> int:
    from .maintenance import Maintenance, parse_duration

    try:
        settings = Maintenance(
            mode=args.mode,
            prune_after=parse_duration(args.prune_after) if args.prune_after else None,
            max_entries=args.max_entries,
            max_disk_bytes=args.max_disk_bytes,
            archive_transcripts=not args.no_archive,
        )
    except ValueError as exc:  # a bad --prune-after or a negative limit: a usage error
        print(f"sessionsd maintain: {exc}", file=sys.stderr)
        return 2
    if not settings.active:
        print("sessionsd maintain: give --prune-after, --max-entries or --max-disk-bytes",
              file=sys.stderr)
        return 2
    with SessionStore(args.path) as store:
        report = store.maintain(settings, dry_run=args.dry_run)
    verb = "would remove" if (args.dry_run or settings.mode == "warn") else "removed"
    lines = [f"{verb} {len(report.removed)} session(s): {report.describe()}"]
    for label, keys in (("stale", report.pruned), ("over cap", report.evicted),
                        ("over budget", report.over_budget)):
        lines += [f"{verb} ({label}): {key}" for key in keys]
    lines += [f"archived transcript: {path}" for path in report.archived]
    _emit(args, report.as_dict(), "\n".join(lines))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(sessions=args.sessions, directory=args.dir, seed=args.seed, as_json=args.json)


# -- parser ---------------------------------------------------------------------------

_SIZE = re.compile(r"(\d+)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE)


def _max_bytes(text: str) -> Optional[int]:
    """A size limit: bytes, or with a binary suffix (``64M``, ``1G``,
    ``512KiB``); ``none`` or ``0`` for no limit."""
    if text.strip().lower() in ("none", "0"):
        return None
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (bytes, or with K, M, G or T: 64M, 1G; 'none' for no limit)")
    number, suffix = int(match.group(1)), (match.group(2) or "").lower()
    return number * 1024 ** ("kmgt".index(suffix) + 1 if suffix else 0) or None


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessionsd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    parser.set_defaults(json=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # --json is accepted after the subcommand too; SUPPRESS keeps a global
    # --json from being reset by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")

    def command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text)
        sub.set_defaults(func=func)
        return sub

    sub = command("info", cmd_info, "mode, version, counts and backend of a store")
    sub.add_argument("path", help="the store path (…/sessions.json, need not exist)")
    sub = command("get", cmd_get, "print one session's entry as JSON")
    sub.add_argument("path")
    sub.add_argument("key")
    sub = command("ls", cmd_ls, "list sessions with their updatedAt (by key; --recent: newest first)")
    sub.add_argument("path")
    sub.add_argument("--recent", type=_non_negative_int, metavar="N",
                     help="the N most recently updated sessions, newest first (ties by key)")
    sub.add_argument("--offset", type=_non_negative_int, default=0, metavar="N",
                     help="skip the first N of the newest-first list (paging; implies newest first)")
    sub = command("detect", cmd_detect, "read-only migration inspection of a store")
    sub.add_argument("path")
    sub.add_argument("--max-bytes", type=_max_bytes, default=None, metavar="SIZE",
                     help="treat a legacy file larger than SIZE as invalid, as migrate "
                          "--max-bytes does (default: no limit)")
    sub = command("migrate", cmd_migrate, "migrate stores to directory mode")
    sub.add_argument("store", nargs="*", help="store paths")
    sub.add_argument("--state-dir", help="migrate every <state>/agents/*/sessions store (plus the paths given)")
    sub.add_argument("--max-bytes", type=_max_bytes, default=None, metavar="SIZE",
                     help="skip (as invalid) a legacy file larger than SIZE: bytes, or 64M, 1G ... "
                          "(default: no limit -- any size migrates streaming, in bounded memory)")
    sub = command("rollback", cmd_rollback, "restore sessions.json from directory stores")
    sub.add_argument("--store", action="append", metavar="PATH", help="a store path (repeatable)")
    sub.add_argument("--state-dir", help="every store under <state>/agents")
    sub.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    sub = command("check", cmd_check, "consistency report (stray temp files, dead commits, corrupt entries)")
    sub.add_argument("path")
    sub.add_argument("--fix", action="store_true", help="repair what is safe to repair")
    sub = command("maintain", cmd_maintain, "prune, cap and enforce a disk budget (--dry-run to preview)")
    sub.add_argument("path")
    sub.add_argument("--mode", choices=("warn", "enforce"), default="enforce",
                     help="enforce (default) removes; warn only reports")
    sub.add_argument("--prune-after", metavar="AGE", help="remove sessions older than AGE (30d, 12h, 3600)")
    sub.add_argument("--max-entries", type=int, metavar="N", help="keep at most N sessions (oldest go)")
    sub.add_argument("--max-disk-bytes", type=int, metavar="BYTES", help="keep entry files under BYTES")
    sub.add_argument("--no-archive", action="store_true", help="do not archive removed transcripts")
    sub.add_argument("--dry-run", action="store_true", help="print what would go, change nothing")
    sub = command("demo", cmd_demo, "build a realistic legacy store, migrate it, compare the hot paths")
    sub.add_argument("--sessions", type=_positive_int, default=3000, help="how many sessions (default 3000)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the generated data (default 0)")
    sub.add_argument("--dir", help="work in this new or empty directory instead of a temporary "
                                   "one, and keep the files")
    sub = command("encode", cmd_encode, "print the entry file name of each KEY")
    sub.add_argument("keys", nargs="+", metavar="KEY")
    sub = command("decode", cmd_decode, "print the key an entry file NAME encodes")
    sub.add_argument("names", nargs="+", metavar="NAME")
    sub = command("scan", cmd_scan, "list the entry files of an entries/ DIRECTORY")
    sub.add_argument("directory")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except (SessionsdError, OSError) as exc:
        print(f"sessionsd {args.command}: {exc}", file=sys.stderr)
        return 1
