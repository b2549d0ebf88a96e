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
