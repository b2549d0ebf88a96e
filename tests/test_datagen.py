"""The realistic data generator (SPEC §9): deterministic, the right shapes and
sizes, and stores it generates go through the library end to end."""

from __future__ import annotations

import json
import re

import sessionsd
from sessionsd import SessionStore, _json, datagen

KEY_SHAPES = [
    re.compile(r"agent:main:[a-z]+:dm:\d+"),
    re.compile(r"agent:main:cron:[0-9a-f-]{36}:run:[0-9a-f-]{36}"),
    re.compile(r"agent:main:subagent:[0-9a-f-]{36}"),
    re.compile(r"agent:main:[a-z]+:group:-100\d+:topic:\d+"),
    re.compile(r"agent:worker\d:discord:channel:\d+"),
]


def compact_size(entry: dict) -> int:
    return len(json.dumps(entry, separators=(",", ":")))


def test_same_seed_same_store_other_seed_other_store():
    assert datagen.generate_store(40, seed=7) == datagen.generate_store(40, seed=7)
    assert datagen.generate_keys(40, seed=7) != datagen.generate_keys(40, seed=8)


def test_keys_are_distinct_lower_case_and_realistic():
    keys = datagen.generate_keys(2_000, seed=1)
    assert len(set(keys)) == 2_000
    assert all(key == key.lower().strip() for key in keys)
    for key in keys:
        assert any(shape.fullmatch(key) for shape in KEY_SHAPES), key
    # Every shape of SPEC §9 is represented.
    assert all(any(shape.fullmatch(key) for key in keys) for shape in KEY_SHAPES)


def test_size_mix_and_fields():
    store = datagen.generate_store(400, seed=2)
    sizes = sorted(compact_size(entry) for entry in store.values())
    stubs = sum(size <= 1_000 for size in sizes) / len(sizes)
    medium = sum(15_000 <= size <= 65_000 for size in sizes) / len(sizes)
    heavy = sum(85_000 <= size <= 155_000 for size in sizes) / len(sizes)
    assert 0.22 <= stubs <= 0.38 and 0.42 <= medium <= 0.58 and 0.13 <= heavy <= 0.27
    assert stubs + medium + heavy > 0.98
    for entry in store.values():
        assert {"sessionId", "updatedAt", "lastChannel", "lastTo"} <= set(entry)
        assert type(entry["updatedAt"]) is int
    heavy_entries = [e for e in store.values() if compact_size(e) > 85_000]
    assert any("skillsSnapshot" in e or "systemPromptReport" in e for e in heavy_entries)


def test_small_mode_gives_stubs_only():
    store = datagen.generate_store(300, seed=3, small=True)
    assert all(250 <= compact_size(entry) <= 1_100 for entry in store.values())


def test_a_generated_store_migrates_and_reads_back_identical(tmp_path):
    store = datagen.generate_store(60, seed=4)
    path = tmp_path / "sessions.json"
    path.write_bytes(_json.dumps(store))
    assert sessionsd.migrate(path).outcome == "migrated"
    sessions = SessionStore(path)
    assert sessions.load() == store
    key = next(iter(store))
    assert sessions.updated_at(key) == store[key]["updatedAt"]
