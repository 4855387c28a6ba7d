#!/usr/bin/env bash
# bench/run-sse.sh - start `bin/kchat dev` (embedded broker + backend +
# gateway) on a fresh scratch directory, run the event-stream benchmark
# build/bench/sse against its gateway with --pid, stop the server with
# SIGTERM and show the end of its log.
#
# With GATEWAY_PROCESSES=N it starts `kchat broker`, `kchat serve` and
# `kchat gateway --gateway-processes N` instead (the same embedded broker,
# three commands; N may be 1; serve with --changelog off, as `kchat dev`
# runs on its embedded broker), and --pid names the gateway's processes.
#
# usage: bench/run-sse.sh [sse options...] [-- kchat dev options...]
#   e.g. bench/run-sse.sh --streams 2000 --users 100 --messages 500 --rate 50
#        bench/run-sse.sh --streams 5000 -- --sse-buffer-kb 64
#
# Environment: KCHAT_BIN (default bin/kchat), SSE_BIN (the benchmark,
# default build/bench/sse), SSE_NOFILE (descriptor limit to
# raise to, default 65536), SSE_MAX_TOTAL (default 65536),
# SSE_MAX_PER_USER (default 65536), BENCH_TMP (parent of the scratch
# directory, default ${TMPDIR:-/tmp}), KEEP=1 keeps it (data, server log),
# LOG_LINES (default 30), NO_BUILD=1 skips make, GATEWAY_PROCESSES (above;
# the "kchat dev options" then go to the gateway).
# Exit status: the benchmark's (0 ok, 1 opens failed or events missing,
# 2 setup), or 4 when the server did not start, died, or did not stop cleanly.
set -u

cd "$(dirname "$0")/.."
KCHAT_BIN=${KCHAT_BIN:-bin/kchat}
LOG_LINES=${LOG_LINES:-30}
SSE=${SSE_BIN:-build/bench/sse}

sse_args=()
dev_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        dev_args=("$@")
        break
    fi
    sse_args+=("$1")
    shift
done

if [ "${NO_BUILD:-0}" != 1 ]; then
    make -s all || exit 4
    make -s "$SSE" || exit 4
fi
[ -x "$KCHAT_BIN" ] || { echo "run-sse: no $KCHAT_BIN" >&2; exit 4; }
[ -x "$SSE" ] || { echo "run-sse: no $SSE" >&2; exit 4; }

# Both processes need an fd per stream: raise the soft limit to the hard
# one, and the hard one first to SSE_NOFILE (default 65536) where we may
# (root, or a hard limit already that high).
want=${SSE_NOFILE:-65536}
[ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ] && ulimit -Hn "$want" 2>/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null
echo "run-sse: ulimit -n $(ulimit -n)" >&2

TMP=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/kchat-sse.XXXXXX") || exit 4
DATA=$TMP/data
URLF=$TMP/url
BOOTF=$TMP/bootstrap
LOG=$TMP/dev.log
NAME=run-sse
. "$(dirname "$0")/lib.sh"

SSE_LIMITS=(--sse-max-total "${SSE_MAX_TOTAL:-65536}" --sse-max-per-user "${SSE_MAX_PER_USER:-65536}")
GWP=${GATEWAY_PROCESSES:-0}
# The broker and serve of GATEWAY_PROCESSES come from bench/harness.sh (its
# broker_start and serve_start, logs and commands.txt in the scratch
# directory); the gateway or `kchat dev` is this script's SERVER_PID and LOG.
ROOT=$PWD OUT=$TMP
. "$(dirname "$0")/harness.sh"
SERVE_PID=
cleanup_more() {
    [ -n "$SERVE_PID" ] && stop_pid "$SERVE_PID" 20
    broker_stop
}

if [ "$GWP" -ge 1 ] 2>/dev/null; then
    broker_start mock 8 || exit 4
    serve_start 8 0 "$DATA" --changelog off || exit 4
    SERVE_PID=$SERVER_PID SERVER_PID= LOG=$TMP/dev.log
    dev_cmd=("$KCHAT_BIN" gateway --brokers "$BOOT" --http 127.0.0.1:0 --url-file "$URLF"
             --secret-file "$TMP/secret" --gateway-processes "$GWP" "${SSE_LIMITS[@]}"
             ${dev_args[@]+"${dev_args[@]}"})
else
    dev_cmd=("$KCHAT_BIN" dev --http 127.0.0.1:0 --url-file "$URLF" --bootstrap-file "$BOOTF"
             --data "$DATA" --pwhash-ops 1 --pwhash-mem 8192 "${SSE_LIMITS[@]}"
             ${dev_args[@]+"${dev_args[@]}"})
fi
echo "run-sse: ${dev_cmd[*]}" >&2
"${dev_cmd[@]}" >"$LOG" 2>&1 &
SERVER_PID=$!
if ! wait_file "$URLF" 60 "$SERVER_PID"; then
    echo "run-sse: the server wrote no $URLF (exited, or not within 60 s)" >&2
    stop_server 10
    show_log
    exit 4
fi
URL=$(head -n1 "$URLF")
# the gateway's processes: the server, or with several the children too
PIDS=$SERVER_PID
if [ "$GWP" -gt 1 ] 2>/dev/null; then
    for c in $(pgrep -P "$SERVER_PID"); do PIDS+=",$c"; done
fi
echo "run-sse: server pid(s) $PIDS, url $URL" >&2

# The benchmark bounds itself (--duration-max, default 300 s); `timeout` is a
# backstop in case it hangs anyway.
echo "run-sse: $SSE --url $URL --pid $PIDS ${sse_args[*]:-}" >&2
timeout -k 5 900 "$SSE" --url "$URL" --pid "$PIDS" ${sse_args[@]+"${sse_args[@]}"}
SSE_RC=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID"
    echo "run-sse: the server DIED during the run (status $?)" >&2
    SERVER_PID=
    [ "$SSE_RC" = 0 ] && SSE_RC=4
fi

stop_server 30
show_log
echo "run-sse: sse exit $SSE_RC, server stop ${STOP_RC:-0}" >&2
if [ "$SSE_RC" = 0 ] && [ "${STOP_RC:-0}" != 0 ]; then
    exit "$STOP_RC"
fi
exit "$SSE_RC"
