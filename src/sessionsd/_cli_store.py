"""The store commands of :mod:`sessionsd.cli`: ``info``, ``get``, ``ls``,
``check``, ``maintain`` and ``copy`` (each on a file store or, through a
``postgresql://`` URL, a PostgreSQL namespace), and the entry file name
tools ``encode``, ``decode`` and ``scan``.  Split out of
:mod:`sessionsd.cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from . import _codec, _json
from ._cli_common import CONNECT_TIMEOUT, CommandError, _emit, _open_store, _printable, _probe_url, _store_path
from ._cli_progress import Progress
from ._open import is_url
from .check import check
from .errors import SessionsdError
from .maintenance import Maintenance, MaintenanceReport
from .store import SessionStore

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
