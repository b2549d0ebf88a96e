"""JSON encoding and decoding: orjson where installed, the stdlib otherwise.

Documents are written the way the reference writes them
(``JSON.stringify(value, null, 2)``): two-space indentation, UTF-8 without
escaping, ``": "`` after keys.  Both implementations produce those bytes for
the data sessions hold (strings, integers, booleans, null, nested objects and
arrays, and floats in plain notation).
"""

from __future__ import annotations

import json
from typing import Any

try:  # pragma: no cover - which branch runs depends on the interpreter
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

__all__ = ["IMPLEMENTATION", "dumps", "loads", "DecodeError", "EncodeError"]

if orjson is not None:
    IMPLEMENTATION = f"orjson {orjson.__version__}"
    DecodeError: type[Exception] = orjson.JSONDecodeError
    EncodeError: type[Exception] = orjson.JSONEncodeError
    _OPTIONS = orjson.OPT_INDENT_2

    def dumps(value: Any) -> bytes:
        """Serialise *value* as indented UTF-8 JSON bytes."""
        return orjson.dumps(value, option=_OPTIONS)

    loads = orjson.loads
else:  # pragma: no cover
    IMPLEMENTATION = "stdlib json"
    DecodeError = json.JSONDecodeError
    EncodeError = TypeError

    def dumps(value: Any) -> bytes:
        """Serialise *value* as indented UTF-8 JSON bytes."""
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def loads(data: "bytes | str") -> Any:
        return json.loads(data)
