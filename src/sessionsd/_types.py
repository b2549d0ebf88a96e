"""Type aliases shared by the whole package, and the checks of its modes.

The ``Literal`` aliases name the only strings a setting accepts, so a type
checker catches ``durability="ful"`` at the call site.  Callers without type
checking get the same protection at run time: every public entry point that
takes one of these modes calls :func:`check_durability` or
:func:`check_maintenance_mode`, which raise a ``ValueError`` naming the
accepted values.

This module imports nothing from the package, so any module may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias

__all__ = [
    "Durability",
    "DURABILITY_MODES",
    "MaintenanceMode",
    "MAINTENANCE_MODES",
    "MigrationOutcome",
    "DetectionStatus",
    "JSONValue",
    "Entry",
    "Entries",
    "FileToken",
    "ProgressCallback",
    "KeyNormalizer",
    "check_durability",
    "check_maintenance_mode",
]

#: How hard a write works to survive a crash: ``"none"`` (rename-atomic:
#: survives a process crash), ``"file"`` (also fsync each file before its
#: rename), ``"full"`` (also fsync the directory after the rename).
Durability: TypeAlias = Literal["none", "file", "full"]
#: Every :data:`Durability`, weakest first.
DURABILITY_MODES: tuple[Durability, ...] = ("none", "file", "full")

#: Maintenance ``mode``: ``"warn"`` reports what would be removed,
#: ``"enforce"`` removes it.
MaintenanceMode: TypeAlias = Literal["warn", "enforce"]
#: Every :data:`MaintenanceMode`, the default first.
MAINTENANCE_MODES: tuple[MaintenanceMode, ...] = ("warn", "enforce")

#: The outcome of one migration (``MigrationResult.outcome``).
MigrationOutcome: TypeAlias = Literal[
    "migrated", "already_directory", "skipped_empty", "skipped_invalid", "missing", "failed"
]
#: What a read-only inspection found (``Detection.status``).
DetectionStatus: TypeAlias = Literal[
    "already_directory", "ready_to_migrate", "empty_legacy", "invalid_legacy", "missing"
]

#: Any value JSON can hold (a dict, list, str, int, float, bool or None,
#: nested).  ``Any``: a precise recursive type would force a cast at every
#: use of a parsed document.
JSONValue: TypeAlias = Any
#: One session's entry: a JSON object.
Entry: TypeAlias = dict[str, Any]
#: A whole store: entries by (normalised) session key.
Entries: TypeAlias = dict[str, Entry]
#: What a file looked like at one moment: ``(st_dev, st_ino, st_size,
#: st_mtime_ns)``; equal tokens mean equal bytes for files replaced by rename.
FileToken: TypeAlias = tuple[int, int, int, int]
#: Called as ``progress(done, total)`` while a long operation runs.
ProgressCallback: TypeAlias = Callable[[int, int], None]
#: A store's key rule: the normal form of a key, or ``InvalidKeyError``.
KeyNormalizer: TypeAlias = Callable[[Any], str]


def check_durability(value: object) -> Durability:
    """*value* as a :data:`Durability`.

    Raises:
        ValueError: *value* is not one of ``"none"``, ``"file"``, ``"full"``.
    """
    for mode in DURABILITY_MODES:
        if value == mode:
            return mode
    raise ValueError(f"durability must be one of {DURABILITY_MODES}, not {value!r}")


def check_maintenance_mode(value: object) -> MaintenanceMode:
    """*value* as a :data:`MaintenanceMode`.

    Raises:
        ValueError: *value* is not ``"warn"`` or ``"enforce"``.
    """
    for mode in MAINTENANCE_MODES:
        if value == mode:
            return mode
    raise ValueError(f"maintenance mode must be one of {MAINTENANCE_MODES}, not {value!r}")
