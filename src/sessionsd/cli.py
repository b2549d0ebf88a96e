"""Command line: ``python -m sessionsd`` / ``sessionsd``.

Data goes to stdout, diagnostics to stderr.  Exit codes: 0 success, 1 failure,
2 usage error.  ``--json`` gives machine-readable output (before or after the
subcommand).  A path that names no store is an error (exit 1); no command
creates a store.  A reader that stops early (``sessionsd ls PATH | head -1``)
is not an error: the rest of the output is dropped and the exit status is the
command's own.  Library log records (WARNING and up; ``-v`` adds INFO, ``-vv``
DEBUG) are printed to stderr as ``sessionsd: warning: <message>``.

This module holds the argument parser, :func:`main` (the stdout guard, the
log handler, how a failure is reported) and ``--version``; the commands are
in :mod:`sessionsd._cli_store` (info, get, ls, check, maintain, copy,
encode, decode, scan) and :mod:`sessionsd._cli_migration` (detect, migrate,
rollback), their shared helpers in :mod:`sessionsd._cli_common` and
:mod:`sessionsd._cli_progress`.  Those modules never import this one; what
it defined before the split is still importable from here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__, _codec, _json
from ._cli_common import CONNECT_TIMEOUT, CommandError
from ._cli_migration import cmd_detect, cmd_migrate, cmd_rollback
from ._cli_progress import Progress
from ._cli_store import (
    cmd_check,
    cmd_copy,
    cmd_decode,
    cmd_encode,
    cmd_get,
    cmd_info,
    cmd_ls,
    cmd_maintain,
    cmd_scan,
)
from ._units import parse_duration, parse_size
from .errors import SessionsdError
from .maintenance import MODES, Maintenance

# The names re-exported from the command modules included.
__all__ = ["main", "build_parser", "version_line", "DESCRIPTION", "EPILOG", "CONNECT_TIMEOUT", "CommandError",
           "Progress", "cmd_info", "cmd_get", "cmd_ls", "cmd_detect", "cmd_migrate", "cmd_rollback", "cmd_check",
           "cmd_maintain", "cmd_copy", "cmd_demo", "cmd_encode", "cmd_decode", "cmd_scan"]

DESCRIPTION = (
    "Inspect, migrate, roll back, check, maintain and copy sessionsd session stores: a legacy "
    "sessions.json file, the sessions.d directory store beside it, or a PostgreSQL namespace."
)
EPILOG = (
    "PATH is a store's sessions.json (or the directory that holds it); it must name an "
    "existing store. info, get, ls, check, maintain and copy also take a PostgreSQL store URL "
    "(postgresql://[user@]host/db?namespace=NAME). Data goes to stdout, diagnostics to stderr. "
    "Exit status: 0 success, 1 failure, 2 usage error. 'sessionsd COMMAND --help' describes a command."
)


def version_line() -> str:
    """``sessionsd <version> (<codec> codec, <json>, Python <version>)``:
    what ``--version`` prints."""
    return (f"sessionsd {__version__} ({_codec.BACKEND} codec, {_json.IMPLEMENTATION}, "
            f"Python {sys.version.split()[0]})")


class _StdoutGuard:
    """Stands for ``sys.stdout`` while a command runs.  When the reader
    goes away (``| head``), the write's BrokenPipeError is swallowed and
    the descriptor is pointed at ``/dev/null``, so the rest of the output
    -- and the final flush at interpreter exit -- is dropped quietly and
    the command still returns its own exit status (the usual practice:
    https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        """Write *text* (dropped once the reader is gone); its length."""
        if not self.reader_gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        """Flush the stream (nothing once the reader is gone)."""
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            os.dup2(devnull, self.stream.fileno())
        except (OSError, ValueError, AttributeError):  # not a real descriptor: nothing to redirect
            pass
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _LogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"sessionsd: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _install_log_handler(verbose: int) -> Callable[[], None]:
    """One stderr handler on the ``sessionsd`` logger: WARNING and up, INFO
    with ``-v``, DEBUG with ``-vv``.  Returns the function that removes it
    (``main`` can be called more than once in a process)."""
    logger = logging.getLogger("sessionsd")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler.setLevel(level)
    previous = logger.level
    if logger.getEffectiveLevel() > level or logger.level == logging.NOTSET:
        logger.setLevel(level)
    logger.addHandler(handler)

    def remove() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return remove


def cmd_demo(args: argparse.Namespace) -> int:
    """``sessionsd demo``: see :func:`sessionsd.demo.run_demo`."""
    from .demo import run_demo

    return run_demo(sessions=args.sessions, directory=args.dir, seed=args.seed, as_json=args.json)


# -- parser ---------------------------------------------------------------------------

def _max_bytes(text: str) -> int | None:
    """A size limit (see :func:`sessionsd._units.parse_size`); ``none`` or
    ``0`` for no limit."""
    if text.strip().lower() in ("none", "0"):
        return None
    try:
        return parse_size(text) or None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; 'none' for no limit") from None


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _age_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


_PATH_HELP = "the store: its sessions.json (or the directory holding it); it must exist"
_STORE_HELP = ("the store: its sessions.json (or the directory holding it), or a postgresql:// URL "
               "with ?namespace=NAME; it must exist")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line: one subcommand per
    ``cmd_*`` function, which it stores as ``func``."""
    parser = argparse.ArgumentParser(prog="sessionsd", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=version_line())
    # --json and -v are accepted after the subcommand too; SUPPRESS keeps a
    # global flag from being reset by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    for target in (parser, common):
        target.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="machine-readable output (JSON on stdout)")
        target.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                            help="also print the library's INFO messages (-vv: DEBUG) on stderr")
    parser.set_defaults(json=False, verbose=0)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
                description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text,
                                  description=description,
                                  epilog="Exit status: 0 success, 1 failure, 2 usage error.")
        sub.set_defaults(func=func)
        return sub

    def store_targets(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument("paths", nargs="*", metavar="PATH", help=f"a store to {what} (its sessions.json)")
        sub.add_argument("--store", action="append", metavar="PATH",
                         help="a store path, as PATH (repeatable)")
        sub.add_argument("--state-dir", metavar="DIR",
                         help=f"{what} every store under DIR/agents/*/sessions (plus the paths given)")

    sub = command("info", cmd_info, "mode, version, counts and backend of a store",
                  "Print one 'key: value' line each for a store's mode (legacy or directory), "
                  "version, commit counter, session count, skipped files and the codec backend.")
    sub.add_argument("path", metavar="PATH", help=_STORE_HELP)
    sub = command("get", cmd_get, "print one session's entry as JSON",
                  "Print the entry of session KEY as JSON; exit 1 if there is no such session.")
    sub.add_argument("path", metavar="PATH", help=_STORE_HELP)
    sub.add_argument("key", metavar="KEY", help="the session key (trimmed and lower-cased as the store does)")
    sub = command("ls", cmd_ls, "list sessions with their updatedAt",
                  "Print one 'KEY<TAB>updatedAt' line per session, by key (--recent: newest first). "
                  "A backslash or a control character in a key (tab, newline ...) is printed as "
                  "a JSON string escape (\\\\, \\t, \\n, \\u001b), so each session is one line; "
                  "--json gives the keys as they are.")
    sub.add_argument("path", metavar="PATH", help=_STORE_HELP)
    sub.add_argument("--recent", type=_non_negative_int, metavar="N",
                     help="the N most recently updated sessions, newest first (ties by key)")
    sub.add_argument("--offset", type=_non_negative_int, default=0, metavar="N",
                     help="skip the first N of the newest-first list (paging; implies newest first)")
    sub = command("detect", cmd_detect, "read-only migration inspection of a store",
                  "Say what 'migrate' would do with a store, changing nothing. A missing store "
                  "is a status ('missing'); a missing directory is an error.")
    sub.add_argument("path", metavar="PATH", help="the store's sessions.json (its directory must exist)")
    sub.add_argument("--max-bytes", type=_max_bytes, default=None, metavar="SIZE",
                     help="treat a legacy file larger than SIZE as invalid, as migrate "
                          "--max-bytes does (default: no limit)")
    sub = command("migrate", cmd_migrate, "migrate stores to directory mode",
                  "Migrate legacy sessions.json stores to sessions.d directory stores, streaming, "
                  "with a progress bar on a terminal. One store's failure does not stop the others. "
                  "Exit 1 if a store failed or was skipped as invalid (the summary's failed and "
                  "skipped_invalid counts), or if a PATH names no store.")
    store_targets(sub, "migrate")
    sub.add_argument("--max-bytes", type=_max_bytes, default=None, metavar="SIZE",
                     help="skip (as invalid) a legacy file larger than SIZE: bytes, or 512k, 64M, "
                          "1GiB, 10MB ... (default: no limit -- any size migrates streaming, in "
                          "bounded memory)")
    sub = command("rollback", cmd_rollback, "restore sessions.json from directory stores",
                  "Write sessions.json back from each directory store and set sessions.d aside "
                  "as sessions.d.bak.<ms>. A store that is not an active directory store is "
                  "skipped, with the reason. Exit 1 if a store failed or a PATH names no store.")
    store_targets(sub, "roll back")
    sub.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    sub = command("check", cmd_check, "consistency report (stray temp files, dead commits, corrupt entries)",
                  "Report stray temp files, dead commits, corrupt entries, damaged stores, orphans "
                  "and backups; exit 1 while problems remain.")
    sub.add_argument("path", metavar="PATH", help=_STORE_HELP)
    sub.add_argument("--fix", action="store_true", help="repair what is safe to repair")
    sub = command("maintain", cmd_maintain, "prune, cap and enforce a disk budget",
                  "Remove stale sessions, the oldest beyond an entry cap, and the oldest beyond a "
                  "disk budget. The default mode, warn (as in the library), only reports what "
                  "would go; --mode enforce removes. The counts in parentheses are before -> after.")
    sub.add_argument("path", metavar="PATH", help=_STORE_HELP)
    sub.add_argument("--mode", choices=MODES, default=Maintenance.mode,
                     help=f"warn reports, enforce removes (default: {Maintenance.mode}, as in the library)")
    sub.add_argument("--prune-after", type=_age_arg, metavar="AGE",
                     help="remove sessions not updated for AGE: seconds, or 30s, 90m, 12h, 2d, 3w, 3weeks")
    sub.add_argument("--max-entries", type=_non_negative_int, metavar="N",
                     help="keep at most N sessions (the oldest go)")
    sub.add_argument("--max-disk-bytes", type=_size_arg, metavar="SIZE",
                     help="keep the entries under SIZE: bytes, or 512k, 10M, 1GiB (1024s), 10MB (1000s)")
    sub.add_argument("--no-archive", action="store_true", help="do not archive removed transcripts")
    sub.add_argument("--dry-run", action="store_true", help="print what would go, change nothing")
    sub = command("copy", cmd_copy, "copy every session of one store into another",
                  "Copy every session of SRC into DST -- legacy sessions.json, sessions.d directory "
                  "store or PostgreSQL namespace, any direction -- in sorted key order, in batches, "
                  "each batch one atomic commit: a copy that stops leaves DST holding complete "
                  "entries only. DST must be empty (it need not exist) unless --resume or --replace. "
                  "SRC should be quiet while it is copied: a change seen is reported, exit 1. Shows "
                  "a progress bar on a terminal and one summary line.")
    sub.add_argument("source", metavar="SRC", help="the store to copy: a path (it must exist) or a "
                                                   "postgresql://…?namespace=NAME URL")
    sub.add_argument("destination", metavar="DST", help="the store to fill: a path (its directory must "
                                                        "exist; written as a directory store) or a URL")
    how = sub.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true",
                     help="continue a copy that stopped: sessions already equal in DST are skipped; "
                          "DST's sessions not in SRC are left alone")
    how.add_argument("--replace", action="store_true",
                     help="make DST hold exactly SRC: as --resume, then remove DST's sessions not in SRC")
    sub.add_argument("--batch-size", type=_positive_int, default=1000, metavar="N",
                     help="sessions per commit on DST (default 1000)")
    sub = command("demo", cmd_demo, "build a realistic legacy store, migrate it, compare the hot paths",
                  "Generate a legacy store, migrate it, verify every session and time the hot "
                  "paths in both modes.")
    sub.add_argument("--sessions", type=_positive_int, default=3000, help="how many sessions (default 3000)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the generated data (default 0)")
    sub.add_argument("--dir", help="work in this new or empty directory instead of a temporary "
                                   "one, and keep the files")
    sub = command("encode", cmd_encode, "print the entry file name of each KEY",
                  "Print the sessions.d/entries file name of each KEY, one per line.")
    sub.add_argument("keys", nargs="+", metavar="KEY", help="a session key")
    sub = command("decode", cmd_decode, "print the key an entry file NAME encodes",
                  "Print the key each entry file NAME encodes (escaped as in 'ls'); exit 1 if a "
                  "NAME is not an entry file name.")
    sub.add_argument("names", nargs="+", metavar="NAME", help="an entry file name")
    sub = command("scan", cmd_scan, "list the entry files of an entries/ DIRECTORY",
                  "Print 'NAME<TAB>KEY' for each entry file in DIRECTORY (keys escaped as in 'ls').")
    sub.add_argument("directory", metavar="DIRECTORY", help="a sessions.d/entries directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    guard = _StdoutGuard(sys.stdout) if sys.stdout is not None else None
    if guard is not None:
        sys.stdout = guard
    try:
        return _main(argv)
    finally:
        if guard is not None:
            guard.flush()  # while still guarded: a reader gone at the end is not an error
            if sys.stdout is guard:
                sys.stdout = guard.stream


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    remove_handler = _install_log_handler(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CommandError as exc:
        print(f"sessionsd {args.command}: {exc}", file=sys.stderr)
        return 1
    except (SessionsdError, OSError) as exc:
        print(f"sessionsd {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # A database error (psycopg's) is reported on one line, as ours are.
        if not type(exc).__module__.startswith("psycopg"):
            raise
        detail = " ".join(str(exc).split()) or type(exc).__name__
        print(f"sessionsd {args.command}: PostgreSQL error: {detail}", file=sys.stderr)
        return 1
    finally:
        remove_handler()
