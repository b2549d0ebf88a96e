"""Durations and sizes as people type them on a command line.

``parse_duration("3weeks")`` -> seconds; ``parse_size("10MB")`` -> bytes.  Both
raise :class:`ValueError` with a message that names the accepted forms.

Sizes follow the GNU coreutils convention (``dd``, ``sort -S``, ``du -B``):
a bare letter or an ``iB`` suffix is a power of 1024 (``512k``, ``10M``,
``1GiB``), a ``B`` suffix a power of 1000 (``10MB``, ``1GB``).
"""

from __future__ import annotations

import math
import re

__all__ = ["DURATION_FORMS", "SIZE_FORMS", "parse_duration", "parse_size"]

DURATION_FORMS = ("seconds (3600), or a number with a unit: 30s, 90m, 12h, 2d, 3w "
                  "(also sec, min, hours, days, weeks; combined: 1h30m)")
SIZE_FORMS = ("bytes (1048576), or a number with a unit: 512k, 10M, 1GiB (powers of 1024), "
              "10kB, 10MB, 1GB (powers of 1000)")

_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "wks": 604800, "week": 604800, "weeks": 604800,
}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(_NUMBER + r"\s*([a-z]+)\s*")
_SIZE = re.compile(_NUMBER + r"\s*([a-z]*)")
_POWERS = "kmgtp"


def parse_duration(text: str) -> float:
    """Seconds from ``"3600"``, ``"30s"``, ``"90m"``, ``"12h"``, ``"2d"``,
    ``"3w"``, ``"3weeks"``, ``"1h30m"``; raises ValueError otherwise."""
    cleaned = text.strip().lower()
    try:
        value = float(cleaned)
    except ValueError:
        value = None
        position, total = 0, 0.0
        while position < len(cleaned):
            match = _DURATION_PART.match(cleaned, position)
            if match is None or match.group(2) not in _SECONDS:
                break
            total += float(match.group(1)) * _SECONDS[match.group(2)]
            position = match.end()
        else:
            value = total if cleaned else None
    if value is None or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r} (give {DURATION_FORMS})")
    return value


def parse_size(text: str) -> int:
    """Bytes from ``"1048576"``, ``"512k"``, ``"10M"``, ``"1GiB"``,
    ``"10MB"`` (see the module docstring); raises ValueError otherwise.
    A fraction of a byte is dropped (``1.5k`` is 1536)."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is not None:
        number, unit = float(match.group(1)), match.group(2)
        if unit in ("", "b"):
            factor = 1
        elif unit[0] in _POWERS and unit[1:] in ("", "ib", "b"):
            base = 1000 if unit[1:] == "b" else 1024
            factor = base ** (_POWERS.index(unit[0]) + 1)
        else:
            factor = 0
        if factor:
            return int(number * factor)
    raise ValueError(f"not a size: {text!r} (give {SIZE_FORMS})")
