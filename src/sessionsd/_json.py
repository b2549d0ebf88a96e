"""JSON encoding and decoding: orjson where installed, the stdlib otherwise.

Documents are written the way the reference writes them
(``JSON.stringify(value, null, 2)``): two-space indentation, UTF-8 without
escaping, ``": "`` after keys.  Without orjson (PyPy, some free-threaded
builds) the stdlib encoder below writes the *same bytes* for the same data,
so a store written by one interpreter is byte-identical to one written by
another: floats are formatted as orjson formats them, NaN and infinities
become ``null``, a non-``str`` key or an integer outside 64 bits is an error.

Accepted values: dicts with ``str`` keys, lists and tuples, ``str``, ``int``,
``float``, ``bool``, ``None`` (subclasses of ``dict``, ``list``, ``str`` and
``int`` too, but not of ``float`` or ``tuple``), ``uuid.UUID`` and
``enum.Enum`` members (as orjson does).  Anything else -- datetimes and
dataclasses included -- is refused with ``TypeError``.

Also here, for callers that need more than encode/decode:

* :func:`find_problem` and :func:`has_non_finite`: which field of a value
  cannot be stored and why, in words a user can act on (entry encoding runs
  them only after ``dumps`` failed, or when its output holds a ``null``);
* :func:`strip_comments_and_trailing_commas`: the JSON5 a person adds to a
  JSON file, removed in linear time (legacy ``sessions.json`` reading);
* :func:`decode_error`: what a ``loads`` failure means (too deep, truncated,
  or where it is), the same on both backends.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

try:  # pragma: no cover - which branch runs depends on the interpreter
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

__all__ = ["IMPLEMENTATION", "dumps", "loads", "stdlib_dumps", "DepthError", "decode_error",
           "MAX_REMOVALS", "strip_comments_and_trailing_commas", "find_problem", "has_non_finite",
           "format_path"]

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

    def iterencode(self, o: Any, _one_shot: bool = False) -> Iterator[str]:
        """The chunks of *o*'s encoding, floats formatted as orjson does."""

        def floatstr(value: float, *_args: Any) -> str:
            return _float_text(value)

        chunks: Iterator[str] = json.encoder._make_iterencode(  # type: ignore[attr-defined]  # private, unstubbed
            {} if self.check_circular else None, self.default, json.encoder.py_encode_basestring,
            self.indent, floatstr, self.key_separator, self.item_separator,
            False, False, _one_shot,
        )(o, 0)
        return chunks


#: orjson refuses data nested deeper than this many containers.
_MAX_DEPTH = 254


class DepthError(ValueError):
    """``loads`` without orjson: the data is nested deeper than the parser's
    recursion allows (orjson's own error says ``depth limit exceeded``)."""


def _check_keys_and_ints(value: Any) -> None:
    """What orjson refuses but the stdlib would write: non-str keys (``str``
    subclasses included), huge ints, ``float`` and ``tuple`` subclasses,
    nesting beyond orjson's limit (which also ends a cycle, where the
    stdlib's own check would come only after a long walk)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, enum.Enum):
            item = item.value  # written as its value, which must pass too
        if isinstance(item, (dict, list, tuple)) and depth > _MAX_DEPTH:
            raise TypeError("Recursion limit reached")
        if isinstance(item, dict):
            for key, child in item.items():
                if type(key) is not str:
                    raise TypeError("Dict key must be str")
                stack.append((child, depth + 1))
        elif isinstance(item, list) or type(item) is tuple:
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not _INT_MIN <= item <= _INT_MAX:
                raise TypeError("Integer exceeds 64-bit range")
        elif isinstance(item, (float, tuple)) and type(item) not in (float, tuple):
            raise TypeError(f"Type is not JSON serializable: {type(item).__name__}")


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

    def _finite_float(text: str) -> float:
        value = float(text)
        if value - value:  # orjson refuses 1e999 too
            raise ValueError(f"number is infinity when parsed as double: {text[:40]}")
        return value

    def loads(data: bytes | str) -> Any:
        """Parse JSON *data* as orjson does: NaN, infinities and numbers
        that overflow a double are refused (``ValueError``), data nested
        too deeply raises :class:`DepthError`."""
        try:
            return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
        except RecursionError:
            raise DepthError("JSON nested too deeply") from None


# -- what a decode error means ---------------------------------------------------------

def decode_error(exc: BaseException, data: bytes) -> tuple[str, int | None]:
    """``(kind, offset)`` of a :func:`loads` failure on *data*.

    *kind* is ``"depth"`` (nested deeper than the parser allows),
    ``"truncated"`` (the data ends inside an object or array: no JSON5
    syntax could close it) or ``"syntax"``; *offset* is the byte offset of
    the error in *data* when the parser reported one.  Both backends report
    a character index; it is converted here.
    """
    if isinstance(exc, (DepthError, RecursionError)):
        return "depth", None
    text = str(exc)
    if "depth limit exceeded" in text or "recursion limit" in text.lower():
        return "depth", None
    pos = getattr(exc, "pos", None)
    if not isinstance(pos, int) or pos < 0:
        return "syntax", None
    if not data[: pos * 4].isascii():
        # The first *pos* characters lie within the first 4 * pos bytes.
        head = data[: pos * 4].decode("utf-8", "surrogateescape")[:pos]
        pos = len(head.encode("utf-8", "surrogateescape"))
    if data[:4096].lstrip(b" \t\r\n")[:1] not in (b"{", b"["):
        return "syntax", pos  # a scalar document: JSON5 may read "1." that JSON stops at
    if text.startswith("Unterminated string"):
        return "truncated", pos  # the stdlib points at the start of a string that never ends
    if pos >= len(data.rstrip(b" \t\r\n")):
        return "truncated", pos  # an object or array still open at the end: nothing can close it
    return "syntax", pos


# -- JSON with comments and trailing commas, in linear time ------------------------------
#
# One regular expression partitions the input into tokens, left to right:
# text to keep (runs of plain characters and whole strings, commas that
# separate values, brackets -- fused into one match as long as possible) and
# text to drop (comments, trailing commas).  Every repetition is possessive,
# so the scan is linear with no backtracking; Python code runs once per
# dropped token (a person's comments and trailing commas: a few), and the
# count of those is capped.  The result is then parsed strictly, which
# validates whatever was kept.
#
# What is dropped (each replaced by a space, which still separates tokens)
# is exactly what JSON5 ignores outside strings: ``//``
# comments (to a line terminator: LF, CR, U+2028, U+2029), ``/* */``
# comments, a comma before ``]`` or ``}`` that follows a value, a leading
# UTF-8 byte order mark.  Text that JSON5 refuses is kept, so the strict
# parse refuses it too: ``[,]``, an unterminated ``/*`` or string, a stray
# ``/``.  Strings are double-quoted JSON strings; a single-quoted JSON5
# string is kept as text (and refused), so a ``//`` inside one can never be
# taken for a comment in a result that parses.

_LINE_COMMENT = rb"//(?:[^\n\r\xe2]++|\xe2(?!\x80[\xa8\xa9]))*+"
_BLOCK_BODY = rb"(?:[^*]++|\*(?!/))*+"
_BLOCK_COMMENT = rb"/\*" + _BLOCK_BODY + rb"\*/"
_GAP = rb"(?:[ \t\n\r]++|" + _LINE_COMMENT + rb"|" + _BLOCK_COMMENT + rb")*+"
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)'
_KEEP = (
    rb"(?:[^\"/,\[{]++"                        # plain text
    rb"|" + _STRING +                           # a string, kept whole (even unterminated)
    rb"|,(?![ \t\n\r]*+[\]}/])"                 # a comma before another value (quick check)
    rb"|,(?!" + _GAP + rb"[\]}])"               # the same, past comments
    rb"|[\[{]" + _GAP + rb","                   # "[," is invalid: keep it so it is refused
    rb"|[\[{]"
    rb"|/(?![/*])"                              # a stray slash: refused by the strict parse
    rb"|/\*" + _BLOCK_BODY + rb"\Z"             # an unterminated comment: refused too
    rb")++"
)
_RELAXED = re.compile(rb"(" + _KEEP + rb")|" + _LINE_COMMENT + rb"|" + _BLOCK_COMMENT + rb"|,", re.S)

#: More comments and trailing commas than this and the reader gives up: a
#: person does not write a million of them, and each costs Python time.
MAX_REMOVALS = 1_000_000


def strip_comments_and_trailing_commas(data: bytes, limit: int | None = None) -> bytes | None:
    """*data* without the comments, trailing commas and byte order mark that
    JSON5 allows; None when there are more than *limit* (default
    ``MAX_REMOVALS``) of them.

    Linear in ``len(data)``; only the strict parse of the result tells
    whether it is JSON."""
    if limit is None:
        limit = MAX_REMOVALS
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts = []
    for match in _RELAXED.finditer(data):
        kept = match[1]
        if kept is not None:
            parts.append(kept)
        else:
            limit -= 1
            if limit < 0:
                return None
            parts.append(b" ")  # a comment separates tokens: "1/**/2" is not "12"
    return b"".join(parts)


# -- which field cannot be stored, and why ---------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_PATH_KEY_CHARS = 40
_PATH_PARTS = 8


def format_path(path: Sequence[str | int]) -> str:
    """``stats.ratio``, ``tags[0]``, ``meta["a b"]`` -- shortened when long
    (many levels, long keys) so a message stays readable."""
    parts = []
    for index, part in enumerate(path):
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        text = part if len(part) <= _PATH_KEY_CHARS else part[: _PATH_KEY_CHARS - 1] + "\u2026"
        if _IDENTIFIER.match(part):
            parts.append(text if index == 0 else "." + text)
        else:
            parts.append("[" + json.dumps(text, ensure_ascii=True) + "]")
    if len(parts) > _PATH_PARTS:
        keep = _PATH_PARTS // 2
        hidden = len(parts) - 2 * keep
        parts = parts[:keep] + [f"\u2026({hidden} more levels)\u2026"] + parts[-keep:]
    return "".join(parts)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _leaf_problem(value: Any) -> str | None:
    """Why orjson refuses a value that is not a container, or None."""
    kind = type(value)
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return None
        return (f"integer {_short_repr(value)} is outside the 64-bit range JSON readers accept: "
                "store it as a string")
    if kind is float:
        if math.isfinite(value):
            return None
        name = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        return f"{name} is not valid JSON: store None or a finite number instead"
    if isinstance(value, uuid.UUID):
        return None
    name = kind.__name__
    if isinstance(value, float):
        return f"a {name} (a float subclass) is not JSON-serialisable: convert it with float(value)"
    if isinstance(value, tuple):
        return (f"a {name} (a tuple subclass) is not JSON-serialisable: convert it with "
                "list(value) (or ._asdict() for a namedtuple)")
    if isinstance(value, (set, frozenset)):
        return f"a {name} is not JSON-serialisable: convert the set to a list (e.g. sorted(value))"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (f"{name} data is not JSON-serialisable: decode it to str (value.decode()) "
                "or store it base64-encoded")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return (f"a {name} is not JSON-serialisable: store epoch milliseconds (as updatedAt is) "
                "or an ISO 8601 string (value.isoformat())")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"a {name} dataclass is not JSON-serialisable: convert it with dataclasses.asdict(value)"
    return (f"a {name} is not JSON-serialisable: convert it to a str, int, float, bool, None, "
            "list or dict")


def _surrogate_problem(text: str, what: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start:exc.end]
        return (f"{what} holds a lone surrogate ({ascii(bad)}) that UTF-8 cannot encode: remove or "
                "replace it (e.g. text.encode('utf-8', 'replace').decode())")
    return None


def find_problem(value: Any, depth: int = 1) -> tuple[list[str | int], str] | None:
    """``(path, reason)`` of the first part of *value* that cannot be stored
    as JSON the way :func:`dumps` writes it, or None.

    *path* lists the keys and indexes from *value* down to the offending
    part; *reason* says why and what to do.  *depth* is the container depth
    of *value* itself in the document being written (orjson refuses more
    than 254 levels).  Besides what :func:`dumps` refuses, NaN and
    infinities are reported (``dumps`` writes them as ``null``).

    Iterative and cycle-safe: meant for the error path (it is a full walk).
    """
    path: list[Any] = []  # path[i]: the key or index being visited in frames[i] (None before the first)
    active: list[int] = []  # id() of each container on the path (cycle check)
    # (iterator of (key, child), is_dict) per container on the path
    frames: list[tuple[Iterator[tuple[Any, Any]], bool]] = []

    def enter(item: Any, level: int) -> str | None:
        while isinstance(item, enum.Enum):
            item = item.value  # written as its value
        is_dict = isinstance(item, dict)
        if is_dict or isinstance(item, list) or type(item) is tuple:
            if id(item) in active:
                where = format_path(path[: active.index(id(item))]) or "the entry itself"
                return (f"the value contains itself (a reference cycle back to {where}): JSON "
                        "cannot represent a cycle; store a copy or an identifier instead")
            if level > _MAX_DEPTH:
                return (f"the data is nested more than {_MAX_DEPTH} levels deep (JSON readers "
                        "stop there): flatten the structure")
            active.append(id(item))
            frames.append((iter(item.items()) if is_dict else enumerate(item), is_dict))
            path.append(None)
            return None
        if isinstance(item, str):
            return _surrogate_problem(item, "the string")
        return _leaf_problem(item)

    problem = enter(value, depth)
    if problem is not None:
        return [], problem
    while frames:
        children, is_dict = frames[-1]
        step = next(children, None)
        if step is None:
            frames.pop()
            active.pop()
            path.pop()
            continue
        key, child = step
        path[-1] = key
        if is_dict:
            if type(key) is not str:
                what = "a str subclass" if isinstance(key, str) else type(key).__name__
                return path[:-1], (f"key {_short_repr(key)} ({what}) is not a str: JSON object "
                                   "keys must be strings; convert it with str(key)")
            problem = _surrogate_problem(key, f"the key {_short_repr(key)}")
            if problem is not None:
                return path[:-1], problem
        problem = enter(child, depth + len(frames))
        if problem is not None:
            return path[:], problem
    return None


_LEAF_TYPES = frozenset({str, int, bool, type(None)})
_CONTAINER_TYPES = frozenset({dict, list, tuple})


def _non_finite_within(value: Any, budget: int) -> bool | None:
    """Whether *value* -- something :func:`dumps` just wrote -- holds a NaN
    or infinite float; None when that takes more than about *budget* items."""
    stack = [value]
    pop = stack.pop
    push = stack.append
    leaf = _LEAF_TYPES
    containers = _CONTAINER_TYPES
    while stack:
        container = pop()
        budget -= len(container)
        if budget < 0:
            return None
        for item in (container.values() if isinstance(container, dict) else container):
            if type(item) in leaf:
                continue
            kind = type(item)
            if kind in containers:
                push(item)
            elif kind is float:
                if item - item:  # nan - nan and inf - inf are nan (truthy); finite: 0.0
                    return True
            elif isinstance(item, enum.Enum):
                push((item.value,))
            elif isinstance(item, (dict, list)):
                push(item)
    return False


def has_non_finite(value: Any, data: bytes) -> bool:
    """Whether *value*, which :func:`dumps` wrote as *data*, holds NaN or an
    infinity (written as ``null``, so they would silently become None).

    Cost on the success path: a walk of the containers, given up once it
    would take much longer than searching *data* (past one item per 128
    bytes: long strings make a value cheap to walk and slow to search, many
    small items the reverse); after that only a ``null`` somewhere in *data*
    calls for the full walk.
    """
    found = _non_finite_within(value, len(data) >> 7)
    if found is None:
        found = b"null" in data and bool(_non_finite_within(value, len(data)))
    return found
