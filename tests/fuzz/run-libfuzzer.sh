#!/usr/bin/env bash
# Runs libFuzzer harnesses built by `make fuzz` (tests/fuzz/fuzz.mk), each
# for FUZZ_SECONDS (default 30) on a fresh copy of its seeds: the files of
# tests/fuzz/corpus/NAME and tests/fuzz/regress/NAME-*. Prints each
# harness's final libFuzzer stats, and ends with the line CI reads
# (tests/fuzz/NAME.dict, if there is one, is the harness's dictionary):
#   N passed, N failed
# one test per harness, passed when libFuzzer exited 0 and wrote no crash,
# leak, timeout or out-of-memory artifact. Artifacts go to
# FUZZ_DIR/artifacts/NAME-*, the whole output of a run to
# FUZZ_DIR/logs/NAME.log, the corpus it grew to FUZZ_DIR/corpus/NAME/.
#
#   tests/fuzz/run-libfuzzer.sh NAME...      (e.g. json msgpack http)
set -u
cd "$(dirname "$0")/../.."
dir=${FUZZ_DIR:-build/fuzz}
secs=${FUZZ_SECONDS:-30}
passed=0; failed=0; failed_names=()

# Largest input per harness: just over the 64 KiB record limit for bodies,
# room for a body over 64 KiB plus its headers for HTTP.
max_len() {
  case $1 in
    http) echo 70000 ;;
    *) echo 65600 ;;
  esac
}

mkdir -p "$dir/artifacts" "$dir/logs"
for name in "$@"; do
  bin=$dir/fuzz_$name
  work=$dir/corpus/$name
  log=$dir/logs/$name.log
  echo "=== fuzz_$name: ${secs}s"
  if [ ! -x "$bin" ]; then
    echo "*** $bin is missing"; failed=$((failed + 1)); failed_names+=("fuzz_$name (missing)")
    continue
  fi
  rm -rf "$work"; mkdir -p "$work"
  cp tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null
  for f in tests/fuzz/regress/"$name"-*; do [ -f "$f" ] && cp "$f" "$work"/; done
  dict=(); [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  before=$(ls "$dir/artifacts" | grep -c "^$name-")
  timeout --kill-after=10 $((secs + 120)) "$bin" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -max_len="$(max_len "$name")" -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$dir/artifacts/$name-" "$work" >"$log" 2>&1
  rc=$?
  after=$(ls "$dir/artifacts" | grep -c "^$name-")
  # The last status line: "#N DONE cov: .. ft: .. corp: .. exec/s: N rss: ..".
  grep -aE '^#[0-9]+' "$log" | tail -1
  runs=$(grep -a '^stat::number_of_executed_units:' "$log" | awk '{print $2}')
  rate=$(grep -a '^stat::average_exec_per_sec:' "$log" | awk '{print $2}')
  rss=$(grep -a '^stat::peak_rss_mb:' "$log" | awk '{print $2}')
  echo "fuzz_$name: ${runs:-?} execs, ${rate:-?} exec/s, peak RSS ${rss:-?} MB," \
       "exit $rc, $((after - before)) new artifacts"
  if [ "$rc" -eq 0 ] && [ "$after" -eq "$before" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failed_names+=("fuzz_$name (exit $rc, see $log)")
    echo "--- last lines of $log:"; tail -n 60 "$log"
  fi
done
if [ ${#failed_names[@]} -gt 0 ]; then
  echo "failed harnesses:"; printf '  %s\n' "${failed_names[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
