#!/usr/bin/env bash
# The documentation check: a fresh virtual environment, the package installed
# from this checkout with its docs extras, then `mkdocs build --strict`, which
# exits non-zero on any warning (a broken link or anchor, an unresolved
# cross-reference, a page missing from the nav, a docstring griffe cannot
# parse, a documented parameter missing from the signature).
#
#   bash ci/docs.sh                      # build into a temporary directory, then remove it
#   SESSIONSD_DOCS_SITE=site bash ci/docs.sh   # keep the built site there (not committed)
#
# The API reference is read from src/ by griffe statically (nothing is
# imported), so the package is installed pure-Python: no compiler needed.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONPATH SESSIONSD_REQUIRE_EXTENSIONS

PYTHON="${PYTHON:-python3}"
VENV="${SESSIONSD_DOCS_VENV:-.venv-docs}"
START=$SECONDS

if [[ -n "${SESSIONSD_DOCS_SITE:-}" ]]; then
    SITE="$SESSIONSD_DOCS_SITE"
else
    SITE="$(mktemp -d "${TMPDIR:-/tmp}/sessionsd-docs.XXXXXX")"
    trap 'rm -rf "$SITE"' EXIT
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
SESSIONSD_NO_EXTENSIONS=1 "$VENV/bin/python" -m pip install --quiet ".[docs]"
echo "installed .[docs] in $((SECONDS - START)) s"

echo "== docs: mkdocs build --strict =="
# NO_MKDOCS_2_WARNING silences Material's end-of-life banner, which is
# printed outside MkDocs' logging (it is not a build warning either way).
NO_MKDOCS_2_WARNING=1 "$VENV/bin/python" -m mkdocs build --strict --clean \
    --config-file mkdocs.yml --site-dir "$SITE"
echo "docs built in $((SECONDS - START)) s (site: $SITE$([[ -z "${SESSIONSD_DOCS_SITE:-}" ]] && echo ', removed on exit'))"
