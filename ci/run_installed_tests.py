"""Run the test suite against the *installed* sessionsd, not the source tree.

    python ci/run_installed_tests.py PROJECT_DIR [pytest args...]

Copies PROJECT_DIR/tests to a temporary directory and runs pytest there with
the extension required, so `import sessionsd` can only find the installed
package (a wheel, or an sdist install).  Used by ci/packaging.sh and by
cibuildwheel's test-command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile


def main() -> int:
    project = os.path.abspath(sys.argv[1])
    extra = sys.argv[2:]
    with tempfile.TemporaryDirectory(prefix="sessionsd-installed-tests-") as scratch:
        tests = os.path.join(scratch, "tests")
        shutil.copytree(os.path.join(project, "tests"), tests,
                        ignore=shutil.ignore_patterns("__pycache__"))
        # The pytest settings of the project, without its rootdir.
        shutil.copy(os.path.join(project, "pyproject.toml"), scratch)
        env = dict(os.environ, SESSIONSD_REQUIRE_EXTENSIONS="1")
        env.pop("SESSIONSD_NO_EXTENSIONS", None)
        check = subprocess.run([sys.executable, "-c",
                                "import sessionsd, sys; print(sessionsd.__file__, sessionsd.BACKEND); "
                                "sys.exit(sessionsd.BACKEND != 'compiled')"],
                               cwd=scratch, env=env)
        if check.returncode:
            print("the installed sessionsd does not have its compiled extension", file=sys.stderr)
            return 1
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests", *extra],
                              cwd=scratch, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
