"""The command line's progress bar (:class:`Progress`): one line on stderr,
shown only on a terminal, used by ``migrate``, ``copy`` and ``demo``.  Split
out of :mod:`sessionsd.cli`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _short_size(size: float) -> str:
    """``512 B``, ``7.9 KiB``, ``440.2 MiB``, ``1.02 GiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.2f} {unit}" if size < 10 and unit in ("GiB", "TiB") else f"{size:.1f} {unit}"


def _duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``1h02m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal: called
    as ``progress(done, total)`` -- bytes of the legacy file read when
    *unit* is ``"bytes"`` (migration), items otherwise -- it shows the bar,
    the percentage, the amount, the rate and the time left, redrawn at most
    ten times a second, and the time it took once done."""

    def __init__(self, label: str, stream: TextIO | None = None, unit: str = "bytes",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.unit = unit
        self.clock = clock
        self._started = clock()
        self._drawn = float("-inf")
        self._width = 0
        self._finished = False

    def _amount(self, value: float) -> str:
        return _short_size(value) if self.unit == "bytes" else f"{int(value)}"

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0 or self._finished:
            return
        now = self.clock()
        finished = done >= total
        if not finished and now - self._drawn < 0.1:
            return
        self._drawn = now
        elapsed = now - self._started
        percent = min(100, done * 100 // total)
        filled = percent * 30 // 100
        bar = f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%"
        rate = done / elapsed if elapsed > 0 else 0.0
        rate_text = f"{self._amount(rate)}/s" if self.unit == "bytes" else f"{rate:.0f}/s"
        if finished:
            line = f"{bar} {self._amount(total)} in {_duration(elapsed)}"
            if elapsed > 0:
                line += f" ({rate_text})"
        else:
            line = f"{bar} {self._amount(done)}/{self._amount(total)}"
            if rate > 0:
                line += f" {rate_text} ETA {_duration((total - done) / rate)}"
        self._draw(line)
        if finished:
            self._finished = True
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line if it is still open (a migration that stopped
        before the end of the file)."""
        if self.enabled and self._width and not self._finished:
            self._finished = True
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, line: str) -> None:
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
