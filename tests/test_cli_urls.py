"""The command line on PostgreSQL store URLs, run as a subprocess
(``python -m sessionsd``) against a real server (tests/pg_server.py): ``copy``
(summary line, --json, a progress bar on a terminal, the rules), and ``info``,
``get``, ``ls``, ``check``, ``maintain`` given a URL; bad URLs and unreachable
servers give one line and exit 1, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from urllib.parse import unquote

import pg_server
import pytest
from terminal import run_on_a_terminal

import sessionsd
from sessionsd import SessionStore

postgres_server = pg_server.postgres_server
postgres_url = pg_server.postgres_url

COMMAND = [sys.executable, "-m", "sessionsd"]


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, argv)], capture_output=True, text=True, timeout=120, check=False)


def _failed_cleanly(done: subprocess.CompletedProcess, command: str, pattern: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"sessionsd {command}: "), done.stderr
    assert re.search(pattern, lines[0]), done.stderr


def _directory(path, entries: dict) -> str:
    os.makedirs(path, exist_ok=True)
    store = os.path.join(path, "sessions.json")
    with SessionStore(store, durability="none") as s:
        s.put_many(entries)
    return store


ENTRIES = {f"agent:main:dm:{i:03d}": {"updatedAt": 1_790_000_000_000 + i, "lastChannel": "telegram",
                                      "lastTo": f"user{i}", "n": i} for i in range(40)}


@pytest.fixture
def filled_url(postgres_url):
    with sessionsd.open(postgres_url) as store:
        store.put_many(ENTRIES)
    return postgres_url


# -- copy ----------------------------------------------------------------------------------------

def test_copy_directory_to_postgres_and_back(tmp_path, postgres_url):
    src = _directory(tmp_path / "a", ENTRIES)
    done = cli("copy", src, postgres_url, "--batch-size", "15")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"copied 40 sessions from {re.escape(src)} to {re.escape(postgres_url)} "
                        r"in \d+\.\d\d s \(skipped 0 equal\)\n", done.stdout), done.stdout
    assert done.stderr == ""
    (tmp_path / "b").mkdir()
    done = cli("copy", "--json", postgres_url, tmp_path / "b")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["copied"] == 40 and payload["batches"] == 1 and payload["source_changed"] is False
    with SessionStore(tmp_path / "b" / "sessions.json") as back:
        assert back.load() == ENTRIES


def test_copy_rules_on_the_command_line(tmp_path, filled_url):
    src = _directory(tmp_path / "a", {**ENTRIES, "agent:new": {"updatedAt": 1}})
    _failed_cleanly(cli("copy", src, filled_url), "copy", r"is not empty \(40 sessions\).*--resume")
    done = cli("copy", "--resume", src, filled_url)
    assert done.returncode == 0, done.stderr
    assert "copied 1 sessions" in done.stdout and "(skipped 40 equal)" in done.stdout
    other = _directory(tmp_path / "c", {"agent:only": {}})
    done = cli("copy", "--replace", "--json", other, filled_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == 41
    with sessionsd.open(filled_url) as store:
        assert store.load() == {"agent:only": {}}
    assert cli("copy", "--resume", "--replace", src, filled_url).returncode == 2
    _failed_cleanly(cli("copy", tmp_path / "nowhere", filled_url), "copy", "no session store at")
    _failed_cleanly(cli("copy", filled_url + "-missing", tmp_path / "c"), "copy", "does not exist")


def test_copy_shows_a_progress_bar_on_a_terminal(tmp_path, postgres_url):
    src = _directory(tmp_path / "a", ENTRIES)
    done, shown = run_on_a_terminal([*COMMAND, "copy", src, postgres_url, "--batch-size", "10"], timeout=60)
    assert done.returncode == 0, shown
    assert re.search(r"\rcopying \[#{30}\] 100% 40 in [\d.]+s", shown), shown
    assert done.stdout.startswith("copied 40 sessions")


# -- info, get, ls, check, maintain on a URL ----------------------------------------------------------

def test_info_get_ls_on_a_url(postgres_server, filled_url):
    with_password = filled_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@", 1)
    assert with_password != filled_url
    done = cli("info", with_password)
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert re.search(r"^mode:\s+postgres$", done.stdout, re.M)
    assert re.search(r"^sessions:\s+40$", done.stdout, re.M)
    assert re.search(r"^schema_version:\s+1$", done.stdout, re.M)
    info = json.loads(cli("info", "--json", filled_url).stdout)
    assert info["namespace"] == unquote(filled_url.rpartition("namespace=")[2])
    assert info["sessions"] == 40 and info["mode"] == "postgres" and "***" in cli("info", with_password).stdout

    done = cli("get", filled_url, "AGENT:MAIN:DM:007")
    assert done.returncode == 0 and json.loads(done.stdout) == ENTRIES["agent:main:dm:007"]
    done = cli("get", filled_url, "agent:none")
    assert done.returncode == 1 and "no session 'agent:none'" in done.stderr

    done = cli("ls", filled_url)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"{key}\t{entry['updatedAt']}" for key, entry in sorted(ENTRIES.items())]
    done = cli("ls", "--json", filled_url, "--recent", "2")
    assert [row["key"] for row in json.loads(done.stdout)] == ["agent:main:dm:039", "agent:main:dm:038"]


def test_check_on_a_url_finds_and_fixes_wrong_counters(postgres_server, filled_url):
    done = cli("check", filled_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "ok" and "40 sessions, schema version 1" in done.stdout
    namespace = json.loads(cli("info", "--json", filled_url).stdout)["namespace"]
    with postgres_server.connect() as conn:
        conn.execute("UPDATE sessionsd_namespaces SET entries = entries + 3 WHERE namespace = %s", (namespace,))
        conn.execute("UPDATE sessionsd_entries SET size = size + 1 WHERE namespace = %s AND key = %s",
                     (namespace, b"agent:main:dm:001"))
    done = cli("check", "--json", filled_url)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False and len(report["problems"]) == 2
    assert any("a recount finds 40 entries" in p for p in report["problems"])
    assert any("'agent:main:dm:001': size column" in p for p in report["problems"])
    done = cli("check", "--fix", filled_url)
    assert done.returncode == 1 and "fixed: namespace counters say 43 entries" in done.stdout
    with postgres_server.connect() as conn:
        conn.execute("UPDATE sessionsd_entries SET size = size - 1 WHERE namespace = %s AND key = %s",
                     (namespace, b"agent:main:dm:001"))
    # The recount was of the wrong sizes; one more fix makes the counters right again.
    assert cli("check", "--fix", filled_url).returncode == 0
    assert cli("check", filled_url).returncode == 0


def test_maintain_on_a_url(filled_url):
    done = cli("maintain", filled_url, "--max-entries", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("would remove 10 session(s)") and "(40 -> 30 sessions" in done.stdout
    done = cli("maintain", "--json", filled_url, "--max-entries", "30", "--mode", "enforce")
    report = json.loads(done.stdout)
    assert report["applied"] is True and sorted(report["removed"]) == sorted(ENTRIES)[:10]
    with sessionsd.open(filled_url) as store:
        assert len(store) == 30
    assert cli("maintain", filled_url).returncode == 2  # no limit: a usage error, as for a path


# -- errors: one line, exit 1 ----------------------------------------------------------------------------

def test_bad_urls_and_unreachable_servers(postgres_server, postgres_url):
    for command in ("info", "ls", "check"):
        _failed_cleanly(cli(command, postgres_url), command, r"no session store at .*namespace .* does not exist")
    _failed_cleanly(cli("get", postgres_url, "k"), "get", "does not exist")
    missing_db = postgres_server.url_for(namespace="x", database="sessionsd_no_such_db")
    _failed_cleanly(cli("info", missing_db), "info", r"cannot connect .*does not exist")
    _failed_cleanly(cli("ls", "postgresql://nobody:pw@127.0.0.1:1/db?namespace=x"), "ls",
                    r"cannot connect to PostgreSQL store postgresql://nobody:\*\*\*@127\.0\.0\.1:1/db")
    _failed_cleanly(cli("info", "postgresql://127.0.0.1:notaport/db"), "info", "cannot connect")
    _failed_cleanly(cli("info", postgres_server.url_for() + "&namespace="), "info", "bad store URL")
    # A database without the sessionsd schema is not a store, and is left without one.
    database = postgres_server.create_database("cli")
    try:
        _failed_cleanly(cli("maintain", postgres_server.url_for("x", database), "--max-entries", "1"),
                        "maintain", "no sessionsd schema")
        with postgres_server.connect(database) as conn:
            assert conn.execute("SELECT to_regclass('sessionsd_schema')").fetchone()[0] is None
    finally:
        postgres_server.drop_database(database)


def test_file_paths_behave_as_before(tmp_path):
    _failed_cleanly(cli("info", tmp_path / "nowhere" / "sessions.json"), "info", "no session store at")
    store = _directory(tmp_path / "a", {"k": {"updatedAt": 3}})
    done = cli("info", store)
    assert done.returncode == 0 and re.search(r"^mode:\s+directory$", done.stdout, re.M)
