#!/usr/bin/env bash
# bench/profile.sh - where kchat serve spends its CPU under the closed loop:
# perf samples of the process, the share of each module, and a flame graph.
#
# On a fresh broker (--broker mock: `kchat broker`; kafka: one Apache Kafka
# node), `kchat serve` (8 partitions, kchat's default workers) takes a
# warm-up of --warmup requests (on Kafka, first --kafka-warmup seconds of
# closed loop too, as bench/run.sh: a fresh broker's JIT compiles for about
# 50 s; docs/bench.md, "The broker's JIT"), then `perf record -e cpu-clock` follows
# it while the load generator sends --requests more, --inflight at a time
# (the VM has no hardware counters, hence cpu-clock). Written to the results
# directory: perf.data, folded.txt (bench/flame.py --fold), flame.svg, and
# dso.txt (the share of samples per module), which is also printed.
#
# usage: bench/profile.sh [--broker mock|kafka] [--requests N] [--warmup N]
#                         [--kafka-warmup S] [--inflight N] [--mix SPEC]
#                         [--out DIR]
#                         [-- kchat serve options...]
# Environment: KCHAT_BIN (bin/kchat), BENCH_BUILD (build), as bench/run.sh;
# PERF_CALLGRAPH: perf's --call-graph (default dwarf: the libraries have no
# frame pointers; fp is lighter and stops at them).
set -u
NAME=profile
. "$(dirname "$0")/common.sh"
BROKER=mock REQUESTS=20000 WARMUP=3000 INFLIGHT=256 PARTITIONS=8 KAFKA_WARMUP=60
MIX=chat=90,history=5,rooms=5
OUT=
serve_args=()

while [ $# -gt 0 ]; do
    case $1 in
    --broker) need "$@"; BROKER=$2; shift 2 ;;
    --requests) need "$@"; REQUESTS=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --kafka-warmup) need "$@"; KAFKA_WARMUP=$2; shift 2 ;;
    --inflight) need "$@"; INFLIGHT=$2; shift 2 ;;
    --mix) need "$@"; MIX=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "profile: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
bench_positive "$REQUESTS" "$WARMUP" "$INFLIGHT"
bench_numbers "$KAFKA_WARMUP"
command -v perf >/dev/null || { echo "profile: no perf (Debian: linux-perf)" >&2; exit 4; }
bench_programs "$KCHAT_BIN" "$LOAD"

bench_dirs "profile-$(date -u +%Y%m%dT%H%M%SZ)"
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/harness.sh"

broker_start "$BROKER" "$PARTITIONS" || exit 4
serve_start "$PARTITIONS" 0 "$TMP/data" ${serve_args[@]+"${serve_args[@]}"} || exit 4
warm_kafka kafka-warmup "$KAFKA_WARMUP" --inflight "$INFLIGHT" --mix "$MIX" || exit 1
run_load warmup --requests "$WARMUP" --inflight "$INFLIGHT" --mix "$MIX" --duration-max 120 ||
    exit 1
CALLGRAPH=${PERF_CALLGRAPH:-dwarf}
show_cmd "perf record -e cpu-clock -F 499 --call-graph $CALLGRAPH -p $SERVER_PID -o $OUT/perf.data"
perf record -e cpu-clock -F 499 --call-graph "$CALLGRAPH" -p "$SERVER_PID" -o "$OUT/perf.data" \
    >"$OUT/perf-record.log" 2>&1 &
PERF_PID=$!
sleep 1
run_load measured --requests "$REQUESTS" --inflight "$INFLIGHT" --mix "$MIX" --duration-max 300
rc=$?
kill -INT "$PERF_PID" 2>/dev/null
wait "$PERF_PID" 2>/dev/null
serve_stop
broker_stop
[ $rc -eq 0 ] || exit 1

perf script -i "$OUT/perf.data" 2>/dev/null | bench/flame.py --fold >"$OUT/folded.txt" || exit 4
bench/flame.py --collapsed --title "kchat serve, $BROKER broker, closed loop $INFLIGHT in flight, commit $GIT_COMMIT" \
    <"$OUT/folded.txt" >"$OUT/flame.svg" || exit 4
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ { print }' | head -n 15 >"$OUT/dso.txt"
echo "# bench/profile.sh --broker $BROKER --requests $REQUESTS --inflight $INFLIGHT --mix $MIX, commit $GIT_COMMIT"
grep '^result: ' "$OUT/measured.log" | tail -n1
cat "$OUT/dso.txt"
echo "profile: flame graph $OUT/flame.svg, folded stacks $OUT/folded.txt"
