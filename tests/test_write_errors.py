"""Write errors a user can act on (issue "Through every flip and fault",
item 11): the message names the key and the path in the way, and nothing
is written."""

from __future__ import annotations

import json
import os

import pytest

import sessionsd
from sessionsd import SessionStore, UnsafeStoreError


def directory_store(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"seed": {"updatedAt": 1}}))
    sessionsd.migrate(path)
    return SessionStore(path)


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink"])
@pytest.mark.parametrize("operation", ["put", "update", "patch"])
def test_something_in_the_way_of_an_entry_is_named(tmp_path, kind, operation):
    store = directory_store(tmp_path)
    store.put("agent:main:x", {"n": 1})
    entry = os.path.join(store.paths.entries, sessionsd.encode_key("agent:main:x"))
    os.unlink(entry)
    if kind == "directory":
        os.mkdir(entry)
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        os.symlink(tmp_path / "elsewhere.json", entry)
    before = sorted(os.listdir(store.paths.entries))
    with pytest.raises(UnsafeStoreError) as info:
        if operation == "put":
            store.put("agent:main:x", {"n": 2})
        elif operation == "update":
            store.mutate(lambda s: s.__setitem__("agent:main:x", {"n": 2}))
        else:
            store.update_entry("agent:main:x", lambda e: {"n": 2})
    message = str(info.value)
    assert "'agent:main:x'" in message and entry in message and "move it away" in message
    assert ".tmp" not in message
    assert sorted(os.listdir(store.paths.entries)) == before  # no temp file left behind
    assert store.load() == {"seed": {"updatedAt": 1}}
