"""Shared fixtures: every codec/scan test runs on both backends."""

from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import HealthCheck, settings

from sessionsd._codec import _env_flag

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

EXTENSION_REQUIRED = _env_flag("SESSIONSD_REQUIRE_EXTENSIONS")


def load_compiled():
    """The compiled codec, or a skip -- a failure when it is required."""
    try:
        return importlib.import_module("sessionsd._codec_c")
    except ImportError as exc:
        if EXTENSION_REQUIRED:
            pytest.fail(f"SESSIONSD_REQUIRE_EXTENSIONS=1 but the extension did not import: {exc}")
        pytest.skip(f"compiled codec not built: {exc}")


@pytest.fixture(params=["python", "compiled"])
def codec(request):
    """The codec module of one backend."""
    if request.param == "python":
        return importlib.import_module("sessionsd._codec_py")
    return load_compiled()


@pytest.fixture
def both_codecs():
    """(twin, compiled) for differential tests."""
    return importlib.import_module("sessionsd._codec_py"), load_compiled()


def _count_calls(monkeypatch, owner, name) -> list:
    """Wrap ``owner.name`` so each call appends to the returned list."""
    calls: list = []
    real = getattr(owner, name)

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


@pytest.fixture
def count_scans(monkeypatch):
    """Maintenance's O(n) scans of entries/ (``Maintainer._index``)."""
    from sessionsd.maintenance import Maintainer

    return _count_calls(monkeypatch, Maintainer, "_index")


@pytest.fixture
def count_recounts(monkeypatch):
    """Recounts of the store statistics (``DirectoryStore.count_entries``)."""
    from sessionsd._directory import DirectoryStore

    return _count_calls(monkeypatch, DirectoryStore, "count_entries")
