"""Markdown report and charts from the pytest-benchmark JSON of one run.

    python bench/report.py RESULTS_DIR

Reads every pytest-benchmark ``*.json`` in RESULTS_DIR (``compiled.json``,
``twin.json``; ``run-meta.json`` from ``bench/run.sh`` if present) and writes

* ``report.md``: medians per operation and store size, the ratios to the
  named baselines, the issues' ratio targets (migration, put at the cap,
  codec), concurrent-writer throughput, the codec benchmarks, and the full
  table of every benchmark;
* ``latency.svg`` / ``.png``: median latency vs store size per backend, one
  panel per store operation, log-log;
* ``writers.svg`` / ``.png``: aggregate puts/s vs writer processes
  (PostgreSQL: aggregate ``update_entry`` calls/s).

PostgreSQL rows (bench/test_postgres_bench.py) are backends ``postgres`` (the
store) and ``postgres-floor`` (the same SQL issued directly with psycopg),
with a section of their own: medians and store ÷ floor ratios against the
issue-15 targets, client-process throughput, copy.

Charts need matplotlib (``bench/run.sh`` installs it); without it only the
report is written.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from typing import Any

#: Operations in report order, with what each measures.
OPERATIONS = {
    "updated_at": "updated_at(key): one entry's updatedAt",
    "get": "get(key): one entry",
    "load": "load(): every session (cold = fresh process; cached = store kept open)",
    "summary": "summary(): lastChannel/lastTo/updatedAt of every session",
    "keys": "keys(): every session key",
    "len": "len(store): the number of sessions",
    "recent": "recent(50): the 50 most recently updated sessions (sqlite: ORDER BY updated_at DESC, key LIMIT 50, "
              "indexed); for every listing `directory` is a fresh store object (compare `sqlite-fresh`, a new "
              "connection per call) and `directory-cached` the store kept open (compare `sqlite`, an open "
              "connection)",
    "index_repair": "first listing after a foreign writer rewrote 1% of the sessions (`directory-repair`) vs after "
                    "the listing index was deleted (`directory-rebuild`: every file read)",
    "put": "put(key, entry) replacing an entry, durability none (sqlite synchronous=NORMAL)",
    "put_file": "put, durability file (fsync the file before the rename)",
    "put_full": "put, durability full (fsync file and directory; sqlite synchronous=FULL)",
    "patch": "patch(key, fields): read-modify-write under the lock",
    "delete_recreate": "delete(key) then put(key, entry)",
    "migration": "migrate(): legacy sessions.json to sessions.d/",
    "migration_process": "migrate() in a fresh process per round (bench/test_migration_bench.py): time; "
                         "its peak RSS is under Targets",
    "put_new_session_at_cap": "put of a new session into a store at its cap: maintenance enforce (evicts "
                              "the oldest) vs off; durability none, small entries (bench/test_cap_bench.py); "
                              "`floor` creates the file, `floor-evict` also unlinks one",
    "copy": "copy_store(): every session of a directory store into a new PostgreSQL namespace "
            "(`postgres-floor`: one raw COPY of the same rows, encoded beforehand)",
    "concurrent_writers": "N processes putting disjoint keys at once",
}
#: PostgreSQL: the operations measured against their floor, and the target.
POSTGRES_TARGETS = {"updated_at": 1.3, "get": 1.3, "put": 1.3, "patch": 1.3, "copy": 1.5}
POSTGRES_FLOORS = {
    "updated_at": "`SELECT updated_at, summary FROM sessionsd_entries WHERE namespace = … AND key = …`",
    "get": "`SELECT entry FROM sessionsd_entries WHERE …` (text, not parsed)",
    "put": "`SELECT * FROM sessionsd_put(…)` (parameters encoded beforehand)",
    "patch": "one transaction: `sessionsd_lock(…)`, `SELECT entry …`, `sessionsd_put(…)`",
    "copy": "one `COPY sessionsd_entries … FROM STDIN` of the rows, encoded beforehand",
}
#: Column order of the backends.
BACKENDS = ["directory", "directory-twin", "directory-noindex", "directory-noindex-twin",
            "directory-repair", "directory-repair-twin", "directory-rebuild", "directory-rebuild-twin",
            "directory-solo", "directory-solo-twin", "directory-cached", "directory-cached-twin", "directory-off",
            "directory-enforce", "sqlite", "sqlite-fresh", "postgres", "postgres-floor", "legacy", "legacy-cached", "legacy-parse", "floor", "floor-evict",
            "compiled", "python", "stdlib"]
#: Named baselines: (column title, numerator, denominator).  A value is a
#: ratio of medians (times): below 1 the numerator is faster.
RATIOS = [
    ("directory ÷ sqlite", "directory", "sqlite"),
    ("directory ÷ sqlite-fresh", "directory", "sqlite-fresh"),
    ("kept open ÷ sqlite", "directory-cached", "sqlite"),
    ("index ÷ no index", "directory", "directory-noindex"),
    ("directory ÷ floor", "directory", "floor"),
    ("mixed ÷ sessionsd-only", "directory", "directory-solo"),
    ("sessionsd-only ÷ sqlite", "directory-solo", "sqlite"),
    ("legacy ÷ directory", "legacy", "directory"),
    ("twin ÷ compiled", "directory-twin", "directory"),
    ("cold ÷ cached (directory)", "directory", "directory-cached"),
    ("legacy ÷ directory (cached)", "legacy-cached", "directory-cached"),
    ("postgres ÷ its floor", "postgres", "postgres-floor"),
]
NAME = re.compile(r"^test_(?P<op>\w+?)\[")
#: The codec benchmarks (bench/test_codec_bench.py) get their own section.
CODEC_MODULE = "test_codec_bench.py"
CODEC_OPS = {
    "encode_one": "encode one 36-byte key",
    "decode_one": "decode one 36-byte key's name",
    "encode_100k": "encode 100k keys",
    "decode_100k": "decode 100k names",
    "scan_100k": "scan + decode a 100k-entry directory",
}


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_ratio(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def load(results_dir: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(rows, machine info of the first pass, run metadata)."""
    rows: list[dict[str, Any]] = []
    machine: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for file_name in sorted(os.listdir(results_dir)):
        if not file_name.endswith(".json"):
            continue
        with open(os.path.join(results_dir, file_name)) as fh:
            run = json.load(fh)
        if file_name == "run-meta.json":
            meta = run
            continue
        if "benchmarks" not in run:
            continue
        if not machine:
            machine = {**run.get("machine_info", {}), "datetime": run.get("datetime"),
                       "commit_info": run.get("commit_info", {})}
        for bench in run["benchmarks"]:
            match = NAME.match(bench["name"])
            extra = bench.get("extra_info", {})
            if not match or "backend" not in extra:
                continue
            stats = bench["stats"]
            rows.append({
                "name": bench["name"], "pass": file_name[:-5], "op": match["op"],
                "module": os.path.basename(bench["fullname"].split("::")[0]),
                "backend": extra["backend"], "size": extra.get("store_size"),
                "writers": extra.get("writers"), "median": stats["median"], "min": stats["min"],
                "max": stats["max"], "iqr": stats["iqr"], "rounds": stats["rounds"], "extra": extra,
            })
    return rows, machine, meta


def _backend_order(name: str) -> tuple[int, str]:
    return (BACKENDS.index(name) if name in BACKENDS else len(BACKENDS), name)


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _wrong(row: dict[str, Any]) -> str:
    return " **WRONG**" if row["extra"].get("correct") is False else ""


def _ratio(num: dict[str, Any], den: dict[str, Any]) -> float:
    return num["median"] / den["median"]


def targets(by_op: dict, codec: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    """The ratio targets named in the issues, as table rows."""
    body = []

    def add(what: str, size: str, value: float, target: str, met: bool | None) -> None:
        body.append([what, size, fmt_ratio(value), target,
                     "—" if met is None else ("yes" if met else "**no**")])

    for size, row in sorted(by_op.get("migration", {}).items()):
        if "directory" in row and "floor" in row:
            value = _ratio(row["directory"], row["floor"])
            add("migration: migrate() ÷ floor", f"{size:,}", value, "≤ 1.5× (realistic 10k)", value <= 1.5)
    # The listing index (issue 13), like with like: a fresh store object (a
    # process that just started) against a new SQLite connection per call,
    # and the store object kept open against an open connection.  The
    # mixed pair is shown for reference only.
    for op in ("summary", "keys", "len", "recent"):
        for size, row in sorted(by_op.get(op, {}).items()):
            for num, den, note, target in (
                    ("directory", "sqlite-fresh", "fresh store object ÷ new sqlite connection per call", True),
                    ("directory-cached", "sqlite", "store kept open ÷ open sqlite connection", True),
                    ("directory", "sqlite", "fresh store object ÷ open sqlite connection, not like with like",
                     False)):
                if num in row and den in row:
                    value = _ratio(row[num], row[den])
                    add(f"{op}: {note}", f"{size:,}", value, "≤ 2×" if target else "(reference)",
                        value <= 2.0 if target else None)
    for op in ("put", "put_file"):
        for size, row in sorted(by_op.get(op, {}).items()):
            if "directory" in row and "directory-noindex" in row:
                value = _ratio(row["directory"], row["directory-noindex"])
                add(f"{op}: index kept ÷ no index", f"{size:,}", value, "≤ 1.10×", value <= 1.10)
    for size, row in sorted(by_op.get("load", {}).items()):
        if "directory" in row and "legacy-parse" in row:
            value = _ratio(row["directory"], row["legacy-parse"])
            small = row["directory"]["extra"].get("entries") == "small"
            limit = 2.0 if small else 1.0
            add(f"cold load(): directory ÷ legacy parse ({'small' if small else 'realistic'} entries)",
                f"{size:,}", value, f"≤ {limit:g}×", value <= limit)
    for size, row in sorted(by_op.get("index_repair", {}).items()):
        if "directory-repair" in row and "directory-rebuild" in row:
            value = _ratio(row["directory-repair"], row["directory-rebuild"])
            add("index repair after 1% foreign writes ÷ full rebuild", f"{size:,}", value, "≤ 0.10×", value <= 0.10)
    for size, row in sorted(by_op.get("migration_process", {}).items()):
        if "directory" in row and "floor" in row:
            value = _ratio(row["directory"], row["floor"])
            add("migration (own process): migrate() ÷ floor", f"{size:,}", value, "≤ 1.5× (realistic 10k)",
                value <= 1.5)
            ours, floor = row["directory"]["extra"], row["floor"]["extra"]
            add(f"migration peak RSS: migrate() ÷ floor ({ours['peak_rss_bytes'] / 2**20:,.0f} ÷ "
                f"{floor['peak_rss_bytes'] / 2**20:,.0f} MiB)", f"{size:,}",
                ours["peak_rss_bytes"] / floor["peak_rss_bytes"], "(lower is better)", None)
        for backend in ("directory", "directory-twin"):
            if backend in row:
                extra = row[backend]["extra"]
                add(f"migration peak RSS ÷ legacy file size ({backend})", f"{size:,}",
                    extra["peak_rss_per_legacy_byte"], "bounded: ≪ 1× for big files", None)
    cap = by_op.get("put_new_session_at_cap", {})
    for size, row in sorted(cap.items()):
        if "directory-enforce" in row and "directory-off" in row:
            value = _ratio(row["directory-enforce"], row["directory-off"])
            add("put new session at cap: enforce ÷ off", f"{size:,}", value, "≤ 1.3×", value <= 1.3)
        if "floor-evict" in row and "floor" in row:
            # What the file system charges for the eviction alone: the part
            # of enforce ÷ off that no implementation can avoid.
            add("put at cap, raw files: floor-evict ÷ floor", f"{size:,}", _ratio(row["floor-evict"], row["floor"]),
                "(reference)", None)
    enforced = sorted((size, row["directory-enforce"]) for size, row in cap.items() if "directory-enforce" in row)
    if len(enforced) > 1:
        (small, low), (large, high) = enforced[0], enforced[-1]
        add(f"put at cap, enforce: {large:,} ÷ {small:,} sessions", "—", _ratio(high, low),
            "flat (≈ 1×)", None)
    for op, limit in POSTGRES_TARGETS.items():
        for size, row in sorted(by_op.get(op, {}).items()):
            if "postgres" in row and "postgres-floor" in row:
                value = _ratio(row["postgres"], row["postgres-floor"])
                what = "copy_store() ÷ raw COPY" if op == "copy" else "store ÷ same SQL via psycopg"
                add(f"postgres {op}: {what}", f"{size:,}", value, f"≤ {limit:g}×",
                    value <= limit)
    for op, num, den, limit in (("encode_one", "python", "compiled", 3.0), ("decode_one", "python", "compiled", 4.0),
                                ("scan_100k", "stdlib", "compiled", 1.3)):
        row = codec.get(op, {})
        if num in row and den in row:
            value = _ratio(row[num], row[den])
            add(f"codec {CODEC_OPS[op]}: {num} ÷ {den}", f"{row[den]['size']:,}", value, f"≥ {limit:g}×",
                value >= limit)
    return body


def postgres_section(by_op: dict, rows: list[dict[str, Any]]) -> list[str]:
    """The PostgreSQL section: store vs floor per operation, client
    processes, copy (empty when the run has no postgres rows)."""
    body = []
    for op in POSTGRES_TARGETS:
        for size, row in sorted(by_op.get(op, {}).items()):
            if "postgres" not in row:
                continue
            ours, floor = row["postgres"], row.get("postgres-floor")
            value = _ratio(ours, floor) if floor else None
            limit = POSTGRES_TARGETS[op]
            body.append([op, f"{size:,}", fmt_time(ours["median"]) + _wrong(ours),
                         fmt_time(floor["median"]) + _wrong(floor) if floor else "—",
                         fmt_ratio(value) if value is not None else "—", f"≤ {limit:g}×",
                         "—" if value is None else ("yes" if value <= limit else "**no**"), POSTGRES_FLOORS[op]])
    writers = sorted((r for r in rows if r["op"] == "concurrent_writers" and r["backend"] == "postgres"),
                     key=lambda r: (r["size"], r["writers"]))
    if not body and not writers:
        return []
    lines = ["## PostgreSQL", "",
             "`postgres`: `PostgresStore` (pool, key rules, JSON encode/decode, cache bookkeeping); "
             "`postgres-floor`: the SQL the backend runs for the call, issued directly with psycopg on one open "
             "autocommit connection with its parameters prepared in advance (no JSON work). Issue 15's targets: "
             "≤ 1.3× the floor for the single-entry calls, ≤ 1.5× for copy.", ""]
    if body:
        lines += _table(["operation", "sessions", "postgres", "floor", "postgres ÷ floor", "target", "met",
                         "floor SQL"], body) + [""]
    if writers:
        base = writers[0]["extra"]["ops_per_s"]
        table = [[f"{r['size']:,}", str(r["writers"]), str(r["extra"].get("puts_per_round", "?")),
                  fmt_rate(r["extra"]["ops_per_s"]) + _wrong(r), fmt_rate(r["extra"]["per_writer_ops_per_s"]),
                  f"{r['extra']['ops_per_s'] / base:.2f}×",
                  f"{r['extra'].get('shared_counter', '?')} = {r['extra'].get('expected_shared_counter', '?')}"
                  if r["extra"].get("correct") else "**lost updates**"]
                 for r in writers]
        lines += ["Client processes: each does `update_entry` increments alternately on keys of its own and on one "
                  "counter shared by all (one namespace, so every write takes its lock); aggregate calls per "
                  "second from the go signal to the last process's done; the shared counter's final value is "
                  "checked exactly (no lost update).", ""]
        lines += _table(["sessions", "processes", "calls/round", "calls/s, all", "calls/s per process",
                         "vs 1 process", "shared counter = expected"], table) + [""]
    return lines


def markdown(all_rows: list[dict[str, Any]], machine: dict[str, Any], meta: dict[str, Any]) -> str:
    rows = [r for r in all_rows if r["module"] != CODEC_MODULE]
    codec: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in all_rows:
        if row["module"] == CODEC_MODULE:
            codec[row["op"]][row["backend"]] = row
    cpu = machine.get("cpu", {})
    info = machine.get("sessionsd", {})
    sample = all_rows[0]["extra"] if all_rows else {}
    commit = machine.get("commit_info", {})
    passes = sorted({(r["pass"], r["extra"].get("codec"), r["extra"].get("extension_active")) for r in all_rows})
    sizes = sorted({r["size"] for r in rows if r["module"] == "test_store_bench.py"})
    lines = [
        "# sessionsd benchmark report",
        "",
        f"- date: {machine.get('datetime', '?')}" + (f"; command: `{meta['command']}`" if meta.get("command") else ""),
        f"- machine: {cpu.get('brand_raw', cpu.get('arch', '?'))}, {cpu.get('count', '?')} cores; "
        f"{machine.get('system', '')} {machine.get('release', '')}; file system: {sample.get('filesystem', '?')}",
        f"- python: {sample.get('python', machine.get('python_version', '?'))}; json: {sample.get('json', '?')}; "
        f"sessionsd {info.get('version', '?')}"
        + (f" at {commit.get('id', '')[:12]}{' (dirty tree)' if commit.get('dirty') else ''}" if commit else ""),
        "- passes: " + "; ".join(f"`{name}.json` codec {codec}, extension active: {active}"
                                  for name, codec, active in passes),
        (f"- store sizes: {', '.join(f'{s:,}' for s in sizes)} sessions" if sizes
         else "- store sizes: no store benchmark in this run")
        + (" (100k and up: small entries)" if any(s >= 100_000 for s in sizes) else "")
        + ("; quick mode (fewer rounds)" if sample.get("quick") else ""),
    ]
    if meta.get("postgres_server"):
        lines.append(f"- PostgreSQL server: {meta['postgres_server']}")
    if meta.get("loadavg_at_end"):
        lines.append(f"- load average at the end of the run (1, 5, 15 min): {meta['loadavg_at_end']}")
    if meta.get("wall_seconds"):
        lines.append("- wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in meta["wall_seconds"].items()))
    lines += [
        "",
        "Medians of one run; every backend holds the same generated sessions (`sessionsd.datagen`, "
        "SPEC §9), and the single-entry benchmarks read and write the same entries (of median size) at "
        "every store size. `directory` is sessionsd with the compiled extension, `directory-twin` the "
        "pure-Python twin (a separate process with `SESSIONSD_NO_EXTENSIONS=1`); `sqlite` the reference "
        "in `bench/sqlite_reference.py`; `legacy` the monolithic `sessions.json` (library legacy mode: "
        "reads parse the file, writes rewrite it under the store lock); `floor` the raw file operations "
        "with no lock or checks; `directory-solo` is sessionsd declared sessionsd-only (`sessionsd_only=True`: "
        "no reference lock file, no `state.json` version bump), while `directory` is the default mixed-deployment "
        "mode; `-cached` keeps the store open between calls; `directory-off` and "
        "`directory-enforce` are the put-at-cap benchmark (bench/test_cap_bench.py, always 1k and 10k "
        "sessions of small entries); `postgres` is `sessionsd.postgres.PostgresStore` on a local PostgreSQL server "
        "(Unix socket; bench/test_postgres_bench.py, always 10k realistic sessions) and `postgres-floor` the same "
        "SQL issued directly with psycopg on one open connection. Every benchmark checked its answer (a wrong one fails the run).",
        "",
    ]

    by_op: dict[str, dict[int, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if row["op"] != "concurrent_writers":
            by_op[row["op"]][row["size"]][row["backend"]] = row

    lines += ["## Medians", ""]
    for op in [o for o in OPERATIONS if o in by_op] + sorted(o for o in by_op if o not in OPERATIONS):
        table = by_op[op]
        backends = sorted({b for per_size in table.values() for b in per_size}, key=_backend_order)
        body = [[f"{size:,}"] + [fmt_time(table[size][b]["median"]) + _wrong(table[size][b])
                                 if b in table[size] else "—" for b in backends]
                for size in sorted(table)]
        lines += [f"**{op}**: {OPERATIONS.get(op, op)}", ""] + _table(["sessions"] + backends, body) + [""]

    lines += ["## Ratios to named baselines", "",
              "Ratios of medians (times): `a ÷ b` below 1 means a is faster. `legacy ÷ directory` is "
              "how many times faster the directory store is than the monolith.", ""]
    body = []
    for op in [o for o in OPERATIONS if o in by_op]:
        for size in sorted(by_op[op]):
            row = by_op[op][size]
            cells = [fmt_ratio(row[a]["median"] / row[b]["median"]) if a in row and b in row else "—"
                     for _title, a, b in RATIOS]
            if any(cell != "—" for cell in cells):
                body.append([op, f"{size:,}"] + cells)
    lines += _table(["operation", "sessions"] + [title for title, _a, _b in RATIOS], body) + [""]

    body = targets(by_op, codec)
    if body:
        lines += ["## Targets", "", "The ratio targets named in the issues (ratios of medians; a quick run "
                  "has few rounds, so judge on a full run).", ""]
        lines += _table(["ratio", "sessions", "measured", "target", "met"], body) + [""]

    lines += postgres_section(by_op, rows)

    writers = [r for r in rows if r["op"] == "concurrent_writers" and not r["backend"].startswith("postgres")]
    if writers:
        counts = sorted({r["writers"] for r in writers})
        grid: dict[tuple[int, str], dict[int, dict[str, Any]]] = defaultdict(dict)
        for row in writers:
            grid[(row["size"], row["backend"])][row["writers"]] = row
        body = []
        for (size, backend), per in sorted(grid.items(), key=lambda kv: (kv[0][0], _backend_order(kv[0][1]))):
            cells = [fmt_rate(per[n]["extra"]["ops_per_s"]) + _wrong(per[n]) if n in per else "—" for n in counts]
            scale = (f"{per[counts[-1]]['extra']['ops_per_s'] / per[counts[0]]['extra']['ops_per_s']:.2f}×"
                     if counts[0] in per and counts[-1] in per else "—")
            entry = next(iter(per.values()))["extra"]
            body.append([f"{size:,}", backend, f"{entry.get('puts_per_writer', '?')}"] + cells + [scale])
        lines += ["## Concurrent writers", "",
                  "Aggregate puts per second of all writer processes (each put creates a new session under a "
                  "key of its own writer; durability none; sqlite NORMAL), timed from the go signal to the last writer's done (process start-up excluded); "
                  "entries of median size. Legacy writers run only on small stores (a put there rewrites the "
                  "whole file).", ""]
        lines += _table(["sessions", "backend", "puts/writer"] + [f"{n} writer{'s' if n > 1 else ''}" for n in counts]
                        + [f"{counts[-1]} ÷ {counts[0]}"], body) + [""]

    if codec:
        backends = sorted({b for per_op in codec.values() for b in per_op}, key=_backend_order)
        body = []
        for op in [o for o in CODEC_OPS if o in codec] + sorted(o for o in codec if o not in CODEC_OPS):
            row = codec[op]
            cells = [fmt_time(row[b]["median"]) + _wrong(row[b]) if b in row else "—" for b in backends]
            ratios = [fmt_ratio(_ratio(row[b], row["compiled"])) if b in row and "compiled" in row else "—"
                      for b in backends if b != "compiled"]
            body.append([CODEC_OPS.get(op, op)] + cells + ratios)
        lines += ["## Codec", "",
                  "Key codec of bench/test_codec_bench.py: the compiled extension vs the pure twin vs a plain "
                  "stdlib implementation (`base64`, `os.scandir`), in one process.", ""]
        lines += _table(["operation"] + backends + [f"{b} ÷ compiled" for b in backends if b != "compiled"],
                        body) + [""]

    lines += ["## Full table", "",
              "Every benchmark of the run (times per call; ops/s = 1 ÷ median, or aggregate puts/s for "
              "concurrent writers).", ""]
    body = []
    for row in sorted(all_rows, key=lambda r: (list(OPERATIONS).index(r["op"]) if r["op"] in OPERATIONS else 99,
                                           r["size"], _backend_order(r["backend"]), r["writers"] or 0)):
        extra = row["extra"]
        ops = extra.get("ops_per_s") or (1 / row["median"] if row["median"] else 0)
        body.append([f"`{row['name']}`", row["pass"], row["backend"], f"{row['size']:,}",
                     str(extra.get("durability", "")), fmt_time(row["median"]), fmt_time(row["min"]),
                     fmt_time(row["max"]), fmt_time(row["iqr"]), str(row["rounds"]), fmt_rate(ops),
                     "yes" if extra.get("correct") else "**NO**"])
    lines += _table(["benchmark", "pass", "backend", "sessions", "durability", "median", "min", "max", "IQR",
                     "rounds", "ops/s", "correct"], body)
    return "\n".join(lines) + "\n"


_COLORS = {"directory": "tab:blue", "sqlite": "tab:orange", "legacy": "tab:red", "floor": "tab:gray",
           "postgres": "tab:purple"}


def _style(backend: str) -> dict[str, Any]:
    """One colour per backend family; a marker and line per variant (cached
    and parse dotted squares, enforce and evict dashed diamonds); the twin
    hollow and dashed."""
    family, *variant = backend.split("-")
    style = {"color": _COLORS.get(family, "tab:green"), "marker": "o", "linestyle": "-"}
    if {"cached", "parse"} & set(variant):
        style.update(linestyle=":", marker="s")
    if {"enforce", "evict"} & set(variant):
        style.update(linestyle="--", marker="D")
    if "floor" in variant and family != "floor":
        style.update(linestyle=":", marker="x")
    if "twin" in variant:
        style.update(markerfacecolor="none", linestyle="--" if style["linestyle"] == "-" else style["linestyle"])
    return style


def charts(rows: list[dict[str, Any]], results_dir: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no charts", file=sys.stderr)
        return []
    written: list[str] = []

    def save(fig, stem: str) -> None:
        fig.tight_layout()
        for ext in ("svg", "png"):
            path = os.path.join(results_dir, f"{stem}.{ext}")
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)

    rows = [r for r in rows if r["module"] != CODEC_MODULE]
    ops = [op for op in OPERATIONS if op != "concurrent_writers" and any(r["op"] == op for r in rows)]
    if ops:
        cols = 4
        nrows = (len(ops) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False)
        for ax, op in zip(axes.flat, ops, strict=False):
            series: dict[str, list[tuple[int, float]]] = defaultdict(list)
            for row in rows:
                if row["op"] == op:
                    series[row["backend"]].append((row["size"], row["median"]))
            for backend in sorted(series, key=_backend_order):
                xs, ys = zip(*sorted(series[backend]), strict=False)
                ax.plot(xs, ys, label=backend, **_style(backend))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(op)
            ax.set_xlabel("sessions in the store")
            ax.set_ylabel("median seconds per call")
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(ops):]:
            ax.axis("off")
        fig.suptitle("sessionsd: latency vs store size (log-log; lower is better)")
        save(fig, "latency")

    writers = [r for r in rows if r["op"] == "concurrent_writers"]
    if writers:
        fig, ax = plt.subplots(figsize=(6, 4))
        lines: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
        for row in writers:
            lines[(row["backend"], row["size"])].append((row["writers"], row["extra"]["ops_per_s"]))
        for (backend, size), points in sorted(lines.items(), key=lambda kv: (_backend_order(kv[0][0]), kv[0][1])):
            xs, ys = zip(*sorted(points), strict=False)
            style = _style(backend)
            style["marker"] = {1_000: "o", 10_000: "s"}.get(size, "^")
            what = " (update_entry)" if backend.startswith("postgres") else ""
            ax.plot(xs, ys, label=f"{backend}{what}, {size:,} sessions", **style)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["writers"] for r in writers}))
        ax.set_xticklabels([str(n) for n in sorted({r["writers"] for r in writers})])
        ax.set_yscale("log")
        ax.set_xlabel("writer processes")
        ax.set_ylabel("puts per second, all writers")
        ax.set_title("concurrent writers (higher is better)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "writers")
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python bench/report.py RESULTS_DIR", file=sys.stderr)
        return 2
    results_dir = argv[0]
    rows, machine, meta = load(results_dir)
    if not rows:
        print(f"no benchmark results in {results_dir}", file=sys.stderr)
        return 1
    report = markdown(rows, machine, meta)
    with open(os.path.join(results_dir, "report.md"), "w") as fh:
        fh.write(report)
    for path in charts(rows, results_dir):
        print(f"chart: {path}")
    print(f"report: {os.path.join(results_dir, 'report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
