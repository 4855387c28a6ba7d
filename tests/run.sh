#!/usr/bin/env bash
# Runs every test program (unit, integration, fuzz replay), each in its own
# process with a timeout, and ends with one summary line CI reads:
#   N passed, N failed
# `tests/run.sh NAME...` runs only the programs whose path contains one of
# the NAMEs (config-doc and browser are names too), e.g. `tests/unit/ fuzz_`.
# KCHAT_TEST_SKIP="NAME..." leaves out the programs whose path contains one
# of those (make check SKIP_TESTS=...). Each program prints
# "--- NAME: exit N after S s".
# A cmocka program reports its own counts; any other program counts as one
# test that passed when it exited 0.
# KAFKA=1 runs the integration programs marked for it on real Apache Kafka
# instead (see run_on_kafka below).
set -u
BUILD=${BUILD:-build}
export KCHAT_BIN=${KCHAT_BIN:-bin/kchat}
# Sanitizer builds: undefined behaviour fails the test instead of warning.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
export KCHAT_TEST_TMP=${KCHAT_TEST_TMP:-$(mktemp -d /tmp/kchat-test.XXXXXX)}
filters=("$@")
JOBS=${KCHAT_TEST_JOBS:-2}
read -ra skips <<<"${KCHAT_TEST_SKIP:-}"
passed=0; failed=0; failed_names=()

# selected NAME: true when NAME contains none of the skipped names and one
# of the NAMEs asked for (or none was asked for).
selected() {
  local f
  for f in "${skips[@]}"; do [[ $1 == *"$f"* ]] && return 1; done
  [ ${#filters[@]} -eq 0 ] && return 0
  for f in "${filters[@]}"; do [[ $1 == *"$f"* ]] && return 0; done
  return 1
}

# run_prog BIN LIMIT ARGS...: runs BIN with a timeout, its output framed by
# "=== BIN ARGS" and "--- NAME: exit N after S s"; returns its exit status.
run_prog() {
  local bin=$1 limit=$2 rc t0=$SECONDS
  shift 2
  echo "=== $bin $*"
  timeout --kill-after=10 "$limit" "$bin" "$@" 2>&1; rc=$?
  echo "--- $(basename "$bin"): exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 124 ] && echo "*** $bin timed out after ${limit}s"
  return "$rc"
}

# account LOG RC BIN: prints a finished program's LOG and adds its counts.
account() {
  local log=$1 rc=$2 bin=$3 p f
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
  [ "$rc" -ne 0 ] && failed_names+=("$bin (exit $rc)")
  rm -f "$log"
}

run_one() {
  local log rc
  log=$(mktemp)
  run_prog "$@" >"$log"; rc=$?
  account "$log" "$rc" "$1"
}

# run_pool PROG...: runs the PROGs KCHAT_TEST_JOBS at a time (default 2),
# each printed whole when it ends, a unit test with a limit of 120 s, any
# other of 900 s. The integration and regression programs spend most of
# their time waiting (session timeouts, presence's seconds, kills and
# restarts), each with its own broker, ports and directory, so several at
# once share the two cores well (tests/check-all.sh runs three in its
# plain, ASan+UBSan and TSan steps, and says what that measured; every
# program passes so, the timing-bound gateway regressions included); the
# unit tests, short, come last and fill the slot the longest program
# leaves.
run_pool() {
  local t pid rc log limit
  local -A logs=() bins=()
  for t in "$@"; do
    while [ ${#logs[@]} -ge "$JOBS" ]; do
      wait -n -p pid; rc=$?
      account "${logs[$pid]}" "$rc" "${bins[$pid]}"; unset "logs[$pid]" "bins[$pid]"
    done
    limit=900; [[ $t == */tests/unit/* ]] && limit=120
    log=$(mktemp)
    run_prog "$t" "$limit" >"$log" 2>&1 &
    logs[$!]=$log; bins[$!]=$t
  done
  while [ ${#logs[@]} -gt 0 ]; do
    wait -n -p pid; rc=$?
    account "${logs[$pid]}" "$rc" "${bins[$pid]}"; unset "logs[$pid]" "bins[$pid]"
  done
}

# KAFKA=1 (make check-kafka): only the integration programs marked
# `kchat-test: kafka` in their source (kafka-only ones too), each against a
# fresh Apache Kafka that scripts/kafka starts on loopback and removes
# afterwards: one broker, or N for a program also marked
# `kchat-test: kafka-nodes=N` (1 or 3, what scripts/kafka starts). A program
# marked `kchat-test: kafka-secure` gets a cluster with ACLs (`start
# --secure`: SASL only, the users' settings in $KCHAT_TEST_KAFKA_DIR/clients),
# every other one a plaintext listener plus a SASL_SSL one (`--sasl-ssl`).

# kafka_nodes SRC: how many brokers the program of SRC needs
kafka_nodes() {
  local n
  n=$(grep -om1 'kchat-test: kafka-nodes=[0-9]*' "$1" | cut -d= -f2)
  echo "${n:-1}"
}

# run_on_kafka BIN SRC: starts the program's cluster, runs it, removes the
# cluster; prints all of it and returns the program's exit status (125:
# no cluster). Runs in the background in a slot of run_kafka_pool, whose
# KCHAT_KAFKA_PORTS keeps its ports apart from the other slot's.
run_on_kafka() {
  local t=$1 src=$2 dir boot nodes mode=--sasl-ssl rc
  nodes=$(kafka_nodes "$src")
  grep -q 'kchat-test: kafka-secure' "$src" && mode=--secure
  dir=$(mktemp -d "$KCHAT_TEST_TMP/kafka.XXXXXX")
  echo "=== [kafka] starting $nodes broker(s) ($mode) for $(basename "$t")"
  # --sasl-ssl: also a SASL_SSL listener, for test_security's SASL/TLS test
  # 180 s to be ready, not scripts/kafka's 90: beside another cluster on a slow
  # sitting one broker took 83 s (CI, 2026-12-07), and a start that failed so
  # fails its program (regression 0065)
  # C1 only (KCHAT_KAFKA_JVM_OPTS): a test cluster lives a few minutes, and
  # C2's compiling kept 2 cores busy through them; test_multinode's first
  # case took 52.6 s instead of 96.1 on a fresh 3-node cluster (2026-12-07).
  # Benchmarks keep the JVM's default (bench/ starts its own brokers).
  if ! boot=$(KCHAT_KAFKA_READY_TIMEOUT=${KCHAT_KAFKA_READY_TIMEOUT:-180} \
              KCHAT_KAFKA_JVM_OPTS=${KCHAT_KAFKA_JVM_OPTS--XX:TieredStopAtLevel=1} \
              timeout 300 scripts/kafka start --nodes "$nodes" --partitions 4 "$mode" \
                --dir "$dir"); then
    echo "*** scripts/kafka start failed for $(basename "$t") (no Kafka broker)"
    scripts/kafka stop --dir "$dir" --clean >/dev/null 2>&1
    return 125
  fi
  KCHAT_TEST_BROKERS=$boot KCHAT_TEST_KAFKA_DIR=$dir KCHAT_CRASH_KILLS=${KCHAT_CRASH_KILLS:-5} \
    run_prog "$t" 900; rc=$?
  timeout 120 scripts/kafka stop --dir "$dir" --clean 2>&1 || echo "*** scripts/kafka stop failed"
  return "$rc"
}

# run_kafka_pool PROG...: runs the PROGs on real Kafka KCHAT_TEST_JOBS at a
# time (default 2), each printed whole when it ends, in the order given but
# never two multi-broker programs at once (3 JVMs each and several kchat
# serve on 2 cores: test_multinode and test_paused are the two longest, and
# their handover timings are what they check). Each slot picks its
# brokers' ports from its own part of the range below the ephemeral ports.
run_kafka_pool() {
  local -a queue=("$@") free=() range=()
  local -A logs=() bins=() slots=() multis=()
  local multi_running=0 i pick t pid rc log eph lo=20000 width s
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range
  width=$(((eph - lo) / JOBS))
  for ((s = 0; s < JOBS; s++)); do
    free+=("$s"); range[s]="$((lo + s * width))-$((lo + (s + 1) * width - 1))"
  done
  while [ ${#queue[@]} -gt 0 ] || [ ${#logs[@]} -gt 0 ]; do
    while [ ${#free[@]} -gt 0 ]; do   # start what may start now
      pick=-1
      for i in "${!queue[@]}"; do
        [ "$multi_running" -eq 1 ] && is_multi "${queue[i]}" && continue
        pick=$i; break
      done
      [ "$pick" -ge 0 ] || break
      t=${queue[pick]}; queue=("${queue[@]:0:pick}" "${queue[@]:pick+1}")
      s=${free[0]}; free=("${free[@]:1}")
      log=$(mktemp)
      KCHAT_KAFKA_PORTS=${range[s]} run_on_kafka "$t" "$(src_of "$t")" >"$log" 2>&1 &
      pid=$!; logs[$pid]=$log; bins[$pid]=$t; slots[$pid]=$s; multis[$pid]=0
      if is_multi "$t"; then multi_running=1; multis[$pid]=1; fi
    done
    wait -n -p pid; rc=$?
    account "${logs[$pid]}" "$rc" "${bins[$pid]}"
    free+=("${slots[$pid]}"); [ "${multis[$pid]}" -eq 1 ] && multi_running=0
    unset "logs[$pid]" "bins[$pid]" "slots[$pid]" "multis[$pid]"
  done
}

# src_of BIN: the source of a test program; is_multi BIN: true when it
# needs several brokers
src_of() { echo "tests/${1#"$BUILD"/tests/}.c"; }
is_multi() { [ "$(kafka_nodes "$(src_of "$1")")" -gt 1 ]; }

if [ "${KAFKA:-0}" = 1 ]; then
  # the jars once, before clusters start side by side
  if timeout 900 scripts/kafka fetch; then
    multi=(); single=()
    for t in "$BUILD"/tests/integration/* "$BUILD"/tests/regress/*; do
      [ -x "$t" ] && selected "$t" || continue
      grep -q 'kchat-test: kafka' "$(src_of "$t")" 2>/dev/null || continue
      if is_multi "$t"; then multi+=("$t"); else single+=("$t"); fi
    done
    # the multi-broker programs first: they are the longest, and run one
    # after the other while the other slot goes through the rest
    run_kafka_pool "${multi[@]}" "${single[@]}"
  else
    failed=$((failed + 1)); failed_names+=("scripts/kafka fetch")
  fi
else
  # docs/configuration.md is generated from the option table: it must match.
  if selected config-doc; then
    echo "=== config-doc"
    if "$KCHAT_BIN" config-doc | diff -u docs/configuration.md - ; then passed=$((passed + 1))
    else failed=$((failed + 1)); failed_names+=("docs/configuration.md is stale: run make docs"); fi
  fi

  # Each fuzz harness replays its corpus and its regression inputs (crashes
  # found before: tests/fuzz/regress/NAME-NNN); a binary whose source is
  # gone is stale and skipped.
  for t in "$BUILD"/tests/fuzz/fuzz_*; do
    [ -x "$t" ] && selected "$t" || continue
    name=$(basename "$t"); [ -f "tests/fuzz/$name.c" ] || continue
    regress=(); for f in tests/fuzz/regress/"${name#fuzz_}"-*; do [ -f "$f" ] && regress+=("$f"); done
    run_one "$t" 120 "tests/fuzz/corpus/${name#fuzz_}" "${regress[@]}"
  done
  # test_crash restarts the server after each kill -9 (~12 s each, the dead
  # member's group session must expire): 20 kills in the plain build (8 in
  # tests/check-all.sh, which says why), 3 under the sanitizers, which test
  # the same code paths for memory and races (and 5 on real Kafka, above).
  # test_overload: a quarter of the load, and no memory bound (a sanitizer's
  # allocator is not kchat's).
  if [[ $BUILD == *san-* ]]; then   # a sanitizer build (build/san-*)
    export KCHAT_CRASH_KILLS=${KCHAT_CRASH_KILLS:-3}
    export KCHAT_OVERLOAD_MSGS=${KCHAT_OVERLOAD_MSGS:-8000} KCHAT_SANITIZED=1
  fi
  pool=()
  for t in "$BUILD"/tests/integration/*; do
    [ -x "$t" ] && selected "$t" || continue
    [ -f "tests/integration/$(basename "$t").c" ] || continue   # stale: source gone
    grep -q 'kchat-test: kafka-only' "tests/integration/$(basename "$t").c" && continue
    pool+=("$t")
  done
  # The numbered regression tests, one per bug fixed (tests/regress/README.md);
  # a binary whose source is gone is stale and skipped.
  for t in "$BUILD"/tests/regress/*; do
    [ -x "$t" ] && selected "$t" || continue
    [ -f "tests/regress/$(basename "$t").c" ] || continue
    # `kchat-test: kafka-only`: meaningful on real Kafka alone (make check-kafka)
    grep -q 'kchat-test: kafka-only' "tests/regress/$(basename "$t").c" && continue
    pool+=("$t")
  done
  for t in "$BUILD"/tests/unit/*; do
    [ -x "$t" ] && selected "$t" || continue
    pool+=("$t")
  done
  run_pool "${pool[@]}"

  # The chat page in a real browser (Chromium + playwright-core, installed by
  # the script itself). Not in sanitizer builds: it tests the page, not the C.
  if selected browser && [[ $BUILD == build ]]; then
    run_one tests/browser/run.sh 600
  fi
fi

if [ ${#failed_names[@]} -gt 0 ]; then
  echo "failed programs:"; printf '  %s\n' "${failed_names[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
