"""Named points on the write paths where the crash-safety tests stop the process.

Nothing here acts on its own: :func:`hit` calls :data:`hook` when one is
installed, and the package never installs one.  The tests install a hook
(``tests/crashpoints.py``) that kills the process at chosen points, so the
killing code stays out of the installed package.  Cost in production: one
global load and a comparison per point passed.
"""

from __future__ import annotations

from collections.abc import Callable

#: Called with the point's name at every point passed, when set.
hook: Callable[[str], None] | None = None


def hit(name: str) -> None:
    """Pass the crash point *name* (calls :data:`hook` if one is installed)."""
    if hook is not None:
        hook(name)
