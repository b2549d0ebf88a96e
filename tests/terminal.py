"""Run a command with its stderr on a pseudo-terminal (where progress bars
are drawn) and its stdout on a pipe; return what each showed."""

from __future__ import annotations

import os
import subprocess


def run_on_a_terminal(command: list[str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, str]:
    import pty

    master, slave = pty.openpty()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=slave, text=True,
                              timeout=timeout, check=False)
        os.close(slave)
        slave = None
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    return done, shown.decode()
