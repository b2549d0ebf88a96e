"""Command line: ``python -m sessionsd`` / ``sessionsd``.

Data goes to stdout, diagnostics to stderr.  Exit codes: 0 success, 1 failure,
2 usage error.  ``--json`` gives machine-readable output (before or after the
subcommand).  A path that names no store is an error (exit 1); no command
creates a store.  A reader that stops early (``sessionsd ls PATH | head -1``)
is not an error: the rest of the output is dropped and the exit status is the
command's own.  Library log records (WARNING and up; ``-v`` adds INFO, ``-vv``
DEBUG) are printed to stderr as ``sessionsd: warning: <message>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__, _codec, _json
from ._facade import StoreFacade
from ._layout import ROOT_NAME, StorePaths
from ._open import is_url
from ._units import parse_duration, parse_size
from .check import check
from .discovery import discover_stores, migrate_or_fail, run_startup_migration, summary_line
from .errors import SessionsdError
from .maintenance import MODES, Maintenance, MaintenanceReport
from .migration import MigrationResult, detect, rollback
from .store import SessionStore

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

#: Seconds a command waits for a PostgreSQL server before giving up.
CONNECT_TIMEOUT = 10.0


class CommandError(Exception):
    """A failure the command reports as ``sessionsd CMD: <message>`` (exit 1)."""


def version_line() -> str:
    """``sessionsd <version> (<codec> codec, <json>, Python <version>)``:
    what ``--version`` prints."""
    return (f"sessionsd {__version__} ({_codec.BACKEND} codec, {_json.IMPLEMENTATION}, "
            f"Python {sys.version.split()[0]})")


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(payload, ensure_ascii=False, default=str))
    elif text:
        print(text)


def _printable(text: str) -> str:
    """*text* on one line: a backslash, a control character (tab, newline,
    escape ...), a line or paragraph separator or a lone surrogate is
    written as a JSON string escape (``\\\\``, ``\\t``, ``\\n``,
    ``\\u001b``); everything else as it is."""
    if all(_plain(ch) for ch in text):
        return text
    out = []
    for ch in text:
        if _plain(ch):
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _plain(ch: str) -> bool:
    code = ord(ch)
    return not (code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029)
                or 0xD800 <= code < 0xE000 or ch == "\\")


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


def _missing_store(path: str) -> str | None:
    """Why *path* names no store (None when it names one)."""
    paths = StorePaths.from_store_path(path)
    if os.path.lexists(paths.store) or os.path.lexists(paths.root):
        return None
    if not os.path.isdir(paths.dir):
        return f"no session store at {path}: no such directory: {paths.dir}"
    return (f"no session store at {path}: neither {os.path.basename(paths.store)} "
            f"nor {ROOT_NAME} exists in {paths.dir}")


def _store_path(path: str) -> str:
    """The store path of *path* for a command that needs an existing store:
    its ``sessions.json``, or a directory holding one (or a ``sessions.d``).
    Raises CommandError naming the path otherwise -- a typo must not read
    as an empty store."""
    if os.path.isdir(path):
        inside = StorePaths.from_store_path(path).store  # <dir>/sessions.json, also for <dir>/sessions.d
        if _missing_store(inside) is None:
            return inside
        raise CommandError(f"no session store in directory {path} (neither sessions.json "
                           f"nor {ROOT_NAME} exists there)")
    problem = _missing_store(path)
    if problem is not None:
        raise CommandError(problem)
    return path


def _probe_url(url: str) -> Any:
    """What the server of *url* holds (:func:`sessionsd._pg_backend.probe`),
    refusing a URL that names no store: no sessionsd schema in the database,
    or a namespace nothing was ever written to (a typo must not read as an
    empty store, and a read-only command creates nothing)."""
    try:
        from ._pg_backend import probe
    except ImportError as exc:
        raise CommandError(f"a PostgreSQL store URL needs psycopg 3: pip install 'sessionsd[postgres]' "
                           f"({exc})") from None
    try:
        found = probe(url, connect_timeout=CONNECT_TIMEOUT)
    except ValueError as exc:
        raise CommandError(f"bad store URL: {exc}") from None
    if found.schema_version == 0:
        raise CommandError(f"no session store at {found.url}: the database has no sessionsd schema")
    if not found.exists:
        raise CommandError(f"no session store at {found.url}: namespace {found.namespace!r} does not "
                           "exist in that database (nothing was ever written there)")
    return found


def _open_store(path: str, **options: Any) -> StoreFacade:
    """The existing store *path* names: a file store (as :func:`_store_path`
    finds it) or, for a ``postgresql://`` URL, a PostgreSQL namespace that
    :func:`_probe_url` accepts."""
    if not is_url(path):
        return SessionStore(_store_path(path), **options)
    from .postgres import PostgresStore

    _probe_url(path)
    return PostgresStore(path, connect_timeout=CONNECT_TIMEOUT, **options)


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

    def __init__(self, label: str, stream: TextIO | None = None, unit: str = "bytes",
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
    """``sessionsd encode KEY...``: the entry file name of each key; exit status 0."""
    rows = [{"key": key, "name": _codec.encode_key(key)} for key in args.keys]
    _emit(args, rows, "\n".join(row["name"] for row in rows))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """``sessionsd decode NAME...``: the key each entry file name encodes;
    exit status 1 if a name is not an entry file name."""
    rows = [
        {"name": name, "kind": _codec.classify_name(name), "key": _codec.decode_name(name)}
        for name in args.names
    ]
    lines = []
    for row in rows:
        if row["kind"] == "inline":
            lines.append(_printable(row["key"]))
        elif row["kind"] == "hashed":
            lines.append(f"<hashed: the key is inside {row['name']}>")
        else:
            lines.append(f"<not an entry file name: {_printable(row['name'])}>")
    _emit(args, rows, "\n".join(lines))
    return 0 if all(row["kind"] for row in rows) else 1


def cmd_scan(args: argparse.Namespace) -> int:
    """``sessionsd scan DIRECTORY``: the entry files of an ``entries/``
    directory and their keys; exit status 0."""
    found = _codec.scan_entries(args.directory)
    rows = [{"name": name, "key": key} for name, key in sorted(found)]
    text = "\n".join(f"{row['name']}\t{_printable(row['key']) if row['key'] is not None else '<hashed>'}"
                     for row in rows)
    _emit(args, rows, text if rows else "(no entry files)")
    return 0


# -- store commands -----------------------------------------------------------------

def _key_value_lines(info: dict[str, Any]) -> str:
    """``key: value`` lines, the values aligned; None is ``-``."""
    width = max(len(key) for key in info) + 2
    return "\n".join(f"{key + ':':<{width}}{'-' if value is None else value}"
                     for key, value in info.items())


def cmd_info(args: argparse.Namespace) -> int:
    """``sessionsd info PATH``: mode, version, counts and backend of a
    store; exit status 0 (CommandError when PATH names no store)."""
    from ._layout import read_state

    if is_url(args.path):
        return _info_url(args)
    with SessionStore(_store_path(args.path)) as store:
        count = len(store)
        state = read_state(store.paths)
        info = {
            "store": store.paths.store,
            "mode": store.mode,
            "version": state.version if state else None,
            "seq": store._backend._dir.read_seq() if state else None,
            "sessions": count,
            "skipped_files": len(store.skipped),
            "legacy_file": os.path.exists(store.paths.store),
            "backend": _codec.BACKEND,
            "json": _json.IMPLEMENTATION,
        }
    _emit(args, info, _key_value_lines(info))
    return 0


def _info_url(args: argparse.Namespace) -> int:
    """``sessionsd info URL``: a PostgreSQL namespace."""
    from .postgres import PostgresStore

    found = _probe_url(args.path)
    with PostgresStore(args.path, connect_timeout=CONNECT_TIMEOUT) as store:
        stats = store._backend.stats()
        info = {
            "store": store.url,
            "mode": store.mode,
            "namespace": store.namespace,
            "schema_version": found.schema_version,
            "version": stats.version if stats else None,
            "sessions": len(store),
            "bytes": stats.bytes if stats else 0,
            "backend": _codec.BACKEND,
            "json": _json.IMPLEMENTATION,
        }
    _emit(args, info, _key_value_lines(info))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """``sessionsd get PATH KEY``: one session's entry as JSON; exit
    status 1 when there is no such session."""
    with _open_store(args.path) as store:
        entry = store.get(args.key)
    if entry is None:
        where = store.location if is_url(args.path) else args.path
        print(f"sessionsd get: no session {args.key!r} in {where}", file=sys.stderr)
        return 1
    _emit(args, entry, json.dumps(entry, indent=2, ensure_ascii=False))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """``sessionsd ls PATH``: one ``key<TAB>updatedAt`` line per session,
    by key or (``--recent``, ``--offset``) newest first; exit status 0."""
    with _open_store(args.path) as store:
        if args.recent is not None or args.offset:
            # Most recently updated first, from the head of the listing index.
            rows = store.recent(args.recent if args.recent is not None else len(store), args.offset)
        else:
            rows = sorted(store.summary().items())
    payload = [{"key": key, **fields} for key, fields in rows]
    # A key may hold a tab or a newline: escaped, so each session is one line
    # of exactly two tab-separated fields (--json gives the keys unescaped).
    text = "\n".join(f"{_printable(key)}\t{fields.get('updatedAt')}" for key, fields in rows)
    _emit(args, payload, text)
    return 0


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


def cmd_check(args: argparse.Namespace) -> int:
    """``sessionsd check PATH [--fix]``: the consistency report; exit
    status 1 while problems remain."""
    if is_url(args.path):
        return _check_url(args)
    report = check(_store_path(args.path), fix=args.fix)
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


def _check_url(args: argparse.Namespace) -> int:
    """``sessionsd check URL [--fix]``: a PostgreSQL namespace -- the schema
    version, every row against its entry, the namespace counters against a
    recount; exit status 1 while problems remain."""
    from ._pg_schema import SCHEMA_VERSION
    from .errors import SchemaVersionError
    from .postgres import PostgresStore

    found = _probe_url(args.path)
    problems: list[str] = []
    fixed: list[str] = []
    sessions = None
    if found.schema_version != SCHEMA_VERSION:
        problems.append(f"schema version {found.schema_version}, this sessionsd knows {SCHEMA_VERSION}"
                        + (": upgrade sessionsd" if found.schema_version > SCHEMA_VERSION else ""))
    else:
        try:
            with PostgresStore(args.path, connect_timeout=CONNECT_TIMEOUT) as store:
                problems, fixed = store._backend.verify(fix=args.fix)
                sessions = len(store)
        except SchemaVersionError as exc:  # upgraded by a newer sessionsd since the probe
            problems.append(str(exc))
    ok = not problems
    payload = {"store_path": found.url, "mode": "postgres", "namespace": found.namespace,
               "schema_version": found.schema_version, "sessions": sessions, "fixed": fixed,
               "problems": problems, "ok": ok}
    lines = [f"store: {found.url} (postgres, namespace {found.namespace!r}, {sessions} sessions, "
             f"schema version {found.schema_version})"]
    lines += [f"fixed: {item}" for item in fixed]
    lines += [f"problem: {item}" for item in problems]
    lines.append("ok" if ok else f"{len(problems)} problem(s)"
                 + ("" if args.fix else "; run with --fix to repair what is safe to repair"))
    _emit(args, payload, "\n".join(lines))
    return 0 if ok else 1


def _project_after(store: SessionStore, report: MaintenanceReport, legacy_sizes: dict[str, int] | None) -> None:
    """Set a report that removed nothing (dry run, warn mode) to the figures
    after what it would remove.  (The library reports the unchanged store
    there; this is what an operator previewing a sweep wants to read.)"""
    from ._codec import encode_key

    if report.applied or not report.removed:
        return
    report.entries_after = report.entries_before - len(report.removed)
    if legacy_sizes is not None:
        gone = sum(legacy_sizes.get(key, 0) for key in report.removed)
    else:
        gone = 0
        for key in report.removed:
            try:
                gone += os.lstat(os.path.join(store.paths.entries, encode_key(key))).st_size
            except OSError:  # removed meanwhile: it no longer counts
                pass
    report.bytes_after = max(0, report.bytes_before - gone)


def cmd_maintain(args: argparse.Namespace) -> int:
    """``sessionsd maintain PATH``: prune, cap and keep a disk budget
    (``--mode enforce``) or report what would go; exit status 2 for a bad
    or missing limit."""
    from ._documents import encode_document

    try:
        settings = Maintenance(
            mode=args.mode,
            prune_after=args.prune_after,
            max_entries=args.max_entries,
            max_disk_bytes=args.max_disk_bytes,
            archive_transcripts=not args.no_archive,
        )
    except ValueError as exc:  # a bad limit: a usage error
        print(f"sessionsd maintain: {exc}", file=sys.stderr)
        return 2
    if not settings.active:
        print("sessionsd maintain: give --prune-after, --max-entries or --max-disk-bytes",
              file=sys.stderr)
        return 2
    # warn mode only reports, as in the library; here it is a dry run, so
    # the store records no sweep and the library logs no warning for it.
    dry_run = args.dry_run or settings.mode == "warn"
    if is_url(args.path):
        with _open_store(args.path, maintenance=settings) as pg_store:
            # The backend's report of a dry run already gives the figures after.
            report = pg_store.maintain(settings, dry_run=dry_run)
        return _maintain_output(args, settings, report)
    # maintenance= makes a legacy store measure its entries for the budget.
    with SessionStore(_store_path(args.path), maintenance=settings) as store:
        legacy_sizes = None
        if store.mode == "legacy":
            legacy_sizes = {key: len(encode_document(key, entry)) for key, entry in store.load().items()}
        report = store.maintain(settings, dry_run=dry_run)
        if legacy_sizes is not None and not report.bytes_before:
            # The library measures legacy entries only when a budget is set.
            report.bytes_before = sum(legacy_sizes.values())
            report.bytes_after = report.bytes_before if not report.applied else sum(
                size for key, size in legacy_sizes.items() if key not in set(report.removed))
        _project_after(store, report, legacy_sizes)
    return _maintain_output(args, settings, report)


def _maintain_output(args: argparse.Namespace, settings: Maintenance, report: MaintenanceReport) -> int:
    """What ``maintain`` prints for *report*; its exit status (0)."""
    verb = "removed" if report.applied else "would remove"
    lines = [f"{verb} {len(report.removed)} session(s): {report.describe()}"]
    for label, keys in (("stale", report.pruned), ("over cap", report.evicted),
                        ("over budget", report.over_budget)):
        lines += [f"{verb} ({label}): {_printable(key)}" for key in keys]
    lines += [f"archived transcript: {path}" for path in report.archived]
    _emit(args, report.as_dict(), "\n".join(lines))
    if settings.mode == "warn" and report.removed and not args.dry_run:
        print("sessionsd maintain: warn mode (the default) changes nothing; --mode enforce removes",
              file=sys.stderr)
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    """``sessionsd copy SRC DST``: copy every session of SRC into DST (see
    :mod:`sessionsd.copying` for the rules), with a progress bar on a
    terminal and one summary line; exit status 1 when the copy failed or
    SRC changed while it ran."""
    from .copying import copy_store

    progress = Progress("copying", unit="items")
    try:
        result = copy_store(args.source, args.destination, resume=args.resume, replace=args.replace,
                            batch_size=args.batch_size, progress=progress,
                            connect_timeout=CONNECT_TIMEOUT)
    except ImportError as exc:  # a URL, and no psycopg
        raise CommandError(str(exc)) from None
    except ValueError as exc:
        if isinstance(exc, SessionsdError):
            raise
        raise CommandError(f"bad store URL: {exc}") from None
    finally:
        progress.close()
    _emit(args, result.as_dict(), result.summary())
    if result.source_changed:
        print(f"sessionsd copy: the source changed while it was copied: {args.destination} holds it as "
              "of the start of the copy; copy again with --replace once nothing writes the source",
              file=sys.stderr)
        return 1
    return 0


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
