"""The SPEC's naming rules written out independently of the library, so the
tests check the library against the SPEC rather than against itself."""

from __future__ import annotations

import base64
import hashlib
import time


def b64url(raw: bytes) -> str:
    """RFC 4648 §5 without padding."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def spec_name(key: str) -> str:
    """The entry file name SPEC §3 gives an (already normalised) key."""
    raw = key.encode("utf-8")
    if len(raw) <= 120:
        return "session-" + b64url(raw) + ".json"
    return "session-hash-" + b64url(hashlib.sha256(raw).digest()) + ".json"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_lock_artifact(name: str) -> bool:
    """Names the store lock uses beside the store: the reference's lock file
    (present only while held), sessionsd's owner file that is hard-linked as
    its record, a reclaimed stale file on its way out, and the fallback lock
    file of file systems that cannot flock a directory.  None is store data."""
    return (name == "sessions.json.lock" or name.startswith(".sessions.json.lock.")
            or name == ".sessionsd.lock")
