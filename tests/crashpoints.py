"""Crash injection for the crash-safety tests: :func:`crash_at` makes this
process SIGKILL itself when a write path passes one of the named points of
``sessionsd._faults`` -- no cleanup, no ``finally`` blocks, exactly like a
power cut for everything above the page cache."""

from __future__ import annotations

import os
import signal

import sessionsd._faults as faults


def crash_at(*points: str) -> None:
    """Kill this process at the first of *points* a write path passes."""
    wanted = frozenset(points)

    def hook(name: str) -> None:
        if name in wanted:
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))

    faults.hook = hook
