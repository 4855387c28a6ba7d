#!/usr/bin/env bash
# bench/run-embedded.sh - build, start `bin/kchat serve` on an embedded broker
# and a fresh data directory, run the load generator against it, stop the
# server with SIGTERM and show the end of its log.
#
# usage: bench/run-embedded.sh [load options...] [-- serve options...]
#   e.g. bench/run-embedded.sh --requests 20000 --inflight 64
#        bench/run-embedded.sh --inflight 256 -- --workers 2 --max-batch 256
#
# Environment: KCHAT_BIN (default bin/kchat), PARTITIONS (default 8),
# BENCH_TMP (parent of the scratch directory, default ${TMPDIR:-/tmp}),
# KEEP=1 keeps the scratch directory (data, server log), LOG_LINES (default 30),
# NO_BUILD=1 skips make.
# Exit status: the load generator's (0 ok, 1 missing responses, 2 setup,
# 3 error responses), or 4 when the server did not start or did not stop cleanly.
set -u

cd "$(dirname "$0")/.."
ROOT=$(pwd)
KCHAT_BIN=${KCHAT_BIN:-bin/kchat}
PARTITIONS=${PARTITIONS:-8}
LOG_LINES=${LOG_LINES:-30}
LOAD=build/bench/load

load_args=()
serve_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        serve_args=("$@")
        break
    fi
    load_args+=("$1")
    shift
done

if [ "${NO_BUILD:-0}" != 1 ]; then
    make -s all || exit 4
    make -s "$LOAD" || exit 4
fi
[ -x "$KCHAT_BIN" ] || { echo "run-embedded: no $KCHAT_BIN" >&2; exit 4; }
[ -x "$LOAD" ] || { echo "run-embedded: no $LOAD" >&2; exit 4; }

TMP=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/kchat-bench.XXXXXX") || exit 4
DATA=$TMP/data
BOOT=$TMP/bootstrap
LOG=$TMP/serve.log
NAME=run-embedded
. "$(dirname "$0")/lib.sh"

echo "run-embedded: $KCHAT_BIN serve --data $DATA --partitions $PARTITIONS" \
     "--pwhash-ops 1 --pwhash-mem 8192 --bootstrap-file $BOOT ${serve_args[*]:-}" >&2
"$KCHAT_BIN" serve --data "$DATA" --partitions "$PARTITIONS" \
    --pwhash-ops 1 --pwhash-mem 8192 --bootstrap-file "$BOOT" \
    ${serve_args[@]+"${serve_args[@]}"} >"$LOG" 2>&1 &
SERVER_PID=$!

# wait (<= 30 s) for one non-empty line in the bootstrap file
for _ in $(seq 1 300); do
    [ -s "$BOOT" ] && [ -n "$(head -n1 "$BOOT")" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        wait "$SERVER_PID"
        echo "run-embedded: server exited (status $?) before writing $BOOT" >&2
        SERVER_PID=
        show_log
        exit 4
    fi
    sleep 0.1
done
if ! [ -s "$BOOT" ]; then
    echo "run-embedded: no bootstrap file after 30 s" >&2
    stop_server 10
    show_log
    exit 4
fi
echo "run-embedded: server pid $SERVER_PID, bootstrap $(head -n1 "$BOOT")" >&2

# The generator bounds itself (--duration-max, default 120 s); `timeout` is a
# backstop in case it hangs anyway.
echo "run-embedded: $LOAD --bootstrap-file $BOOT ${load_args[*]:-}" >&2
timeout -k 5 900 "$LOAD" --bootstrap-file "$BOOT" ${load_args[@]+"${load_args[@]}"}
LOAD_RC=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID"
    echo "run-embedded: the server DIED during the run (status $?)" >&2
    SERVER_PID=
    [ "$LOAD_RC" = 0 ] && LOAD_RC=4
fi

stop_server 30
show_log
echo "run-embedded: load exit $LOAD_RC, server stop ${STOP_RC}" >&2
if [ "$LOAD_RC" = 0 ] && [ "$STOP_RC" != 0 ]; then
    exit "$STOP_RC"
fi
exit "$LOAD_RC"
