#!/usr/bin/env bash
# bench/sustained.sh - does a broker slow kchat down as its log grows? One
# broker and one `kchat serve` (8 partitions) take --runs closed-loop runs
# of --requests each, back to back, nothing left out; each run prints its
# throughput and the CPU that kchat serve and the broker used per request
# (utime + stime of /proc/PID/stat). On a broker whose cost per fetch does
# not depend on what it holds, the runs stay level (docs/bench.md, "The
# embedded broker's fetch").
#
# On the mock (`kchat broker`, as bench/run.sh) kchat serve runs with
# --changelog off unless --mock-changelog on, as the embedded install does.
#
# Standard output ends with one line per run:
#   sustained: run=N total_requests=N rps=N p50_ms=X kchat_cpu_us=N broker_cpu_us=N
#
# usage: bench/sustained.sh [--broker mock|kafka] [--runs N] [--requests N]
#                           [--inflight N] [--mix SPEC] [--mock-changelog on|off]
#                           [-- kchat serve options...]
# Environment: KCHAT_BIN (bin/kchat), BENCH_BUILD (build), as bench/run.sh.
# Results and logs in bench/results/sustained-<UTC time>/.
set -u
NAME=sustained
. "$(dirname "$0")/common.sh"
BROKER=mock RUNS=6 REQUESTS=40000 INFLIGHT=256 PARTITIONS=8 MOCK_CHANGELOG=off
MIX=chat=90,history=5,rooms=5
serve_args=()
while [ $# -gt 0 ]; do
    case $1 in
    --broker) need "$@"; BROKER=$2; shift 2 ;;
    --runs) need "$@"; RUNS=$2; shift 2 ;;
    --requests) need "$@"; REQUESTS=$2; shift 2 ;;
    --inflight) need "$@"; INFLIGHT=$2; shift 2 ;;
    --mix) need "$@"; MIX=$2; shift 2 ;;
    --mock-changelog) need "$@"; MOCK_CHANGELOG=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "sustained: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
bench_positive "$RUNS" "$REQUESTS" "$INFLIGHT"
[[ $MOCK_CHANGELOG == on || $MOCK_CHANGELOG == off ]] ||
    { echo "sustained: --mock-changelog is on or off" >&2; exit 2; }
[ "$BROKER" = mock ] && serve_args=(--changelog "$MOCK_CHANGELOG" ${serve_args[@]+"${serve_args[@]}"})
bench_programs "$KCHAT_BIN" "$LOAD"
bench_dirs "sustained-$(date -u +%Y%m%dT%H%M%SZ)"
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/harness.sh"

HZ=$(getconf CLK_TCK)

broker_start "$BROKER" "$PARTITIONS" || exit 4
serve_start "$PARTITIONS" 0 "$TMP/data" ${serve_args[@]+"${serve_args[@]}"} || exit 4
bp=$(broker_pid)
total=0
for n in $(seq 1 "$RUNS"); do
    k0=$(cpu_ticks "$SERVER_PID")
    b0=$(cpu_ticks "$bp")
    run_load "r$n" --requests "$REQUESTS" --inflight "$INFLIGHT" --mix "$MIX" --duration-max 300 ||
        exit 1
    k1=$(cpu_ticks "$SERVER_PID")
    b1=$(cpu_ticks "$bp")
    sent=$(res "r$n" sent)
    [ "$sent" -gt 0 ] || { say "run $n sent nothing"; exit 1; }
    total=$((total + sent))
    echo "sustained: run=$n total_requests=$total rps=$(res "r$n" rps)" \
        "p50_ms=$(res "r$n" p50_ms) kchat_cpu_us=$(( (k1 - k0) * 1000000 / HZ / sent ))" \
        "broker_cpu_us=$(( (b1 - b0) * 1000000 / HZ / sent ))" | tee -a "$OUT/sustained.txt"
done
serve_stop
broker_stop
say "results and logs in $OUT"
