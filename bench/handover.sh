#!/usr/bin/env bash
# bench/handover.sh: how long shards are unserved when their node dies
# (docs/scaling.md, "Hand-over"), with and without a standby replica.
#
# On a fresh 1-node Kafka (scripts/kafka, 8 partitions), for STANDBY in 0 1:
# node A alone (it owns every shard), bench/load closed loop of N requests
# (default 30000) to fill the shards, node B started with
# --standby-replicas STANDBY (it takes half of the shards; with a standby it
# also follows A's), 15 s for B to settle, then `kill -9` of A. The
# hand-over time is from the kill to B's /metrics showing every shard owned
# (kchat_shards_owned, polled every 50 ms): A's consumer session must expire
# (6 s) before the group gives B its shards, then B restores them (the whole
# changelog partition without a standby, its tail with one) and serves.
# Prints one line per run and B's restore lines.
# Needs bin/kchat and build/bench/load: `make bench-progs`.
set -u
cd "$(dirname "$0")/.."
N=${N:-30000}
D=$(mktemp -d /tmp/ho.XXXXXX)
B=$(scripts/kafka start --nodes 1 --partitions 8 --dir $D/kafka) || exit 1
echo "kafka $B; N=$N requests"
common=(--brokers "$B" --partitions 8 --pwhash-ops 1 --pwhash-mem 8192)

# owned PORT: kchat_shards_owned of the serve whose /metrics is on PORT
owned() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "kchat_shards_owned" {print $2}'
}

for standby in 0 1; do
  bin/kchat serve "${common[@]}" --data $D/a$standby \
    --bootstrap-file $D/a$standby.ready > $D/a$standby.log 2>&1 &
  A=$!
  for i in $(seq 300); do [ -s $D/a$standby.ready ] && break; sleep 0.2; done
  build/bench/load --bootstrap "$B" --requests "$N" --no-progress 2>&1 | tail -1
  port=$((19300 + standby))
  bin/kchat serve "${common[@]}" --data $D/b$standby \
    --standby-replicas $standby --metrics-http 127.0.0.1:$port \
    --bootstrap-file $D/b$standby.ready > $D/b$standby.log 2>&1 &
  P=$!
  for i in $(seq 300); do [ -s $D/b$standby.ready ] && break; sleep 0.2; done
  sleep 15
  before=$(owned $port)
  t0=$(date +%s.%N)
  kill -9 $A; wait $A 2>/dev/null
  for i in $(seq 2400); do
    [ "$(owned $port)" = 8 ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  echo "handover: standby=$standby shards_before=$before kill -9 to all 8 owned: $(echo "$t1 - $t0" | bc) s"
  grep "restored from\|acquired in" $D/b$standby.log | tail -8
  kill $P; wait $P 2>/dev/null
  # the next run starts from an empty cluster
  scripts/kafka stop --dir $D/kafka --clean >/dev/null 2>&1
  [ $standby = 0 ] && { B=$(scripts/kafka start --nodes 1 --partitions 8 --dir $D/kafka) || exit 1
                        common=(--brokers "$B" --partitions 8 --pwhash-ops 1 --pwhash-mem 8192); }
done
rm -rf $D
