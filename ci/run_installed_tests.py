"""Run the test suite against the *installed* sessionsd, not the source tree.

    python ci/run_installed_tests.py PROJECT_DIR [--pure] [pytest args...]

Copies PROJECT_DIR/tests to a temporary directory and runs pytest there, so
`import sessionsd` can only find the installed package (a wheel, or an sdist
install): the working directory is not the project, and PYTHONPATH is
dropped.  By default the extension is required (a compiled wheel); with
``--pure`` the installed package must be the pure-Python one (the
``py3-none-any`` wheel).  Used by ci/packaging.sh and by cibuildwheel's
test-command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

CHECK = """
import os, sys, sessionsd
print("testing", sessionsd.__file__, "backend:", sessionsd.BACKEND)
project, expected = sys.argv[1], sys.argv[2]
here = os.path.normcase(os.path.realpath(sessionsd.__file__))
if here.startswith(os.path.normcase(os.path.realpath(project)) + os.sep):
    sys.exit(f"sessionsd was imported from the project tree ({here}), not the installed package")
if sessionsd.BACKEND != expected:
    sys.exit(f"the installed sessionsd runs the {sessionsd.BACKEND} codec, expected {expected}")
"""


def main() -> int:
    project = os.path.abspath(sys.argv[1])
    extra = sys.argv[2:]
    pure = bool(extra) and extra[0] == "--pure"
    if pure:
        extra = extra[1:]
    # Test paths given as tests/... are relative to the copied tree, which is
    # laid out like the project.
    with tempfile.TemporaryDirectory(prefix="sessionsd-installed-tests-") as scratch:
        tests = os.path.join(scratch, "tests")
        shutil.copytree(os.path.join(project, "tests"), tests,
                        ignore=shutil.ignore_patterns("__pycache__"))
        # The pytest settings of the project, without its rootdir.
        shutil.copy(os.path.join(project, "pyproject.toml"), scratch)
        env = {k: v for k, v in os.environ.items()
               if k != "PYTHONPATH" and not k.startswith("SESSIONSD_")}
        if not pure:
            env["SESSIONSD_REQUIRE_EXTENSIONS"] = "1"
        expected = "python" if pure else "compiled"
        check = subprocess.run([sys.executable, "-c", CHECK, project, expected], cwd=scratch, env=env)
        if check.returncode:
            return 1
        if not any(arg.startswith("tests") for arg in extra):
            extra.append("tests")
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *extra],
                              cwd=scratch, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
