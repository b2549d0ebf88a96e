#!/usr/bin/env bash
# Lint and types, as in .ci/run: ruff (the rule set in pyproject.toml) over
# src, tests, bench and ci, then mypy --strict over src/sessionsd.  The tools
# are pinned so a new release cannot turn CI red on its own; the runtime
# dependencies are installed for their type information.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${SESSIONSD_LINT_VENV:-.venv-lint}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "ruff==0.17.6" "mypy==2.4.1" \
  filelock json5 orjson "psycopg[binary]>=3.2" "psycopg-pool>=3.2" pytest hypothesis

echo "== ruff =="
"$VENV/bin/ruff" check src tests bench ci
echo "== mypy --strict =="
"$VENV/bin/mypy" --strict src/sessionsd
