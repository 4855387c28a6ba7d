#!/usr/bin/env bash
# bench/lowrate.sh: kchat's latency at a low, fixed rate on Kafka, and what
# its changelog transactions cost (docs/bench.md, "Fencing").
#
# On a fresh 1-node Kafka (scripts/kafka, 8 partitions): one `kchat serve`
# (KCHAT_BIN, default bin/kchat) on an empty data directory, then
# bench/load open loop at RATE requests/s (default 200) for 15 s of the
# chat mix. Prints the load generator's result line and, from serve's
# /metrics, the changelog transactions committed and their mean time.
# Needs KCHAT_BIN and build/bench/load (BENCH_BUILD): `make bench-progs`.
set -u
cd "$(dirname "$0")/.."
RATE=${RATE:-200}
KCHAT_BIN=${KCHAT_BIN:-bin/kchat}
LOAD=${BENCH_BUILD:-build}/bench/load
PORT=${PORT:-19464}
D=$(mktemp -d /tmp/lowrate.XXXXXX)
B=$(scripts/kafka start --nodes 1 --partitions 8 --dir $D/kafka) || exit 1
"$KCHAT_BIN" serve --brokers "$B" --partitions 8 --data $D/data --pwhash-ops 1 \
  --pwhash-mem 8192 --metrics-http 127.0.0.1:$PORT --bootstrap-file $D/ready \
  > $D/serve.log 2>&1 &
S=$!
for i in $(seq 300); do [ -s $D/ready ] && break; sleep 0.2; done
echo "lowrate: $KCHAT_BIN, $RATE requests/s for 15 s"
"$LOAD" --bootstrap "$B" --rate "$RATE" --requests $((RATE * 15)) --no-progress 2>&1 | tail -1
curl -s "http://127.0.0.1:$PORT/metrics" | awk '
  $1 == "kchat_changelog_transactions_total" { n = $2 }
  $1 == "kchat_changelog_transaction_microseconds_total" { us = $2 }
  END { if (n > 0) printf "lowrate: %d changelog transactions, mean %.1f ms\n", n, us / n / 1000
        else print "lowrate: no changelog transactions (a binary before fencing)" }'
kill $S; wait $S 2>/dev/null
scripts/kafka stop --dir $D/kafka --clean >/dev/null 2>&1
rm -rf $D
