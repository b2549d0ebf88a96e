"""Shared benchmark fixtures.  Run: ``pytest bench --benchmark-only``."""

from __future__ import annotations

import importlib
import platform
import sys
import sysconfig

import pytest

import sessionsd


def python_build() -> str:
    gil = "free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else "gil"
    return f"{platform.python_implementation()} {platform.python_version()} {gil}"


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
            python=python_build(),
            platform=sys.platform,
            **extra,
        )
        assert correct, "benchmark produced a wrong answer"

    return _record
