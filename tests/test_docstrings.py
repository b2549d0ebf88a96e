"""Every public callable of sessionsd has a docstring.

The API reference (mkdocs.yml, docs/reference/) is generated from docstrings,
so an undocumented public name is a hole in the documentation.  The names
checked:

* every callable in ``sessionsd.__all__``;
* the public names of ``sessionsd.aio``, ``sessionsd.maintenance``,
  ``sessionsd.migration``, ``sessionsd.errors`` and ``sessionsd.postgres``
  (when psycopg is installed): the names in the module's
  ``__all__`` plus every name without a leading underscore that the module
  defines itself (a helper class or function not listed in ``__all__`` is
  still public by its name); names a module merely imports are checked where
  they are defined, not there;
* of each such class, every public method, classmethod, staticmethod and
  property, inherited ones included when the class that defines them is part
  of sessionsd (not ``object``, ``Exception``, ``MutableMapping`` ...).

Public means no leading underscore, and defined in the sessionsd package (the
compiled codec's functions report their module as ``_codec_c``; they count
through ``sessionsd.__all__``).  A docstring must be the object's own, not
empty, and, for a dataclass, not the signature ``dataclasses`` writes in
place of a missing one.  An override without a docstring fails even when the
method it overrides has one: the reference would show it bare.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import types
from collections.abc import Iterator

import sessionsd

#: The modules whose public names are checked, besides ``sessionsd.__all__``.
MODULES = ("sessionsd.aio", "sessionsd.maintenance", "sessionsd.migration", "sessionsd.errors",
           "sessionsd.postgres", "sessionsd.copying")
#: Of those, the ones that need an optional dependency (skipped without it).
OPTIONAL = {"sessionsd.postgres": ("psycopg", "psycopg_pool")}


def _in_package(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "sessionsd" or module.startswith("sessionsd.")


def _own_doc(obj: object) -> str:
    """*obj*'s own docstring, stripped ('' when it has none)."""
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__")
        if (dataclasses.is_dataclass(obj) and isinstance(doc, str)
                and doc.startswith(f"{obj.__name__}(")):
            return ""  # what dataclasses writes for a class without a docstring
    else:
        doc = getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) else ""


def _unwrap(raw: object) -> object | None:
    """The function-like object behind a class attribute, or None (data)."""
    if isinstance(raw, (staticmethod, classmethod)):
        return raw.__func__
    if isinstance(raw, (property, functools.cached_property)):
        return raw
    if isinstance(raw, (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType)):
        return raw
    if callable(raw) and not isinstance(raw, type) and hasattr(raw, "__doc__") and hasattr(raw, "__name__"):
        return raw  # e.g. a Cython function
    return None


def _module_names(module: types.ModuleType) -> list[str]:
    names = list(getattr(module, "__all__", ()))
    for name, value in vars(module).items():
        if name.startswith("_") or name in names:
            continue
        if getattr(value, "__module__", None) == module.__name__ and (callable(value) or isinstance(value, type)):
            names.append(name)
    return names


def public_callables() -> Iterator[tuple[str, object]]:
    """``(dotted name, object)`` of every public callable, each object once."""
    seen: set[int] = set()
    roots: list[tuple[str, object]] = []
    for name in sessionsd.__all__:
        roots.append((f"sessionsd.{name}", getattr(sessionsd, name)))
    for module_name in MODULES:
        if any(importlib.util.find_spec(need) is None for need in OPTIONAL.get(module_name, ())):
            continue
        module = importlib.import_module(module_name)
        for name in _module_names(module):
            value = getattr(module, name)
            if _in_package(value) or name in getattr(module, "__all__", ()):
                roots.append((f"{module_name}.{name}", value))
    for dotted, value in roots:
        if not callable(value) or id(value) in seen:
            continue
        seen.add(id(value))
        yield dotted, value
        if isinstance(value, type):
            yield from _members(dotted, value, seen)


def _members(dotted: str, cls: type, seen: set[int]) -> Iterator[tuple[str, object]]:
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((klass for klass in cls.__mro__ if name in klass.__dict__), None)
        if owner is None or not _in_package(owner):
            continue
        member = _unwrap(owner.__dict__[name])
        if member is None or id(member) in seen:
            continue
        seen.add(id(member))
        where = "" if owner is cls else f" (inherited from {owner.__module__}.{owner.__qualname__})"
        yield f"{dotted}.{name}{where}", member


def test_the_walk_finds_the_api():
    """Guards against a walk that passes by finding nothing."""
    from sessionsd._facade import StoreFacade
    from sessionsd.aio import AsyncSessionStore
    from sessionsd.errors import SessionsdError
    from sessionsd.maintenance import Maintenance
    from sessionsd.store import SessionStore

    found = {id(obj) for _, obj in public_callables()}
    expected = {
        "SessionStore": SessionStore, "SessionStore.get": SessionStore.get, "SessionStore.put": SessionStore.put,
        "SessionStore.load": SessionStore.load, "SessionStore.mode": StoreFacade.__dict__["mode"], "SessionStore.paths": SessionStore.__dict__["paths"],
        "migrate": sessionsd.migrate, "encode_key": sessionsd.encode_key, "AsyncSessionStore": AsyncSessionStore,
        "AsyncSessionStore.get": AsyncSessionStore.get, "Maintenance": Maintenance, "SessionsdError": SessionsdError,
    }
    if importlib.util.find_spec("psycopg") is not None:
        from sessionsd.postgres import PostgresStore

        expected["PostgresStore"] = PostgresStore
        expected["PostgresStore.namespace"] = PostgresStore.__dict__["namespace"]
    missing = [name for name, obj in expected.items() if id(obj) not in found]
    assert not missing, missing
    names = [name for name, _ in public_callables()]
    # Inherited members come from sessionsd classes only (no Exception.with_traceback).
    assert not any(".with_traceback" in name or ".add_note" in name for name in names)


def test_every_public_callable_has_a_docstring():
    undocumented = [name for name, obj in public_callables() if not _own_doc(obj)]
    assert not undocumented, (
        f"{len(undocumented)} public name(s) without a docstring (the API reference shows them bare):\n  "
        + "\n  ".join(undocumented))

