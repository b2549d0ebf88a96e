"""Entry documents: ``{"sessionKey": key, "entry": {...}}`` (SPEC §2).

Decoding applies every rule a loader needs: the document shape, the older
raw form (the file is the entry itself, accepted only under an inline name),
name consistency, blocked keys.  A file that fails gets a short reason, for
``check`` and the load report.
"""

from __future__ import annotations

from typing import Any

from . import _json
from ._codec import encode_key, validate_key
from ._layout import BLOCKED_KEYS
from ._types import Entry
from .errors import InvalidEntryError, InvalidKeyError

__all__ = ["encode_document", "decode_document"]


def encode_document(key: str, entry: Any) -> bytes:
    """The bytes of *entry*'s file; raises InvalidEntryError for a non-dict
    or a value JSON cannot represent (NaN and infinities included: written
    as ``null`` they would silently become None).  The message names the
    key, the field path and what to do.

    The success path is one ``dumps`` plus a bounded check for non-finite
    floats (see ``_json.has_non_finite``); the full walk that finds the
    offending field runs only once something is wrong."""
    if not isinstance(entry, dict):
        raise InvalidEntryError(
            f"session entry {key!r} must be a dict (a JSON object), not {type(entry).__name__}", key
        )
    if "updatedAt" in entry and next(iter(entry)) != "updatedAt":
        # updatedAt first lets updated_at() read it from the file's first bytes.
        entry = {"updatedAt": entry["updatedAt"], **entry}
    try:
        data = _json.dumps({"sessionKey": key, "entry": entry})
    except (TypeError, ValueError, OverflowError) as exc:
        raise _entry_error(key, entry, exc) from exc
    if _json.has_non_finite(entry, data):
        raise _entry_error(key, entry, None)
    return data


def _entry_error(key: str, entry: Entry, exc: BaseException | None) -> InvalidEntryError:
    """The error for an entry ``dumps`` refused (*exc*) or wrote lossily."""
    found = _json.find_problem(entry, depth=2)  # the document object is level 1
    if found is None:  # the walk and the encoder disagree: say what the encoder said
        return InvalidEntryError(f"session entry {key!r} is not JSON-serialisable: {exc}", key)
    path, reason = found
    field = _json.format_path(path) if path else None
    where = f" field {field}" if field else ""
    return InvalidEntryError(f"session entry {key!r}{where}: {reason}", key, field)


def _parse(data: bytes) -> Any:
    """Parse an entry file as the reference's reader does: bytes that are
    not valid UTF-8 are decoded with U+FFFD replacement (as JavaScript
    decodes them) before the JSON parse.  Raises ValueError."""
    try:
        return _json.loads(data)
    except ValueError:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return _json.loads(data.decode("utf-8", "replace"))
        raise


def decode_document(data: bytes, name: str, inline_key: str | None) -> tuple[str, Entry] | str:
    """``(key, entry)`` for a valid entry file, else the reason it is skipped.

    *inline_key* is the key the file name encodes, ``None`` for a hashed name.
    The rules are the reference reader's, file by file (SPEC §2): a
    ``{sessionKey: string, entry: object}`` document gives its key and
    entry; under an inline name any other JSON object is the older raw form
    -- the whole object is the entry, the key comes from the name.
    """
    if not data.strip():
        return "empty file"
    try:
        doc = _parse(data)
    except ValueError:
        return "invalid JSON"
    if not isinstance(doc, dict):
        return "not a JSON object"
    raw_key = doc.get("sessionKey")
    entry = doc.get("entry")
    if isinstance(raw_key, str) and isinstance(entry, dict):
        try:
            key = validate_key(raw_key)
        except InvalidKeyError:
            return "sessionKey is not a valid key"
        if inline_key is not None:
            if key != inline_key:
                return "sessionKey does not match the file name"
        elif encode_key(key) != name:
            return "sessionKey does not match the file name"
    elif inline_key is None:
        # The raw form needs the key from the name, which a hash cannot give.
        return "raw entry under a hashed name (its key cannot come from the name)"
    else:
        key, entry = inline_key, doc
    if key in BLOCKED_KEYS:
        return "blocked key"
    return key, entry
