"""Markdown report and charts from the pytest-benchmark JSON of one run.

    python bench/report.py RESULTS_DIR

Reads every ``*.json`` in RESULTS_DIR (``compiled.json``, ``twin.json`` …),
writes ``report.md`` (medians, ratios to named baselines) and ``latency.svg``
/ ``writers.svg`` (latency vs store size per backend, log scale).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict

# operation -> (directory-vs baseline list, speed-up of directory over these)
BASELINES = {
    "updated_at": (["sqlite", "floor"], ["legacy"]),
    "get": (["sqlite"], ["legacy"]),
    "put": (["floor", "sqlite"], ["legacy"]),
    "put_durable": (["floor", "sqlite"], []),
    "patch": (["sqlite"], ["legacy"]),
    "delete_and_recreate": (["sqlite"], []),
    "load": (["legacy", "sqlite"], []),
    "summary": (["sqlite"], ["legacy"]),
    "migration": (["floor"], []),
}
ORDER = list(BASELINES) + ["concurrent_writers"]
NAME = re.compile(r"^test_(?P<op>\w+)\[(?P<size>\d+)k-(?P<variant>[\w-]+)\]$")


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def load(results_dir: str):
    """{(op, size): {backend label: (median, extra_info)}} and the machine info."""
    table = defaultdict(dict)
    machine = {}
    for file_name in sorted(os.listdir(results_dir)):
        if not file_name.endswith(".json"):
            continue
        label = file_name[:-5]
        with open(os.path.join(results_dir, file_name)) as fh:
            run = json.load(fh)
        machine = machine or {**run.get("machine_info", {}), "datetime": run.get("datetime")}
        for bench in run["benchmarks"]:
            match = NAME.match(bench["name"])
            if not match:
                continue
            op, size, variant = match["op"], int(match["size"]) * 1000, match["variant"]
            backend = variant if op != "concurrent_writers" else f"{variant} writer(s)"
            if backend.startswith("directory") and label != "compiled":
                backend = f"{backend} ({label})"
            table[(op, size)][backend] = (bench["stats"]["median"], bench.get("extra_info", {}))
    return table, machine


def ratios(op: str, row: dict) -> str:
    directory = row.get("directory")
    if op == "load" and "directory" in row:
        directory = row["directory"]
    parts = []
    if directory is None:
        return ""
    against, speedups = BASELINES.get(op, ([], []))
    for base in against:
        if base in row:
            parts.append(f"directory/{base} {directory[0] / row[base][0]:.2f}×")
    for base in speedups:
        if base in row:
            parts.append(f"{base}/directory {row[base][0] / directory[0]:,.0f}×")
    twin = row.get("directory (twin)")
    if twin:
        parts.append(f"twin/compiled {twin[0] / directory[0]:.2f}×")
    return "; ".join(parts)


def markdown(table, machine) -> str:
    cpu = machine.get("cpu", {})
    lines = [
        "# sessionsd benchmark report",
        "",
        f"- date: {machine.get('datetime', '?')}",
        f"- machine: {machine.get('node', '?')}, {cpu.get('brand_raw', cpu.get('arch', '?'))}, "
        f"{cpu.get('count', '?')} cores; {machine.get('system', '')} {machine.get('release', '')}",
        f"- python: {machine.get('python_implementation', '')} {machine.get('python_version', '')}",
    ]
    sample = next((extra for row in table.values() for _m, extra in row.values() if extra), {})
    if sample:
        lines.append(f"- json: {sample.get('json')}; file system: {sample.get('filesystem')}; "
                     f"codec of the main pass: {sample.get('codec')}")
    lines += ["", "Medians of one run, same data for every backend. `directory` is sessionsd with the "
              "compiled extension, `directory (twin)` the pure-Python twin; `floor` the raw file "
              "operation with no lock or checks; `legacy` the monolithic sessions.json.", ""]
    lines.append("| operation | sessions | backend medians | ratios |")
    lines.append("|---|---|---|---|")
    for op in ORDER:
        for (name, size) in sorted(k for k in table if k[0] == op):
            row = table[(name, size)]
            medians = ", ".join(f"{backend} {fmt_time(m)}" for backend, (m, _e) in sorted(row.items()))
            if op == "concurrent_writers":
                medians = ", ".join(
                    f"{backend}: {extra.get('ops_per_s', '?')} puts/s" for backend, (_m, extra) in sorted(row.items()))
            wrong = [b for b, (_m, e) in row.items() if e and e.get("correct") is False]
            note = f" **WRONG: {wrong}**" if wrong else ""
            lines.append(f"| {op} | {size:,} | {medians}{note} | {ratios(op, row)} |")
    return "\n".join(lines) + "\n"


_PALETTE = {"directory": "tab:blue", "sqlite": "tab:orange", "legacy": "tab:red", "floor": "tab:gray"}


def _color(backend: str) -> str:
    """One colour per backend family in every chart (twin and cached: same hue)."""
    return _PALETTE.get(backend.split()[0].split("-")[0], "tab:green")


def charts(table, results_dir: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    ops = [op for op in ORDER if op != "concurrent_writers" and any(k[0] == op for k in table)]
    if ops:
        cols = 3
        rows = (len(ops) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, op in zip(axes.flat, ops):
            series = defaultdict(list)
            for (name, size), row in sorted(table.items()):
                if name == op:
                    for backend, (median, _e) in row.items():
                        series[backend].append((size, median))
            for backend, points in sorted(series.items()):
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, marker="o", label=backend, color=_color(backend),
                        linestyle="--" if "twin" in backend else "-")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(op)
            ax.set_xlabel("sessions")
            ax.set_ylabel("median seconds")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(ops):]:
            ax.axis("off")
        fig.tight_layout()
        path = os.path.join(results_dir, "latency.svg")
        fig.savefig(path)
        written.append(path)
    writer_rows = {k: v for k, v in table.items() if k[0] == "concurrent_writers"}
    if writer_rows:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for (name, size), row in sorted(writer_rows.items()):
            points = sorted((int(b.split()[0]), e.get("ops_per_s", 0)) for b, (_m, e) in row.items())
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{size:,} sessions")
        ax.set_xlabel("writer processes")
        ax.set_ylabel("puts per second (all writers)")
        ax.set_title("concurrent writers")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(results_dir, "writers.svg")
        fig.savefig(path)
        written.append(path)
    return written


def main() -> int:
    results_dir = sys.argv[1]
    table, machine = load(results_dir)
    if not table:
        print(f"no benchmark results in {results_dir}", file=sys.stderr)
        return 1
    report = markdown(table, machine)
    with open(os.path.join(results_dir, "report.md"), "w") as fh:
        fh.write(report)
    print(report)
    for path in charts(table, results_dir):
        print(f"chart: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
