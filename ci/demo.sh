#!/usr/bin/env bash
# The main job (README): install sessionsd into a fresh virtual environment
# and run the demo on generated data.  Extra arguments go to the demo, e.g.
#   bash ci/demo.sh --sessions 20000
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${SESSIONSD_DEMO_VENV:-.venv}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet .
"$VENV/bin/python" -m sessionsd demo "$@"
