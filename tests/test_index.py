"""The listing index (sessionsd.index): keys(), len(), summary() and recent()
always agree with a full read, whoever wrote the store and whenever a
writer died."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import reference_host as ref
import worker_processes
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from worker_processes import finish

import sessionsd
from sessionsd import SessionStore, index
from sessionsd._codec import encode_key

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.join(HERE, "index_workers.py")


def summarize(entries: dict) -> dict:
    return {key: {"lastChannel": e.get("lastChannel"), "lastTo": e.get("lastTo"), "updatedAt": e.get("updatedAt")}
            for key, e in entries.items()}


def expected_recent(entries: dict) -> list:
    summary = summarize(entries)
    order = sorted(summary, key=lambda key: (-index.age(summary[key]["updatedAt"]), key))
    return [(key, summary[key]) for key in order]


def assert_listings_agree(path, *stores) -> dict:
    truth = SessionStore(path, cache=False, index=False).load()
    recent = expected_recent(truth)
    for store in stores + (SessionStore(path, cache=False),):
        assert store.summary() == summarize(truth)
        assert sorted(store.keys()) == sorted(truth)
        assert len(store) == len(truth)
        assert store.recent() == recent[:50]
        assert store.recent(2, 1) == recent[1:3]
        assert store.recent(1000) == recent
    return truth


def make_store(tmp_path, entries: dict) -> str:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(entries))
    assert sessionsd.migrate(path).outcome == "migrated"
    return str(path)


def index_files(path) -> set:
    root = os.path.join(os.path.dirname(str(path)), "sessions.d")
    return {name for name in os.listdir(root) if name.startswith("index")}


def backdate(path, seconds: float = 60) -> None:
    """Age every entry file beyond the racy window, as if written a while ago."""
    entries = os.path.join(os.path.dirname(str(path)), "sessions.d", "entries")
    when = time.time() - seconds
    for name in os.listdir(entries):
        os.utime(os.path.join(entries, name), (when, when))


SEED = {f"agent:main:k{i}": {"updatedAt": 100 + i, "lastChannel": "telegram", "lastTo": f"u{i}", "n": i}
        for i in range(20)}


# -- basics -------------------------------------------------------------------------

def test_first_listing_builds_and_stores_the_index(tmp_path):
    path = make_store(tmp_path, SEED)
    assert index_files(path) == set()
    store = SessionStore(path)
    assert_listings_agree(path, store)
    assert index_files(path) == {"index", "index.log"}
    assert store.recent(3) == expected_recent(SEED)[:3]


def test_writes_append_to_the_journal_and_listings_need_no_entry_reads(tmp_path, monkeypatch):
    path = make_store(tmp_path, SEED)
    store = SessionStore(path, durability="none")
    store.summary()
    log = os.path.join(tmp_path, "sessions.d", "index.log")
    before = os.path.getsize(log)
    store.put("agent:main:new", {"updatedAt": 999, "lastChannel": "slack"})
    store.patch("agent:main:k1", {"lastTo": "changed"})
    store.delete("agent:main:k2")
    store.mutate(lambda s: s.update({"agent:main:k3": {"updatedAt": 1}, "agent:main:k4": {"updatedAt": 2}}))
    assert os.path.getsize(log) > before
    with open(log, "rb") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 1 + 4  # header + one record per commit (the update is one record)

    def no_reads(*args, **kwargs):
        raise AssertionError("a current index must not read entry files")

    monkeypatch.setattr(index, "read_regular", no_reads)
    fresh = SessionStore(path, cache=False)
    truth = SessionStore(path, cache=False, index=False).load()
    assert fresh.summary() == summarize(truth) and len(fresh) == len(truth)
    assert fresh.recent(2) == expected_recent(truth)[:2]
    assert fresh.recent(2)[0][0] == "agent:main:new"


def test_recent_order_and_arguments(tmp_path):
    entries = {"b": {"updatedAt": 5}, "a": {"updatedAt": 5}, "c": {"updatedAt": 7}, "none": {},
               "text": {"updatedAt": "yesterday"}, "float": {"updatedAt": 6.5}, "aa": {}}
    path = make_store(tmp_path, entries)
    store = SessionStore(path)
    assert [key for key, _ in store.recent()] == ["c", "float", "a", "b", "aa", "none", "text"]
    assert [key for key, _ in store.recent(2, 2)] == ["a", "b"]
    assert store.recent(0) == [] and store.recent(5, 100) == []
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError):
            store.recent(bad)
        with pytest.raises(ValueError):
            store.recent(1, bad)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "sessions.json").write_text(json.dumps(entries))
    assert SessionStore(legacy / "sessions.json").recent() == store.recent()


def test_values_are_what_load_reads(tmp_path):
    import enum
    import uuid

    class Channel(enum.Enum):
        TG = "telegram"

    path = make_store(tmp_path, {"seed": {}})
    store = SessionStore(path)
    store.summary()
    ident = uuid.UUID(int=7)
    store.put("k", {"updatedAt": 2 ** 63, "lastChannel": Channel.TG, "lastTo": (ident, {"x": [1]})})
    store.put("f", {"updatedAt": -0.0, "lastChannel": ["a", {"b": None}], "lastTo": "ü\u2028"})
    truth = assert_listings_agree(path, store)
    assert truth["k"]["lastChannel"] == "telegram"
    mine = store.summary()
    mine["f"]["lastChannel"].append("mutated")  # a caller's copy, never the cache
    assert store.summary()["f"]["lastChannel"] == ["a", {"b": None}]


def test_index_off_never_creates_files(tmp_path):
    path = make_store(tmp_path, SEED)
    store = SessionStore(path, index=False)
    assert len(store) == 20 and store.recent(1)[0][0] == "agent:main:k19"
    store.put("x", {"updatedAt": 1})
    assert index_files(path) == set()


# -- other writers ---------------------------------------------------------------------

def test_reference_writes_are_picked_up(tmp_path):
    path = make_store(tmp_path, SEED)
    store = SessionStore(path)
    assert_listings_agree(path, store)
    ref.write_entry(path, "agent:main:k5", {"updatedAt": 5000, "lastChannel": "reference"})
    ref.write_entry(path, "agent:main:fromref", {"updatedAt": 1})
    truth = assert_listings_agree(path, store)
    assert store.recent(1) == [("agent:main:k5", {"lastChannel": "reference", "lastTo": None, "updatedAt": 5000})]
    assert "agent:main:fromref" in truth


def test_repair_rereads_only_changed_files(tmp_path, monkeypatch):
    path = make_store(tmp_path, SEED)
    backdate(path)
    SessionStore(path).summary()  # the stored index now knows every file's stat
    ref.write_entry(path, "agent:main:k7", {"updatedAt": 1, "lastChannel": "moved"})
    os.unlink(os.path.join(tmp_path, "sessions.d", "entries", encode_key("agent:main:k8")))
    read = []
    real = index.read_regular

    def counting(file_path, *args):
        read.append(os.path.basename(file_path))
        return real(file_path, *args)

    monkeypatch.setattr(index, "read_regular", counting)
    base = tmp_path / "sessions.d" / "index"
    before = base.stat().st_ino
    truth = assert_listings_agree(path)
    assert read == [encode_key("agent:main:k7")]
    assert base.stat().st_ino == before  # the repair was appended to the journal, the base kept
    assert "agent:main:k8" not in truth
    read.clear()
    assert_listings_agree(path)  # the repair was stored: nothing to re-read
    assert read == []


def test_hand_edits_without_a_version_bump(tmp_path):
    """What is detected without a state.json bump: an edit that creates,
    replaces (by rename) or removes an entry file changes the mtime of
    entries/, which is part of the index token.  What is not: a file
    rewritten in place (same inode, entries/ untouched) -- until the next
    change of the token, when its new mtime or size is seen."""
    path = make_store(tmp_path, SEED)
    backdate(path)
    store = SessionStore(path)
    assert_listings_agree(path, store)
    entries = tmp_path / "sessions.d" / "entries"
    time.sleep(0.05)  # past the timestamp tick of the last change to entries/
    doc = {"sessionKey": "agent:main:k3", "entry": {"updatedAt": 7777, "lastChannel": "edited"}}
    temp = entries / ".edit.tmp"
    temp.write_text(json.dumps(doc))
    os.chmod(temp, 0o600)
    os.replace(temp, entries / encode_key("agent:main:k3"))
    assert store.recent(1)[0] == ("agent:main:k3", {"lastChannel": "edited", "lastTo": None, "updatedAt": 7777})
    assert_listings_agree(path, store)
    time.sleep(0.05)
    os.unlink(entries / encode_key("agent:main:k4"))
    assert "agent:main:k4" not in store and len(store) == 19

    # In place, same inode, entries/ untouched: not seen until the token moves.
    target = entries / encode_key("agent:main:k5")
    doc = {"sessionKey": "agent:main:k5", "entry": {"updatedAt": 8888, "lastChannel": "in place, longer"}}
    with open(target, "r+") as fh:
        fh.truncate(0)
        fh.write(json.dumps(doc))
    assert store.summary()["agent:main:k5"]["updatedAt"] == 105  # the documented blind spot
    ref.write_entry(path, "agent:main:other", {"updatedAt": 1})  # any foreign commit
    assert store.summary()["agent:main:k5"]["updatedAt"] == 8888
    assert_listings_agree(path, store)


def test_damaged_index_files_are_rebuilt(tmp_path):
    path = make_store(tmp_path, SEED)
    store = SessionStore(path, durability="none")
    store.summary()
    root = tmp_path / "sessions.d"
    store.put("agent:main:new", {"updatedAt": 1})
    for damage in (b"garbage", b"", b"sessionsd-index 1\n{\"gen\": 1}\n"):
        (root / "index").write_bytes(damage)
        assert_listings_agree(path, SessionStore(path))
    # A torn journal tail (power loss mid-append) ends the journal there.
    with open(root / "index.log", "ab") as fh:
        fh.write(b'[1,2,3,4,5')
    assert_listings_agree(path, SessionStore(path))
    # A corrupt section behind a valid header: rebuilt, with a warning.
    data = (root / "index").read_bytes()
    (root / "index").write_bytes(data[:-40] + b"x" * 40)
    assert_listings_agree(path, SessionStore(path))


def _v1_index(token: list, rows: list, stat: list) -> bytes:
    """An index in the first format (JSON ``stat`` section, no ``names``),
    as sessionsd 0.x wrote it."""
    sections = [("head", rows[:64]), ("rows", rows), ("keys", [row[0] for row in rows]),
                ("updated", [row[1] for row in rows]), ("channel", [row[2] for row in rows]),
                ("to", [row[3] for row in rows]), ("stat", stat), ("skipped", [])]
    places, body, offset = {}, b"", 0
    for name, value in sections:
        data = json.dumps(value).encode()
        places[name] = [offset, len(data)]
        body += data
        offset += len(data)
    header = json.dumps({"gen": "0123456789abcdef", "token": token, "count": len(rows), "sections": places})
    return b"sessionsd-index 1\n" + header.encode() + b"\n" + body


def test_an_index_of_the_previous_format_is_rebuilt_not_read(tmp_path):
    """An index written by an earlier version names the store's current
    token, yet its format is not this one: it is rebuilt, never misread."""
    path = make_store(tmp_path, SEED)
    store = SessionStore(path)
    store.summary()
    root = tmp_path / "sessions.d"
    token = list(store._backend._token(sessionsd._layout.read_state(store.paths), store._backend._dir.read_seq()))
    bogus = [["agent:main:bogus", 1, "v1", "v1", 10]]
    (root / "index").write_bytes(_v1_index(token, bogus, [[encode_key("agent:main:bogus"), 1, 1]]))
    (root / "index.log").write_bytes(b"sessionsd-index-log 1 0123456789abcdef 1\n")
    assert index.load(str(root)) is None
    truth = assert_listings_agree(path, SessionStore(path))
    assert "agent:main:bogus" not in truth and len(SessionStore(path, cache=False)) == 20
    assert (root / "index").read_bytes().startswith(index.MAGIC) and index.MAGIC != b"sessionsd-index 1\n"
    assert index.load(str(root)).token == tuple(token)


def test_damaged_stat_sections_are_rebuilt(tmp_path):
    """A names or stat section that does not match the rows (a damaged or
    hand-made base) is never used to skip a file: the repair rebuilds."""
    path = make_store(tmp_path, SEED)
    backdate(path)
    SessionStore(path).summary()
    root = tmp_path / "sessions.d"
    data = bytearray((root / "index").read_bytes())
    loaded = index.load(str(root))
    start, length = loaded.sections["names"]
    data[start + length - 1:start + length] = b"x"  # the last name loses its newline
    (root / "index").write_bytes(bytes(data))
    ref.write_entry(path, "agent:main:k3", {"updatedAt": 4242})  # the token moves: a repair
    truth = assert_listings_agree(path, SessionStore(path))
    assert truth["agent:main:k3"]["updatedAt"] == 4242


@pytest.mark.parametrize("stored", [False, True])
def test_repair_from_a_prior_equals_a_rebuild(tmp_path, monkeypatch, stored):
    """index.repair with a prior (in memory: the full mode that keeps the
    prior's unchanged rows; stored, with a journal on top: the incremental
    mode) gives the index a rebuild from nothing gives, reading only the
    files whose stat changed."""
    path = make_store(tmp_path, SEED)
    root = str(tmp_path / "sessions.d")
    entries = os.path.join(root, "entries")
    backdate(path)
    token = (1, 2, 3, 4, 6, 7)
    prior = index.repair(entries, None, token)
    if stored:
        index.write(root, prior)
        store = SessionStore(path, durability="none")
        store.summary()
        store.put("agent:main:journal", {"updatedAt": 5})  # a journal record on top of the base
        prior = index.load(root)
        assert prior.overlay and prior.chained
    ref.write_entry(path, "agent:main:k1", {"updatedAt": 1, "lastChannel": "changed"})
    os.unlink(os.path.join(entries, encode_key("agent:main:k2")))
    with open(os.path.join(entries, encode_key("agent:main:corrupt")), "w") as fh:
        fh.write("{not json")
    ref.write_entry(path, "agent:main:added", {"updatedAt": 2})
    read = []
    real = index.read_regular

    def counting(file_path, *args):
        read.append(os.path.basename(file_path))
        return real(file_path, *args)

    monkeypatch.setattr(index, "read_regular", counting)
    repaired = index.repair(entries, prior, token)
    expected_reads = {encode_key(key) for key in ("agent:main:k1", "agent:main:corrupt", "agent:main:added")}
    if stored:
        expected_reads.add(encode_key("agent:main:journal"))  # a commit's row has no stat: read once
    assert set(read) == expected_reads
    assert repaired.chained and (repaired.path is not None) == stored
    rebuilt = index.repair(entries, None, token)
    got, want = repaired.merged(), rebuilt.merged()
    assert got[:3] == want[:3]  # rows, names, stat
    truth = SessionStore(path, cache=False, index=False).load()
    assert sorted(row[0] for row in got[0]) == sorted(truth)
    if not stored:
        assert got[3] == want[3] and [item[0] for item in got[3]] == [encode_key("agent:main:corrupt")]


def test_listings_follow_rollback_and_remigration(tmp_path):
    path = make_store(tmp_path, SEED)
    store = SessionStore(path)
    assert len(store) == 20
    assert sessionsd.rollback(path)
    store_legacy = SessionStore(path)
    store_legacy.put("legacy-only", {"updatedAt": 1})  # migrates again (first changing save)
    assert store.mode == "directory"
    assert_listings_agree(path, store)
    assert len(store) == 21


def test_maintenance_cap_uses_the_index(tmp_path, monkeypatch):
    from sessionsd.maintenance import Maintenance

    path = make_store(tmp_path, SEED)
    SessionStore(path).summary()
    monkeypatch.setattr(index, "read_regular", lambda *a: pytest.fail("the cap read an entry file"))
    store = SessionStore(path, durability="none",
                         maintenance=Maintenance(mode="enforce", max_entries=18))
    store.put("agent:main:newest", {"updatedAt": 10_000})
    assert len(store) == 18
    assert "agent:main:k0" not in store and "agent:main:k1" not in store
    assert_listings_agree(path, store)


def test_journal_compaction(tmp_path, monkeypatch):
    monkeypatch.setattr(index, "READER_FLOOR", 2000)
    path = make_store(tmp_path, SEED)
    store = SessionStore(path, durability="none")
    store.summary()
    log = tmp_path / "sessions.d" / "index.log"
    for i in range(40):
        store.put(f"agent:main:k{i % 20}", {"updatedAt": 1000 + i})
    assert log.stat().st_size > 2000
    assert_listings_agree(path)
    assert log.stat().st_size < 200  # a reader compacted it: header only
    monkeypatch.setattr(index, "WRITER_FLOOR", 1500)
    base = tmp_path / "sessions.d" / "index"
    compacted = 0
    for i in range(200):
        before = base.stat().st_ino
        store.put(f"agent:main:k{i % 20}", {"updatedAt": 2000 + i})
        compacted += base.stat().st_ino != before
        # Writers compact too (under their lock) once the journal is twice the base.
        assert log.stat().st_size < 2 * base.stat().st_size + 400
    assert compacted >= 1
    assert_listings_agree(path, store)


# -- the state machine ---------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "C", "agent:main:x", "k" * 130, "ü"])
VALUES = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=2), st.booleans(),
                   st.floats(allow_nan=False, allow_infinity=False, width=32),
                   st.lists(st.integers(0, 2), max_size=2))
ENTRIES = st.fixed_dictionaries({}, optional={"updatedAt": VALUES, "lastChannel": VALUES, "lastTo": VALUES,
                                              "n": st.integers(0, 9)})


class IndexMachine(RuleBasedStateMachine):
    """Random operations in both modes (legacy and directory, through
    migrate and rollback) and from other writers; after each, every listing
    of a kept store and of a fresh one equals a full read."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="sessionsd-index-")
        self.path = os.path.join(self.dir, "sessions.json")
        self.store = SessionStore(self.path, durability="none")

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def directory_mode(self) -> bool:
        return self.store.mode == "directory"

    @rule(key=KEYS, entry=ENTRIES)
    def put(self, key, entry):
        self.store.put(key, entry)

    @rule(key=KEYS, fields=ENTRIES)
    def patch(self, key, fields):
        self.store.patch(key, fields)

    @rule(key=KEYS)
    def delete(self, key):
        self.store.delete(key)

    @rule(puts=st.dictionaries(KEYS, ENTRIES, max_size=3), drops=st.lists(KEYS, max_size=2))
    def update(self, puts, drops):
        def mutate(sessions):
            for key in drops:
                sessions.pop(key.strip().lower(), None)
            sessions.update({key.strip().lower(): entry for key, entry in puts.items()})
        self.store.mutate(mutate)

    @rule(mapping=st.dictionaries(KEYS, ENTRIES, max_size=4))
    def save(self, mapping):
        self.store.save({key.strip().lower(): entry for key, entry in mapping.items()})

    @rule()
    def migrate(self):
        sessionsd.migrate(self.path)

    @rule()
    def rollback(self):
        sessionsd.rollback(self.path)

    @precondition(lambda self: self.directory_mode())
    @rule(key=KEYS, entry=ENTRIES)
    def reference_write(self, key, entry):
        ref.write_entry(self.path, key.strip().lower(), entry)

    @precondition(lambda self: self.directory_mode())
    @rule(key=KEYS, entry=ENTRIES, corrupt=st.booleans())
    def hand_edit_by_rename(self, key, entry, corrupt):
        time.sleep(0.02)  # a new timestamp tick of entries/: see test_hand_edits_without_a_version_bump
        key = key.strip().lower()
        entries = os.path.join(self.dir, "sessions.d", "entries")
        temp = os.path.join(entries, ".hand.tmp")
        with open(temp, "w") as fh:
            fh.write("{not json" if corrupt else json.dumps({"sessionKey": key, "entry": entry}))
        os.replace(temp, os.path.join(entries, encode_key(key)))

    @precondition(lambda self: self.directory_mode())
    @rule()
    def drop_index_cache(self):
        self.store._backend._cache.clear()

    @invariant()
    def listings_agree(self):
        assert_listings_agree(self.path, self.store)


IndexMachine.TestCase.settings = __import__("hypothesis").settings(max_examples=40, stateful_step_count=25,
                                                                    deadline=None)
test_index_agrees_with_a_full_read = IndexMachine.TestCase


# -- real processes ------------------------------------------------------------------------

def start(function: str, *args) -> subprocess.Popen:
    return worker_processes.start(WORKERS, function, *args)


OLD = {"a": {"updatedAt": 1, "lastChannel": "old"}, "b": {"updatedAt": 2}, "c": {"updatedAt": 3}}


@pytest.mark.slow
@pytest.mark.parametrize("point,operation", [
    ("index:before-append", "put"), ("index:after-append", "put"),
    ("index:before-append", "update"), ("index:after-append", "update"),
    ("index:temp-written", "list"), ("index:between-renames", "list"),
    ("one:after-rename", "put"), ("multi:after-record", "update"),
])
def test_sigkill_during_index_maintenance(tmp_path, point, operation):
    path = make_store(tmp_path, OLD)
    if operation != "list":
        SessionStore(path).summary()  # an index to maintain
    else:
        ref.write_entry(path, "a", {"updatedAt": 50})  # a stale index to repair and store
    proc = start("crash", path, point, operation)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = SessionStore(path)
    truth = assert_listings_agree(path, store)
    if operation == "update":
        assert set(truth) in ({"a", "b", "c"}, {"a", "c", "d"})
    store.put("after", {"updatedAt": 1000})
    assert_listings_agree(path, store)
    assert store.recent(1)[0][0] == "after"
    # Whatever the dead process left is gone once the index is stored again.
    ref.write_entry(path, "foreign", {"updatedAt": 1})
    assert_listings_agree(path, store)
    root = tmp_path / "sessions.d"
    assert not [name for name in os.listdir(root) if name.endswith(".tmp")]
    assert index.load(str(root)).token == store._backend._token(sessionsd._layout.read_state(store.paths),
                                                      store._backend._dir.read_seq())


@pytest.mark.slow
def test_listings_never_see_a_torn_commit(tmp_path):
    path = make_store(tmp_path, {"a": {"updatedAt": 0}, "b": {"updatedAt": 0}})
    SessionStore(path).summary()
    readers = [start("reader", path, 6.0) for _ in range(2)]
    time.sleep(0.3)
    writer = start("writer", path, 300)
    assert finish(writer) == {"rounds": 300}
    for reader in readers:
        result = finish(reader)
        assert result["broken"] == 0, result
        assert result["distinct"] > 1, result  # the readers really overlapped the writer
    assert_listings_agree(path)


def test_cli_ls_recent_and_offset(tmp_path, capsys):
    from sessionsd.cli import main

    path = make_store(tmp_path, SEED)
    assert main(["ls", path, "--recent", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["agent:main:k19\t119", "agent:main:k18\t118"]
    assert main(["ls", path, "--recent", "1", "--offset", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"key": "agent:main:k17", "lastChannel": "telegram", "lastTo": "u17", "updatedAt": 117}]
    assert main(["ls", path, "--offset", "18"]) == 0
    assert capsys.readouterr().out.splitlines() == ["agent:main:k1\t101", "agent:main:k0\t100"]
    assert main(["ls", path]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "agent:main:k0\t100"  # by key, as before
    assert main(["ls", path, "--recent", "-1"]) == 2
