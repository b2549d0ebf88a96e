"""Codec benchmarks: compiled vs pure twin vs a plain stdlib implementation.

Targets (issue "Package foundation"): encode >= 3x and decode >= 4x faster
than the twin for a 36-byte key; scan + decode of a 100k-entry directory
>= 1.3x faster than os.scandir + stdlib base64.
"""

from __future__ import annotations

import base64
import binascii
import os

import pytest

from sessionsd import datagen

N = 100_000
KEY36 = "agent:main:cron:abcdef:run:123456789"
assert len(KEY36.encode()) == 36


# -- the plain baseline: what one writes with os.scandir and stdlib base64 ----

def stdlib_encode(key: str) -> str:
    raw = key.strip().encode("utf-8")
    return "session-" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") + ".json"


def stdlib_decode(name: str):
    if not (name.startswith("session-") and name.endswith(".json")) or name.startswith("session-hash-"):
        return None
    middle = name[8:-5]
    try:
        key = base64.urlsafe_b64decode(middle + "=" * (-len(middle) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return key if stdlib_encode(key) == name else None


def stdlib_scan(directory: str):
    found = []
    with os.scandir(directory) as listing:
        for entry in listing:
            name = entry.name
            if name.startswith("session-hash-"):
                key = None
            else:
                key = stdlib_decode(name)
                if key is None:
                    continue
            if entry.is_file(follow_symlinks=False):
                found.append((name, key))
    return found


# -- data -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def keys():
    return datagen.generate_keys(N, seed=1)


@pytest.fixture(scope="session")
def names(keys, twin):
    return [twin.encode_key(k) for k in keys]


@pytest.fixture(scope="session")
def entries_dir(tmp_path_factory, names):
    root = tmp_path_factory.mktemp("entries100k")
    for name in names:
        os.close(os.open(root / name, os.O_CREAT | os.O_WRONLY, 0o600))
    # A few impostors, as a real store accumulates.
    for name in (".hidden.json", names[0] + ".tmp", "session-YQ==.json"):
        os.close(os.open(root / name, os.O_CREAT | os.O_WRONLY, 0o600))
    return str(root)


BACKENDS = ["compiled", "python"]


def get_backend(name, request):
    return request.getfixturevalue("twin" if name == "python" else "compiled")


# -- one 36-byte key ------------------------------------------------------------

@pytest.mark.benchmark(group="encode 36-byte key")
@pytest.mark.parametrize("backend", BACKENDS + ["stdlib"])
def test_encode_one(benchmark, record, request, backend):
    fn = stdlib_encode if backend == "stdlib" else get_backend(backend, request).encode_key
    name = benchmark(fn, KEY36)
    record(backend, 1, name == "session-" + base64.urlsafe_b64encode(KEY36.encode()).decode() + ".json")


@pytest.mark.benchmark(group="decode 36-byte key")
@pytest.mark.parametrize("backend", BACKENDS + ["stdlib"])
def test_decode_one(benchmark, record, request, backend):
    fn = stdlib_decode if backend == "stdlib" else get_backend(backend, request).decode_name
    name = stdlib_encode(KEY36)
    record(backend, 1, benchmark(fn, name) == KEY36)


# -- 100k names -----------------------------------------------------------------

@pytest.mark.benchmark(group="encode 100k keys")
@pytest.mark.parametrize("backend", BACKENDS + ["stdlib"])
def test_encode_100k(benchmark, record, request, backend, keys, names):
    fn = stdlib_encode if backend == "stdlib" else get_backend(backend, request).encode_key
    result = benchmark.pedantic(lambda: [fn(k) for k in keys], rounds=5, iterations=1)
    record(backend, N, result == names)


@pytest.mark.benchmark(group="decode 100k names")
@pytest.mark.parametrize("backend", BACKENDS + ["stdlib"])
def test_decode_100k(benchmark, record, request, backend, keys, names):
    if backend == "stdlib":
        run = lambda: [stdlib_decode(n) for n in names]  # noqa: E731
    else:
        module = get_backend(backend, request)
        run = lambda: module.decode_names(names)  # noqa: E731
    result = benchmark.pedantic(run, rounds=5, iterations=1)
    record(backend, N, result == keys)


@pytest.mark.benchmark(group="scan + decode 100k entries")
@pytest.mark.parametrize("backend", BACKENDS + ["stdlib"])
def test_scan_100k(benchmark, record, request, backend, entries_dir, keys):
    fn = stdlib_scan if backend == "stdlib" else get_backend(backend, request).scan_entries
    fn(entries_dir)  # warm the dentry cache so every backend sees the same state
    result = benchmark.pedantic(fn, args=(entries_dir,), rounds=7, iterations=1)
    record(backend, N, sorted(k for _, k in result) == sorted(keys))
