#!/usr/bin/env bash
# bench/stages.sh - where a request waits inside kchat serve, stage by stage
# (issue 14; the stages are docs/operations.md's "Where a request waits").
#
# On a fresh broker (the mock of `kchat broker`, or one Apache Kafka node):
# `kchat serve` with --metrics-http, a warm-up of --warmup-seconds at the
# rate, then the load generator in open loop at --rate requests/s for
# --seconds. /metrics is read before and after the measured run; for each
# stage of kchat_stage_seconds the difference gives how many passed it, the
# mean and the median and 99th percentile (interpolated inside the
# histogram's bucket, so as coarse as its bounds). Then each worker's busy
# share of the measured run (kchat_worker_busy_seconds_total: near 1, a
# request's read stage is mostly waiting for its worker). The load
# generator's own result line (what a client saw, end to end) comes last.
#
# usage: bench/stages.sh [--broker mock|kafka] [--rate R] [--seconds S]
#                        [--warmup-seconds S] [--partitions P] [--mix SPEC]
#                        [-- kchat serve options...]
# Environment: KCHAT_BIN (bin/kchat), BENCH_BUILD (build), as bench/run.sh.
# Output: a table on standard output, logs in the results directory.
set -u
NAME=stages
. "$(dirname "$0")/common.sh"
BROKER=mock RATE=200 SECONDS_RUN=15 WARMUP_SECONDS=5 PARTITIONS=8
MIX=chat=90,history=5,rooms=5
serve_args=()

while [ $# -gt 0 ]; do
    case $1 in
    --broker) need "$@"; BROKER=$2; shift 2 ;;
    --rate) need "$@"; RATE=$2; shift 2 ;;
    --seconds) need "$@"; SECONDS_RUN=$2; shift 2 ;;
    --warmup-seconds) need "$@"; WARMUP_SECONDS=$2; shift 2 ;;
    --partitions) need "$@"; PARTITIONS=$2; shift 2 ;;
    --mix) need "$@"; MIX=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "stages: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
bench_positive "$RATE" "$SECONDS_RUN" "$WARMUP_SECONDS" "$PARTITIONS"
bench_programs "$KCHAT_BIN" "$LOAD"

bench_dirs "stages-$(date -u +%Y%m%dT%H%M%SZ)"
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/harness.sh"

# A free loopback port for /metrics.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
METRICS=http://127.0.0.1:$PORT/metrics

broker_start "$BROKER" "$PARTITIONS" || exit 4
serve_start "$PARTITIONS" 0 "$TMP/data" --metrics-http "127.0.0.1:$PORT" \
    ${serve_args[@]+"${serve_args[@]}"} || exit 4
run_load warmup --rate "$RATE" --requests $((RATE * WARMUP_SECONDS)) --mix "$MIX" \
    --duration-max $((WARMUP_SECONDS + 60)) || exit 1
curl -sf "$METRICS" >"$OUT/metrics-before.txt" || { say "no $METRICS"; exit 4; }
MEASURED_START_MS=$(date +%s%3N)
run_load measured --rate "$RATE" --requests $((RATE * SECONDS_RUN)) --mix "$MIX" \
    --duration-max $((SECONDS_RUN + 60)) || exit 1
curl -sf "$METRICS" >"$OUT/metrics-after.txt" || { say "no $METRICS"; exit 4; }
MEASURED_END_MS=$(date +%s%3N)
serve_stop
broker_stop

echo "# bench/stages.sh --broker $BROKER --rate $RATE --seconds $SECONDS_RUN" \
     "--partitions $PARTITIONS --mix $MIX, commit $GIT_COMMIT, $(date -u +%FT%TZ)"
awk '
    function key(line,   s) { s = line; sub(/.*stage="/, "", s); sub(/".*/, "", s); return s }
    function le(line,   s) { s = line; sub(/.*le="/, "", s); sub(/".*/, "", s); return s }
    /^kchat_stage_seconds_bucket/ {
        st = key($1); b = le($1)
        if (FILENAME ~ /before/) before[st, b] = $2; else { after[st, b] = $2; bound[st, ++nb[st]] = b }
        next
    }
    /^kchat_stage_seconds_sum/ { st = key($1); if (FILENAME ~ /before/) sb[st] = $2; else sa[st] = $2; next }
    /^kchat_stage_seconds_count/ {
        st = key($1)
        if (FILENAME ~ /before/) cb[st] = $2; else { ca[st] = $2; order[++ns] = st }
    }
    # the value below which a fraction q of the run observations fell,
    # linear inside its bucket
    function quant(st, q,   n, i, b, c, prev, lo, target) {
        n = ca[st] - cb[st]; if (n <= 0) return 0
        target = q * n; prev = 0; lo = 0
        for (i = 1; i <= nb[st]; i++) {
            b = bound[st, i]; c = after[st, b] - before[st, b]
            if (c >= target) {
                if (b == "+Inf") return lo * 1000
                return (lo + (b - lo) * (c > prev ? (target - prev) / (c - prev) : 1)) * 1000
            }
            prev = c; lo = b
        }
        return lo * 1000
    }
    END {
        printf "%-8s %9s %9s %9s %9s\n", "stage", "count", "mean_ms", "p50_ms", "p99_ms"
        for (i = 1; i <= ns; i++) {
            st = order[i]; n = ca[st] - cb[st]
            mean = n > 0 ? (sa[st] - sb[st]) / n * 1000 : 0
            printf "%-8s %9d %9.2f %9.2f %9.2f\n", st, n, mean, quant(st, 0.5), quant(st, 0.99)
        }
    }' "$OUT/metrics-before.txt" "$OUT/metrics-after.txt"
awk '$1 == "kchat_requests_total" || $1 == "kchat_commands_total" || $1 == "kchat_commits_total" || \
     $1 == "kchat_outbox_produced_total" || $1 == "kchat_changelog_produced_total" || \
     $1 == "kchat_changelog_transactions_total" \
     { print FILENAME ~ /before/ ? "before" : "after", $1, $2 }' \
    "$OUT/metrics-before.txt" "$OUT/metrics-after.txt" |
    awk '{ v[$2, $1] = $3; k[$2] = 1 }
         END { for (m in k) printf "%s %d\n", m, v[m, "after"] - v[m, "before"] }' | sort
# each worker's busy share of the measured run's wall time
# (kchat_worker_busy_seconds_total, read at its start and end)
awk -v wall="$((MEASURED_END_MS - MEASURED_START_MS))" '
    /^kchat_worker_busy_seconds_total/ {
        w = $1; sub(/.*worker="/, "", w); sub(/".*/, "", w)
        if (FILENAME ~ /before/) b[w] = $2; else { a[w] = $2; order[++n] = w }
    }
    END {
        for (i = 1; i <= n && wall > 0; i++)
            printf "busy worker=%s share=%.2f\n", order[i], (a[order[i]] - b[order[i]]) * 1000 / wall
    }' "$OUT/metrics-before.txt" "$OUT/metrics-after.txt"
grep '^result: ' "$OUT/measured.log" | tail -n1
echo "stages: logs and metrics in $OUT"
