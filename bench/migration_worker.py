"""One migration of the migration benchmark, in a process of its own.

    python migration_worker.py MODE STORE_PATH

MODE is ``directory`` (``sessionsd.migrate``: streaming, staging, durable
flush, promotion, backup) or ``floor`` (parse the whole file, write every
entry file, one ``sync()``: what test_store_bench.py's ``_floor_migrate``
does).  Imports first, prints ``ready <rss>`` and waits for ``go`` on
stdin, so the measured interval holds only the migration; then prints
``done <seconds> <peak rss> <sessions>``.  Sizes are bytes: the peak is the
process's high-water mark (``VmHWM``, its own address space -- unlike
``ru_maxrss``, which Linux carries over from the forking parent), the
baseline is the resident size after the imports.
"""

from __future__ import annotations

import os
import resource
import sys
import time

import sessionsd
from sessionsd import _json
from sessionsd._codec import encode_key
from sessionsd._documents import encode_document
from sessionsd._layout import StorePaths


def _status(field: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # (not exact for the baseline off Linux)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def floor(path: str) -> int:
    with open(path, "rb") as fh:
        data = _json.loads(fh.read())
    prefix = StorePaths.from_store_path(path).entries
    os.makedirs(prefix, mode=0o700)
    prefix += os.sep
    for key, entry in data.items():
        fd = os.open(prefix + encode_key(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, encode_document(key, entry))
        finally:
            os.close(fd)
    os.sync()
    return len(data)


def directory(path: str) -> int:
    result = sessionsd.migrate(path)
    if result.outcome != "migrated":
        raise SystemExit(f"migration: {result.outcome} {result.warnings}")
    return result.migrated_entries


def main(argv: list[str]) -> int:
    mode, path = argv[1], argv[2]
    run = {"directory": directory, "floor": floor}[mode]
    print(f"ready {_status('VmRSS')}", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    started = time.perf_counter()
    count = run(path)
    elapsed = time.perf_counter() - started
    print(f"done {elapsed:.6f} {_status('VmHWM')} {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
