"""A real PostgreSQL server for the tests, never a mock, and its fixtures.

Import the fixtures into a test module (``from pg_server import
postgres_server, postgres_url``); they are not in conftest.py, so only the
modules that need a server pay for one.

Where the server comes from:

* ``SESSIONSD_TEST_POSTGRES_URL`` (a ``postgresql://`` URL to a database the
  tests may create tables in): that server.  ``ci/test.sh`` starts a throwaway
  one with ``eval "$(bash ci/postgres.sh start)"``, which also exports
  ``SESSIONSD_TEST_PG_DIR`` and ``SESSIONSD_TEST_PG_BINDIR``: with those the
  tests can restart the server too.
* Otherwise the session starts its own with ``ci/postgres.sh`` (when the
  binaries are installed; it installs them only when
  ``SESSIONSD_REQUIRE_POSTGRES=1``) and stops it at the end.
* Otherwise every test that needs a server is skipped, with a loud reason --
  unless ``SESSIONSD_REQUIRE_POSTGRES=1``, which makes a missing server (or
  a missing psycopg) a failure: CI sets it.

Each test gets its own namespace (``postgres_url``); a test that needs a
database of its own (schema creation) asks ``postgres_server.create_database()``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(HERE), "ci", "postgres.sh")
URL_VARIABLE = "SESSIONSD_TEST_POSTGRES_URL"
REQUIRED = os.environ.get("SESSIONSD_REQUIRE_POSTGRES", "").strip().lower() not in ("", "0", "false", "no")


class PgServer:
    """A running server: its URL, and (when this machine runs it) its
    directory, so tests can restart it."""

    def __init__(self, url: str, directory: str | None, bindir: str | None, owned: bool) -> None:
        self.url = url
        self.directory = directory
        self.bindir = bindir
        self.owned = owned

    # -- URLs -----------------------------------------------------------------------

    def url_for(self, namespace: str | None = None, database: str | None = None) -> str:
        """The server's URL, on *database* (default: the tests' database)
        and with ``namespace=`` when given."""
        parts = urlsplit(self.url)
        if database is not None:
            parts = parts._replace(path="/" + quote(database, safe=""))
        url = urlunsplit(parts)
        if namespace is not None:
            url += ("&" if parts.query else "?") + "namespace=" + quote(namespace, safe="")
        return url

    def connect(self, database: str | None = None):
        """An autocommit psycopg connection (the caller closes it)."""
        import psycopg

        return psycopg.connect(self.url_for(database=database), autocommit=True)

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name (dropped with the cluster,
        or by :meth:`drop_database`)."""
        name = f"sessionsd_{prefix}_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- control --------------------------------------------------------------------

    @property
    def can_restart(self) -> bool:
        return bool(self.directory and self.bindir
                    and os.path.exists(os.path.join(self.directory, "data", "postmaster.pid")))

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        """Run ``pg_ctl`` on the cluster as its owner (the server never runs as root)."""
        assert self.directory and self.bindir
        data = os.path.join(self.directory, "data")
        owner = _owner(data)
        # -l: the server's output to its log, never to our pipes (pg_ctl
        # would hand them to the server, and reading them would never end).
        command = [os.path.join(self.bindir, "pg_ctl"), "-D", data, "-l",
                   os.path.join(self.directory, "server.log"), *args]
        if os.geteuid() == 0 and owner != "root":
            command = ["runuser", "-u", owner, "--", *command]
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if result.returncode:
            raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr}{result.stdout}")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart``: every connection is dropped; returns once
        the server accepts connections again."""
        self.pg_ctl("-m", mode, "-w", "-t", "60", "restart")

    def stop_cluster(self) -> None:
        """Stop this session's own server and remove its directory."""
        if not self.directory:
            return
        result = subprocess.run(["bash", SCRIPT, "stop", self.directory], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120)
        if result.returncode or os.path.exists(self.directory):
            import sys

            print(f"pg_server: could not stop the test server in {self.directory} "
                  f"({result.returncode}): {result.stderr.strip()}", file=sys.stderr)


def _owner(path: str) -> str:
    import pwd

    return pwd.getpwuid(os.stat(path).st_uid).pw_name


def _start_own() -> tuple[PgServer | None, str]:
    """Start a throwaway server with ci/postgres.sh; (server, "") or (None, why not)."""
    if not os.path.exists(SCRIPT):
        return None, f"{SCRIPT} is not there (tests run outside the project tree)"
    env = dict(os.environ)
    env.pop("SESSIONSD_TEST_PG_DIR", None)
    if not REQUIRED:
        env["SESSIONSD_TEST_PG_INSTALL"] = "0"
    try:
        result = subprocess.run(["bash", SCRIPT, "start"], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=900, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"ci/postgres.sh start failed: {exc}"
    if result.returncode:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        return None, f"ci/postgres.sh start failed ({result.returncode}): {tail}"
    values = {}
    for line in result.stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    url = values.get(URL_VARIABLE)
    if not url:
        return None, f"ci/postgres.sh start printed no {URL_VARIABLE}"
    return PgServer(url, values.get("SESSIONSD_TEST_PG_DIR"), values.get("SESSIONSD_TEST_PG_BINDIR"), True), ""


def _unavailable(reason: str) -> None:
    message = (f"NO POSTGRESQL SERVER -- the PostgreSQL backend is NOT tested: {reason}. "
               f"Set {URL_VARIABLE} or run the tests through ci/test.sh")
    if REQUIRED:
        pytest.fail(f"SESSIONSD_REQUIRE_POSTGRES=1: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """The tests' PostgreSQL server (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        _unavailable(f"psycopg 3 / psycopg_pool not installed ({exc}; pip install 'sessionsd[postgres]')")
    url = os.environ.get(URL_VARIABLE, "").strip()
    if url:
        server = PgServer(url, os.environ.get("SESSIONSD_TEST_PG_DIR") or None,
                          os.environ.get("SESSIONSD_TEST_PG_BINDIR") or None, False)
    else:
        started, reason = _start_own()
        if started is None:
            _unavailable(reason)
        assert started is not None
        server = started
    try:
        with server.connect() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to connect means no server
        if server.owned:
            server.stop_cluster()
        _unavailable(f"cannot connect to {server.url}: {exc}")
    try:
        yield server
    finally:
        if server.owned:
            server.stop_cluster()


@pytest.fixture
def postgres_url(postgres_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A store URL with a namespace of this test's own; its rows are
    deleted afterwards."""
    namespace = f"test/{request.node.name[:80]}/{uuid.uuid4().hex[:8]}"
    yield postgres_server.url_for(namespace)
    try:
        with postgres_server.connect() as conn:
            conn.execute("DELETE FROM sessionsd_entries WHERE namespace = %s", (namespace,))
            conn.execute("DELETE FROM sessionsd_namespaces WHERE namespace = %s", (namespace,))
    except Exception:  # noqa: BLE001,S110 - no tables (nothing opened), or the server is gone
        pass
