#!/usr/bin/env bash
# bench/sweep.sh - kchat against the echo baseline over partitions x workers
# x broker (`make bench-sweep`), closed loop, with plots (docs/bench.md).
#
# For each broker (mock, kafka) and each partition count P:
#   - for each --workers setting W <= P, in increasing order: `kchat serve
#     --workers W` + the load generator (closed loop), then stop kchat;
#   - once: the echo processor + the load generator with --echo.
# Kafka: one fresh broker with P partitions per P, for all of its runs, and
# one kchat data directory: the next W restarts kchat on it, so kchat resumes
# from the offsets it stored and reads only the new requests; echo comes last,
# on a fresh broker of its own (bench/run.sh says why). On Kafka the first
# kchat run of a cell and the echo run each follow a closed loop of
# --kafka-warmup seconds left out of the figures (a fresh broker's JIT).
# Mock: a fresh broker (and a fresh data directory) for every run, because
# the mock's fetch cost grew with the records it held (bench/run.sh
# explains).
# W > P is skipped: shard p belongs to worker p mod W, so W - P of the
# workers would own no shard and the run would repeat the W = P one.
#
# Results: one row per load run in bench/results/sweep-<UTC timestamp>/
# results.csv and results.json (every log beside them), then bench/plot.gp
# draws rps.{svg,png}, p99.{svg,png} and ratio.{svg,png} there.
#
# usage: bench/sweep.sh [options] [-- kchat serve options...]
#   --brokers LIST      mock,kafka (default both)
#   --partitions LIST   default 1,2,4,8,16
#   --workers LIST      default 1,2,4
#   --inflight N        requests outstanding (default 256)
#   --seconds S         measured length of each run (default 15)
#   --requests N        at most N requests per run (default 1000000)
#   --warmup N          the first N requests of each run are left out of the
#                       figures (default 5000)
#   --kafka-warmup S    seconds of closed loop left out before each Kafka
#                       cell's first kchat run and before its echo run
#                       (default 60; 0: none)
#   --mix SPEC          operation mix (default chat=90,history=5,rooms=5)
#   --out DIR           results directory (default bench/results/sweep-<timestamp>)
#   --no-plot           skip the plots
# Environment as bench/run.sh (KCHAT_BIN, BENCH_BUILD, BENCH_TMP, KEEP,
# LOG_LINES, NO_BUILD).
# Exit status: 0 every run clean; 1 some load run failed; 4 a process did
# not start or stop cleanly, or plotting failed; 2 usage.
set -u

NAME=sweep
. "$(dirname "$0")/common.sh"
INVOCATION="bench/sweep.sh $*"

BROKERS=mock,kafka
PARTS=1,2,4,8,16
WORKERS=1,2,4
INFLIGHT=256
SECONDS_RUN=15
REQUESTS=1000000
WARMUP=5000
KAFKA_WARMUP=60
MIX=chat=90,history=5,rooms=5
OUT=
PLOT=1
serve_args=()

while [ $# -gt 0 ]; do
    case $1 in
    --brokers) need "$@"; BROKERS=$2; shift 2 ;;
    --partitions) need "$@"; PARTS=$2; shift 2 ;;
    --workers) need "$@"; WORKERS=$2; shift 2 ;;
    --inflight) need "$@"; INFLIGHT=$2; shift 2 ;;
    --seconds) need "$@"; SECONDS_RUN=$2; shift 2 ;;
    --requests) need "$@"; REQUESTS=$2; shift 2 ;;
    --kafka-warmup) need "$@"; KAFKA_WARMUP=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --mix) need "$@"; MIX=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    --no-plot) PLOT=0; shift ;;
    --help|-h) usage; exit 0 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "sweep: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
IFS=, read -ra BLIST <<<"$BROKERS"
IFS=, read -ra PLIST <<<"$PARTS"
IFS=, read -ra WLIST <<<"$WORKERS"
bench_positive "${PLIST[@]}" "${WLIST[@]}" "$INFLIGHT" "$REQUESTS" "$SECONDS_RUN"
bench_numbers "$KAFKA_WARMUP"
[[ $WARMUP =~ ^[0-9]+$ ]] && [ "$WARMUP" -lt "$REQUESTS" ] ||
    { echo "sweep: --warmup wants a number below --requests" >&2; exit 2; }
mapfile -t WLIST < <(printf '%s\n' "${WLIST[@]}" | sort -n | uniq)

if [ "${NO_BUILD:-0}" != 1 ]; then
    make -s all "$LOAD" "$ECHO" || exit 4
fi
bench_programs "$KCHAT_BIN" "$LOAD" "$ECHO"
if [ $PLOT = 1 ] && ! command -v gnuplot >/dev/null; then
    echo "sweep: gnuplot not found (scripts/install-deps installs gnuplot-nox); or --no-plot" >&2
    exit 4
fi

bench_dirs "sweep-$(date -u +%Y%m%dT%H%M%SZ)"
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/harness.sh"

echo "sweep: $INVOCATION"
echo "sweep: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), commit $GIT_COMMIT, results in $OUT"
{
    echo "# $INVOCATION"
    echo "# $(date -u +%FT%TZ), $(nproc) CPUs, commit $GIT_COMMIT, $(uname -sr)"
} >"$OUT/commands.txt"

T0=$(date +%s)
FAIL=0
note_rc() { [ "$1" -ne 0 ] && [ $FAIL = 0 ] && FAIL=1; return 0; }

# One (broker, partitions) cell: every W, then echo. Returns 4 when a
# process would not start.
sweep_cell() {
    local b=$1 p=$2 w rc tag data=$TMP/data-$b-p$p warm=$KAFKA_WARMUP
    [ "$b" = mock ] || broker_start "$b" "$p" || return 4
    for w in "${WLIST[@]}"; do
        [ "$w" -le "$p" ] || continue
        if [ "$b" = mock ]; then
            broker_stop
            broker_start "$b" "$p" || return 4
            data=$TMP/data-$b-p$p-w$w
        fi
        serve_start "$p" "$w" "$data" ${serve_args[@]+"${serve_args[@]}"} || return 4
        tag=$b-p$p-w$w-kchat
        warm_kafka "$tag-warmup" "$warm" --inflight "$INFLIGHT" --mix "$MIX" || return 4
        warm=0   # the next W finds the broker warm
        run_load "$tag" --requests "$REQUESTS" --warmup "$WARMUP" --seconds "$SECONDS_RUN" \
            --inflight "$INFLIGHT" --mix "$MIX" --duration-max $((SECONDS_RUN + 150))
        rc=$?
        note_rc $rc
        serve_stop || FAIL=4
        row_add "$tag" "$b" kchat "$p" "$w" "$PEAK_RSS_MB" $rc
        echo "sweep: $b P=$p W=$w kchat: $(res "$tag" rps)/s p99 $(res "$tag" p99_ms) ms"
    done
    broker_stop   # echo on a fresh broker, as in bench/run.sh
    broker_start "$b" "$p" || return 4
    echo_start "$p" || return 4
    tag=$b-p$p-echo
    warm_kafka "$tag-warmup" "$KAFKA_WARMUP" --echo --inflight "$INFLIGHT" --mix "$MIX" || return 4
    run_load "$tag" --echo --requests "$REQUESTS" --warmup "$WARMUP" --seconds "$SECONDS_RUN" \
        --inflight "$INFLIGHT" --mix "$MIX" --duration-max $((SECONDS_RUN + 150))
    rc=$?
    note_rc $rc
    echo_stop || FAIL=4
    row_add "$tag" "$b" echo "$p" "" "$ECHO_RSS_MB" $rc
    echo "sweep: $b P=$p echo: $(res "$tag" rps)/s p99 $(res "$tag" p99_ms) ms"
    broker_stop
}

for b in "${BLIST[@]}"; do
    for p in "${PLIST[@]}"; do
        say "=== broker $b, $p partitions ($(($(date +%s) - T0)) s) ==="
        if ! sweep_cell "$b" "$p"; then
            say "broker $b, $p partitions: could not complete"
            FAIL=4
            cleanup_more
        fi
    done
done
rows_json

if [ $PLOT = 1 ]; then
    caption="$INVOCATION  (commit $GIT_COMMIT, $(date -u +%F), $(nproc) CPUs)"
    caption=${caption//\'/}
    if gnuplot -e "csv='$OUT/results.csv'; outdir='$OUT'; caption='$caption'" \
            "$ROOT/bench/plot.gp" 2>"$OUT/plot.log"; then
        echo "sweep: plots $OUT/{rps,p99,ratio}.{svg,png}"
    else
        cat "$OUT/plot.log" >&2
        FAIL=4
    fi
fi
echo "sweep: results in $OUT; $(($(date +%s) - T0)) s"
exit $FAIL
