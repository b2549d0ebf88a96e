"""Maintenance and the consistency check of a PostgreSQL namespace:
:class:`PgMaintenance`, a mixin of :class:`sessionsd._pg_backend.PostgresBackend`
split out along that seam.  It holds the sweeps (prune, entry cap, disk
budget: a full ``maintain``, the one a write makes due, the one ``mutate``
applies to the mapping it commits), the ``on_removed`` callbacks, and
``verify`` (what ``sessionsd check`` verifies of a namespace: every row
against its entry, the namespace counters against a recount).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._layout import now_ms
from ._pg_connection import Conn, Connections
from ._pg_rows import LoadCache, NsRow, decode, encode, key_bytes, key_text, sort_at
from ._types import Entries, Entry
from .maintenance import Maintenance, MaintenanceReport, plan_removals, sweep_due

# The backend's logger: these records kept their name when the code moved here.
_log = logging.getLogger("sessionsd._pg_backend")

#: Sets a namespace's counters to a recount of its rows (and bumps its
#: version): ``verify(fix=True)`` here, ``mutate``'s commit in the backend.
_RECOUNT = """
UPDATE sessionsd_namespaces n SET version = n.version + 1,
    entries = (SELECT count(*) FROM sessionsd_entries e WHERE e.namespace = n.namespace),
    bytes = (SELECT coalesce(sum(e.size), 0) FROM sessionsd_entries e WHERE e.namespace = n.namespace)
WHERE n.namespace = %s
RETURNING n.id, n.version, n.entries, n.bytes, n.last_sweep
"""


class PgMaintenance:
    """The maintenance side of :class:`~sessionsd._pg_backend.PostgresBackend`."""

    # What the backend provides (declared for the type checker).
    namespace: str
    maintenance: Maintenance | None
    last_maintenance: MaintenanceReport | None
    _last_warn: int
    _location: str
    _cache: LoadCache | None
    _db: Connections

    if TYPE_CHECKING:
        def _lock(self, conn: Conn) -> NsRow: ...
        def _note_commit(self, before: tuple[int, int] | None, after: tuple[int, int] | None,
                         changes: Mapping[str, str | None]) -> None: ...

    # -- maintenance ---------------------------------------------------------------------

    def maintain(self, settings: Maintenance, dry_run: bool) -> MaintenanceReport:
        """A full maintenance sweep with *settings*, as one transaction.  The
        disk budget counts the bytes of the stored JSON."""
        return self._sweep(settings, protect=frozenset(), full=True, dry_run=dry_run)

    def verify(self, fix: bool = False) -> tuple[list[str], list[str]]:
        """What ``sessionsd check`` verifies of a namespace, in one
        transaction under its lock: every row's entry is a JSON object whose
        size and summary columns are what encoding it gives, and the
        namespace row's counters equal a recount.  Returns ``(problems,
        fixed)``; with *fix*, wrong counters are set to the recount (and the
        version bumped) -- rows are only reported."""
        holder: list[tuple[list[str], list[str]]] = []

        def body(conn: Conn) -> None:
            problems: list[str] = []
            fixed: list[str] = []
            ns = conn.execute("SELECT id, version, entries, bytes, last_sweep FROM sessionsd_namespaces "
                              "WHERE namespace = %s FOR NO KEY UPDATE", (self.namespace,)).fetchone()
            count = size_sum = 0
            with conn.cursor() as cur:
                cur.execute("SELECT key, entry, updated_at, sort_at, last_channel, last_to, summary, size "
                            "FROM sessionsd_entries WHERE namespace = %s ORDER BY key", (self.namespace,))
                for raw, text, *columns in cur:
                    count += 1
                    size_sum += int(columns[-1])
                    key = key_text(raw)
                    problem = _row_problem(key, text, tuple(columns))
                    if problem is not None:
                        problems.append(problem)
            if ns is None:
                if count:
                    problems.append(f"{count} entries but no namespace row")
                holder.append((problems, fixed))
                return
            stored = NsRow(*ns)
            if (stored.entries, stored.bytes) != (count, size_sum):
                what = (f"namespace counters say {stored.entries} entries, {stored.bytes} bytes; "
                        f"a recount finds {count} entries, {size_sum} bytes")
                if fix:
                    conn.execute(_RECOUNT, (self.namespace,))
                    fixed.append(what + " (counters set to the recount)")
                else:
                    problems.append(what)
            holder.append((problems, fixed))

        self._db.transaction("check", body)
        problems, fixed = holder[-1]
        if fixed and self._cache is not None:
            self._cache.clear()
        return problems, fixed

    def _after_write(self, keys: frozenset[str], ns: NsRow) -> None:
        """After a committed write of *keys*: O(1) unless a sweep is due
        (the counters came back with the write).  The keys just written are
        never removed by it."""
        settings = self.maintenance
        if settings is None or not settings.active or self._db.nested():
            return
        now = now_ms()
        full = sweep_due(settings, count=ns.entries, size=ns.bytes, last_sweep=ns.last_sweep,
                         last_warn=self._last_warn, now=now)
        if full is not None:
            self._sweep(settings, protect=keys, full=full, now=now)

    def _oldest(self, conn: Conn, ns: NsRow, settings: Maintenance,
                protect: frozenset[str]) -> list[tuple[float, str, int]]:
        """The oldest sessions, enough of them for the cap and the budget
        (every session newer than these is left out)."""
        need_count = max(0, ns.entries - settings.max_entries) if settings.max_entries is not None else 0
        need_bytes = max(0, ns.bytes - settings.max_disk_bytes) if settings.max_disk_bytes is not None else 0
        limit = need_count + len(protect) + 16
        while True:
            rows = conn.execute(
                "SELECT sort_at, key, size FROM sessionsd_entries WHERE namespace = %s "
                "ORDER BY sort_at, key LIMIT %s", (self.namespace, limit)).fetchall()
            items = [(float(row[0]), key_text(row[1]), int(row[2])) for row in rows]
            usable = [item for item in items if item[1] not in protect]
            if len(rows) < limit or (len(usable) >= need_count and sum(item[2] for item in usable) >= need_bytes):
                return items
            limit *= 4

    def _sweep(self, settings: Maintenance, *, protect: frozenset[str], full: bool,
               dry_run: bool = False, now: int | None = None) -> MaintenanceReport:
        """One sweep in one transaction: plan with
        :func:`~sessionsd.maintenance.plan_removals`, then (enforce, not a dry
        run) delete what it chose."""
        when = now_ms() if now is None else now
        enforce = settings.mode == "enforce" and not dry_run
        holder: list[Any] = []

        def body(conn: Conn) -> MaintenanceReport:
            ns = self._lock(conn)
            if full:
                rows = conn.execute("SELECT sort_at, key, size FROM sessionsd_entries WHERE namespace = %s",
                                    (self.namespace,)).fetchall()
                items = [(float(row[0]), key_text(row[1]), int(row[2])) for row in rows]
            else:
                items = self._oldest(conn, ns, settings, protect)
            pruned, evicted, over_budget = plan_removals(items, ns.entries, ns.bytes, settings, when,
                                                         protect=protect, prune=full)
            report = MaintenanceReport(settings.mode, entries_before=ns.entries, bytes_before=ns.bytes)
            report.pruned, report.evicted, report.over_budget = pruned, evicted, over_budget
            removed = report.removed
            sweep_time = when if full and not dry_run else None
            if removed and enforce:
                gone = conn.execute(
                    "DELETE FROM sessionsd_entries WHERE namespace = %s AND key = ANY(%s) RETURNING key, entry, size",
                    (self.namespace, [key_bytes(key) for key in removed])).fetchall()
                entries = {key_text(row[0]): decode(row[1]) for row in gone}
                freed = sum(int(row[2]) for row in gone)
                after = conn.execute(
                    "UPDATE sessionsd_namespaces SET version = version + 1, entries = entries - %s, "
                    "bytes = bytes - %s, last_sweep = coalesce(%s, last_sweep) WHERE namespace = %s "
                    "RETURNING id, version, entries, bytes, last_sweep",
                    (len(gone), freed, sweep_time, self.namespace)).fetchone()
                assert after is not None
                after_ns = NsRow(*after)
                report.applied = True
                report.entries_after = after_ns.entries
                report.bytes_after = after_ns.bytes
                holder.append((ns, after_ns, entries))
            else:
                if sweep_time is not None:
                    conn.execute("UPDATE sessionsd_namespaces SET last_sweep = %s WHERE namespace = %s",
                                 (sweep_time, self.namespace))
                sizes = {item[1]: item[2] for item in items}
                report.entries_after = max(0, ns.entries - len(removed))
                report.bytes_after = max(0, ns.bytes - sum(sizes.get(key, 0) for key in removed))
            return report

        report = self._db.transaction("maintain", body)
        if holder:
            before, after_ns, entries = holder[-1]
            self._note_commit((before.id, before.version), (after_ns.id, after_ns.version),
                              dict.fromkeys(entries))
            _log.info("session maintenance removed %d sessions from %s", len(entries), self._location)
            self._finish(settings, entries)
        elif settings.mode == "warn" and not dry_run:
            self._last_warn = when
            if report.removed:
                _log.warning("session maintenance (warn mode) would remove sessions from %s: %s",
                             self._location, report.describe())
        self.last_maintenance = report
        return report

    def _apply_to_mapping(self, entries: Entries, settings: Maintenance
                          ) -> tuple[MaintenanceReport, Entries]:
        """Maintenance on a whole mapping about to be committed (mutate): in
        enforce mode remove from it in place.  Returns the report and the
        removed ``{key: entry}``."""
        now = now_ms()
        want_size = settings.max_disk_bytes is not None
        items = [(sort_at(entry.get("updatedAt")), key, encode(key, entry).size if want_size else 0)
                 for key, entry in entries.items()]
        total = sum(item[2] for item in items)
        pruned, evicted, over_budget = plan_removals(items, len(entries), total, settings, now)
        report = MaintenanceReport(settings.mode, pruned=pruned, evicted=evicted, over_budget=over_budget,
                                   entries_before=len(entries), bytes_before=total)
        removed: Entries = {}
        gone = set(report.removed)
        if gone and settings.mode == "enforce":
            for key in report.removed:
                removed[key] = entries.pop(key)
            report.applied = True
        elif gone and settings.mode == "warn":
            _log.warning("session maintenance (warn mode) would remove sessions from %s: %s",
                         self._location, report.describe())
        report.entries_after = len(entries) - (0 if report.applied else len(gone))
        report.bytes_after = total - sum(item[2] for item in items if item[1] in gone)
        return report, removed

    def _finish(self, settings: Maintenance, entries: Mapping[str, Entry]) -> None:
        """After the commit: the ``on_removed`` callbacks (a failing one is
        logged, not raised: the removal is done)."""
        callback = settings.on_removed
        if callback is None:
            return
        for key, entry in entries.items():
            try:
                callback(key, entry)
            except Exception:  # noqa: BLE001 - a host bug must not fail the write
                _log.exception("session maintenance: on_removed callback failed for %r", key)


def _row_problem(key: str, text: str, columns: tuple[Any, ...]) -> str | None:
    """What is wrong with one stored row (None: nothing): its entry must
    parse as a JSON object, and its columns be what encoding it gives."""
    try:
        entry = decode(text)
    except ValueError as exc:
        return f"entry {key!r} is not valid JSON ({exc})"
    if not isinstance(entry, dict):
        return f"entry {key!r} is not a JSON object"
    try:
        row = encode(key, entry)
    except (ValueError, TypeError) as exc:
        return f"entry {key!r} cannot be re-encoded ({exc})"
    expected = (row.updated_at, row.sort_at, row.last_channel, row.last_to, row.summary)
    if len(text.encode("utf-8")) != columns[-1]:
        return f"entry {key!r}: size column {columns[-1]} but the entry is {len(text.encode('utf-8'))} bytes"
    if tuple(columns[:-1]) != expected:
        return f"entry {key!r}: its summary columns disagree with the entry"
    return None
