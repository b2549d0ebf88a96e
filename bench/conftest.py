"""Shared benchmark fixtures.  Run everything with ``bash bench/run.sh``, or
by hand from a venv with sessionsd installed: ``pytest bench --benchmark-only``.

The benchmarks are collected only when asked for (a path inside bench/, or
pytest started inside it): the test suite is ``pytest tests`` (pyproject's
``testpaths``), and a stray ``pytest .`` at the repository root must not start
multi-gigabyte benchmark stores."""

from __future__ import annotations

import gc
import importlib
import os
import platform
import sys
import sysconfig
from pathlib import Path

import pytest

import sessionsd
import sessionsd._json

HERE = Path(__file__).resolve().parent
EXTENSION_ACTIVE = sessionsd.BACKEND == "compiled"


def pytest_ignore_collect(collection_path, config):
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return None
    return True


def python_build() -> str:
    gil = "free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else "gil"
    return f"{platform.python_implementation()} {platform.python_version()} {gil}"


def filesystem_type(path: str) -> str:
    """The type of the file system holding *path*: the longest matching mount
    point in /proc/mounts (Linux); ``unknown`` elsewhere."""
    path = os.path.realpath(path)
    try:
        with open("/proc/mounts") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return "unknown"
    best = ("", "unknown")
    for fields in mounts:
        point, kind = fields[1].replace("\\040", " "), fields[2]
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
            best = (point, kind)
    return best[1]


def pytest_configure(config):
    # bench/run.sh says which codec a pass must run on: a "compiled" pass
    # that silently fell back to the twin would publish wrong numbers.
    expected = os.environ.get("SESSIONSD_BENCH_EXPECT")
    if expected and expected != sessionsd.BACKEND:
        raise pytest.UsageError(
            f"this benchmark pass expects the {expected} codec but sessionsd.BACKEND is "
            f"{sessionsd.BACKEND!r} (sessionsd imported from {sessionsd.__file__})")


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["sessionsd"] = {
        "version": sessionsd.__version__,
        "codec": sessionsd.BACKEND,
        "extension_active": EXTENSION_ACTIVE,
        "json": sessionsd._json.IMPLEMENTATION,
        "python_build": python_build(),
        "module": os.path.dirname(sessionsd.__file__),
        # How the store benchmarks were run (the regression gate repeats it).
        "bench_sizes": os.environ.get("SESSIONSD_BENCH_SIZES", "1000,10000"),
        "bench_quick": os.environ.get("SESSIONSD_BENCH_QUICK") == "1",
    }


@pytest.fixture(scope="session")
def twin():
    return importlib.import_module("sessionsd._codec_py")


@pytest.fixture(scope="session")
def compiled():
    try:
        return importlib.import_module("sessionsd._codec_c")
    except ImportError:
        pytest.skip("compiled codec not built")


@pytest.fixture(scope="session")
def bench_filesystem(tmp_path_factory):
    """The file system the benchmark stores live on (pytest's temp root)."""
    return filesystem_type(str(tmp_path_factory.getbasetemp()))


@pytest.fixture(autouse=True)
def settle():
    """Start every benchmark from the same quiet state: flush the dirty pages
    the previous one left behind (a legacy rewrite or a store build leaves up
    to hundreds of MB whose write-back would slow whatever runs next) and
    collect garbage."""
    os.sync()
    gc.collect()


@pytest.fixture
def record(benchmark, bench_filesystem):
    """Attach the standard extra_info to a benchmark, then assert its answer
    was right: a fast wrong result fails the benchmark instead of winning.
    Keywords beyond the standard ones land in extra_info as they are."""

    def _record(backend: str, size: int, correct: bool, **extra) -> None:
        benchmark.extra_info.update(
            backend=backend,
            store_size=size,
            correct=bool(correct),
            durability="n/a",
            extension_active=EXTENSION_ACTIVE,
            codec=sessionsd.BACKEND,
            json=sessionsd._json.IMPLEMENTATION,
            python=python_build(),
            platform=sys.platform,
            filesystem=bench_filesystem,
        )
        benchmark.extra_info.update(extra)
        assert correct, f"benchmark produced a wrong answer ({backend}, {size} sessions)"

    return _record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say it loudly when the PostgreSQL benchmarks were skipped (no server):
    a report without its `postgres` rows must not pass unnoticed."""
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        if "PostgreSQL benchmarks SKIPPED" in reason:
            terminalreporter.write_sep("!", "PostgreSQL benchmarks skipped", red=True, bold=True)
            terminalreporter.write_line(reason.removeprefix("Skipped: "), red=True, bold=True)
            break
