#!/usr/bin/env bash
# The test command (README, .ci/run): a fresh virtual environment, the package
# installed from this checkout with its test extras and the compiled extension
# (a failed extension build is an error here), then the whole suite twice:
# once with the extension required, once forced onto the pure-Python twin.
set -euo pipefail
cd "$(dirname "$0")/.."
# A PYTHONPATH pointing at src/ (where an in-place build may have left a .so)
# or an inherited backend switch would test something else than the install.
unset PYTHONPATH SESSIONSD_NO_EXTENSIONS SESSIONSD_REQUIRE_EXTENSIONS

PYTHON="${PYTHON:-python3}"
VENV="${SESSIONSD_TEST_VENV:-.venv-test}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
SESSIONSD_REQUIRE_EXTENSIONS=1 "$VENV/bin/python" -m pip install --quiet ".[test,postgres]"

# A throwaway PostgreSQL server for the PostgreSQL backend's tests, which must
# run here (Debian's postgresql package is installed when missing); stopped
# and its directory removed on exit.  (The assignment stays on its own line:
# under set -e a failed start must stop the script.)
PG_ENV="$(bash ci/postgres.sh start)"
eval "$PG_ENV"
trap 'bash ci/postgres.sh stop' EXIT
export SESSIONSD_REQUIRE_POSTGRES=1

# Run from tests/'s parent but against the installed package: src/ is not on
# sys.path, so a stale source tree cannot mask a broken wheel.
echo "== tests, compiled extension required =="
SESSIONSD_REQUIRE_EXTENSIONS=1 "$VENV/bin/python" -m pytest tests "$@"

echo "== tests, pure-Python twin (SESSIONSD_NO_EXTENSIONS=1) =="
SESSIONSD_NO_EXTENSIONS=1 "$VENV/bin/python" -m pytest tests "$@"
