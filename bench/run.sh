#!/usr/bin/env bash
# The whole benchmark suite, one command:
#
#   bash bench/run.sh                         # 1k and 10k sessions (realistic mix)
#   bash bench/run.sh --quick                 # 1k only, fewer rounds (< 2 minutes)
#   bash bench/run.sh --sizes 1000,10000,100000   # 100k and up use small entries
#   bash bench/run.sh ... -- -k "get or put"  # extra pytest arguments
#
# Regression gate (on request, e.g. a CI job; .ci/run does not run it):
#
#   bash bench/run.sh --compare bench/results/<run>/ [--fail 25%]
#
# re-runs the passes saved in <run>/ (compiled.json, and twin.json unless
# --no-twin; a single .json file also works) at the saved sizes and quick
# mode (unless --sizes/--quick say otherwise), with pytest-benchmark's
# --benchmark-compare and --benchmark-compare-fail=median:<fail>; a median
# over the threshold is measured once more (noise), and the run exits 1
# naming every benchmark whose median regressed twice.  Compare runs from the
# same machine only: absolute times do not travel.
#
# What it does: creates (or reuses) the virtual environment .venv-bench
# (SESSIONSD_BENCH_VENV overrides; PYTHON picks the interpreter), installs
# the package from this checkout with its compiled extension (required: a
# failed build is an error) when the sources changed since the last install,
# and the benchmark tools (pytest, pytest-benchmark, matplotlib); then runs,
# against the installed package (never src/):
#   1. pass "compiled" (extension required): bench/test_store_bench.py with
#      every backend (directory, sqlite, legacy, floors),
#      bench/test_migration_bench.py (migration in a process of its own per
#      round: time and peak RSS, against the floor), bench/test_cap_bench.py
#      (put at the maintenance cap, always 1k and 10k small entries),
#      bench/test_codec_bench.py (codec: compiled vs twin vs stdlib) and
#      bench/test_postgres_bench.py (PostgresStore vs the same SQL issued
#      directly, 1/2/4 client processes, copy directory -> PostgreSQL vs raw
#      COPY; always 10k realistic sessions, on the server of
#      $SESSIONSD_BENCH_POSTGRES_URL -- when it is not set, a throwaway one
#      started by ci/postgres.sh on a Unix socket and stopped at exit; when
#      none can be started, those benchmarks are skipped, loudly);
#   2. pass "twin" (SESSIONSD_NO_EXTENSIONS=1, a separate process, so the
#      twin runs end to end): bench/test_store_bench.py and
#      bench/test_migration_bench.py, directory store only;
# and writes bench/results/<timestamp>/: compiled.json and twin.json
# (pytest-benchmark JSON), their logs, run-meta.json, report.md (by
# bench/report.py), latency.svg/.png and writers.svg/.png.  Stores are built
# under $TMPDIR (default /tmp): a 10k realistic store needs about 2.5 GB
# there while it is measured.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# The passes set these themselves; a PYTHONPATH pointing at src/ would
# measure the source tree (maybe with a stale in-place .so) instead of the install.
unset PYTHONPATH SESSIONSD_NO_EXTENSIONS SESSIONSD_BENCH_POSTGRES_SIZE SESSIONSD_REQUIRE_EXTENSIONS SESSIONSD_BENCH_ONLY SESSIONSD_BENCH_EXPECT

usage() {
  echo "usage: bash bench/run.sh [--quick] [--sizes N,N,...] [--no-twin]" \
       "[--compare RESULTS_DIR|FILE.json [--fail 25%]] [-- PYTEST_ARGS...]" >&2
  exit 2
}

SIZES=""
QUICK=""
COMPARE=""
FAIL="25%"
TWIN=1
EXTRA=()
COMMAND="bash bench/run.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --sizes) [ $# -ge 2 ] || usage; SIZES="$2"; shift ;;
    --sizes=*) SIZES="${1#--sizes=}" ;;
    --compare) [ $# -ge 2 ] || usage; COMPARE="$2"; shift ;;
    --compare=*) COMPARE="${1#--compare=}" ;;
    --fail) [ $# -ge 2 ] || usage; FAIL="$2"; shift ;;
    --fail=*) FAIL="${1#--fail=}" ;;
    --no-twin) TWIN=0 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
    *) usage ;;
  esac
  shift
done
case "$SIZES" in *[!0-9,]*) echo "--sizes takes numbers separated by commas" >&2; exit 2 ;; esac
case "$FAIL" in *%) ;; *) echo "--fail takes a percentage, e.g. 25%" >&2; exit 2 ;; esac

# -- environment --------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
VENV="${SESSIONSD_BENCH_VENV:-$ROOT/.venv-bench}"
PY="$VENV/bin/python"
started=$(date +%s)
if [ ! -x "$PY" ]; then
  echo "== creating $VENV =="
  "$PYTHON" -m venv "$VENV"
fi
if ! "$PY" -c "import pytest, pytest_benchmark, matplotlib" 2>/dev/null; then
  echo "== installing pytest, pytest-benchmark, matplotlib =="
  "$PY" -m pip install --quiet "pytest>=8" "pytest-benchmark>=4" "matplotlib>=3.7"
fi
if ! "$PY" -c "import psycopg, psycopg_pool; psycopg.pq.version()" 2>/dev/null; then
  echo "== installing psycopg, psycopg-pool (the PostgreSQL benchmarks) =="
  "$PY" -m pip install --quiet "psycopg[binary]>=3.2" "psycopg-pool>=3.2" \
    || echo "!! could not install psycopg: the PostgreSQL benchmarks will be skipped !!" >&2
fi
# Reinstall the package only when its sources changed (building the
# extension takes a while); the stamp is a hash of everything that goes in.
STAMP=$("$PY" - <<'EOF'
import hashlib, os
digest = hashlib.sha256()
paths = ["setup.py", "pyproject.toml", "MANIFEST.in"]
for top in ("src", "_ext"):
    for parent, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("build", "__pycache__")]
        paths += [os.path.join(parent, f) for f in files
                  if f.endswith((".py", ".pyx", ".pxd", ".pyi", ".h", ".typed"))]
for path in sorted(paths):
    digest.update(path.encode() + b"\0")
    with open(path, "rb") as fh:
        digest.update(hashlib.sha256(fh.read()).digest())
print(digest.hexdigest())
EOF
)
STAMP_FILE="$VENV/.sessionsd-bench-stamp"
if [ "$(cat "$STAMP_FILE" 2>/dev/null)" != "$STAMP" ] \
   || ! SESSIONSD_REQUIRE_EXTENSIONS=1 "$PY" -c "import sessionsd" 2>/dev/null; then
  echo "== installing sessionsd from $ROOT with the compiled extension =="
  if "$PY" -c "import sessionsd" 2>/dev/null; then
    SESSIONSD_REQUIRE_EXTENSIONS=1 "$PY" -m pip install --quiet --force-reinstall --no-deps "$ROOT"
  else
    SESSIONSD_REQUIRE_EXTENSIONS=1 "$PY" -m pip install --quiet "$ROOT"
  fi
  echo "$STAMP" > "$STAMP_FILE"
fi
(cd /tmp && SESSIONSD_REQUIRE_EXTENSIONS=1 "$PY" -c \
  "import sessionsd, sys; assert sessionsd.BACKEND == 'compiled', sessionsd.BACKEND; print('sessionsd', sessionsd.__version__, 'codec', sessionsd.BACKEND, 'at', sessionsd.__file__)")
install_seconds=$(( $(date +%s) - started ))

# -- the PostgreSQL server of bench/test_postgres_bench.py ----------------------------------------
# $SESSIONSD_BENCH_POSTGRES_URL when given; else a throwaway cluster of our
# own (never one named by an inherited SESSIONSD_TEST_PG_DIR: we stop what we
# start, and only that).
PG_DIR=""
PG_NOTE="given by SESSIONSD_BENCH_POSTGRES_URL"
stop_postgres() {
  if [ -n "$PG_DIR" ]; then bash "$ROOT/ci/postgres.sh" stop "$PG_DIR" || true; fi
}
trap stop_postgres EXIT
if [ -z "${SESSIONSD_BENCH_POSTGRES_URL:-}" ]; then
  echo "== starting a throwaway PostgreSQL server (ci/postgres.sh) =="
  if pg_exports="$(env -u SESSIONSD_TEST_PG_DIR bash "$ROOT/ci/postgres.sh" start)"; then
    PG_DIR="$(eval "$pg_exports"; echo "$SESSIONSD_TEST_PG_DIR")"
    SESSIONSD_BENCH_POSTGRES_URL="$(eval "$pg_exports"; echo "$SESSIONSD_TEST_POSTGRES_URL")"
    export SESSIONSD_BENCH_POSTGRES_URL
    PG_NOTE="throwaway server started by ci/postgres.sh (Unix socket, fsync off)"
  else
    PG_NOTE="none: no server could be started, PostgreSQL benchmarks skipped"
    echo "!!!! no PostgreSQL server could be started (see above): the PostgreSQL benchmarks will be SKIPPED !!!!" >&2
  fi
fi

# -- what to run ------------------------------------------------------------------------
BASELINES=()   # pass name=saved JSON, for the gate
if [ -n "$COMPARE" ]; then
  if [ -d "$COMPARE" ]; then
    dir="$(cd "$COMPARE" && pwd)"
    [ -f "$dir/compiled.json" ] || { echo "no compiled.json in $COMPARE" >&2; exit 2; }
    BASELINES+=("compiled=$dir/compiled.json")
    if [ "$TWIN" = 1 ] && [ -f "$dir/twin.json" ]; then BASELINES+=("twin=$dir/twin.json"); fi
  elif [ -f "$COMPARE" ]; then
    file="$(cd "$(dirname "$COMPARE")" && pwd)/$(basename "$COMPARE")"
    codec=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['machine_info']['sessionsd']['codec'])" "$file")
    if [ "$codec" = python ]; then BASELINES+=("twin=$file"); else BASELINES+=("compiled=$file"); fi
  else
    echo "--compare: no such file or directory: $COMPARE" >&2; exit 2
  fi
  # The saved run's sizes and mode (bench/conftest.py records them), unless
  # given on the command line.
  read -r saved_sizes saved_quick < <("$PY" -c "
import json, sys
info = json.load(open(sys.argv[1]))['machine_info']['sessionsd']
print(info['bench_sizes'], int(info['bench_quick']))" "${BASELINES[0]#*=}")
  if [ -z "$SIZES" ]; then SIZES="$saved_sizes"; fi
  if [ -z "$QUICK" ] && [ "$saved_quick" = 1 ]; then QUICK=1; fi
fi
if [ -z "$SIZES" ]; then
  if [ -n "$QUICK" ]; then SIZES=1000; else SIZES=1000,10000; fi
fi
QUICK="${QUICK:-0}"

STAMP_DIR="$(date +%Y%m%d-%H%M%S)"
if [ -n "$COMPARE" ]; then STAMP_DIR="$STAMP_DIR-gate"; fi
OUT="$ROOT/bench/results/$STAMP_DIR"
mkdir -p "$OUT"
echo "== results: $OUT (sizes $SIZES$([ "$QUICK" = 1 ] && echo ', quick')) =="

# pytest runs in bench/ (its helper modules import as top-level modules); the
# package comes from the venv.  Benchmarks are pedantic (fixed rounds) except
# the codec's one-key ones, calibrated by pytest-benchmark within max-time.
BENCH_ARGS=(-q -p no:cacheprovider --benchmark-only --benchmark-sort=name
            --benchmark-columns=median,iqr,min,rounds
            --benchmark-storage="file://$OUT/.storage"
            -W "ignore::pytest_benchmark.logger.PytestBenchmarkWarning")
if [ "$QUICK" = 1 ]; then BENCH_ARGS+=(--benchmark-max-time=0.25); fi
export SESSIONSD_BENCH_SIZES="$SIZES" SESSIONSD_BENCH_QUICK="$QUICK"
WALL_compiled=0
WALL_twin=0
status=0
regressions=()

pass_env() {  # the environment of a pass
  case "$1" in
    compiled) echo "SESSIONSD_REQUIRE_EXTENSIONS=1 SESSIONSD_BENCH_EXPECT=compiled" ;;
    twin) echo "SESSIONSD_NO_EXTENSIONS=1 SESSIONSD_BENCH_EXPECT=python SESSIONSD_BENCH_ONLY=directory" ;;
  esac
}

pass_files() {  # the benchmark files of a pass
  case "$1" in
    compiled) echo "test_store_bench.py test_migration_bench.py test_cap_bench.py test_codec_bench.py test_postgres_bench.py" ;;
    twin) echo "test_store_bench.py test_migration_bench.py" ;;
  esac
}

pytest_in_pass() {  # pass name, log file, then pytest arguments
  local name="$1" log="$2"; shift 2
  # shellcheck disable=SC2046  # pass_env is a list of NAME=value words
  (cd "$ROOT/bench" && env $(pass_env "$name") "$PY" -m pytest "$@") 2>&1 | tee "$log"
}

suspects() {  # log file, results JSON -> node ids (in bench/) whose median regressed
  "$PY" - "$1" "$2" <<'PYEOF'
import json, os, re, sys
log, results = sys.argv[1:]
names = set(re.findall(r"^\s*(\S+) \(.*\) - Field 'median' has failed", open(log).read(), re.M))
for bench in json.load(open(results))["benchmarks"]:
    if bench["name"] in names:
        path, test = bench["fullname"].split("::", 1)
        print(f"{os.path.basename(path)}::{test}")
PYEOF
}

confirm() {  # pass name, compare arguments
  # A noisy machine makes single medians jump: measure the suspects again and
  # fail only on what regresses twice.
  local name="$1" rc=0 ids=() line
  shift
  mapfile -t ids < <(suspects "$OUT/$name.log" "$OUT/$name.json")
  if [ "${#ids[@]}" = 0 ]; then
    echo "!! pass '$name': regressed, but no benchmark name found in $OUT/$name.log" >&2
    status=1
    return
  fi
  echo "== pass '$name': ${#ids[@]} median(s) worse by more than $FAIL; measuring them again =="
  mkdir -p "$OUT/confirm"
  pytest_in_pass "$name" "$OUT/confirm/$name.log" "${ids[@]}" "${BENCH_ARGS[@]}" \
      --benchmark-json="$OUT/confirm/$name.json" "$@" || rc=$?
  if [ "$rc" != 0 ] && grep -q "Performance has regressed" "$OUT/confirm/$name.log"; then
    while IFS= read -r line; do regressions+=("$name: $line"); done \
      < <(grep "Field 'median' has failed" "$OUT/confirm/$name.log" | sed -e 's/^[[:space:]]*//')
    status=1
  elif [ "$rc" != 0 ]; then
    echo "!! pass '$name' failed on the second measurement (exit $rc): see $OUT/confirm/$name.log" >&2
    status=1
  else
    echo "== pass '$name': not confirmed on the second measurement (noise) =="
  fi
}

run_pass() {  # pass name
  local name="$1" baseline="" entry rc=0 t0
  t0=$(date +%s)
  for entry in ${BASELINES[@]+"${BASELINES[@]}"}; do
    if [ "${entry%%=*}" = "$name" ]; then baseline="${entry#*=}"; fi
  done
  local check=()
  if [ -n "$COMPARE" ]; then
    [ -n "$baseline" ] || return 0
    check=(--benchmark-compare="$baseline" --benchmark-compare-fail="median:$FAIL")
  fi
  echo "== pass '$name': $(pass_env "$name") =="
  # shellcheck disable=SC2046  # pass_files is a list of file names
  pytest_in_pass "$name" "$OUT/$name.log" $(pass_files "$name") "${BENCH_ARGS[@]}" \
      --benchmark-json="$OUT/$name.json" ${check[@]+"${check[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} || rc=$?
  if grep -qE "^(FAILED|ERROR) " "$OUT/$name.log"; then
    echo "!! pass '$name': benchmarks failed or gave a wrong answer: see $OUT/$name.log" >&2
    status=1
  elif [ "$rc" = 5 ]; then
    echo "== pass '$name': no benchmark selected =="
  elif [ "$rc" != 0 ] && [ -n "$COMPARE" ] && grep -q "Performance has regressed" "$OUT/$name.log"; then
    confirm "$name" "${check[@]}"
  elif [ "$rc" != 0 ]; then
    echo "!! pass '$name' failed (exit $rc): see $OUT/$name.log" >&2
    status=1
  fi
  eval "WALL_$name=$(( $(date +%s) - t0 ))"
}

run_pass compiled
if [ "$TWIN" = 1 ]; then
  run_pass twin
fi

total=$(( $(date +%s) - started ))
"$PY" - "$OUT/run-meta.json" "$COMMAND" "$SIZES" "$QUICK" "$install_seconds" "$total" "$PG_NOTE" \
      "$(cat /proc/loadavg 2>/dev/null || true)" "compiled=$WALL_compiled" "twin=$WALL_twin" <<'PYEOF'
import json, sys
out, command, sizes, quick, install, total, postgres, loadavg, *passes = sys.argv[1:]
wall = {"install": int(install)}
wall.update({k: int(v) for k, v in (p.split("=") for p in passes) if int(v)})
wall["total"] = int(total)
json.dump({"command": command, "sizes": [int(s) for s in sizes.split(",")], "quick": quick == "1",
           "wall_seconds": wall, "postgres_server": postgres, "loadavg_at_end": " ".join(loadavg.split()[:3])},
          open(out, "w"), indent=2)
PYEOF
"$PY" "$ROOT/bench/report.py" "$OUT" || status=1
rm -rf "$OUT/.storage"

if [ -n "$COMPARE" ]; then
  if [ "${#regressions[@]}" -gt 0 ]; then
    echo "== REGRESSION against $COMPARE (median worse by more than $FAIL, twice) =="
    printf '  %s\n' "${regressions[@]}"
  elif [ "$status" = 0 ]; then
    echo "== gate passed: no median regressed by more than $FAIL against $COMPARE =="
  fi
fi
echo "== done in ${total} s: $OUT/report.md =="
exit "$status"
