#!/usr/bin/env bash
# bench/nodes.sh - several `kchat serve` processes on one Kafka (issue 7's
# deployment, docs/scaling.md): the throughput of each process and of all.
#
# For each count N of --nodes (default 1,2,3), on a fresh 1-node Apache Kafka
# (scripts/kafka) with P partitions: N `kchat serve` processes, each with its
# own data directory and /metrics, started together; once the group has
# given every shard to one of them (the sum of kchat_shards_owned is P, and
# every node owns one), a closed loop of --kafka-warmup seconds left out of
# the figures (a fresh broker's JIT; bench/run.sh), then the load
# generator's measured closed loop (--seconds after its first --warmup
# requests, --inflight at a time, --requests a cap). Each node's
# kchat_requests_total is read before and after the measured run; a node's
# throughput is its share of those requests times the measured rate.
# One line per count:
#   nodes: n=N rps=R per_process=R1,R2,... shards=S1,S2,... p50_ms=X p99_ms=X
# All processes share the machine's cores, so this shows how the work
# splits and what the coordination costs, not how a cluster of machines
# scales.
#
# usage: bench/nodes.sh [--nodes LIST] [--partitions P] [--seconds S]
#                       [--requests N] [--warmup N] [--kafka-warmup S]
#                       [--inflight N] [--mix SPEC]
#                       [-- kchat serve options...]
# Environment: KCHAT_BIN (bin/kchat), BENCH_BUILD (build), as bench/run.sh.
set -u
NAME=nodes
. "$(dirname "$0")/common.sh"
NODES=1,2,3 PARTITIONS=8 SECONDS_RUN=15 REQUESTS=1000000 WARMUP=5000 KAFKA_WARMUP=60
INFLIGHT=256
MIX=chat=90,history=5,rooms=5
serve_args=()

while [ $# -gt 0 ]; do
    case $1 in
    --nodes) need "$@"; NODES=$2; shift 2 ;;
    --partitions) need "$@"; PARTITIONS=$2; shift 2 ;;
    --seconds) need "$@"; SECONDS_RUN=$2; shift 2 ;;
    --requests) need "$@"; REQUESTS=$2; shift 2 ;;
    --kafka-warmup) need "$@"; KAFKA_WARMUP=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --inflight) need "$@"; INFLIGHT=$2; shift 2 ;;
    --mix) need "$@"; MIX=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --) shift; serve_args=("$@"); break ;;
    *) echo "nodes: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
bench_positive "$PARTITIONS" "$REQUESTS" "$WARMUP" "$INFLIGHT" "$SECONDS_RUN"
bench_numbers "$KAFKA_WARMUP"
[ "$WARMUP" -lt "$REQUESTS" ] || { echo "nodes: --warmup must be below --requests" >&2; exit 2; }
IFS=, read -ra COUNTS <<<"$NODES"
for n in "${COUNTS[@]}"; do
    [[ $n =~ ^[1-9]$ ]] && [ "$n" -le "$PARTITIONS" ] ||
        { echo "nodes: node count '$n' must be 1-9 and at most the partitions" >&2; exit 2; }
done
bench_programs "$KCHAT_BIN" "$LOAD"
bench_dirs "nodes-$(date -u +%Y%m%dT%H%M%SZ)"
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/harness.sh"

NODE_PIDS=()
PORTS=()
nodes_stop() {
    local pid
    for pid in ${NODE_PIDS[@]+"${NODE_PIDS[@]}"}; do
        stop_pid "$pid" 30
    done
    NODE_PIDS=()
}
trap 'nodes_stop; cleanup' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# metric PORT NAME: a value from node PORT's /metrics (empty when absent)
metric() {
    curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}

# Every shard owned, by nodes that each own one; up to 120 s.
wait_spread() {
    local i p sum owned all
    for i in $(seq 600); do
        sum=0 all=1
        for p in "${PORTS[@]}"; do
            owned=$(metric "$p" kchat_shards_owned)
            owned=${owned%.*}
            [ -n "$owned" ] && [ "$owned" -gt 0 ] || all=0
            sum=$((sum + ${owned:-0}))
        done
        [ "$all" = 1 ] && [ "$sum" = "$PARTITIONS" ] && return 0
        sleep 0.2
    done
    return 1
}

echo "# bench/nodes.sh --nodes $NODES --partitions $PARTITIONS --seconds $SECONDS_RUN" \
     "--requests $REQUESTS --warmup $WARMUP --kafka-warmup $KAFKA_WARMUP --inflight $INFLIGHT" \
     "--mix $MIX, commit $GIT_COMMIT, $(date -u +%FT%TZ)"
FAIL=0
for n in "${COUNTS[@]}"; do
    broker_start kafka "$PARTITIONS" || exit 4
    [ -f "$TMP/secret" ] || "$KCHAT_BIN" keygen "$TMP/secret" >/dev/null || exit 4
    PORTS=()
    for i in $(seq "$n"); do
        port=$(free_port)
        PORTS+=("$port")
        cmd=("$KCHAT_BIN" serve --brokers "$BOOT" --data "$TMP/n$n-$i" --partitions "$PARTITIONS"
             --pwhash-ops 1 --pwhash-mem 8192 --secret-file "$TMP/secret"
             --metrics-http "127.0.0.1:$port" ${serve_args[@]+"${serve_args[@]}"})
        show_cmd "${cmd[*]}"
        "${cmd[@]}" >"$OUT/serve-n$n-$i.log" 2>&1 &
        NODE_PIDS+=($!)
    done
    if ! wait_spread; then
        say "n=$n: the shards were not spread over the $n nodes within 120 s"
        FAIL=4
        nodes_stop
        broker_stop
        continue
    fi
    if ! warm_kafka "n$n-warmup" "$KAFKA_WARMUP" --inflight "$INFLIGHT" --mix "$MIX"; then
        FAIL=1
        nodes_stop
        broker_stop
        continue
    fi
    before=()
    for p in "${PORTS[@]}"; do before+=("$(metric "$p" kchat_requests_total)"); done
    # requests are counted around the whole measured run (its first
    # --warmup requests are the load generator's own): their split between
    # the nodes is what is used
    run_load "n$n" --requests "$REQUESTS" --warmup "$WARMUP" --seconds "$SECONDS_RUN" \
        --inflight "$INFLIGHT" --mix "$MIX" --duration-max $((SECONDS_RUN + 300)) || FAIL=1
    per=() shards=()
    total=0
    for k in "${!PORTS[@]}"; do
        p=${PORTS[$k]}
        after=$(metric "$p" kchat_requests_total)
        per+=("$(awk -v a="${after:-0}" -v b="${before[$k]:-0}" 'BEGIN { printf "%d", a - b }')")
        owned=$(metric "$p" kchat_shards_owned)
        shards+=("${owned%.*}")
    done
    # each node's share of the requests applied, times the measured rate
    line=$(awk -v rps="$(res "n$n" rps)" -v per="${per[*]}" '
        BEGIN {
            k = split(per, v, " "); tot = 0
            for (i = 1; i <= k; i++) tot += v[i]
            for (i = 1; i <= k; i++)
                printf "%s%d", (i > 1 ? "," : ""), (tot > 0 ? rps * v[i] / tot : 0)
        }')
    echo "nodes: n=$n rps=$(res "n$n" rps) per_process=$line" \
         "shards=$(IFS=,; echo "${shards[*]}") p50_ms=$(res "n$n" p50_ms) p99_ms=$(res "n$n" p99_ms)"
    nodes_stop
    broker_stop
done
echo "nodes: logs in $OUT"
exit $FAIL
