"""The PostgreSQL store: :class:`PostgresStore`, a session store in one
namespace of a PostgreSQL database, with the operations and the mapping API
of :class:`~sessionsd.SessionStore`.

Opened from a URL whose ``namespace`` query parameter names the store (many
stores share one database)::

    with PostgresStore("postgresql://app@db.internal/sessions?namespace=agents/main") as store:
        store["agent:main:telegram:dm:1"] = {"updatedAt": 1790000000000}

(``sessionsd.open(url)`` opens the same store.)  The ``namespace`` parameter
is removed before connecting; the rest of the URL is libpq's.  A
keyword/value conninfo string (``"host=/run/pg dbname=x"``) works too, with
``namespace=`` given as an argument.

Needs psycopg 3 and psycopg_pool (``pip install 'sessionsd[postgres]'``).  The
schema is created and upgraded on open (:mod:`sessionsd._pg_schema`, which
describes the tables).

Guarantees (each tested against a real server):

* keys, entries and bad input follow the rules every store shares (the store
  façade, :mod:`sessionsd._facade`): the same normalisation, the same errors;
* every write to a namespace locks its row in ``sessionsd_namespaces`` first,
  so read-modify-writes (:meth:`~PostgresStore.update_entry`,
  :meth:`~PostgresStore.patch`, :meth:`~PostgresStore.mutate`,
  :meth:`~PostgresStore.take` and ``pop()``, ``setdefault()``) never lose an
  update, from any number of processes and machines;
* multi-entry commits (:meth:`~PostgresStore.put_many` and ``update()``,
  :meth:`~PostgresStore.mutate`, :meth:`~PostgresStore.save` and ``clear()``,
  maintenance) are one transaction: no reader ever sees half of one, and a
  client killed mid-transaction commits nothing;
* :meth:`~PostgresStore.load` is one statement, hence one snapshot; its
  per-process cache is keyed by the namespace's version row, which every
  commit bumps, and is checked against the database on every call, so it is
  never stale after a commit the call could have seen;
* the connection pool replaces connections the server dropped (a restart):
  calls made after the server is back succeed; a call whose connection was
  lost while it ran raises :class:`StoreConnectionError`, which names the
  store URL (never its password) and says whether a write may have committed;
* a store opened before a ``fork()`` refuses to run in the child (open a new
  one there).

Calls that an ``update_entry`` or ``mutate`` function makes on the same store
object from the same thread join its transaction.
"""

from __future__ import annotations

from ._facade import StoreFacade
from ._pg_backend import POSTGRES, PostgresBackend
from ._pg_connection import DEFAULT_NAMESPACE, redact_url
from .errors import SchemaVersionError, StoreConnectionError
from .maintenance import Maintenance, MaintenanceReport

__all__ = ["PostgresStore", "StoreConnectionError", "SchemaVersionError", "redact_url", "POSTGRES",
           "DEFAULT_NAMESPACE"]


class PostgresStore(StoreFacade):
    """A session store in one namespace of a PostgreSQL database: a
    :class:`~collections.abc.MutableMapping` of session key to entry.

    Parameters
    ----------
    url:
        ``postgresql://[user[:password]@][host][:port]/dbname?namespace=NAME&...``
        (libpq's URL with a ``namespace`` parameter), or a keyword/value
        conninfo string.  A Unix socket directory goes in ``host=``.
    namespace:
        The store's namespace, instead of the URL's ``namespace`` parameter
        (giving both, differently, is an error).  Default: ``"default"``.
    lower_keys:
        Lower-case keys after trimming (the default, as SessionStore).
    cache:
        Keep the per-process cache of :meth:`load` (validated against the
        namespace's version row on every call).
    maintenance:
        :class:`~sessionsd.maintenance.Maintenance` settings applied on every
        write, as SessionStore applies them (``archive_transcripts`` has no
        meaning here: there are no transcript files beside the store).
    lock_timeout:
        Seconds a write waits for the namespace's lock before
        :class:`~sessionsd.errors.StoreLockTimeout` (0 or negative: forever).
    connect_timeout:
        Seconds a call waits for a connection before
        :class:`StoreConnectionError` (the server is down or unreachable).
    pool_min_size, pool_max_size:
        Connections kept open, and at most open, by this store's pool.

    Raises
    ------
    StoreConnectionError
        The server cannot be reached.
    SchemaVersionError
        A newer sessionsd upgraded the database's schema.
    """

    _backend: PostgresBackend

    def __init__(self, url: str, *, namespace: str | None = None, lower_keys: bool = True,
                 cache: bool = True, maintenance: Maintenance | None = None,
                 lock_timeout: float = 30.0, connect_timeout: float = 10.0,
                 pool_min_size: int = 1, pool_max_size: int = 4) -> None:
        self.lower_keys = lower_keys
        self.maintenance = maintenance
        self._backend = PostgresBackend(url, namespace=namespace, cache=cache, maintenance=maintenance,
                                        lock_timeout=lock_timeout, connect_timeout=connect_timeout,
                                        pool_min_size=pool_min_size, pool_max_size=pool_max_size)

    @property
    def url(self) -> str:
        """The store URL without its password (what errors name)."""
        return self._backend.url

    @property
    def namespace(self) -> str:
        """The store's namespace in its database."""
        return self._backend.namespace

    @property
    def lock_timeout(self) -> float:
        """Seconds a write waits for the namespace's lock."""
        return self._backend.lock_timeout

    @property
    def connect_timeout(self) -> float:
        """Seconds a call waits for a connection."""
        return self._backend.connect_timeout

    @property
    def last_maintenance(self) -> MaintenanceReport | None:
        """The report of the last maintenance sweep."""
        return self._backend.last_maintenance
