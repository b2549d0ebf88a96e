"""Entry documents: ``{"sessionKey": key, "entry": {...}}`` (SPEC §2).

Decoding applies every rule a loader needs: the document shape, the older
raw form (the file is the entry itself, accepted only under an inline name),
name consistency, blocked keys.  A file that fails gets a short reason, for
``check`` and the load report.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from . import _json
from ._codec import encode_key, validate_key
from ._layout import BLOCKED_KEYS
from .errors import InvalidEntryError, InvalidKeyError

__all__ = ["encode_document", "decode_document"]


def encode_document(key: str, entry: Any) -> bytes:
    """The bytes of *entry*'s file; raises InvalidEntryError for a non-dict
    or a value JSON cannot represent."""
    if not isinstance(entry, dict):
        raise InvalidEntryError(
            f"a session entry must be a dict (a JSON object), not {type(entry).__name__}", key
        )
    if "updatedAt" in entry and next(iter(entry)) != "updatedAt":
        # updatedAt first lets updated_at() read it from the file's first bytes.
        entry = {"updatedAt": entry["updatedAt"], **entry}
    try:
        return _json.dumps({"sessionKey": key, "entry": entry})
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidEntryError(f"session entry for {key!r} is not JSON-serialisable: {exc}", key) from exc


def decode_document(data: bytes, name: str, inline_key: Optional[str]) -> Union[tuple[str, dict], str]:
    """``(key, entry)`` for a valid entry file, else the reason it is skipped.

    *inline_key* is the key the file name encodes, ``None`` for a hashed name.
    """
    if not data.strip():
        return "empty file"
    try:
        doc = _json.loads(data)
    except ValueError:
        return "invalid JSON"
    if not isinstance(doc, dict):
        return "not a JSON object"
    if "sessionKey" in doc or "entry" in doc:
        raw_key = doc.get("sessionKey")
        entry = doc.get("entry")
        if not isinstance(raw_key, str):
            return "sessionKey is not a string"
        if not isinstance(entry, dict):
            return "entry is not a JSON object"
        try:
            key = validate_key(raw_key)
        except InvalidKeyError:
            return "sessionKey is not a valid key"
        if inline_key is not None:
            if key != inline_key:
                return "sessionKey does not match the file name"
        elif encode_key(key) != name:
            return "sessionKey does not match the file name"
    else:
        # The older raw form: the key can only come from an inline name.
        if inline_key is None:
            return "raw entry under a hashed name"
        key, entry = inline_key, doc
    if key in BLOCKED_KEYS:
        return "blocked key"
    return key, entry
