#!/usr/bin/env bash
# bench/run.sh - the headline benchmark (`make bench`): kchat's throughput and
# latency as a ratio to what Kafka alone allows on this machine, measured in
# the same run on the same kind of broker (docs/bench.md explains the method).
#
# For each broker (mock: the `kchat broker` mock cluster as its own process;
# kafka: one Apache Kafka node from scripts/kafka), started fresh with P topic
# partitions and the same settings for kchat and for echo:
#   1. `kchat serve` (fresh data directory) + the load generator, closed loop:
#      --inflight requests outstanding, requests of the operation mix, the
#      first --warmup of them left out of the figures, then --seconds
#      measured; kchat's peak RSS (VmHWM) is read just before it is stopped.
#      On Kafka a closed-loop run of --kafka-warmup seconds, left out, goes
#      first: under kchat's load a fresh broker's JIT compiles for about
#      50 s, taking up to 0.67 of a core (docs/bench.md, "The broker's JIT");
#   2. kafka only: the same kchat serve, open loop at half of the rate step 1
#      measured, for --open-seconds;
#   3. the same kchat serve, open loop at --low-rate requests/s (200) for
#      --open-seconds: the latency of a lightly loaded server;
#   4. on a fresh broker of the same kind: the echo processor
#      (build/bench/echo) + the load generator with --echo, closed loop with
#      the same in-flight count, warm-up and seconds (on Kafka after its own
#      --kafka-warmup run);
#   5. kafka only: echo, open loop at the same rate as step 2;
#   6. echo, open loop at --low-rate.
# Each broker is started afresh (same command, same settings) for echo, so
# that neither runs on what the other left: the mock's fetch cost grew with
# the records it held (librdkafka's mock finds a fetch offset by a linear
# scan of the partition's message sets; scripts/librdkafka's build scans
# from the nearer end since 6e116a8), and on a Kafka broker that
# kchat had just used echo ran at 6,250-18,089/s in seven runs, against
# 12,211-14,093/s in three on fresh brokers warmed the same way
# (docs/bench.md, "The broker's JIT").
# The mock broker is measured closed-loop only: its in-memory log drops the
# oldest records past about 5 MB per partition, which an open loop that falls
# behind could hit.
#
# Results (one row per load run: CSV, JSON, and every log) go to
# bench/results/<UTC timestamp>/ (or --out). Standard output ends with
# exactly one line per broker:
#   bench: broker=NAME rps=N echo_rps=N ratio=R p50_ms=X p99_ms=X
#          open_p99_ratio=R low_p50_ms=X echo_low_p50_ms=X peak_rss_mb=N
# (one line: kchat's closed-loop figures, ratio = rps / echo_rps; then
# kchat's open-loop p99 at half its rate over echo's at that rate, `-` on
# the mock; kchat's and echo's p50 at --low-rate).
#
# usage: bench/run.sh [options] [-- kchat serve options...]
#   --brokers LIST      mock,kafka (default both)
#   --partitions P      topic partitions = kchat shards (default 8)
#   --workers W         kchat serve --workers (default: kchat's, one per CPU)
#   --inflight N        closed-loop requests outstanding (default 256)
#   --seconds S         measured length of each closed-loop run (default 15;
#                       a fixed count of requests measured echo for 1.5 s)
#   --requests N        at most N requests per closed-loop run (default 1000000)
#   --warmup N          the first N requests of each run are left out of the
#                       figures (default 5000)
#   --kafka-warmup S    on Kafka, a closed-loop run of S seconds before kchat's
#                       measured runs and one before echo's, left out of the
#                       figures (default 60; 0: none)
#   --open-seconds S    length of each open-loop run (default 15)
#   --low-rate R        the low open-loop rate, requests/s (default 200)
#   --mock-changelog on|off  kchat serve's --changelog on the mock broker
#                       (default off: as the embedded install runs, `kchat
#                       dev` or `kchat serve` alone, whose broker's records
#                       die with it; on Kafka the changelog is on, its default)
#   --mix SPEC          operation mix (default chat=90,history=5,rooms=5)
#   --out DIR           results directory (default bench/results/<timestamp>)
# Environment: KCHAT_BIN (bin/kchat), BENCH_BUILD (build: where bench/load and
# bench/echo are built), BENCH_TMP (parent of the scratch directory), KEEP=1
# keeps the scratch directory, LOG_LINES (30), NO_BUILD=1 skips make,
# BENCH_NO_SECRET=1 runs kchat serve without --secret-file (by default it
# signs its records with a secret made for the run, as a deployment does).
# Exit status: 0 every run clean; 1 some load run failed (missing or bad
# answers); 4 a process did not start or stop cleanly; 2 usage.
set -u

NAME=run
. "$(dirname "$0")/common.sh"
INVOCATION="bench/run.sh $*"

BROKERS=mock,kafka
PARTITIONS=8
WORKERS=0
INFLIGHT=256
SECONDS_CLOSED=15
REQUESTS=1000000
WARMUP=5000
KAFKA_WARMUP=60
OPEN_SECONDS=15
LOW_RATE=200
MOCK_CHANGELOG=off
MIX=chat=90,history=5,rooms=5
OUT=
serve_args=()

while [ $# -gt 0 ]; do
    case $1 in
    --brokers) need "$@"; BROKERS=$2; shift 2 ;;
    --partitions) need "$@"; PARTITIONS=$2; shift 2 ;;
    --workers) need "$@"; WORKERS=$2; shift 2 ;;
    --inflight) need "$@"; INFLIGHT=$2; shift 2 ;;
    --seconds) need "$@"; SECONDS_CLOSED=$2; shift 2 ;;
    --requests) need "$@"; REQUESTS=$2; shift 2 ;;
    --kafka-warmup) need "$@"; KAFKA_WARMUP=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --open-seconds) need "$@"; OPEN_SECONDS=$2; shift 2 ;;
    --low-rate) need "$@"; LOW_RATE=$2; shift 2 ;;
    --mock-changelog) need "$@"; MOCK_CHANGELOG=$2; shift 2 ;;
    --mix) need "$@"; MIX=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "run: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
bench_numbers "$PARTITIONS" "$WORKERS" "$INFLIGHT" "$REQUESTS" "$WARMUP" "$OPEN_SECONDS" \
    "$LOW_RATE" "$KAFKA_WARMUP"
bench_positive "$SECONDS_CLOSED"
[[ $MOCK_CHANGELOG == on || $MOCK_CHANGELOG == off ]] ||
    { echo "run: --mock-changelog is on or off" >&2; exit 2; }
[ "$WARMUP" -lt "$REQUESTS" ] || { echo "run: --warmup must be below --requests" >&2; exit 2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    make -s all "$LOAD" "$ECHO" || exit 4
fi
bench_programs "$KCHAT_BIN" "$LOAD" "$ECHO"
bench_dirs "$(date -u +%Y%m%dT%H%M%SZ)"
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/harness.sh"

NCPU=$(nproc)
REAL_WORKERS=$WORKERS
[ "$WORKERS" = 0 ] && REAL_WORKERS=$NCPU
echo "run: $INVOCATION"
echo "run: $NCPU CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), commit $GIT_COMMIT, results in $OUT"
{
    echo "# $INVOCATION"
    echo "# $(date -u +%FT%TZ), $NCPU CPUs, commit $GIT_COMMIT, $(uname -sr)"
} >"$OUT/commands.txt"

T0=$(date +%s)
FAIL=0
FINAL=()

# One broker: kchat then echo, closed loop (and open loop on kafka).
bench_broker() {
    local b=$1 rc rss open=0 rate=0
    broker_start "$b" "$PARTITIONS" || return 4

    # kchat
    # On the mock, kchat serve runs as an embedded install does: without a
    # changelog (--mock-changelog), whose records would die with the broker.
    local cl=()
    [ "$b" = mock ] && cl=(--changelog "$MOCK_CHANGELOG")
    serve_start "$PARTITIONS" "$WORKERS" "$TMP/data-$b" ${cl[@]+"${cl[@]}"} \
        ${serve_args[@]+"${serve_args[@]}"} ||
        return 4
    warm_kafka "$b-kchat-warmup" "$KAFKA_WARMUP" --inflight "$INFLIGHT" --mix "$MIX" || return 4
    run_load "$b-kchat-closed" --requests "$REQUESTS" --warmup "$WARMUP" \
        --seconds "$SECONDS_CLOSED" --inflight "$INFLIGHT" --mix "$MIX" \
        --duration-max $((SECONDS_CLOSED + 120))
    local kc_rc=$? ko_rc=0
    rate=$(( $(res "$b-kchat-closed" rps) / 2 ))
    if [ "$b" = kafka ] && [ "$rate" -gt 0 ]; then
        open=1
        run_load "$b-kchat-open" --rate "$rate" --requests $((rate * OPEN_SECONDS)) \
            --mix "$MIX" --duration-max $((OPEN_SECONDS + 60))
        ko_rc=$?
    fi
    run_load "$b-kchat-low" --rate "$LOW_RATE" --requests $((LOW_RATE * OPEN_SECONDS)) \
        --mix "$MIX" --duration-max $((OPEN_SECONDS + 60))
    local kl_rc=$?
    serve_stop || FAIL=4
    rss=$PEAK_RSS_MB
    row_add "$b-kchat-closed" "$b" kchat "$PARTITIONS" "$REAL_WORKERS" "$rss" $kc_rc
    [ $open = 1 ] && row_add "$b-kchat-open" "$b" kchat "$PARTITIONS" "$REAL_WORKERS" "$rss" $ko_rc
    row_add "$b-kchat-low" "$b" kchat "$PARTITIONS" "$REAL_WORKERS" "$rss" $kl_rc

    # echo: on a fresh broker (see above)
    broker_stop
    broker_start "$b" "$PARTITIONS" || return 4
    echo_start "$PARTITIONS" || return 4
    warm_kafka "$b-echo-warmup" "$KAFKA_WARMUP" --echo --inflight "$INFLIGHT" --mix "$MIX" ||
        return 4
    run_load "$b-echo-closed" --echo --requests "$REQUESTS" --warmup "$WARMUP" \
        --seconds "$SECONDS_CLOSED" --inflight "$INFLIGHT" --mix "$MIX" \
        --duration-max $((SECONDS_CLOSED + 120))
    local ec_rc=$? eo_rc=0
    if [ $open = 1 ]; then
        run_load "$b-echo-open" --echo --rate "$rate" --requests $((rate * OPEN_SECONDS)) \
            --mix "$MIX" --duration-max $((OPEN_SECONDS + 60))
        eo_rc=$?
    fi
    run_load "$b-echo-low" --echo --rate "$LOW_RATE" --requests $((LOW_RATE * OPEN_SECONDS)) \
        --mix "$MIX" --duration-max $((OPEN_SECONDS + 60))
    local el_rc=$?
    echo_stop || FAIL=4
    row_add "$b-echo-closed" "$b" echo "$PARTITIONS" "" "$ECHO_RSS_MB" $ec_rc
    [ $open = 1 ] && row_add "$b-echo-open" "$b" echo "$PARTITIONS" "" "$ECHO_RSS_MB" $eo_rc
    row_add "$b-echo-low" "$b" echo "$PARTITIONS" "" "$ECHO_RSS_MB" $el_rc
    broker_stop
    for rc in $kc_rc $ko_rc $kl_rc $ec_rc $eo_rc $el_rc; do
        [ "$rc" -ne 0 ] && [ $FAIL = 0 ] && FAIL=1
    done

    local k=$b-kchat-closed e=$b-echo-closed
    local clnote="changelog on"
    [ "$b" = mock ] && clnote="changelog $MOCK_CHANGELOG"
    echo "run: $b closed loop ($clnote), $INFLIGHT in flight, $SECONDS_CLOSED s after $WARMUP warm-up requests:" \
         "kchat $(res $k rps)/s p50 $(res $k p50_ms) p99 $(res $k p99_ms) ms;" \
         "echo $(res $e rps)/s p50 $(res $e p50_ms) p99 $(res $e p99_ms) ms"
    local pr=-
    if [ $open = 1 ]; then
        k=$b-kchat-open e=$b-echo-open
        local kp99 ep99 verdict=met
        kp99=$(res $k p99_ms) ep99=$(res $e p99_ms)
        pr=$(awk -v a="$kp99" -v b="$ep99" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')
        awk -v r="$pr" 'BEGIN { exit !(r != "inf" && r + 0 <= 3) }' || verdict="NOT met"
        echo "run: $b open loop at $rate/s (half kchat's closed-loop rate), $OPEN_SECONDS s:" \
             "kchat p50 $(res $k p50_ms) p99 $kp99 max $(res $k max_ms) ms;" \
             "echo p50 $(res $e p50_ms) p99 $ep99 max $(res $e max_ms) ms;" \
             "kchat/echo p99 $pr (target <= 3: $verdict)"
    fi
    k=$b-kchat-low e=$b-echo-low
    local kl50 el50 lverdict=met
    kl50=$(res $k p50_ms) el50=$(res $e p50_ms)
    awk -v a="$kl50" -v b="$el50" 'BEGIN { exit !(a + 0 <= b + 5) }' || lverdict="NOT met"
    echo "run: $b open loop at $LOW_RATE/s, $OPEN_SECONDS s:" \
         "kchat p50 $kl50 p99 $(res $k p99_ms) ms; echo p50 $el50 p99 $(res $e p99_ms) ms" \
         "(target kchat p50 <= echo p50 + 5 ms: $lverdict)"
    FINAL+=("$(awk -v b="$b" -v r="$(res $b-kchat-closed rps)" -v e="$(res $b-echo-closed rps)" \
        -v p50="$(res $b-kchat-closed p50_ms)" -v p99="$(res $b-kchat-closed p99_ms)" -v m="${rss:-0}" \
        -v pr="$pr" -v kl="$kl50" -v el="$el50" \
        'BEGIN { printf "bench: broker=%s rps=%d echo_rps=%d ratio=%.2f p50_ms=%.1f p99_ms=%.1f " \
                        "open_p99_ratio=%s low_p50_ms=%.1f echo_low_p50_ms=%.1f peak_rss_mb=%d",
                 b, r, e, (e > 0 ? r / e : 0), p50, p99, pr, kl, el, m }')")
    return 0
}

IFS=, read -ra BLIST <<<"$BROKERS"
for b in "${BLIST[@]}"; do
    say "=== broker $b ==="
    bench_broker "$b"
    brc=$?
    if [ $brc -ne 0 ]; then
        say "broker $b: the run could not complete"
        FAIL=4
        cleanup_more
    fi
done
rows_json
echo "run: results in $OUT (results.csv, results.json, logs); $(($(date +%s) - T0)) s"
for l in ${FINAL[@]+"${FINAL[@]}"}; do
    echo "$l"
done
exit $FAIL
