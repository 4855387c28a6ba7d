# Shared by the bench scripts: clean-up, stopping the server, its log.
# The sourcing script sets NAME (message prefix), TMP (scratch directory),
# LOG (server log) and LOG_LINES, and SERVER_PID once the server runs. A
# script that starts more processes defines cleanup_more(), which cleanup()
# calls first (bench/harness.sh does).

SERVER_PID=

cleanup() {
    if declare -F cleanup_more >/dev/null; then
        cleanup_more
    fi
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "$NAME: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stop the server: SIGTERM, wait up to $1 s, then SIGKILL. Sets STOP_RC.
stop_server() {
    STOP_RC=0
    [ -n "$SERVER_PID" ] || return
    kill -TERM "$SERVER_PID" 2>/dev/null
    local i=0
    while kill -0 "$SERVER_PID" 2>/dev/null && [ $i -lt $(($1 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "$NAME: server did not exit within $1 s of SIGTERM; SIGKILL" >&2
        kill -KILL "$SERVER_PID" 2>/dev/null
        STOP_RC=4
    fi
    wait "$SERVER_PID" 2>/dev/null
    local st=$?
    if [ "$STOP_RC" = 0 ] && [ "$st" != 0 ]; then
        echo "$NAME: server exited with status $st after SIGTERM" >&2
        STOP_RC=4
    fi
    SERVER_PID=
}

show_log() {
    echo "----- last $LOG_LINES lines of the server log ($LOG) -----" >&2
    tail -n "$LOG_LINES" "$LOG" >&2 2>/dev/null
    echo "----- end of server log -----" >&2
}
