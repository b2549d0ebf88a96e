"""The PostgreSQL backend: :class:`PostgresBackend`, one namespace of a
database as a :class:`~sessionsd._backend.Backend`.

The public store is :class:`sessionsd.postgres.PostgresStore` (the store
façade over this backend); the tables are :mod:`sessionsd._pg_schema`'s, the
connections :mod:`sessionsd._pg_connection`'s.  Keys arrive normalised and
entries as dicts (the façade checked them); this module encodes entries,
writes and reads rows, keeps the load cache and says what a server holds
(:func:`probe`).  Maintenance and the consistency check (``verify``) are the
mixin :class:`~sessionsd._pg_maintenance.PgMaintenance`'s.

How the guarantees are kept:

* every write locks its namespace's row in ``sessionsd_namespaces`` first
  (single-entry writes in the same statement), so the writers of a namespace
  commit one at a time and a read-modify-write (``update_one``, ``take``,
  ``mutate``) sees every earlier commit: no update is lost, from any number
  of processes and machines;
* multi-entry commits (``put_many``, ``mutate``, maintenance) are one
  transaction: no reader sees half of one, and a client killed
  mid-transaction commits nothing;
* every listing (``load``, ``keys``, ``summary``, ``recent``) is one
  statement, hence one snapshot; ``count`` reads the namespace row's exact
  counter;
* ``load``'s per-process cache is keyed by the namespace's version row, which
  every commit bumps, and is checked against the database on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import psycopg

from ._backend import Normalizer
from ._codec import copy_json, same_json
from ._pg_connection import Conn, Connections, redact_url, split_url
from ._pg_maintenance import _RECOUNT, PgMaintenance
from ._pg_rows import LoadCache, NsRow, Row, decode, encode, key_bytes, key_text, summary_of
from ._pg_schema import SCHEMA_VERSION, current_version, ensure_schema
from ._types import Entries, Entry
from .errors import SchemaVersionError, StoreConnectionError
from .maintenance import Maintenance, MaintenanceReport

__all__ = ["PostgresBackend", "POSTGRES", "COPY_MIN_ROWS", "Probe", "probe"]

#: The backend's :attr:`~PostgresBackend.mode`.
POSTGRES = "postgres"

T = TypeVar("T")

_PUT = "SELECT * FROM sessionsd_put(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_UPSERT = """
INSERT INTO sessionsd_entries (namespace, key, entry, updated_at, sort_at, last_channel, last_to, summary, size)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (namespace, key) DO UPDATE SET entry = EXCLUDED.entry, updated_at = EXCLUDED.updated_at,
    sort_at = EXCLUDED.sort_at, last_channel = EXCLUDED.last_channel, last_to = EXCLUDED.last_to,
    summary = EXCLUDED.summary, size = EXCLUDED.size
"""
_COPY_IN = ("COPY sessionsd_entries (namespace, key, entry, updated_at, sort_at, last_channel, last_to, "
            "summary, size) FROM STDIN")
#: The fewest new keys ``put_many`` writes with ``COPY`` rather than upserts.
COPY_MIN_ROWS = 32
_ADJUST = """
UPDATE sessionsd_namespaces SET version = version + 1, entries = entries + %s, bytes = bytes + %s
WHERE namespace = %s RETURNING id, version, entries, bytes, last_sweep
"""
# After the namespace lock (its own statement, so this one's snapshot has
# every earlier commit): the entry goes, the counters follow, one statement.
_TAKE = """
WITH gone AS (DELETE FROM sessionsd_entries WHERE namespace = %s AND key = %s RETURNING entry, size)
UPDATE sessionsd_namespaces n SET version = n.version + 1, entries = n.entries - 1, bytes = n.bytes - gone.size
FROM gone WHERE n.namespace = %s
RETURNING gone.entry, n.id, n.version
"""


class PostgresBackend(PgMaintenance):
    """One namespace of a PostgreSQL database, as a store backend (see
    :mod:`sessionsd._backend` for the contract, the module docstring for
    how it is kept).  The options are
    :class:`~sessionsd.postgres.PostgresStore`'s."""

    def __init__(self, url: str, *, namespace: str | None = None, cache: bool = True,
                 maintenance: Maintenance | None = None, lock_timeout: float = 30.0,
                 connect_timeout: float = 10.0, pool_min_size: int = 1, pool_max_size: int = 4) -> None:
        conninfo, self.namespace = split_url(url, namespace)
        #: The URL without its password (and with the namespace parameter, if it had one).
        self.url = redact_url(url if namespace is None else conninfo)
        self._location = f"{redact_url(conninfo)} namespace={self.namespace!r}"
        self.maintenance = maintenance
        #: The report of the last maintenance sweep.
        self.last_maintenance: MaintenanceReport | None = None
        self._last_warn = 0
        self._cache = LoadCache.shared(conninfo, self.namespace) if cache else None
        self._db = Connections(conninfo, self.url, self.namespace, lock_timeout=lock_timeout,
                               connect_timeout=connect_timeout, min_size=pool_min_size,
                               max_size=pool_max_size)
        try:
            found = self._db.run("open", _open_schema)
        except BaseException:
            self._db.close()
            raise
        if found > SCHEMA_VERSION:
            self._db.close()
            raise SchemaVersionError(
                f"the sessionsd schema of {self.url} is version {found}, newer than this sessionsd "
                f"supports ({SCHEMA_VERSION}): upgrade sessionsd", self.url, found, SCHEMA_VERSION)

    @property
    def mode(self) -> str:
        """``"postgres"``."""
        return POSTGRES

    @property
    def location(self) -> str:
        """The URL without its password (nor its namespace parameter), then
        ``namespace='…'``."""
        return self._location

    @property
    def lock_timeout(self) -> float:
        """Seconds a write waits for the namespace's lock."""
        return self._db.lock_timeout

    @property
    def connect_timeout(self) -> float:
        """Seconds a call waits for a connection."""
        return self._db.connect_timeout

    def close(self) -> None:
        """Close the connection pool (in a forked child: leave the parent's alone)."""
        self._db.close()

    # -- locking and the cache ------------------------------------------------------------

    def _lock(self, conn: Conn) -> NsRow:
        """Lock this namespace's row (creating it) for the transaction."""
        row = conn.execute("SELECT * FROM sessionsd_lock(%s)", (self.namespace,)).fetchone()
        assert row is not None
        return NsRow(*row)

    def _note_commit(self, before: tuple[int, int] | None, after: tuple[int, int] | None,
                     changes: Mapping[str, str | None]) -> None:
        """Keep the load cache current across this process's own commit."""
        if self._cache is None:
            return
        if self._db.nested():
            self._cache.clear()  # the outer transaction may yet roll back
        elif before is not None and after is not None and after[1] == before[1] + 1:
            self._cache.apply(before, after, changes)

    # -- single-entry reads ------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The entry of *key*, or None: one primary-key lookup, never cached."""
        def body(conn: Conn) -> Any:
            return conn.execute("SELECT entry FROM sessionsd_entries WHERE namespace = %s AND key = %s",
                                (self.namespace, key_bytes(key))).fetchone()

        row = self._db.run("get", body)
        return None if row is None else decode(row[0])

    def updated_at(self, key: str) -> Any:
        """``entry["updatedAt"]`` exactly as stored, or None: the indexed
        columns, not the entry."""
        def body(conn: Conn) -> Any:
            return conn.execute(
                "SELECT updated_at, summary FROM sessionsd_entries WHERE namespace = %s AND key = %s",
                (self.namespace, key_bytes(key))).fetchone()

        row = self._db.run("updated_at", body)
        if row is None:
            return None
        if row[1] is not None:
            return decode(row[1])["updatedAt"]
        return row[0]

    def contains(self, key: str) -> bool:
        """Whether *key* has an entry."""
        def body(conn: Conn) -> Any:
            return conn.execute("SELECT 1 FROM sessionsd_entries WHERE namespace = %s AND key = %s",
                                (self.namespace, key_bytes(key))).fetchone()

        return self._db.run("contains", body) is not None

    # -- single-entry writes -----------------------------------------------------------

    def _put_row(self, conn: Conn, key: str, row: Row) -> NsRow:
        result = conn.execute(_PUT, (self.namespace, key_bytes(key), row.text, row.updated_at, row.sort_at,
                                     row.last_channel, row.last_to, row.summary, row.size)).fetchone()
        assert result is not None
        return NsRow(*result)

    def put(self, key: str, entry: Entry) -> None:
        """Create or replace the entry of *key*: one statement (lock, write,
        version bump), one round trip."""
        self._put(key, encode(key, entry), "put")

    def _put(self, key: str, row: Row, operation: str) -> None:
        ns = self._db.run(operation, lambda conn: self._put_row(conn, key, row), write=True)
        self._note_commit((ns.id, ns.version - 1), (ns.id, ns.version), {key: row.text})
        self._after_write(frozenset({key}), ns)

    def update_one(self, key: str, fn: Callable[[Entry | None], Entry | None],
                   create: bool) -> Entry | None:
        """Read-modify-write *key* in one transaction under the namespace
        lock; calls *fn* makes on this backend from this thread join it."""
        raw = key_bytes(key)
        outcome: list[Any] = []

        def body(conn: Conn) -> Entry | None:
            ns = self._lock(conn)
            found = conn.execute("SELECT entry FROM sessionsd_entries WHERE namespace = %s AND key = %s",
                                 (self.namespace, raw)).fetchone()
            current: Entry | None = None if found is None else decode(found[0])
            if current is None and not create:
                return None
            new = fn(None if current is None else copy_json(current))
            if new is None:
                return current
            row = encode(key, new)
            after = self._put_row(conn, key, row)
            outcome.append((ns, after, row.text))
            return new

        # The public names of the calls that come here, for a lost connection's message.
        result = self._db.transaction("update_entry" if create else "patch", body)
        if outcome:
            before, after, text = outcome[0]
            self._note_commit((before.id, before.version), (after.id, after.version), {key: text})
            self._after_write(frozenset({key}), after)
        return result

    def delete(self, key: str) -> bool:
        """Remove *key*'s entry (one statement); whether there was one."""
        def body(conn: Conn) -> tuple[bool, int | None, int | None]:
            row = conn.execute("SELECT * FROM sessionsd_delete(%s, %s)",
                               (self.namespace, key_bytes(key))).fetchone()
            assert row is not None
            return bool(row[0]), row[1], row[2]

        deleted, ns_id, version = self._db.run("delete", body, write=True)
        if deleted and ns_id is not None and version is not None:
            self._note_commit((ns_id, version - 1), (ns_id, version), {key: None})
        return deleted

    def take(self, key: str) -> Entry | None:
        """Remove *key*'s entry and return it, in one transaction under the
        namespace lock (None when there is none: nothing is written)."""
        def body(conn: Conn) -> Any:
            locked = conn.execute("SELECT id FROM sessionsd_namespaces WHERE namespace = %s FOR NO KEY UPDATE",
                                  (self.namespace,)).fetchone()
            if locked is None:
                return None  # no namespace row: nothing was ever written here
            return conn.execute(_TAKE, (self.namespace, key_bytes(key), self.namespace)).fetchone()

        row = self._db.transaction("take", body)
        if row is None:
            return None
        ns_id, version = int(row[1]), int(row[2])
        self._note_commit((ns_id, version - 1), (ns_id, version), {key: None})
        return decode(row[0])  # type: ignore[no-any-return]

    # -- whole-store writes ---------------------------------------------------------------

    def put_many(self, entries: Entries) -> None:
        """Create or replace every entry of *entries* in one transaction:
        the namespace lock, the sizes of the entries replaced, the writes,
        the counters.  Nothing else is read.

        The keys not yet in the namespace are written with one ``COPY``
        when there are at least :data:`COPY_MIN_ROWS` of them (a bulk load,
        as ``sessionsd copy`` makes): under the namespace lock no other
        writer can add them meanwhile, so no conflict is possible.  The keys
        replaced, and small batches, are upserts."""
        rows = {key: encode(key, entry) for key, entry in entries.items()}  # before any round trip
        if not rows:
            return
        if len(rows) == 1:
            [(key, row)] = rows.items()
            self._put(key, row, "put_many")
            return
        holder: list[tuple[NsRow, NsRow]] = []

        def body(conn: Conn) -> None:
            ns = self._lock(conn)
            old = self._sizes(conn, ns, rows) if ns.entries else {}
            fresh = {key: row for key, row in rows.items() if key not in old}
            if len(fresh) >= COPY_MIN_ROWS:
                self._copy_in(conn, fresh)
                self._upsert(conn, {key: row for key, row in rows.items() if key in old})
            else:
                self._upsert(conn, rows)
            grown = sum(row.size for row in rows.values()) - sum(old.values())
            after = conn.execute(_ADJUST, (len(fresh), grown, self.namespace)).fetchone()
            assert after is not None
            holder.append((ns, NsRow(*after)))

        self._db.transaction("put_many", body)
        before, after = holder[-1]
        self._note_commit((before.id, before.version), (after.id, after.version),
                          {key: row.text for key, row in rows.items()})
        self._after_write(frozenset(rows), after)

    def _sizes(self, conn: Conn, ns: NsRow, rows: Mapping[str, Row]) -> dict[str, int]:
        """Under the lock: ``{key: size}`` of the keys of *rows* the
        namespace holds.  One range scan of the primary key between the
        smallest and the largest key (nearly free when the keys are new and
        sorted after what is there, as a copy writes them); when that range
        holds many other keys, one lookup per key instead."""
        raw = sorted(key_bytes(key) for key in rows)
        limit = 2 * len(raw) + 16
        found = conn.execute("SELECT key, size FROM sessionsd_entries WHERE namespace = %s "
                             "AND key >= %s AND key <= %s ORDER BY key LIMIT %s",
                             (self.namespace, raw[0], raw[-1], limit)).fetchall()
        if len(found) >= limit:
            found = conn.execute("SELECT key, size FROM sessionsd_entries WHERE namespace = %s "
                                 "AND key = ANY(%s)", (self.namespace, raw)).fetchall()
        sizes = {key_text(row[0]): int(row[1]) for row in found}
        return {key: size for key, size in sizes.items() if key in rows}

    def _copy_in(self, conn: Conn, rows: Mapping[str, Row]) -> None:
        """``COPY`` *rows* (keys not in the namespace: the caller holds its
        lock and checked) into ``sessionsd_entries``."""
        with conn.cursor() as cur, cur.copy(_COPY_IN) as copy:
            for key, row in rows.items():
                copy.write_row((self.namespace, key_bytes(key), row.text, row.updated_at, row.sort_at,
                                row.last_channel, row.last_to, row.summary, row.size))

    def _upsert(self, conn: Conn, rows: Mapping[str, Row]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(_UPSERT, [(self.namespace, key_bytes(key), row.text, row.updated_at,
                                           row.sort_at, row.last_channel, row.last_to, row.summary, row.size)
                                          for key, row in rows.items()])

    def mutate(self, fn: Callable[[Entries], T], normalize: Normalizer) -> T:
        """Run *fn* on a private copy of every entry under the namespace
        lock, pass what it left through *normalize*, then commit what
        changed (compared by value) in the same transaction."""
        holder: list[Any] = []

        def body(conn: Conn) -> T:
            ns = self._lock(conn)
            rows = conn.execute("SELECT key, entry FROM sessionsd_entries WHERE namespace = %s",
                                (self.namespace,)).fetchall()
            before: Entries = {key_text(row[0]): decode(row[1]) for row in rows}
            work = {key: copy_json(entry) for key, entry in before.items()}
            result = fn(work)
            after = normalize(work)
            report: MaintenanceReport | None = None
            removed: Entries = {}
            settings = self.maintenance
            if settings is not None and settings.active:
                report, removed = self._apply_to_mapping(after, settings)
            changes = self._commit_diff(conn, before, after)
            holder.append((ns, changes, report, removed, settings))
            return result

        result = self._db.transaction("mutate", body)
        ns, changes, report, removed, settings = holder[-1]
        if changes is not None:
            diff, after_ns = changes
            self._note_commit((ns.id, ns.version), (after_ns.id, after_ns.version), diff)
        if report is not None:
            self.last_maintenance = report
            if removed:
                self._finish(settings, removed)
        return result

    def _commit_diff(self, conn: Conn, before: Mapping[str, Entry], after: Mapping[str, Entry]
                     ) -> tuple[dict[str, str | None], NsRow] | None:
        """Under the lock: write what differs, by value, between *before*
        and *after* (only changed entries are encoded); None when nothing
        does."""
        upserts = {key: encode(key, entry) for key, entry in after.items()
                   if not (key in before and same_json(before[key], entry))}
        gone = [key for key in before if key not in after]
        if not upserts and not gone:
            return None
        diff: dict[str, str | None] = {key: row.text for key, row in upserts.items()}
        if gone:
            conn.execute("DELETE FROM sessionsd_entries WHERE namespace = %s AND key = ANY(%s)",
                         (self.namespace, [key_bytes(key) for key in gone]))
            diff.update(dict.fromkeys(gone))
        self._upsert(conn, upserts)
        counted = conn.execute(_RECOUNT, (self.namespace,)).fetchone()
        assert counted is not None
        return diff, NsRow(*counted)

    # -- whole-store reads ---------------------------------------------------------------

    def load(self) -> Entries:
        """Every entry, from one statement (one snapshot).  With the cache
        on, the namespace's version is read first (one indexed row); when it
        is the cached view's, that view is the answer."""
        cache = self._cache if not self._db.nested() else None
        if cache is not None and cache.token is not None:
            current = self._db.run("load", lambda conn: conn.execute(
                "SELECT id, version FROM sessionsd_namespaces WHERE namespace = %s",
                (self.namespace,)).fetchone())
            token = None if current is None else (int(current[0]), int(current[1]))
            with cache.mutex:
                if token is not None and cache.token == token and cache.entries is not None:
                    return {key: copy_json(entry) for key, entry in cache.entries.items()}

        rows = self._db.run("load", lambda conn: conn.execute(
            "SELECT n.id, n.version, e.key, e.entry FROM sessionsd_namespaces n "
            "LEFT JOIN sessionsd_entries e ON e.namespace = n.namespace WHERE n.namespace = %s",
            (self.namespace,)).fetchall())
        entries: Entries = {key_text(row[2]): decode(row[3]) for row in rows if row[2] is not None}
        if cache is not None and rows:
            token = (int(rows[0][0]), int(rows[0][1]))
            with cache.mutex:
                cache.token = token
                cache.entries = {key: copy_json(entry) for key, entry in entries.items()}
        return entries

    def keys(self) -> list[str]:
        """Every key (in code point order, the primary key's)."""
        rows = self._db.run("keys", lambda conn: conn.execute(
            "SELECT key FROM sessionsd_entries WHERE namespace = %s ORDER BY key",
            (self.namespace,)).fetchall())
        return [key_text(row[0]) for row in rows]

    def count(self) -> int:
        """The number of sessions: the namespace row's exact counter."""
        row = self._db.run("len", lambda conn: conn.execute(
            "SELECT entries FROM sessionsd_namespaces WHERE namespace = %s", (self.namespace,)).fetchone())
        return 0 if row is None else int(row[0])

    def stats(self) -> NsRow | None:
        """The namespace row (id, version, entries, bytes, last_sweep), or
        None when nothing was ever written to the namespace.  ``(id,
        version)`` changes with every commit: a copy compares it before and
        after to tell whether its source changed."""
        row = self._db.run("stats", lambda conn: conn.execute(
            "SELECT id, version, entries, bytes, last_sweep FROM sessionsd_namespaces WHERE namespace = %s",
            (self.namespace,)).fetchone())
        return None if row is None else NsRow(*row)

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{key: {"lastChannel", "lastTo", "updatedAt"}}`` from the summary
        columns (no entry is read)."""
        rows = self._db.run("summary", lambda conn: conn.execute(
            "SELECT key, updated_at, last_channel, last_to, summary FROM sessionsd_entries "
            "WHERE namespace = %s ORDER BY key", (self.namespace,)).fetchall())
        return {key_text(row[0]): summary_of(row[1], row[2], row[3], row[4]) for row in rows}

    def recent(self, limit: int, offset: int) -> list[tuple[str, dict[str, Any]]]:
        """The page of the recency order: one scan of the ``(namespace,
        sort_at DESC, key)`` index."""
        rows = self._db.run("recent", lambda conn: conn.execute(
            "SELECT key, updated_at, last_channel, last_to, summary FROM sessionsd_entries "
            "WHERE namespace = %s ORDER BY sort_at DESC, key LIMIT %s OFFSET %s",
            (self.namespace, limit, offset)).fetchall())
        return [(key_text(row[0]), summary_of(row[1], row[2], row[3], row[4])) for row in rows]


class Probe(NamedTuple):
    """What :func:`probe` found: the store URL (without password), its
    namespace, the database's sessionsd schema version (0: none) and
    whether the namespace has a row (anything was ever written there)."""

    url: str
    namespace: str
    schema_version: int
    exists: bool


def probe(url: str, *, connect_timeout: float = 10.0) -> Probe:
    """Look at the store *url* names without creating anything (opening a
    store creates the schema): one connection, one or two queries.

    Raises :class:`~sessionsd.errors.StoreConnectionError` (one line, no
    password) when the server cannot be reached or refuses the
    connection, ValueError for a bad namespace parameter."""
    conninfo, namespace = split_url(url, None)
    shown = redact_url(url)
    try:
        with psycopg.connect(conninfo, autocommit=True,
                             connect_timeout=max(1, int(connect_timeout + 0.5))) as conn:
            version = current_version(conn)
            exists = version > 0 and conn.execute(
                "SELECT 1 FROM sessionsd_namespaces WHERE namespace = %s", (namespace,)).fetchone() is not None
    except psycopg.Error as exc:
        text = str(exc).strip()
        detail = " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__
        raise StoreConnectionError(f"cannot connect to PostgreSQL store {shown}: {detail}", shown,
                                   False) from exc
    return Probe(shown, namespace, version, exists)


def _open_schema(conn: Conn) -> int:
    from . import __version__

    return ensure_schema(conn, f"sessionsd {__version__}")
