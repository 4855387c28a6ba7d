#!/usr/bin/env bash
# bench/restore-rate.sh: how fast `kchat serve` restores its shards from
# kchat-changelog (docs/scaling.md). On a fresh 1-node Kafka
# (scripts/kafka, 8 partitions): kchat serve, bench/load closed loop of N
# requests (default 30000), kill -9, the data directory deleted, kchat serve
# again; prints each shard's restore line (records read, changes applied,
# seconds) and how long the second start took until it served.
# Needs bin/kchat and build/bench/load: `make bench-progs`.
set -u
cd "$(dirname "$0")/.."
D=$(mktemp -d /tmp/rr.XXXXXX)
B=$(scripts/kafka start --nodes 1 --partitions 8 --dir $D/kafka) || exit 1
echo "kafka $B"
bin/kchat serve --brokers $B --data $D/data --partitions 8 --pwhash-ops 1 --pwhash-mem 8192 --bootstrap-file $D/ready > $D/serve1.log 2>&1 &
P=$!
for i in $(seq 300); do [ -s $D/ready ] && break; sleep 0.2; done
build/bench/load --bootstrap $B --requests ${N:-30000} --no-progress 2>&1 | tail -2
kill -9 $P; wait $P 2>/dev/null
du -sh $D/data
rm -rf $D/data
t0=$(date +%s.%N)
bin/kchat serve --brokers $B --data $D/data --partitions 8 --pwhash-ops 1 --pwhash-mem 8192 --bootstrap-file $D/ready2 > $D/serve2.log 2>&1 &
P=$!
for i in $(seq 900); do [ -s $D/ready2 ] && break; sleep 0.2; done
t1=$(date +%s.%N)
grep "restored from" $D/serve2.log
echo "serving again after $(echo "$t1 - $t0" | bc) s"
du -sh $D/data
kill $P; wait $P 2>/dev/null
scripts/kafka stop --dir $D/kafka --clean >/dev/null 2>&1
rm -rf $D
