#!/usr/bin/env bash
# One command for the whole benchmark suite.
#   bash bench/run.sh                       # 1k and 10k sessions (realistic mix)
#   bash bench/run.sh --quick               # 1k only, fewer rounds (< 2 minutes)
#   bash bench/run.sh --sizes 1000,10000,100000   # 100k uses small entries
#   bash bench/run.sh --quick --compare bench/results/<run>/compiled.json [--fail 25%]
#                                           # regression gate: fail on a median
#                                           # regression beyond the threshold
# Writes bench/results/<timestamp>/: compiled.json, twin.json (pytest-benchmark
# JSON), report.md, latency.svg, writers.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=1000,10000
QUICK=0
COMPARE=""
FAIL=25%
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; SIZES=1000 ;;
    --sizes) SIZES="$2"; shift ;;
    --compare) COMPARE="$2"; shift ;;
    --fail) FAIL="$2"; shift ;;
    *) echo "usage: bench/run.sh [--quick] [--sizes N,N] [--compare FILE.json [--fail 25%]]" >&2; exit 2 ;;
  esac
  shift
done

PYTHON="${PYTHON:-python3}"
VENV="${SESSIONSD_BENCH_VENV:-$(pwd)/.venv-bench}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
SESSIONSD_REQUIRE_EXTENSIONS=1 "$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps .
"$VENV/bin/python" -m pip install --quiet ".[bench]" matplotlib

OUT="$(pwd)/bench/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
export SESSIONSD_BENCH_SIZES="$SIZES" SESSIONSD_BENCH_QUICK="$QUICK"
BENCH_ARGS=(-q -p no:cacheprovider --benchmark-only --benchmark-columns=median,min,rounds
            --benchmark-sort=name)
start=$(date +%s)

if [ -n "$COMPARE" ]; then
  # pytest-benchmark compares against runs in its storage: put the saved run there.
  STORAGE="$(mktemp -d)"
  MACHINE=$("$VENV/bin/python" -c "import platform; print(f'{platform.system()}-{platform.python_implementation()}-{\".\".join(platform.python_version_tuple()[:2])}-{platform.architecture()[0]}')")
  mkdir -p "$STORAGE/$MACHINE"
  cp "$COMPARE" "$STORAGE/$MACHINE/0001_baseline.json"
  (cd bench && "$VENV/bin/python" -m pytest test_suite.py "${BENCH_ARGS[@]}" \
      --benchmark-json="$OUT/compiled.json" --benchmark-storage="file://$STORAGE" \
      --benchmark-compare=0001 --benchmark-compare-fail="median:$FAIL")
  echo "no median regressed by more than $FAIL against $COMPARE"
  exit 0
fi

echo "== compiled extension: every backend =="
(cd bench && "$VENV/bin/python" -m pytest test_suite.py "${BENCH_ARGS[@]}" --benchmark-json="$OUT/compiled.json")
echo "== pure-Python twin: directory store only =="
(cd bench && SESSIONSD_NO_EXTENSIONS=1 SESSIONSD_BENCH_ONLY=directory \
    "$VENV/bin/python" -m pytest test_suite.py "${BENCH_ARGS[@]}" --benchmark-json="$OUT/twin.json")
"$VENV/bin/python" bench/report.py "$OUT"
echo "results: $OUT ($(( $(date +%s) - start )) s)"
