#!/usr/bin/env bash
# End-to-end test of the chat page in Debian's Chromium, driven by npm
# playwright-core (pinned in package.json / package-lock.json; no browser
# download). Installs what it needs, builds nothing: it runs $KCHAT_BIN
# (default bin/kchat) as `kchat dev` on a scratch directory with port 0, runs
# chat.test.mjs against it, stops the server and prints one final line:
#   N passed, N failed
# Screenshots: $KCHAT_TEST_TMP/browser-*/ (or tests/browser/artifacts/).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${KCHAT_BIN:-bin/kchat}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
if [ -n "${KCHAT_TEST_TMP:-}" ]; then
  mkdir -p "$KCHAT_TEST_TMP"
  WORK=$(mktemp -d "$KCHAT_TEST_TMP/browser-XXXXXX")
  ARTIFACTS=$WORK
else
  WORK=$(mktemp -d /tmp/kchat-browser-XXXXXX)
  ARTIFACTS=$HERE/artifacts
fi
mkdir -p "$ARTIFACTS"
passed=0; failed=0; server=; server_rc=

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && exit 0 || exit 1
}
# A failure before the test could run: one failed test, with the reason.
abort() {
  echo "browser test: $*" >&2
  failed=$((failed + 1))
  stop_server
  finish
}
stop_server() {
  [ -n "$server" ] || return 0
  local pid=$server i
  server=
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "browser test: kchat dev did not exit within 10 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    server_rc=timeout
    return 1
  fi
  wait "$pid" 2>/dev/null
  server_rc=$?
}
trap 'stop_server' EXIT
trap 'abort "interrupted"' INT TERM

# --- what the test needs ----------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  echo "browser test: installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update && apt-get install -y --no-install-recommends chromium; } \
    >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; abort "apt-get install chromium failed"; }
fi
command -v node >/dev/null && command -v npm >/dev/null || abort "node and npm are required"
want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$HERE/package.json" | head -1)
have=$(node -e 'try{console.log(require(process.argv[1]).version)}catch{}' \
       "$HERE/node_modules/playwright-core/package.json" 2>/dev/null)
if [ "$have" != "$want" ]; then
  echo "browser test: installing playwright-core $want (npm)"
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  ( cd "$HERE" && { timeout 300 npm ci --no-audit --no-fund ||
                    timeout 300 npm install --no-audit --no-fund; } ) >"$WORK/npm.log" 2>&1 ||
    { tail -20 "$WORK/npm.log" >&2; abort "npm could not install playwright-core"; }
fi
[ -x "$BIN" ] || abort "$BIN is not executable (build it with make, or set KCHAT_BIN)"

# --- the server -------------------------------------------------------------
URL_FILE=$WORK/dev.url
"$BIN" dev --http 127.0.0.1:0 --url-file "$URL_FILE" --bootstrap-file "$WORK/dev.bootstrap" \
  --data "$WORK/data" --pwhash-ops 1 --pwhash-mem 8192 >"$WORK/dev.log" 2>&1 &
server=$!
url=
for _ in $(seq 1 900); do   # 90 s
  if [ -s "$URL_FILE" ] && url=$(head -1 "$URL_FILE") && [ -n "$url" ]; then break; fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  tail -40 "$WORK/dev.log" >&2
  abort "kchat dev did not write its URL within 90 s"
fi
echo "browser test: kchat dev at $url (log $WORK/dev.log)"

# --- the test ---------------------------------------------------------------
KCHAT_URL=$url ARTIFACT_DIR=$ARTIFACTS RESULT_FILE=$WORK/result \
  timeout --kill-after=10 240 node "$HERE/chat.test.mjs"
rc=$?
if [ -s "$WORK/result" ]; then
  read -r p f <"$WORK/result"
  passed=$((passed + p)); failed=$((failed + f))
  # a non-zero exit with no failed step still counts as a failure
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
else
  echo "browser test: chat.test.mjs ended without results (exit $rc)" >&2
  failed=$((failed + 1))
fi
[ "$failed" -gt 0 ] && { echo "----- last 40 lines of $WORK/dev.log -----"; tail -40 "$WORK/dev.log"; }

# --- the server stops cleanly -----------------------------------------------
stop_server
if [ "$server_rc" = 0 ]; then
  echo "ok - kchat dev exits 0 on SIGTERM"
  passed=$((passed + 1))
else
  echo "not ok - kchat dev on SIGTERM: ${server_rc} (want exit 0 within 10 s)"
  failed=$((failed + 1))
fi
finish
