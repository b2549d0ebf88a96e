"""Build the optional Cython extension ``sessionsd._codec_c``.

All metadata lives in pyproject.toml except the dependencies (see
``dependencies()`` for why they are computed here).  The extension is
optional for source installs (a failed build falls back to the pure-Python
twin with a warning) and mandatory when ``CIBUILDWHEEL=1`` or ``SESSIONSD_REQUIRE_EXTENSIONS=1``.
``SESSIONSD_NO_EXTENSIONS=1`` skips it (the pure ``py3-none-any`` wheel), and
so does any interpreter other than CPython.
"""

import os
import platform
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


REQUIRED = env_flag("CIBUILDWHEEL") or env_flag("SESSIONSD_REQUIRE_EXTENSIONS")
DISABLED = env_flag("SESSIONSD_NO_EXTENSIONS") or platform.python_implementation() != "CPython"
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def dependencies():
    """Runtime requirements of the wheel (or source install) being built.

    orjson is a speed-up, not a requirement: without it the stdlib json writes
    the same bytes.  The marker leaves it out on PyPy.  Free-threaded builds
    (cp314t) have no marker of their own and orjson ships no wheel for them --
    pip would try to compile it from source with Rust and fail the install --
    so a wheel built on one is built without it.
    """
    requires = ["filelock>=4.2,<5", "json5>=0.9"]
    if not FREE_THREADED:
        requires.append("orjson>=3.9; platform_python_implementation == 'CPython'")
    return requires


class OptionalBuildExt(build_ext):
    """build_ext that turns a compiler failure into a warning unless required."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "no extension"
            if REQUIRED:
                raise
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            if REQUIRED:
                raise
            self._warn(exc)

    def _warn(self, exc):
        sys.stderr.write(
            f"WARNING: building {', '.join(e.name for e in self.extensions)} failed "
            f"({exc}); sessionsd will use its pure-Python codec.\n"
        )


def extensions():
    if DISABLED:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRED:
            raise
        sys.stderr.write("WARNING: Cython is not installed; building without the extension.\n")
        return []
    ext = Extension(
        "sessionsd._codec_c",
        sources=["_ext/_codec_c.pyx"],
        include_dirs=["_ext"],
        depends=["_ext/sd_dirscan.h"],
    )
    return cythonize([ext], compiler_directives={"language_level": "3"})


setup(
    install_requires=dependencies(),
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
