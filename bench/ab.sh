#!/usr/bin/env bash
# bench/ab.sh - two kchat binaries against each other: which one does a
# change make faster, and what does a request cost each in CPU.
#
# Runs alternate in pairs, --runs pairs, so that a drift of the machine
# falls on both, and the pairs alternate their order (A B, B A, A B, ...):
# on Kafka the side run first in a pair won every pair in two sittings of
# three when A always went first (up to a tenth; docs/bench.md, "Each key
# once per round"), so an even --runs gives each side the first place
# equally often. Each run: `kchat serve` of that binary (8 partitions,
# kchat's default workers) and the load generator in closed loop, the first
# --warmup requests left out, then --requests measured; the CPU that kchat
# serve and the broker used while the measured part ran (utime + stime of
# /proc/PID/stat) is divided by the requests sent. On the mock kchat serve
# runs with --changelog off unless --mock-changelog on, as bench/run.sh and
# the embedded install run it; on Kafka with its changelog. On the mock each run
# gets a fresh broker and data directory (the mock's fetch cost grew with
# what it held, and does with a librdkafka not built by scripts/librdkafka);
# on Kafka one broker, warmed for --kafka-warmup seconds
# first, serves every run, and the runs share one data directory (one
# deployment, as a restarted node): both binaries must read each other's
# data, which an older binary cannot across a change of the stored format
# (from 3bdc54d, outbox pages: it cannot take over a shard whose outbox
# holds a page, "data does not decode"). Last, echo in closed loop on a fresh
# broker of the same kind, warmed up as kchat was (on Kafka, its own
# --kafka-warmup too): the baseline of the same sitting.
#
# Standard output ends with one line per run, a line of medians per side,
# and the echo line:
#   ab: side=A run=1 rps=N p50_ms=X p99_ms=X kchat_cpu_us=N broker_cpu_us=N
#   ab: side=A median rps=N p50_ms=X kchat_cpu_us=N broker_cpu_us=N
#   ab: B/A rps=R kchat_cpu_us=R
#   ab: echo rps=N p50_ms=X
#
# usage: A=BIN B=BIN bench/ab.sh [--broker mock|kafka] [--runs N]
#                                [--requests N] [--warmup N] [--inflight N]
#                                [--mix SPEC] [--kafka-warmup S]
#                                [--mock-changelog on|off]
#                                [-- kchat serve options, both sides...]
# Environment: A and B (kchat binaries; required), ARGS_A and ARGS_B (serve
# options of one side only; on Kafka the warm-up runs A with ARGS_A),
# BENCH_BUILD as bench/run.sh. Results and logs
# in bench/results/ab-<UTC time>/.
set -u
NAME=ab
. "$(dirname "$0")/common.sh"
BROKER=mock RUNS=4 REQUESTS=60000 WARMUP=20000 INFLIGHT=256 PARTITIONS=8 KAFKA_WARMUP=60
MOCK_CHANGELOG=off
MIX=chat=90,history=5,rooms=5
serve_args=()
while [ $# -gt 0 ]; do
    case $1 in
    --broker) need "$@"; BROKER=$2; shift 2 ;;
    --runs) need "$@"; RUNS=$2; shift 2 ;;
    --requests) need "$@"; REQUESTS=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --inflight) need "$@"; INFLIGHT=$2; shift 2 ;;
    --mix) need "$@"; MIX=$2; shift 2 ;;
    --kafka-warmup) need "$@"; KAFKA_WARMUP=$2; shift 2 ;;
    --mock-changelog) need "$@"; MOCK_CHANGELOG=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "ab: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
[ -n "${A:-}" ] && [ -n "${B:-}" ] || { echo "ab: set A and B to two kchat binaries" >&2; exit 2; }
bench_positive "$RUNS" "$REQUESTS" "$WARMUP" "$INFLIGHT"
bench_numbers "$KAFKA_WARMUP"
[[ $MOCK_CHANGELOG == on || $MOCK_CHANGELOG == off ]] ||
    { echo "ab: --mock-changelog is on or off" >&2; exit 2; }
[ "$BROKER" = mock ] && serve_args=(--changelog "$MOCK_CHANGELOG" ${serve_args[@]+"${serve_args[@]}"})
bench_programs "$A" "$B" "$LOAD" "$ECHO"
bench_dirs "ab-$(date -u +%Y%m%dT%H%M%SZ)"
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/harness.sh"

# median V...: the middle value (the mean of the two middle ones).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

HZ=$(getconf CLK_TCK)
DATA=$TMP/data
declare -A rps=() p50=() kcpu=() bcpu=()
load_opts=(--inflight "$INFLIGHT" --mix "$MIX")

# one_run SIDE N: one run of binary $SIDE, its figures in the arrays above.
one_run() {
    local side=$1 n=$2 bin args k0 b0 k1 b1 bp sent
    bin=${!side}
    args=ARGS_$side
    KCHAT_BIN=$bin
    if [ "$BROKER" = mock ]; then
        broker_start mock "$PARTITIONS" || return 4
        DATA=$TMP/data-$side$n
    fi
    # shellcheck disable=SC2086 # ARGS_A/ARGS_B are word lists
    serve_start "$PARTITIONS" 0 "$DATA" ${serve_args[@]+"${serve_args[@]}"} ${!args:-} || return 4
    run_load "w$side$n" --requests "$WARMUP" "${load_opts[@]}" --duration-max 300 || return 1
    bp=$(broker_pid)
    k0=$(cpu_ticks "$SERVER_PID")
    b0=$(cpu_ticks "$bp")
    run_load "m$side$n" --requests "$REQUESTS" "${load_opts[@]}" --duration-max 300 || return 1
    k1=$(cpu_ticks "$SERVER_PID")
    b1=$(cpu_ticks "$bp")
    serve_stop
    [ "$BROKER" = mock ] && broker_stop
    sent=$(res "m$side$n" sent)
    [ "$sent" -gt 0 ] || { say "run $side$n sent nothing"; return 1; }
    rps[$side$n]=$(res "m$side$n" rps)
    p50[$side$n]=$(res "m$side$n" p50_ms)
    kcpu[$side$n]=$(( (k1 - k0) * 1000000 / HZ / sent ))
    bcpu[$side$n]=$(( (b1 - b0) * 1000000 / HZ / sent ))
    echo "ab: side=$side run=$n rps=${rps[$side$n]} p50_ms=${p50[$side$n]}" \
        "p99_ms=$(res "m$side$n" p99_ms) kchat_cpu_us=${kcpu[$side$n]}" \
        "broker_cpu_us=${bcpu[$side$n]}" | tee -a "$OUT/ab.txt"
}

if [ "$BROKER" = kafka ]; then
    broker_start kafka "$PARTITIONS" || exit 4
    KCHAT_BIN=$A
    # shellcheck disable=SC2086 # ARGS_A is a word list
    serve_start "$PARTITIONS" 0 "$DATA" ${serve_args[@]+"${serve_args[@]}"} ${ARGS_A:-} || exit 4
    warm_kafka kafka-warmup "$KAFKA_WARMUP" "${load_opts[@]}" || exit 1
    serve_stop
fi
for n in $(seq 1 "$RUNS"); do
    order=(A B)
    [ $((n % 2)) -eq 0 ] && order=(B A)
    for side in "${order[@]}"; do
        one_run "$side" "$n" || exit $?
    done
done
[ "$BROKER" = kafka ] && broker_stop

declare -A med=()
for side in A B; do
    v=() c=() b=() l=()
    for n in $(seq 1 "$RUNS"); do
        v+=("${rps[$side$n]}"); c+=("${kcpu[$side$n]}"); b+=("${bcpu[$side$n]}")
        l+=("${p50[$side$n]}")
    done
    med[rps$side]=$(median "${v[@]}")
    med[cpu$side]=$(median "${c[@]}")
    echo "ab: side=$side median rps=${med[rps$side]} p50_ms=$(median "${l[@]}")" \
        "kchat_cpu_us=${med[cpu$side]} broker_cpu_us=$(median "${b[@]}")" | tee -a "$OUT/ab.txt"
done
awk -v ra="${med[rpsA]}" -v rb="${med[rpsB]}" -v ca="${med[cpuA]}" -v cb="${med[cpuB]}" \
    'BEGIN { printf "ab: B/A rps=%.2f kchat_cpu_us=%.2f\n", rb / ra, cb / ca }' |
    tee -a "$OUT/ab.txt"

broker_start "$BROKER" "$PARTITIONS" || exit 4
echo_start "$PARTITIONS" || exit 4
warm_kafka echo-warmup "$KAFKA_WARMUP" --echo "${load_opts[@]}" || exit 1
run_load echo-w --echo --requests "$WARMUP" "${load_opts[@]}" --duration-max 300 || exit 1
run_load echo --echo --requests "$REQUESTS" "${load_opts[@]}" --duration-max 300 || exit 1
echo_stop
broker_stop
echo "ab: echo rps=$(res echo rps) p50_ms=$(res echo p50_ms)" | tee -a "$OUT/ab.txt"
say "results and logs in $OUT"
