"""One writer process of the concurrent-writers benchmark.

    python writer.py BACKEND STORE_PATH PREFIX COUNT ENTRY_JSON_FILE

Imports and opens the store first, prints ``ready`` and waits for a line on
stdin, so the measured interval (go -> done) holds only the puts, never the
interpreter start-up.  Then puts COUNT entries under keys ``PREFIX<i>``
(disjoint from every other writer's) with durability ``none`` (sqlite:
``synchronous=NORMAL``) and prints ``done <seconds>``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backends import open_backend  # noqa: E402

from sessionsd import _json  # noqa: E402


def main(argv: list[str]) -> int:
    kind, path, prefix, count, entry_file = argv[1], argv[2], argv[3], int(argv[4]), argv[5]
    with open(entry_file, "rb") as fh:
        entry = _json.loads(fh.read())
    backend = open_backend(kind, path, "none")
    keys = [f"{prefix}{i}" for i in range(count)]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    started = time.perf_counter()
    for i, key in enumerate(keys):
        backend.put(key, {**entry, "updatedAt": 1_900_000_000_000 + i})
    elapsed = time.perf_counter() - started
    backend.close()
    print(f"done {elapsed:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
