"""`put` of a new session into a store at its cap (enforce) vs maintenance off.

Target (maintenance issue): enforce/off <= 1.3x, and flat from 1k to 10k
sessions.  Small entries (datagen small=True) so the 10k store builds fast.
"""

from __future__ import annotations

import itertools
import json

import pytest

import sessionsd
from sessionsd import SessionStore, datagen
from sessionsd.maintenance import Maintenance

SIZES = [1000, 10000]


@pytest.fixture(scope="module", params=SIZES)
def capped(request, tmp_path_factory):
    size = request.param
    root = tmp_path_factory.mktemp(f"cap{size}")
    path = root / "sessions.json"
    path.write_text(json.dumps(datagen.generate_store(size, seed=3, small=True)))
    assert sessionsd.migrate(path, max_bytes=None).outcome == "migrated"
    return size, str(path)


_counter = itertools.count()


@pytest.mark.parametrize("mode", ["off", "enforce"])
def test_put_new_session_at_cap(benchmark, record, capped, mode):
    size, path = capped
    benchmark.group = f"put new session at cap ({size} sessions)"
    maintenance = Maintenance(mode="enforce", max_entries=size) if mode == "enforce" else None
    store = SessionStore(path, durability="none", maintenance=maintenance)

    def put_new():
        # Same operation either way: a brand-new session; with maintenance
        # on, every call evicts the oldest one to stay at the cap.
        store.put(f"agent:main:bench:{mode}:{next(_counter)}", {"updatedAt": 1_900_000_000_000, "n": 1})

    benchmark.pedantic(put_new, rounds=1000, iterations=1, warmup_rounds=20)
    count = store.last_stats.count if store.last_stats else None
    expected_ok = count == size if mode == "enforce" else count is None or count > size
    record(f"directory-{mode}", size, expected_ok, mode=mode)
    if mode == "off":
        # Put the store back at its size for the enforce run.
        store_trim = SessionStore(path, maintenance=Maintenance(mode="enforce", max_entries=size))
        store_trim.maintain()
