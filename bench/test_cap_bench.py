"""`put` of a new session into a store at its cap (enforce) vs maintenance off.

Target (maintenance issue): enforce/off <= 1.3x, and flat from 1k to 10k
sessions.  Small entries (datagen small=True) so the 10k store builds fast;
the sizes are fixed (1k and 10k) whatever ``SESSIONSD_BENCH_SIZES`` says,
since the point is the comparison between them.

Two raw floors (no lock, seq, stats or checks) show what the file system
charges for the same work: ``floor`` creates the new entry file (temp file +
``os.replace``), ``floor-evict`` also unlinks one existing entry file, as
every put at the cap must.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque

import pytest
from backends import Floor

import sessionsd
from sessionsd import SessionStore, datagen
from sessionsd.maintenance import Maintenance

SIZES = [1000, 10000]
ROUNDS = 300 if os.environ.get("SESSIONSD_BENCH_QUICK") == "1" else 1000
ENTRY = {"updatedAt": 1_900_000_000_000, "n": 1}
BACKEND = {"off": "directory-off", "enforce": "directory-enforce", "floor": "floor", "floor-evict": "floor-evict"}


@pytest.fixture(scope="module", params=SIZES)
def capped(request, tmp_path_factory):
    size = request.param
    root = tmp_path_factory.mktemp(f"cap{size}")
    path = root / "sessions.json"
    path.write_text(json.dumps(datagen.generate_store(size, seed=3, small=True)))
    assert sessionsd.migrate(path, max_bytes=None).outcome == "migrated"
    return size, str(path)


_counter = itertools.count()


def _on_disk(path: str) -> int:
    return len(SessionStore(path, cache=False).keys())


# floor-evict last: it removes sessions behind the library's back.
@pytest.mark.parametrize("mode", ["off", "enforce", "floor", "floor-evict"])
def test_put_new_session_at_cap(benchmark, record, capped, mode):
    size, path = capped
    benchmark.group = f"put new session at cap ({size} sessions)"
    written: list[str] = []
    victims: list[str] = []
    if mode.startswith("floor"):
        floor = Floor(path)
        # Eviction order: the existing entry files, then the floor's own.
        queue = deque(sorted(floor.prefix + name for name in os.listdir(floor.entries)
                             if not name.startswith(".")))

        def put(key, entry):
            floor.put(key, entry)
            if mode == "floor-evict":
                queue.append(floor.file(key))
                victims.append(queue.popleft())
                os.unlink(victims[-1])
    else:
        maintenance = Maintenance(mode="enforce", max_entries=size) if mode == "enforce" else None
        put = SessionStore(path, durability="none", maintenance=maintenance).put

    def put_new():
        # The same operation every time: a brand-new session; with
        # maintenance on, every call evicts the oldest one to stay at the cap.
        key = f"agent:main:bench:{mode}:{next(_counter)}"
        written.append(key)
        put(key, ENTRY)

    before = _on_disk(path)
    benchmark.pedantic(put_new, rounds=ROUNDS, iterations=1, warmup_rounds=20)
    # Checked on disk by a fresh reader: the cap holds (enforce, and the
    # evicting floor) or every put added a session, and the session just
    # written survived.
    count = _on_disk(path)
    expected = before if mode in ("enforce", "floor-evict") else before + len(written)
    correct = (count == expected and (mode != "enforce" or count == size)
               and SessionStore(path, cache=False).get(written[-1]) == ENTRY
               and not any(os.path.exists(victim) for victim in victims))
    record(BACKEND[mode], size, correct, mode=mode, durability="none", entries="small")
    # Put the store back at its size for the next mode.
    if mode == "off":
        SessionStore(path, maintenance=Maintenance(mode="enforce", max_entries=size)).maintain()
    elif mode == "floor":
        for key in written:
            floor.delete(key)
