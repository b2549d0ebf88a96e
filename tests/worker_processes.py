"""Run a function of a worker script (tests/workers.py, index_workers.py,
pg_workers.py) in a child process: ``script function json-args`` in, the last
stdout line (JSON) out."""

from __future__ import annotations

import json
import subprocess
import sys


def start(script: str, function: str, *args: object) -> subprocess.Popen[str]:
    """Start *function* of the worker *script* with *args* in a child process."""
    return subprocess.Popen([sys.executable, script, function, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> dict:
    """Wait for *proc*; it must succeed; its answer (the last stdout line)."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])
