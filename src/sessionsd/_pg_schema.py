"""The PostgreSQL schema of :mod:`sessionsd.postgres`: created and upgraded by
the library, versioned.

``sessionsd_schema`` holds one row per applied schema version.  Opening a
store reads its highest version (one query); when it is older than
:data:`SCHEMA_VERSION`, the missing migrations run in one transaction under a
transaction-scoped advisory lock, so processes that open the first store of a
database at the same time apply each migration exactly once (the others wait
for the lock, then find the work done).

Tables (version 1):

``sessionsd_namespaces``
    One row per store (namespace): ``version`` is bumped by every commit
    that changes the namespace (the token of cached loads); ``entries`` and
    ``bytes`` are its session count and the bytes of its stored JSON (kept
    exact by every write, so maintenance's cap and budget checks are O(1));
    ``last_sweep`` is the time (ms) of the last full maintenance sweep;
    ``id`` tells a namespace from a dropped and re-created one of the same
    name.  The row is also the namespace's write lock: every write locks it
    first (``FOR NO KEY UPDATE``), so the writers of one namespace commit
    one at a time, as a directory store's do under its lock, and a
    read-modify-write sees every earlier commit.

``sessionsd_entries``
    One row per (namespace, key).  ``key`` is the normalised key's UTF-8
    bytes (``bytea``: keys may hold NUL, which ``text`` cannot; bytes order
    is code point order, the order of Python's ``sorted``).  ``entry`` is the
    entry as compact JSON text, exactly as sessionsd wrote it: ``jsonb``
    would refuse ``\\u0000`` in strings and turn ``1e300`` into an integer.
    ``updated_at`` is ``entry["updatedAt"]`` when it is a 64-bit integer;
    ``sort_at`` its listing order (a missing or non-numeric value is
    ``-Infinity``, the oldest); ``last_channel`` and ``last_to`` are
    ``lastChannel`` and ``lastTo`` when they are strings (or absent);
    ``summary`` holds the JSON of the three summary fields only when those
    columns cannot hold them exactly (a float ``updatedAt``, an object
    ``lastTo``...), and is NULL otherwise.  ``size`` is the byte length of
    ``entry``.  Indexes: the primary key (single-entry reads), ``(namespace,
    sort_at DESC, key)`` (``recent()``, maintenance's oldest-first), and
    ``(namespace, last_channel, last_to)``.

Functions: ``sessionsd_lock(namespace)`` locks (creating if needed) a
namespace row and returns it; ``sessionsd_put(...)`` and
``sessionsd_delete(namespace, key)`` are the single-entry writes -- lock,
write, keep the counters and bump the version -- in one statement (one round
trip).  Each statement in them runs on a fresh snapshot (READ COMMITTED), so
what they read after taking the lock includes every earlier commit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "current_version", "ensure_schema"]

#: The schema version this library writes and reads.
SCHEMA_VERSION = 1

#: Advisory lock key of schema migrations (any constant; "sessionsd" in hex-ish).
ADVISORY_LOCK_KEY = 0x5E55_10D5_0000_0001

_NAMESPACE_ROW = "n.id, n.version, n.entries, n.bytes, n.last_sweep"

_V1 = f"""
CREATE TABLE sessionsd_namespaces (
    namespace   text COLLATE "C" PRIMARY KEY,
    id          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    version     bigint NOT NULL DEFAULT 0,
    entries     bigint NOT NULL DEFAULT 0,
    bytes       bigint NOT NULL DEFAULT 0,
    last_sweep  bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

CREATE TABLE sessionsd_entries (
    namespace    text COLLATE "C" NOT NULL,
    key          bytea NOT NULL,
    entry        text NOT NULL,
    updated_at   bigint,
    sort_at      double precision NOT NULL,
    last_channel text,
    last_to      text,
    summary      text,
    size         integer NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX sessionsd_entries_recent ON sessionsd_entries (namespace, sort_at DESC, key);
CREATE INDEX sessionsd_entries_channel ON sessionsd_entries (namespace, last_channel, last_to);

CREATE FUNCTION sessionsd_lock(p_namespace text,
        OUT o_id bigint, OUT o_version bigint, OUT o_entries bigint, OUT o_bytes bigint,
        OUT o_last_sweep bigint)
    LANGUAGE plpgsql AS $$
BEGIN
    SELECT {_NAMESPACE_ROW} INTO o_id, o_version, o_entries, o_bytes, o_last_sweep
        FROM sessionsd_namespaces n WHERE n.namespace = p_namespace FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO sessionsd_namespaces (namespace) VALUES (p_namespace)
            ON CONFLICT (namespace) DO NOTHING;
        SELECT {_NAMESPACE_ROW} INTO o_id, o_version, o_entries, o_bytes, o_last_sweep
            FROM sessionsd_namespaces n WHERE n.namespace = p_namespace FOR NO KEY UPDATE;
    END IF;
END $$;

CREATE FUNCTION sessionsd_put(p_namespace text, p_key bytea, p_entry text, p_updated_at bigint,
        p_sort_at double precision, p_last_channel text, p_last_to text, p_summary text,
        p_size integer,
        OUT o_id bigint, OUT o_version bigint, OUT o_entries bigint, OUT o_bytes bigint,
        OUT o_last_sweep bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    old_size integer;
BEGIN
    PERFORM sessionsd_lock(p_namespace);
    SELECT e.size INTO old_size FROM sessionsd_entries e
        WHERE e.namespace = p_namespace AND e.key = p_key;
    IF FOUND THEN
        UPDATE sessionsd_entries e SET entry = p_entry, updated_at = p_updated_at, sort_at = p_sort_at,
                last_channel = p_last_channel, last_to = p_last_to, summary = p_summary, size = p_size
            WHERE e.namespace = p_namespace AND e.key = p_key;
    ELSE
        INSERT INTO sessionsd_entries (namespace, key, entry, updated_at, sort_at, last_channel,
                                       last_to, summary, size)
            VALUES (p_namespace, p_key, p_entry, p_updated_at, p_sort_at, p_last_channel, p_last_to,
                    p_summary, p_size);
    END IF;
    UPDATE sessionsd_namespaces n SET version = n.version + 1,
            entries = n.entries + (CASE WHEN old_size IS NULL THEN 1 ELSE 0 END),
            bytes = n.bytes + p_size - coalesce(old_size, 0)
        WHERE n.namespace = p_namespace
        RETURNING {_NAMESPACE_ROW} INTO o_id, o_version, o_entries, o_bytes, o_last_sweep;
END $$;

CREATE FUNCTION sessionsd_delete(p_namespace text, p_key bytea,
        OUT o_deleted boolean, OUT o_id bigint, OUT o_version bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    old_size integer;
BEGIN
    o_deleted := false;
    SELECT n.id, n.version INTO o_id, o_version
        FROM sessionsd_namespaces n WHERE n.namespace = p_namespace FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- no namespace row: nothing was ever written there
    END IF;
    DELETE FROM sessionsd_entries e WHERE e.namespace = p_namespace AND e.key = p_key
        RETURNING e.size INTO old_size;
    IF FOUND THEN
        o_deleted := true;
        UPDATE sessionsd_namespaces n SET version = n.version + 1, entries = n.entries - 1,
                bytes = n.bytes - old_size
            WHERE n.namespace = p_namespace RETURNING n.version INTO o_version;
    END IF;
END $$;
"""

#: (version, SQL) of every migration, in order.  A new schema version adds a
#: step here; steps already released are never edited.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1),)

_CREATE_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS sessionsd_schema (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    library     text NOT NULL
)
"""


def current_version(conn: Any) -> int:
    """The database's schema version (0: none), in one query.  *conn* is an
    autocommit ``psycopg.Connection``."""
    import psycopg

    try:
        row = conn.execute("SELECT max(version) FROM sessionsd_schema").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row is not None and row[0] is not None else 0


def ensure_schema(conn: Any, library: str) -> int:
    """Bring the database's schema up to :data:`SCHEMA_VERSION`; returns the
    version found in the database *after* (greater than ours when a newer
    sessionsd upgraded it: the caller decides).  Concurrent callers are
    serialised by an advisory lock; each migration commits with its version
    row, so a failed one leaves the previous version in place."""
    found = current_version(conn)
    if found >= SCHEMA_VERSION:
        return found
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute(_CREATE_SCHEMA_TABLE)
        row = conn.execute("SELECT coalesce(max(version), 0) FROM sessionsd_schema").fetchone()
        found = int(row[0]) if row is not None else 0
        for version, sql in MIGRATIONS:
            if version <= found:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO sessionsd_schema (version, library) VALUES (%s, %s)",
                         (version, library))
            found = version
    return found
