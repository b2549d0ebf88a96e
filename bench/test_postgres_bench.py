"""PostgreSQL benchmarks: ``sessionsd.postgres.PostgresStore`` vs its floors.

Issue 15's targets, at 10k realistic sessions (``sessionsd.datagen``, the
same seed and the same probe entries as bench/test_store_bench.py), on a
server reached over a local Unix socket:

* ``updated_at``, ``get``, ``put``, ``patch``: the store (``postgres``) next
  to its floor (``postgres-floor``): the SQL the backend runs for the call,
  issued directly with psycopg on one open autocommit connection, with its
  parameters prepared in advance -- no pool, no key rules, no JSON encoding
  or decoding, no cache bookkeeping:

  - ``updated_at``: ``SELECT updated_at, summary FROM sessionsd_entries
    WHERE namespace = %s AND key = %s``;
  - ``get``: ``SELECT entry FROM sessionsd_entries WHERE ...`` (the text,
    not parsed);
  - ``put``: ``SELECT * FROM sessionsd_put(...)`` (one statement: lock,
    write, counters, version);
  - ``patch``: what ``patch`` must run, as one transaction: ``BEGIN``,
    ``SELECT * FROM sessionsd_lock(ns)``, ``SELECT entry ...``,
    ``SELECT * FROM sessionsd_put(...)``, ``COMMIT`` (a read-modify-write
    under the namespace lock has no single-statement form here: the entry
    is JSON text merged by the client).

  Target: store ÷ floor ≤ 1.3×.
* ``concurrent_writers``: 1, 2 and 4 client processes, each doing
  ``update_entry`` increments alternately on keys of its own and on one
  counter all of them share; a round is timed from the go signal to the last
  process's done.  The run checks the exact totals (no lost update).
* ``copy``: ``sessionsd.copy_store`` of the 10k sessions from a directory
  store into a new PostgreSQL namespace (``postgres``) vs one raw ``COPY``
  of the same rows (encoded in advance) into ``sessionsd_entries`` in one
  transaction (``postgres-floor``).  Target ≤ 1.5×.

The server: ``SESSIONSD_BENCH_POSTGRES_URL`` (``postgresql://...``, without
``namespace``; bench/run.sh starts a throwaway one with ci/postgres.sh when it
is not set).  Without it every benchmark here is skipped, loudly.  Each
benchmark works in namespaces of its own (``bench-<pid>-...``), removed at
the end.  ``SESSIONSD_BENCH_POSTGRES_SIZE`` overrides the 10k (development).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

import sessionsd
from sessionsd import _json, datagen

URL = os.environ.get("SESSIONSD_BENCH_POSTGRES_URL", "")
SIZE = int(os.environ.get("SESSIONSD_BENCH_POSTGRES_SIZE", "10000"))
QUICK = os.environ.get("SESSIONSD_BENCH_QUICK") == "1"
SEED = 11  # bench/test_store_bench.py's: the same sessions, the same probe entries
WRITERS = (1, 2, 4)
HOT_ROUNDS = 300 if QUICK else 1000
HOT_WARMUP = 10 if QUICK else 20
HERE = os.path.dirname(os.path.abspath(__file__))
SKIP_REASON = ("!! PostgreSQL benchmarks SKIPPED: SESSIONSD_BENCH_POSTGRES_URL is not set and no server was "
               "started (bash bench/run.sh starts one with ci/postgres.sh) !!")

if not URL:
    pytest.skip(SKIP_REASON, allow_module_level=True)

psycopg = pytest.importorskip("psycopg", reason="!! PostgreSQL benchmarks SKIPPED: psycopg is not installed !!")

from sessionsd._pg_connection import split_url  # noqa: E402
from sessionsd._pg_rows import encode, key_bytes  # noqa: E402
from sessionsd.postgres import PostgresStore  # noqa: E402

_PUT = "SELECT * FROM sessionsd_put(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_COPY_IN = ("COPY sessionsd_entries (namespace, key, entry, updated_at, sort_at, last_channel, last_to, "
            "summary, size) FROM STDIN")


def size_id(size: int) -> str:
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def store_url(namespace: str) -> str:
    return URL + ("&" if "?" in URL else "?") + "namespace=" + quote(namespace, safe="")


def conninfo() -> str:
    return split_url(URL, None)[0]


def row_args(namespace: str, key: str, entry: dict) -> tuple:
    row = encode(key, entry)
    return (namespace, key_bytes(key), row.text, row.updated_at, row.sort_at, row.last_channel, row.last_to,
            row.summary, row.size)


def drop_namespace(conn, namespace: str) -> None:
    conn.execute("DELETE FROM sessionsd_entries WHERE namespace = %s", (namespace,))
    conn.execute("DELETE FROM sessionsd_namespaces WHERE namespace = %s", (namespace,))


def typical_keys(data: dict[str, dict]) -> list[str]:
    """As bench/test_store_bench.py's ``_typical_keys``: keys of the first
    1,000 ordered by closeness to the median entry size."""
    head = list(data)[:1_000]
    sizes = {key: len(_json.dumps(data[key])) for key in head}
    median = sorted(sizes.values())[len(sizes) // 2]
    return sorted(head, key=lambda key: (abs(sizes[key] - median), key))


@dataclass
class PgWorld:
    data: dict[str, dict]
    namespace: str
    store: PostgresStore
    conn: object          # the floors' psycopg connection (autocommit)
    probe: str
    slots: list[str]
    root: Path
    directory: str        # the same sessions as a directory store (copy's source)

    def entry_bytes(self, key: str) -> int:
        return len(_json.dumps(self.data[key]))


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    data = datagen.generate_store(SIZE, seed=SEED)
    typical = typical_keys(data)
    namespace = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    try:
        conn = psycopg.connect(conninfo(), autocommit=True)
    except psycopg.Error as exc:
        pytest.skip(f"!! PostgreSQL benchmarks SKIPPED: cannot connect to {URL}: {exc} !!")
    store = PostgresStore(store_url(namespace))
    store.put_many(data)  # one commit (COPY): untimed
    conn.execute("VACUUM ANALYZE sessionsd_entries")
    root = tmp_path_factory.mktemp("pg-world")
    directory = root / "directory"
    directory.mkdir(mode=0o700)
    (directory / "sessions.json").write_bytes(_json.dumps(data))
    result = sessionsd.migrate(directory / "sessions.json", max_bytes=None)
    assert result.outcome == "migrated" and result.migrated_entries == SIZE
    world = PgWorld(data=data, namespace=namespace, store=store, conn=conn, probe=typical[0],
                    slots=typical[1:6], root=root, directory=str(directory / "sessions.json"))
    yield world
    store.close()
    drop_namespace(conn, namespace)
    conn.close()
    shutil.rmtree(root, ignore_errors=True)


def hot(benchmark, fn, rounds: int = HOT_ROUNDS):
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=HOT_WARMUP)


def note(record, backend: str, correct: bool, **extra) -> None:
    record(backend, SIZE, correct, entries="realistic", quick=QUICK, server="unix socket", **extra)


def group(benchmark, op: str) -> None:
    benchmark.group = f"{op} {size_id(SIZE)} (postgres)"


def _ids(value):
    return f"{size_id(SIZE)}-{value}"


# -- single-entry calls vs the same SQL ----------------------------------------------------------

@pytest.mark.parametrize("backend", ["postgres", "postgres-floor"], ids=_ids)
def test_updated_at(benchmark, record, pg, backend):
    group(benchmark, "updated_at")
    key, expected = pg.probe, pg.data[pg.probe]["updatedAt"]
    if backend == "postgres":
        correct = hot(benchmark, lambda: pg.store.updated_at(key)) == expected
    else:
        sql = "SELECT updated_at, summary FROM sessionsd_entries WHERE namespace = %s AND key = %s"
        args = (pg.namespace, key_bytes(key))
        row = hot(benchmark, lambda: pg.conn.execute(sql, args).fetchone())
        correct = row is not None and row[0] == expected and row[1] is None
    note(record, backend, correct, entry_bytes=pg.entry_bytes(key))


@pytest.mark.parametrize("backend", ["postgres", "postgres-floor"], ids=_ids)
def test_get(benchmark, record, pg, backend):
    group(benchmark, "get")
    key = pg.probe
    if backend == "postgres":
        correct = hot(benchmark, lambda: pg.store.get(key)) == pg.data[key]
    else:
        sql = "SELECT entry FROM sessionsd_entries WHERE namespace = %s AND key = %s"
        args = (pg.namespace, key_bytes(key))
        row = hot(benchmark, lambda: pg.conn.execute(sql, args).fetchone())
        correct = row is not None and _json.loads(row[0]) == pg.data[key]
    note(record, backend, correct, entry_bytes=pg.entry_bytes(key))


@pytest.mark.parametrize("backend", ["postgres", "postgres-floor"], ids=_ids)
def test_put(benchmark, record, pg, backend):
    """Replace one entry (each backend its own key of median size)."""
    group(benchmark, "put")
    key = pg.slots[0 if backend == "postgres" else 1]
    entry = {**pg.data[key], "updatedAt": 1_900_000_000_000}
    if backend == "postgres":
        hot(benchmark, lambda: pg.store.put(key, entry))
    else:
        args = row_args(pg.namespace, key, entry)
        hot(benchmark, lambda: pg.conn.execute(_PUT, args).fetchone())
    correct = pg.store.get(key) == entry
    note(record, backend, correct, durability="server: fsync off", entry_bytes=pg.entry_bytes(key))


@pytest.mark.parametrize("backend", ["postgres", "postgres-floor"], ids=_ids)
def test_patch(benchmark, record, pg, backend):
    """Read-modify-write of one field under the namespace lock."""
    group(benchmark, "patch")
    key = pg.slots[2 if backend == "postgres" else 3]
    counter = itertools.count(1)
    last: list[int] = []
    if backend == "postgres":
        def patch():
            value = next(counter)
            last.append(value)
            return pg.store.patch(key, {"inputTokens": value})

        returned = hot(benchmark, patch)
        expected = {**pg.data[key], "inputTokens": last[-1]}
        correct = returned == expected
    else:
        expected = {**pg.data[key], "inputTokens": -1}
        args = row_args(pg.namespace, key, expected)
        select = "SELECT entry FROM sessionsd_entries WHERE namespace = %s AND key = %s"
        select_args = (pg.namespace, key_bytes(key))
        conn = pg.conn

        def patch():
            with conn.transaction():
                conn.execute("SELECT * FROM sessionsd_lock(%s)", (pg.namespace,)).fetchone()
                found = conn.execute(select, select_args).fetchone()
                conn.execute(_PUT, args).fetchone()
            return found

        found = hot(benchmark, patch)
        correct = found is not None and _json.loads(found[0]) == expected
    correct = correct and pg.store.get(key) == expected
    note(record, backend, correct, durability="server: fsync off", entry_bytes=pg.entry_bytes(key))


# -- concurrent read-modify-write ----------------------------------------------------------------

def _worker(argv: list[str]) -> int:
    """One client process: ``python test_postgres_bench.py worker URL PREFIX
    SHARED_KEY COUNT OWN_KEYS``.  Opens the store, prints ``ready``, waits
    for ``go``, then COUNT times: increment ``inputTokens`` of its own key
    ``PREFIX<i % OWN_KEYS>``, then of SHARED_KEY (``update_entry`` each);
    prints ``done <seconds>``."""
    url, prefix, shared, count, own = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    store = PostgresStore(url)

    def increment(entry):
        entry = entry if entry is not None else {"updatedAt": 1_900_000_000_000, "inputTokens": 0}
        entry["inputTokens"] = entry.get("inputTokens", 0) + 1
        return entry

    store.get(shared)  # the pool's connection is open before the go
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    started = time.perf_counter()
    for i in range(count):
        store.update_entry(f"{prefix}{i % own}", increment)
        store.update_entry(shared, increment)
    elapsed = time.perf_counter() - started
    store.close()
    print(f"done {elapsed:.6f}", flush=True)
    return 0


@pytest.mark.parametrize("writers", WRITERS, ids=lambda n: f"{size_id(SIZE)}-postgres-{n}w")
def test_concurrent_writers(benchmark, record, pg, writers):
    """N processes, each ``update_entry`` increments on its own keys and on
    one shared counter (2 calls per step), in the 10k-session namespace."""
    benchmark.group = f"concurrent_writers {size_id(SIZE)} postgres"
    per_writer, rounds = (100, 3) if QUICK else (300, 5)
    own = 10
    prefix = f"bench:pgcw:{writers}w:"
    shared = f"{prefix}shared"
    round_ids = itertools.count()
    spawned: list[subprocess.Popen] = []
    per_writer_seconds: list[float] = []
    url = store_url(pg.namespace)

    def spawn():
        tag = next(round_ids)
        procs = [subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "worker", url, f"{prefix}r{tag}:j{j}:", shared,
             str(per_writer), str(own)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE) for j in range(writers)]
        spawned.extend(procs)
        for proc in procs:
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"writer did not start: {line!r}"
        return (procs,), {}

    def run(procs):
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            line = proc.stdout.readline().split()
            assert line and line[0] == "done", f"writer failed: {line!r}"
            per_writer_seconds.append(float(line[1]))

    started = time.perf_counter()
    try:
        benchmark.pedantic(run, setup=spawn, rounds=rounds, iterations=1)
    finally:
        codes = []
        for proc in spawned:
            proc.stdin.close()
            codes.append(proc.wait())
            proc.stdout.close()
    # Exact totals: every increment of every process landed.
    shared_total = pg.store.get(shared)["inputTokens"]
    own_ok = all(pg.store.get(f"{prefix}r{r}:j{j}:{k}")["inputTokens"] == per_writer // own
                 for r in range(rounds) for j in range(writers) for k in range(own))
    correct = all(code == 0 for code in codes) and own_ok and shared_total == rounds * writers * per_writer
    keys = [f"{prefix}r{r}:j{j}:{k}" for r in range(rounds) for j in range(writers) for k in range(own)]
    for key in keys + [shared]:
        pg.store.delete(key)
    calls = writers * per_writer * 2
    median = benchmark.stats.stats.median
    note(record, "postgres", correct, writers=writers, puts_per_writer=per_writer * 2, puts_per_round=calls,
         ops_per_s=round(calls / median, 1), shared_counter=shared_total,
         expected_shared_counter=rounds * writers * per_writer,
         per_writer_ops_per_s=round(per_writer * 2 / (sum(per_writer_seconds) / len(per_writer_seconds)), 1),
         wall=round(time.perf_counter() - started, 2))


# -- copy: directory -> PostgreSQL ---------------------------------------------------------------

@pytest.mark.parametrize("backend", ["postgres", "postgres-floor"], ids=_ids)
def test_copy(benchmark, record, pg, backend):
    """``copy_store(directory, postgresql://...)`` into a new namespace vs a
    raw ``COPY`` of the same rows (encoded beforehand) in one transaction."""
    group(benchmark, "copy")
    rounds = 2 if QUICK else 3
    names = (f"{pg.namespace}-copy-{i}" for i in itertools.count())
    used: list[str] = []
    conn = pg.conn

    def fresh():
        for old in used:
            drop_namespace(conn, old)
        namespace = next(names)
        used.append(namespace)
        return (namespace,), {}

    results = []
    if backend == "postgres":
        def copy(namespace):
            results.append(sessionsd.copy_store(pg.directory, store_url(namespace)))

        benchmark.pedantic(copy, setup=fresh, rounds=rounds, iterations=1)
        correct = all(r.copied == SIZE and r.total == SIZE and not r.source_changed for r in results)
    else:
        rows = [row_args("", key, entry)[1:] for key, entry in sorted(pg.data.items())]

        def copy(namespace):
            with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_IN) as out:
                for row in rows:
                    out.write_row((namespace, *row))
            results.append(len(rows))

        benchmark.pedantic(copy, setup=fresh, rounds=rounds, iterations=1)
        correct = all(r == SIZE for r in results)
    last = used[-1]
    count = conn.execute("SELECT count(*), sum(size) FROM sessionsd_entries WHERE namespace = %s",
                         (last,)).fetchone()
    expected_bytes = sum(encode(key, entry).size for key, entry in pg.data.items())
    correct = correct and count[0] == SIZE and int(count[1]) == expected_bytes
    if backend == "postgres" and correct:
        copied = PostgresStore(store_url(last), cache=False)
        try:
            correct = copied.load() == pg.data
        finally:
            copied.close()
    for namespace in used:
        drop_namespace(conn, namespace)
    note(record, backend, correct, source="directory store", store_bytes=expected_bytes)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.exit(_worker(sys.argv[2:]))
    sys.exit(2)
