"""Crash points for the crash-safety tests.

A test's child process adds names to :data:`POINTS`; when a write path passes
a named point, the process kills itself with SIGKILL -- no cleanup, no
``finally`` blocks, exactly like a power cut for everything above the page
cache.  Empty in production: the check is one set lookup.
"""

from __future__ import annotations

import os
import signal

POINTS: set[str] = set()


def hit(name: str) -> None:
    if name in POINTS:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
