"""How the PostgreSQL backend talks to its server: store URLs, the
connection pool, and how one call runs (:class:`Connections`).

Everything about connections lives here, and nothing about sessions: the
SQL of the store is :mod:`sessionsd._pg_backend`'s, the schema
:mod:`sessionsd._pg_schema`'s.

* A call runs on a pooled connection in autocommit mode (one statement, one
  transaction) or, for a read-modify-write, in one transaction; calls that
  the function of a transaction makes on the same backend from the same
  thread join it (a nested transaction is a savepoint).
* The pool replaces connections the server dropped (a restart); a call whose
  connection was lost while it ran raises :class:`StoreConnectionError`,
  naming the URL (never its password) and saying whether a write may have
  committed.  A lock wait past ``lock_timeout`` is
  :class:`~sessionsd.errors.StoreLockTimeout`.
* A backend opened before a ``fork()`` refuses to run in the child (its
  connections are the parent's) and leaves them alone when closed there.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

try:
    import psycopg
    import psycopg.errors
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionsd.postgres needs psycopg 3 and psycopg_pool: pip install 'sessionsd[postgres]' "
        f"({_exc})"
    ) from _exc

from .errors import StoreClosedError, StoreConnectionError, StoreLockTimeout

__all__ = ["Connections", "Conn", "DEFAULT_NAMESPACE", "MAX_NAMESPACE_BYTES", "split_url", "redact_url"]

_log = logging.getLogger(__name__)

#: The namespace of a URL that names none.
DEFAULT_NAMESPACE = "default"
#: Longest namespace accepted (bytes of UTF-8).
MAX_NAMESPACE_BYTES = 1024

T = TypeVar("T")
Conn = psycopg.Connection[Any]


# -- URLs ---------------------------------------------------------------------------------

def _is_url(text: str) -> bool:
    return text[:13].lower().startswith(("postgresql://", "postgres://"))


def split_url(url: str, namespace: str | None) -> tuple[str, str]:
    """``(conninfo, namespace)`` from a store URL: the ``namespace`` query
    parameter is taken out (percent-decoded, as libpq decodes the others);
    the rest of the URL is passed to libpq unchanged.  *namespace*, when
    given, must agree with the URL's."""
    if not isinstance(url, str):
        raise TypeError(f"a PostgreSQL store URL must be a str, not {type(url).__name__}")
    found: list[str] = []
    conninfo = url
    if _is_url(url):
        head, sep, query = url.partition("?")
        fragment = ""
        if "#" in query:
            query, _, fragment = query.partition("#")
        kept = []
        for part in query.split("&") if sep else []:
            name, _, value = part.partition("=")
            if unquote(name) == "namespace":
                found.append(unquote(value))
            elif part:
                kept.append(part)
        conninfo = head + ("?" + "&".join(kept) if kept else "") + ("#" + fragment if fragment else "")
    if len(found) > 1 and len(set(found)) > 1:
        raise ValueError(f"the store URL names more than one namespace: {found!r}")
    if found and namespace is not None and found[0] != namespace:
        raise ValueError(f"namespace {namespace!r} given, but the store URL names {found[0]!r}")
    chosen = namespace if namespace is not None else (found[0] if found else DEFAULT_NAMESPACE)
    if not isinstance(chosen, str) or not chosen or "\x00" in chosen:
        raise ValueError(f"a namespace must be a non-empty str without NUL, not {chosen!r}")
    try:
        size = len(chosen.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"namespace {chosen!r} cannot be encoded as UTF-8") from None
    if size > MAX_NAMESPACE_BYTES:
        raise ValueError(f"a namespace is at most {MAX_NAMESPACE_BYTES} bytes, not {size}")
    return conninfo, chosen


def redact_url(conninfo: str) -> str:
    """*conninfo* (a ``postgresql://`` URL or a keyword/value conninfo
    string) without its password: what messages and ``repr()`` show."""
    if _is_url(conninfo):
        scheme, _, rest = conninfo.partition("://")
        authority, slash, tail = rest.partition("/")
        if "@" in authority:
            userinfo, _, hosts = authority.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            authority = f"{userinfo}@{hosts}"
        head, sep, query = tail.partition("?")
        if sep:
            parts = []
            for part in query.split("&"):
                name, eq, _value = part.partition("=")
                parts.append(f"{name}=***" if eq and unquote(name) == "password" else part)
            query = "&".join(parts)
        return f"{scheme}://{authority}{slash}{head}{sep}{query}"
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable conninfo>"
    if "password" in params:
        params["password"] = "***"
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]


# -- connections ------------------------------------------------------------------------------

def _check_idle(conn: Conn) -> None:
    """Whether a pooled connection is alive (raises if not): an idle connection
    has nothing to read, so a readable socket means the server closed it (a
    restart) -- or sent a notice: a real round trip then tells which.
    Costs one ``poll`` on the hot path."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if _readable(conn.fileno()):
        conn.execute("")


if hasattr(select, "poll"):
    def _readable(fd: int) -> bool:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
else:  # pragma: no cover - Windows: select() takes sockets of any number there
    def _readable(fd: int) -> bool:
        return bool(select.select([fd], [], [], 0)[0])


@dataclass
class _Call:
    """One call's progress, for the error if its connection is lost."""

    operation: str
    write: bool
    committing: bool = False


class Connections:
    """The connection pool of one backend, and how its calls run.

    *conninfo* is what libpq gets; *url* (without password) and *namespace*
    name the store in errors.  ``lock_timeout`` (seconds, 0 or negative:
    forever) is set on every connection as PostgreSQL's ``lock_timeout``;
    ``connect_timeout`` is how long a call waits for a connection."""

    def __init__(self, conninfo: str, url: str, namespace: str, *, lock_timeout: float,
                 connect_timeout: float, min_size: int, max_size: int) -> None:
        self.url = url
        self.namespace = namespace
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        #: The process that opened the pool (its connections are that process's).
        self.pid = os.getpid()
        self._local = threading.local()
        timeout_ms = 0 if lock_timeout <= 0 else max(1, int(lock_timeout * 1000))

        def configure(conn: Conn) -> None:
            # READ COMMITTED whatever the server's default: each statement
            # after the namespace lock must see the commits made before it.
            conn.execute("SELECT set_config('lock_timeout', %s, false), "
                         "set_config('default_transaction_isolation', 'read committed', false)",
                         (f"{timeout_ms}ms",))

        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo, kwargs={"autocommit": True}, min_size=min_size, max_size=max_size,
            open=False, configure=configure, timeout=connect_timeout,
            name=f"sessionsd {url} {namespace}")
        self._pool.open(wait=False)

    def close(self) -> None:
        """Close the pool -- unless this is a forked child, whose inherited
        connections are the parent's: those are left alone."""
        if os.getpid() == self.pid:
            self._pool.close()

    def _check_process(self) -> None:
        if os.getpid() != self.pid:
            # Its connections are the parent's: using them here would mix
            # two processes' conversations on one socket.
            raise StoreClosedError(
                f"this PostgresStore of {self.url} namespace={self.namespace!r} was opened in process "
                f"{self.pid}, before a fork: open a new one in process {os.getpid()}")

    # -- running calls --------------------------------------------------------------------

    def run(self, operation: str, body: Callable[[Conn], T], *, write: bool = False) -> T:
        """*body* on a pooled connection in autocommit mode: one statement is
        one transaction (for a *write*, the statement is its commit).  A call
        nested in a transaction's function runs in that transaction."""
        self._check_process()
        nested: Conn | None = getattr(self._local, "conn", None)
        if nested is not None:
            return body(nested)
        call = _Call(operation, write, committing=write)
        with self._connection(call) as conn:
            return body(conn)

    def transaction(self, operation: str, body: Callable[[Conn], T]) -> T:
        """*body* in one transaction on one connection; calls that *body*
        makes on this backend from this thread join it (a nested
        ``transaction()`` is a savepoint)."""
        self._check_process()
        nested: Conn | None = getattr(self._local, "conn", None)
        if nested is not None:
            with nested.transaction():
                return body(nested)
        call = _Call(operation, True)
        with self._connection(call) as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    result = body(conn)
                    call.committing = True  # leaving the block sends COMMIT
                return result
            finally:
                self._local.conn = None

    def nested(self) -> bool:
        """Whether this thread is inside one of this backend's transactions."""
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def _connection(self, call: _Call) -> Iterator[Conn]:
        """A pooled connection for *call*, psycopg's errors turned into
        sessionsd's: no connection in time or a connection lost mid-call is
        :class:`StoreConnectionError`, a lock wait past ``lock_timeout`` is
        :class:`~sessionsd.errors.StoreLockTimeout`; other database errors
        propagate unchanged."""
        conn: Conn | None = None
        try:
            conn = self._checkout()
            try:
                yield conn
            finally:
                self._pool.putconn(conn)  # a broken one is discarded (and replaced) by the pool
        except PoolTimeout as exc:
            raise StoreConnectionError(
                f"PostgreSQL store {self.url} is unreachable: no connection within "
                f"{self.connect_timeout:g} s for {call.operation} ({exc}); nothing was committed",
                self.url, False) from exc
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreLockTimeout(
                f"the lock of namespace {self.namespace!r} in {self.url} was not acquired within "
                f"{self.lock_timeout:g} s", self.url, self.lock_timeout) from exc
        except psycopg.Error as exc:
            if conn is not None and (conn.closed or conn.broken):
                raise self._lost(call, exc) from exc
            raise

    def _checkout(self) -> Conn:
        """A connection from the pool that is still alive: idle connections
        the server dropped (a restart) are handed back to be discarded, and
        the next one is tried at once (the pool's own check would back off
        for about a second per dead connection)."""
        deadline = time.monotonic() + self.connect_timeout
        for _ in range(self._pool.max_size + 1):
            conn = self._pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
            try:
                _check_idle(conn)
            except psycopg.Error as exc:
                _log.debug("discarding a dropped connection to %s: %s", self.url, exc)
                self._pool.putconn(conn)
                continue
            return conn
        return self._pool.getconn(timeout=max(0.001, deadline - time.monotonic()))

    def _lost(self, call: _Call, exc: BaseException) -> StoreConnectionError:
        in_doubt = call.write and call.committing
        outcome = ("it may or may not have been committed" if in_doubt
                   else "nothing was committed" if call.write else "retry it")
        text = str(exc).strip()
        detail = text.splitlines()[0] if text else type(exc).__name__
        return StoreConnectionError(
            f"the connection to PostgreSQL store {self.url} was lost during {call.operation} "
            f"({detail}); {outcome}", self.url, in_doubt)
