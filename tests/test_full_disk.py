"""A full disk (issue "Through every flip and fault", item 4): a real 2 MiB
tmpfs, filled to the last few pages.  Reads keep working, deletes work,
recovery that needs no new space completes, and what needs space fails with
ENOSPC leaving the state intact."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sessionsd
from sessionsd import SessionStore

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux")

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs mounted on a fresh directory, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_pages: int) -> Path:
    """Fill *disk* until ENOSPC, then free *leave_pages* pages."""
    filler = disk / f"filler-{len(list(disk.glob('filler-*')))}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * PAGE
        while True:
            try:
                if os.write(fd, chunk) < len(chunk):
                    break
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - size % PAGE - leave_pages * PAGE))
    return filler


def make_store(disk: Path, count: int = 8) -> str:
    base = disk / "sessions"
    base.mkdir(mode=0o700)
    path = base / "sessions.json"
    path.write_text(json.dumps({f"k{i}": {"updatedAt": i + 1, "pad": "x" * 1500} for i in range(count)}))
    assert sessionsd.migrate(path).outcome == "migrated"
    for backup in base.glob("sessions.json.bak.*"):
        backup.unlink()
    return str(path)


@pytest.mark.parametrize("free_pages", [0, 1, 2, 3, 4, 6, 8])
def test_a_full_disk_never_wedges_the_store(tiny_disk, free_pages):
    """Whatever page the disk runs out at (before, at or after the commit
    point of a three-entry update), the store stays whole and usable."""
    path = make_store(tiny_disk)
    store = SessionStore(path, durability="none")
    before = store.load()
    fill(tiny_disk, leave_pages=free_pages)
    big = {"pad": "y" * 3000}

    def add_three(sessions):
        for i in range(3):
            sessions[f"new{i}"] = {**big, "updatedAt": 100 + i}

    try:
        store.mutate(add_three)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    # Reads keep working, from fresh objects and the used one, and see one
    # whole state: the old one or the new one, never a mix.
    for reader in (store, SessionStore(path), SessionStore(path, cache=False)):
        loaded = reader.load()
        added = {key for key in loaded if key.startswith("new")}
        assert added in (set(), {"new0", "new1", "new2"}), added
        assert {k: v for k, v in loaded.items() if k in before} == before
        assert sorted(reader.keys()) == sorted(loaded)
        assert reader.get("k0") == before["k0"]
        assert reader.updated_at("k1") == 2
    root = Path(path).parent / "sessions.d"
    assert not (root / "commit.json").exists()  # recovery needed no space and finished
    assert SessionStore(path)._backend._dir.read_seq() % 2 == 0
    # What needs space fails cleanly and leaves the state as it was.
    fill(tiny_disk, leave_pages=1)
    state = SessionStore(path, cache=False).load()
    with pytest.raises(OSError) as info:
        store.put("k0", {"pad": "z" * 20_000, "updatedAt": 9})
    assert info.value.errno == errno.ENOSPC
    assert SessionStore(path, cache=False).load() == state
    # A small write whose entry fits but whose state.json bump may not: all
    # or nothing.
    try:
        store.put("k1", {"updatedAt": 5})
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        assert SessionStore(path, cache=False).load() == state
    else:
        assert SessionStore(path, cache=False).get("k1") == {"updatedAt": 5}
    # Deletes work, and free space.
    assert store.delete("k7") is True
    assert "k7" not in SessionStore(path, cache=False).load()
    # check --fix completes.
    done = subprocess.run([sys.executable, "-m", "sessionsd", "check", "--fix", path],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_lock_works_on_a_completely_full_disk(tiny_disk):
    path = make_store(tiny_disk)
    store = SessionStore(path, durability="none")
    before = store.load()
    fill(tiny_disk, leave_pages=0)
    # A new process: its owner record for the lock file cannot be written now.
    code = ("import sys; from sessionsd import SessionStore; s = SessionStore(sys.argv[1]); "
            "n = len(s.load()); print(n, s.delete('k3'))")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(before)), "True"]
    assert store.delete("k4") is True
    after = SessionStore(path, cache=False).load()
    assert set(after) == set(before) - {"k3", "k4"}
    assert not os.path.exists(os.path.join(os.path.dirname(path), "sessions.json.lock"))
