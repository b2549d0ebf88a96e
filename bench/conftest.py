"""Shared benchmark fixtures.  Run: ``pytest bench --benchmark-only``."""

from __future__ import annotations

import importlib
import os
import platform
import sys
import sysconfig
import tempfile

import pytest

import sessionsd
import sessionsd._json


def python_build() -> str:
    gil = "free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else "gil"
    return f"{platform.python_implementation()} {platform.python_version()} {gil}"


def filesystem_type(path: str) -> str:
    """The type of the file system holding *path* (from /proc/mounts)."""
    try:
        with open("/proc/mounts") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return "unknown"
    path = os.path.realpath(path)
    best = ("", "unknown")
    for fields in mounts:
        point, kind = fields[1], fields[2]
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best[0]):
            best = (point, kind)
    return best[1]


FS_TYPE = filesystem_type(tempfile.gettempdir())


@pytest.fixture(scope="session")
def twin():
    return importlib.import_module("sessionsd._codec_py")


@pytest.fixture(scope="session")
def compiled():
    try:
        return importlib.import_module("sessionsd._codec_c")
    except ImportError:
        pytest.skip("compiled codec not built")


@pytest.fixture
def record(benchmark):
    """Attach the standard extra_info to a benchmark."""

    def _record(backend: str, size: int, correct: bool, **extra) -> None:
        benchmark.extra_info.update(
            backend=backend,
            store_size=size,
            correct=bool(correct),
            extension_active=sessionsd.BACKEND == "compiled",
            codec=sessionsd.BACKEND,
            json=sessionsd._json.IMPLEMENTATION,
            python=python_build(),
            platform=sys.platform,
            filesystem=FS_TYPE,
            **extra,
        )
        assert correct, "benchmark produced a wrong answer"

    return _record
