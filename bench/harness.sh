# bench/harness.sh - the pieces bench/run.sh and bench/sweep.sh are made of:
# a broker (the mock cluster of `kchat broker`, or Apache Kafka through
# scripts/kafka), `kchat serve`, the echo processor (build/bench/echo), one
# run of the load generator (build/bench/load) and the result rows.
#
# Sourced after lib.sh, whose cleanup() calls cleanup_more() below on exit:
# every process started here is stopped however the script ends. Every wait
# is bounded. The sourcing script sets NAME, TMP, LOG_LINES, ROOT, OUT (the
# results directory), KCHAT_BIN, LOAD and ECHO.

BROKER_KIND=        # mock | kafka, while one runs
BROKER_PID=         # mock: the `kchat broker` process
KAFKA_DIR=          # kafka: the cluster directory of scripts/kafka
KAFKA_START_PID=    # kafka: `scripts/kafka start` while it runs
BOOT=               # bootstrap servers of the running broker
ECHO_PID=
LOAD_PID=           # the load generator (its `timeout` wrapper), while it runs
PEAK_RSS_MB=        # VmHWM of the last `kchat serve`, MiB
ECHO_RSS_MB=        # VmHWM of the last echo processor, MiB

say() { echo "$NAME: $*" >&2; }

# Log a command line (stderr and OUT/commands.txt).
show_cmd() {
    echo "$*" >>"$OUT/commands.txt"
    say "\$ $*"
}

# wait_file FILE SECONDS [PID]: until FILE is non-empty; fails after SECONDS
# or as soon as PID is gone.
wait_file() {
    local f=$1 secs=$2 pid=${3:-} i=0
    while [ $i -lt $((secs * 10)) ]; do
        [ -s "$f" ] && [ -n "$(head -n1 "$f")" ] && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL. Returns
# the process's exit status (137 after SIGKILL).
stop_pid() {
    local pid=$1 secs=$2 i=0
    kill -TERM "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null && [ $i -lt $((secs * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid did not exit within $secs s of SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
}

# cpu_ticks PID: utime + stime of PID, in clock ticks (getconf CLK_TCK a
# second); 0 when it is gone.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Peak resident set (VmHWM) of PID in MiB, rounded up; empty if unknown.
peak_rss_mb() {
    awk '/^VmHWM:/ { print int(($2 + 1023) / 1024) }' "/proc/$1/status" 2>/dev/null
}

# ---- brokers -------------------------------------------------------------

# broker_start KIND PARTITIONS: a fresh, empty broker; sets BOOT.
# BENCH_KAFKA_SET: space-separated KEY=VALUE server.properties lines for a
# Kafka broker (scripts/kafka start --set), for experiments with its settings.
broker_start() {
    local kind=$1 parts=$2 set sets=()
    for set in ${BENCH_KAFKA_SET:-}; do sets+=(--set "$set"); done
    BROKER_KIND=$kind
    case $kind in
    mock)
        local bf=$TMP/mock-bootstrap
        rm -f "$bf"
        show_cmd "$KCHAT_BIN broker --partitions $parts --bootstrap-file $bf"
        "$KCHAT_BIN" broker --partitions "$parts" --bootstrap-file "$bf" \
            >>"$OUT/broker-mock-p$parts.log" 2>&1 &
        BROKER_PID=$!
        if ! wait_file "$bf" 30 "$BROKER_PID"; then
            say "the mock broker did not start (log: $OUT/broker-mock-p$parts.log)"
            tail -n "$LOG_LINES" "$OUT/broker-mock-p$parts.log" >&2
            return 1
        fi
        BOOT=$(head -n1 "$bf")
        ;;
    kafka)
        [ -x "$ROOT/scripts/kafka" ] || { say "no scripts/kafka"; return 1; }
        KAFKA_DIR=$TMP/kafka-p$parts
        show_cmd "scripts/kafka start --nodes 1 --partitions $parts --dir $KAFKA_DIR" \
            ${sets[@]+"${sets[@]}"}
        # scripts/kafka bounds its own wait (90 s); timeout is a backstop.
        # In the background and waited for, as run_load explains.
        timeout -k 10 240 "$ROOT/scripts/kafka" start --nodes 1 --partitions "$parts" \
            --dir "$KAFKA_DIR" ${sets[@]+"${sets[@]}"} \
            >"$TMP/kafka-bootstrap" 2>>"$OUT/broker-kafka.log" &
        KAFKA_START_PID=$!
        wait "$KAFKA_START_PID"
        KAFKA_START_PID=
        BOOT=$(head -n1 "$TMP/kafka-bootstrap" 2>/dev/null)
        if [ -z "$BOOT" ]; then
            say "Kafka did not start (log: $OUT/broker-kafka.log)"
            tail -n "$LOG_LINES" "$OUT/broker-kafka.log" >&2
            return 1
        fi
        ;;
    *)
        say "unknown broker $kind (mock, kafka)"
        return 1
        ;;
    esac
    say "broker $kind with $parts partitions at $BOOT"
}

broker_stop() {
    if [ -n "$KAFKA_START_PID" ]; then
        stop_pid "$KAFKA_START_PID" 10
        KAFKA_START_PID=
    fi
    if [ -n "$BROKER_PID" ]; then
        stop_pid "$BROKER_PID" 15
        BROKER_PID=
    fi
    if [ -n "$KAFKA_DIR" ]; then
        timeout -k 10 90 "$ROOT/scripts/kafka" stop --dir "$KAFKA_DIR" --clean \
            2>>"$OUT/broker-kafka.log" >/dev/null
        KAFKA_DIR=
    fi
    BROKER_KIND=
    BOOT=
}

# broker_pid: the process of the running broker (Kafka: its first node's).
broker_pid() {
    if [ "$BROKER_KIND" = mock ]; then echo "$BROKER_PID"; else cat "$KAFKA_DIR"/node*/pid | head -n1; fi
}

# ---- kchat serve ---------------------------------------------------------

# serve_start PARTITIONS WORKERS DATA [serve options...]: `kchat serve`
# against BOOT; returns once it consumes. WORKERS 0 = kchat's default.
serve_start() {
    local parts=$1 workers=$2 data=$3
    shift 3
    local rf=$TMP/serve-ready wopt=() sopt=()
    rm -f "$rf"
    [ "$workers" != 0 ] && wopt=(--workers "$workers")
    # signed records, as a deployment runs (BENCH_NO_SECRET=1: without, for a
    # kchat from before --secret-file)
    if [ "${BENCH_NO_SECRET:-}" != 1 ]; then
        [ -f "$TMP/secret" ] || "$KCHAT_BIN" keygen "$TMP/secret" >/dev/null || return 1
        sopt=(--secret-file "$TMP/secret")
    fi
    LOG=$OUT/serve-$BROKER_KIND-p$parts-w$workers.log
    local cmd=("$KCHAT_BIN" serve --brokers "$BOOT" --data "$data" --partitions "$parts"
               --pwhash-ops 1 --pwhash-mem 8192 ${wopt[@]+"${wopt[@]}"} ${sopt[@]+"${sopt[@]}"}
               --bootstrap-file "$rf" "$@")
    show_cmd "${cmd[*]}"
    "${cmd[@]}" >>"$LOG" 2>&1 &
    SERVER_PID=$!
    if ! wait_file "$rf" 90 "$SERVER_PID"; then
        say "kchat serve did not start consuming within 90 s"
        show_log
        stop_server 10
        return 1
    fi
}

# Stop kchat serve (SIGTERM: it commits what it read); sets PEAK_RSS_MB.
serve_stop() {
    PEAK_RSS_MB=$(peak_rss_mb "$SERVER_PID")
    stop_server 30
    tail -n 1 "$LOG" | sed "s/^/$NAME: /" >&2
    return "$STOP_RC"
}

# ---- the echo processor --------------------------------------------------

echo_start() {
    local parts=$1 rf=$TMP/echo-ready
    rm -f "$rf"
    ELOG=$OUT/echo-$BROKER_KIND-p$parts.log
    show_cmd "$ECHO --bootstrap $BOOT --partitions $parts --ready-file $rf"
    "$ECHO" --bootstrap "$BOOT" --partitions "$parts" --ready-file "$rf" >>"$ELOG" 2>&1 &
    ECHO_PID=$!
    if ! wait_file "$rf" 60 "$ECHO_PID"; then
        say "the echo processor was not assigned within 60 s (log: $ELOG)"
        tail -n "$LOG_LINES" "$ELOG" >&2
        stop_pid "$ECHO_PID" 10
        ECHO_PID=
        return 1
    fi
}

echo_stop() {
    [ -n "$ECHO_PID" ] || return 0
    ECHO_RSS_MB=$(peak_rss_mb "$ECHO_PID")
    stop_pid "$ECHO_PID" 20
    local rc=$?
    ECHO_PID=
    tail -n 1 "$ELOG" | sed "s/^/$NAME: /" >&2
    return $rc
}

cleanup_more() {
    [ -n "$LOAD_PID" ] && stop_pid "$LOAD_PID" 10
    LOAD_PID=
    [ -n "$ECHO_PID" ] && stop_pid "$ECHO_PID" 10
    ECHO_PID=
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        stop_pid "$SERVER_PID" 20
        SERVER_PID=
    fi
    broker_stop
}

# ---- the load generator --------------------------------------------------

# run_load TAG [load options...]: one run against BOOT, output in
# OUT/TAG.{log,err,json}. Returns the load generator's exit status.
run_load() {
    local tag=$1
    shift
    local prog=()
    [ -t 2 ] && prog=(--progress)
    local cmd=("$LOAD" --bootstrap "$BOOT" --json "$OUT/$tag.json" ${prog[@]+"${prog[@]}"} "$@")
    show_cmd "${cmd[*]}"
    # load bounds itself (--duration-max); timeout is a backstop. It runs in
    # the background and is waited for, so that SIGINT/SIGTERM reach this
    # script's trap at once (bash runs a trap only after a foreground child
    # has finished, and not at all when that child survived the signal).
    timeout -k 5 600 "${cmd[@]}" >"$OUT/$tag.log" 2> >(tee "$OUT/$tag.err" >&2) &
    LOAD_PID=$!
    wait "$LOAD_PID"
    local rc=$?
    LOAD_PID=
    local line
    line=$(grep '^result: ' "$OUT/$tag.log" | tail -n1)
    [ -n "$line" ] && say "$line"
    [ $rc -ne 0 ] && say "load $tag exited with status $rc (see $OUT/$tag.err)"
    return $rc
}

# warm_kafka TAG SECONDS [load options...]: on a Kafka broker (BROKER_KIND),
# a closed-loop run of SECONDS whose figures are left out (logged as TAG):
# under kchat's load a fresh broker's JIT compiles for about 50 s
# (docs/bench.md, "The broker's JIT"). Nothing on the mock or for 0 s.
warm_kafka() {
    local tag=$1 secs=$2
    shift 2
    [ "$BROKER_KIND" = kafka ] && [ "$secs" -gt 0 ] || return 0
    say "warming the broker up for $secs s ($tag, left out of the figures)"
    # the cap sizes the load generator's latency table: 40,000/s is above
    # any rate seen here
    run_load "$tag" "$@" --requests $((secs * 40000)) --seconds "$secs" \
        --duration-max $((secs + 120))
}

# res TAG KEY: a value of the `result:` line of run TAG (0 when absent).
res() {
    local v
    v=$(sed -n 's/^result: //p' "$OUT/$1.log" 2>/dev/null | tail -n1 | tr ' ' '\n' |
        sed -n "s/^$2=//p")
    echo "${v:-0}"
}

# ---- results -------------------------------------------------------------

GIT_COMMIT=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
CSV_HEADER="broker,mode,partitions,workers,loop,inflight,rate,warmup,sent,ok,err,missing,rps,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,peak_rss_mb,load_rc,commit,date"

# row_add TAG BROKER MODE PARTITIONS WORKERS RSS_MB LOAD_RC: the figures of
# load run TAG as one line of OUT/results.csv and one object of
# OUT/rows.jsonl. WORKERS and RSS_MB may be empty.
row_add() {
    local tag=$1 broker=$2 mode=$3 parts=$4 workers=$5 rss=$6 rc=$7
    local date k
    local -A r=()
    date=$(date -u +%FT%TZ)
    for k in loop inflight rate warmup sent ok err missing rps p50_ms p90_ms p99_ms p999_ms max_ms; do
        r[$k]=$(res "$tag" "$k")
    done
    [ -s "$OUT/results.csv" ] || echo "$CSV_HEADER" >"$OUT/results.csv"
    echo "$broker,$mode,$parts,$workers,${r[loop]},${r[inflight]},${r[rate]},${r[warmup]},${r[sent]},${r[ok]},${r[err]},${r[missing]},${r[rps]},${r[p50_ms]},${r[p90_ms]},${r[p99_ms]},${r[p999_ms]},${r[max_ms]},$rss,$rc,$GIT_COMMIT,$date" \
        >>"$OUT/results.csv"
    printf '{"broker":"%s","mode":"%s","partitions":%s,"workers":%s,"loop":"%s","inflight":%s,"rate":%s,"warmup":%s,"sent":%s,"ok":%s,"err":%s,"missing":%s,"rps":%s,"p50_ms":%s,"p90_ms":%s,"p99_ms":%s,"p999_ms":%s,"max_ms":%s,"peak_rss_mb":%s,"load_rc":%s,"commit":"%s","date":"%s"}\n' \
        "$broker" "$mode" "$parts" "${workers:-null}" "${r[loop]}" "${r[inflight]}" "${r[rate]}" \
        "${r[warmup]}" "${r[sent]}" "${r[ok]}" "${r[err]}" "${r[missing]}" "${r[rps]}" "${r[p50_ms]}" \
        "${r[p90_ms]}" "${r[p99_ms]}" "${r[p999_ms]}" "${r[max_ms]}" "${rss:-null}" "$rc" \
        "$GIT_COMMIT" "$date" >>"$OUT/rows.jsonl"
}

# OUT/results.json: the rows as one JSON array.
rows_json() {
    { echo "["; sed '$!s/$/,/' "$OUT/rows.jsonl" 2>/dev/null; echo "]"; } >"$OUT/results.json"
}
