"""sessionsd: per-session metadata store, one JSON file per session.

``BACKEND`` says which codec runs: ``"compiled"`` (the Cython extension) or
``"python"`` (the pure twin, used where the extension is not built or when
``SESSIONSD_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import logging

from ._codec import (
    BACKEND,
    classify_name,
    decode_name,
    decode_names,
    encode_key,
    scan_entries,
    validate_key,
)
from ._open import open_store as open  # noqa: A001 - sessionsd.open, as dbm.open and shelve.open
from .copying import CopyError, CopyResult, copy_store
from .errors import (
    BlockedKeyError,
    CorruptStoreError,
    DamagedStoreError,
    InvalidEntryError,
    InvalidKeyError,
    InvalidKeyTypeError,
    KeyCollisionError,
    SchemaVersionError,
    SessionsdError,
    SharedStoreError,
    StoreClosedError,
    StoreConnectionError,
    StoreLockTimeout,
    UnsafeStoreError,
)
from .migration import Detection, MigrationResult, detect, migrate, rollback
from .store import SessionStore

__version__ = "0.1.0"

# A library never configures logging: records go to the application's
# handlers (each module logs as ``sessionsd.<module>``), or nowhere.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BACKEND",
    "__version__",
    "classify_name",
    "decode_name",
    "decode_names",
    "encode_key",
    "scan_entries",
    "validate_key",
    "SessionStore",
    "open",
    "Detection",
    "MigrationResult",
    "detect",
    "migrate",
    "rollback",
    "copy_store",
    "CopyResult",
    "CopyError",
    "BlockedKeyError",
    "CorruptStoreError",
    "DamagedStoreError",
    "InvalidEntryError",
    "InvalidKeyError",
    "InvalidKeyTypeError",
    "KeyCollisionError",
    "SessionsdError",
    "SharedStoreError",
    "StoreClosedError",
    "StoreConnectionError",
    "SchemaVersionError",
    "StoreLockTimeout",
    "UnsafeStoreError",
]
