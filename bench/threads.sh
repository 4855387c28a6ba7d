#!/usr/bin/env bash
# bench/threads.sh - which threads of a process use its CPU, by thread name.
#
# Waits (up to --wait seconds) for a process whose command line matches
# --match (default "kchat serve"), then reads the CPU time of each of its
# threads from /proc every --interval seconds until it exits (or --max
# seconds pass). Threads that end early are counted with their last
# reading. Prints one line per thread name: the CPU seconds of all threads
# of that name, their share of the process's, and how many there were.
#
# Typical use, beside a benchmark (it finds the benchmark's serve):
#   bench/threads.sh > threads.txt & bench/run.sh --brokers kafka; wait
#
# usage: bench/threads.sh [--match PATTERN] [--wait S] [--interval S] [--max S]
set -u
NAME=threads
. "$(dirname "$0")/common.sh"
MATCH="kchat serve" WAIT=120 INTERVAL=0.5 MAX=3600

while [ $# -gt 0 ]; do
    case $1 in
    --match) need "$@"; MATCH=$2; shift 2 ;;
    --wait) need "$@"; WAIT=$2; shift 2 ;;
    --interval) need "$@"; INTERVAL=$2; shift 2 ;;
    --max) need "$@"; MAX=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "$NAME: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
bench_positive "$WAIT" "$MAX"
[[ $INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "$NAME: '$INTERVAL' is not a number" >&2; exit 2; }

pid=
deadline=$((SECONDS + WAIT))
while [ -z "$pid" ] && [ $SECONDS -lt $deadline ]; do
    # not this script (its command line may hold the pattern too)
    for p in $(pgrep -f -- "$MATCH"); do
        grep -qa threads.sh "/proc/$p/cmdline" 2>/dev/null || { pid=$p; break; }
    done
    [ -n "$pid" ] || sleep 0.2
done
[ -n "$pid" ] || { echo "$NAME: no process matching '$MATCH' within $WAIT s" >&2; exit 1; }
tick=$(getconf CLK_TCK)

# last[tid] = "name utime+stime" from the latest reading of that thread
declare -A last
end=$((SECONDS + MAX))
while [ -d "/proc/$pid" ] && [ $SECONDS -lt $end ]; do
    for t in /proc/"$pid"/task/*; do
        read -r stat <"$t/stat" 2>/dev/null || continue
        name=${stat#*(}
        name=${name%)*}
        rest=${stat##*) }
        # fields after the name: state is 1st, utime 12th, stime 13th
        read -r -a f <<<"$rest"
        last[${t##*/}]="${name// /_} $((f[11] + f[12]))"
    done
    sleep "$INTERVAL"
done

echo "# bench/threads.sh: process $pid ('$MATCH'), CPU by thread name"
for tid in "${!last[@]}"; do
    echo "${last[$tid]}"
done | awk -v hz="$tick" '
    { cpu[$1] += $2; n[$1]++; total += $2 }
    END {
        for (k in cpu)
            printf "threads: name=%s cpu_s=%.2f share=%.1f%% threads=%d\n",
                   k, cpu[k] / hz, total ? 100 * cpu[k] / total : 0, n[k]
        printf "threads: total cpu_s=%.2f\n", total / hz
    }' | sort -t= -k3 -g -r
