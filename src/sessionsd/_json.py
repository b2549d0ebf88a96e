"""JSON encoding and decoding: orjson where installed, the stdlib otherwise.

Documents are written the way the reference writes them
(``JSON.stringify(value, null, 2)``): two-space indentation, UTF-8 without
escaping, ``": "`` after keys.  Without orjson (PyPy, some free-threaded
builds) the stdlib encoder below writes the *same bytes* for the same data,
so a store written by one interpreter is byte-identical to one written by
another: floats are formatted as orjson formats them, NaN and infinities
become ``null``, a non-``str`` key or an integer outside 64 bits is an error.

Accepted values: dicts with ``str`` keys, lists and tuples, ``str``, ``int``,
``float``, ``bool``, ``None`` (and their subclasses), ``uuid.UUID`` and
``enum.Enum`` members (as orjson does).  Anything else -- datetimes and
dataclasses included -- is refused with ``TypeError``.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from typing import Any

try:  # pragma: no cover - which branch runs depends on the interpreter
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

__all__ = ["IMPLEMENTATION", "dumps", "loads", "stdlib_dumps"]

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


def _float_text(value: float) -> str:
    """orjson's float formatting: Python's repr, except that exponents -5 to
    -9 are written like JavaScript does (``0.00001``, ``1e-7``)."""
    if not math.isfinite(value):
        return "null"
    text = repr(value)
    mantissa, sep, exponent = text.partition("e")
    if not sep or not exponent.startswith("-0"):
        return text
    power = -int(exponent)
    if power == 5:
        sign = "-" if mantissa.startswith("-") else ""
        digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
        return f"{sign}0.0000{digits}"
    return f"{mantissa}e-{power}"


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


class _Encoder(json.JSONEncoder):
    """The stdlib encoder with orjson's rules (pure-Python iterencode)."""

    def __init__(self) -> None:
        super().__init__(ensure_ascii=False, indent=2, check_circular=True, allow_nan=True,
                         separators=(",", ": "), default=_default)

    def iterencode(self, o: Any, _one_shot: bool = False):
        def floatstr(value: float, *_args: Any) -> str:
            return _float_text(value)

        return json.encoder._make_iterencode(  # type: ignore[attr-defined]
            {} if self.check_circular else None, self.default, json.encoder.py_encode_basestring,
            self.indent, floatstr, self.key_separator, self.item_separator,
            False, False, _one_shot,
        )(o, 0)


#: orjson refuses data nested deeper than this many containers.
_MAX_DEPTH = 254


def _check_keys_and_ints(value: Any) -> None:
    """What orjson refuses but the stdlib would write: non-str keys, huge
    ints, nesting beyond orjson's limit (which also ends a cycle, where the
    stdlib's own check would come only after a long walk)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)) and depth > _MAX_DEPTH:
            raise TypeError("Recursion limit reached")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise TypeError("Dict key must be str")
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not _INT_MIN <= item <= _INT_MAX:
                raise TypeError("Integer exceeds 64-bit range")


def stdlib_dumps(value: Any) -> bytes:
    """Serialise with the stdlib, byte-identical to the orjson path."""
    _check_keys_and_ints(value)
    return "".join(_Encoder().iterencode(value)).encode("utf-8")


if orjson is not None:
    IMPLEMENTATION = f"orjson {orjson.__version__}"
    _OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def _refuse(value: Any) -> Any:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")

    def dumps(value: Any) -> bytes:
        """Serialise *value* as indented UTF-8 JSON bytes."""
        return orjson.dumps(value, option=_OPTIONS, default=_refuse)

    loads = orjson.loads
else:  # pragma: no cover
    IMPLEMENTATION = "stdlib json"
    dumps = stdlib_dumps

    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")  # orjson refuses NaN/Infinity too

    def loads(data: "bytes | str") -> Any:
        try:
            return json.loads(data, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
