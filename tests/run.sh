#!/usr/bin/env bash
# Runs every test program (unit, integration, fuzz replay), each in its own
# process with a timeout, and ends with one summary line CI reads:
#   N passed, N failed
# A cmocka program reports its own counts; any other program counts as one
# test that passed when it exited 0.
set -u
BUILD=${BUILD:-build}
export KCHAT_BIN=${KCHAT_BIN:-bin/kchat}
# Sanitizer builds: undefined behaviour fails the test instead of warning.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
export KCHAT_TEST_TMP=${KCHAT_TEST_TMP:-$(mktemp -d /tmp/kchat-test.XXXXXX)}
filter=${1:-}
passed=0; failed=0; failed_names=()

run_one() {
  local bin=$1 limit=$2 log rc p f
  shift 2
  log=$(mktemp)
  echo "=== $bin $*"
  timeout --kill-after=10 "$limit" "$bin" "$@" >"$log" 2>&1; rc=$?
  cat "$log"
  p=$(grep -hoE '^\[  PASSED  \] [0-9]+ test' "$log" | awk '{s+=$4} END {if (NR) print s}')
  f=$(grep -hoE '^\[  FAILED  \] [0-9]+ test' "$log" | awk '{s+=$4} END {if (NR) print s}')
  if [ -z "$p$f" ]; then   # a program with its own `N passed, N failed` line
    p=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 | awk '{print $1}')
    f=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1 | awk '{print $3}')
  fi
  if [ -n "$p$f" ]; then
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ] && [ -z "$f" ]; then failed=$((failed + 1)); fi
  elif [ "$rc" -eq 0 ]; then passed=$((passed + 1))
  else failed=$((failed + 1)); fi
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && echo "*** $bin timed out after ${limit}s"
    failed_names+=("$bin (exit $rc)")
  fi
  rm -f "$log"
}

# docs/configuration.md is generated from the option table: it must match.
if [[ -z $filter || config-doc == *$filter* ]]; then
  echo "=== config-doc"
  if "$KCHAT_BIN" config-doc | diff -u docs/configuration.md - ; then passed=$((passed + 1))
  else failed=$((failed + 1)); failed_names+=("docs/configuration.md is stale: run make docs"); fi
fi

for t in "$BUILD"/tests/unit/*; do
  [ -x "$t" ] || continue; [[ -n $filter && $t != *$filter* ]] && continue
  run_one "$t" 120
done
for t in "$BUILD"/tests/fuzz/fuzz_*; do
  [ -x "$t" ] || continue; [[ -n $filter && $t != *$filter* ]] && continue
  name=$(basename "$t"); run_one "$t" 120 "tests/fuzz/corpus/${name#fuzz_}"
done
for t in "$BUILD"/tests/integration/*; do
  [ -x "$t" ] || continue; [[ -n $filter && $t != *$filter* ]] && continue
  run_one "$t" 600
done

# The chat page in a real browser (Chromium + playwright-core, installed by
# the script itself). Not in sanitizer builds: it tests the page, not the C.
if [[ -z $filter || browser == *$filter* ]] && [[ $BUILD == build ]]; then
  run_one tests/browser/run.sh 600
fi

if [ ${#failed_names[@]} -gt 0 ]; then
  echo "failed programs:"; printf '  %s\n' "${failed_names[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
