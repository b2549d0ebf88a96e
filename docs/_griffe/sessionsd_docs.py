"""Griffe extensions for the sessionsd API reference (loaded by mkdocs.yml).

Griffe reads ``src/`` statically; nothing is imported.  Two things in the
source need help to render well:

* :class:`CodecBackend` -- ``sessionsd._codec`` picks its implementation at
  import time (``encode_key = _impl.encode_key``, ``_impl`` being the compiled
  ``_codec_c`` or the pure twin ``_codec_py``).  Static analysis cannot follow
  that, so the public codec functions would render as bare attributes.  They
  are pointed at the pure twin, which is the documented source of their
  signatures and docstrings (the compiled module's stub mirrors it).
* :class:`SphinxRoles` -- several docstrings use Sphinx roles
  (``:class:`~sessionsd.SessionStore```, ``:func:`migrate```), which Markdown
  would print literally.  Each becomes a code span wrapped in an *optional*
  autoref: a link when the target is rendered somewhere on the site, plain
  code otherwise.  An unresolved optional reference is not a warning, so
  ``mkdocs build --strict`` stays quiet about private helpers that are never
  documented.  ``~`` shows the last component only, as in Sphinx.
* :class:`HideSpecialMembers` -- griffe counts special methods
  (``__reduce__``, ``__post_init__``, ``__aenter__`` ...) as public; the
  reference leaves them out (``__init__`` is merged into its class, and the
  guide describes the mapping and context-manager protocols).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_CODEC = "sessionsd._codec"
_TWIN = "sessionsd._codec_py"
_IMPL_VALUE = re.compile(r"_impl\.(?P<name>\w+)")

_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const|type):`(?P<tilde>~?)(?P<target>[^`<>]+?)`"
)


class CodecBackend(griffe.Extension):
    """Alias ``sessionsd._codec.NAME = _impl.NAME`` to ``sessionsd._codec_py.NAME``."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "sessionsd" or "_codec" not in pkg.members or "_codec_py" not in pkg.members:
            return
        codec = pkg.members["_codec"]
        twin = pkg.members["_codec_py"]
        for name, member in list(codec.members.items()):
            if member.is_alias or not member.is_attribute:
                continue
            match = _IMPL_VALUE.fullmatch(str(member.value or ""))
            if match and match["name"] in twin.members:
                codec.set_member(name, griffe.Alias(name, f"{_TWIN}.{match['name']}", parent=codec))


def _target(obj: griffe.Object, name: str) -> str:
    """The full path of *name* as written in *obj*'s docstring (best effort)."""
    name = name.strip().lstrip(".")
    if name.startswith("sessionsd"):
        return name
    first, _, rest = name.partition(".")
    scope: griffe.Object | None = obj if (obj.is_class or obj.is_module) else obj.parent
    while scope is not None:
        try:
            resolved = scope.resolve(first)
        except Exception:  # noqa: BLE001 - not resolvable here: try the enclosing scope
            scope = scope.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return name


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(lambda match: self._replace(obj, match), obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)

    @staticmethod
    def _replace(obj: griffe.Object, match: re.Match[str]) -> str:
        written = match["target"].strip()
        target = _target(obj, written)
        shown = written.rsplit(".", 1)[-1] if match["tilde"] else written
        title = f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{html.escape(target, quote=True)}" optional>{title}</autoref>'


class HideSpecialMembers(griffe.Extension):
    """Mark ``__dunder__`` members of classes as not public (``__init__`` aside)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        for name, member in obj.members.items():
            if member.is_alias:
                continue
            if obj.is_class and name.startswith("__") and name.endswith("__") and name != "__init__":
                member.public = False
            self._walk(member, seen)
