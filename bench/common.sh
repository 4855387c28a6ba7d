# bench/common.sh - the start every bench script shares. Sourced right
# after `set -u` with NAME set (the prefix of its messages): the repository
# root becomes the working directory, and it sets ROOT, KCHAT_BIN and
# BENCH_BUILD (from the environment, else bin/kchat and build), LOAD and
# ECHO (the load generator and the echo processor), LOG_LINES, and the
# functions below. Once its options are read, a script checks them with
# bench_numbers/bench_positive and bench_programs, then calls bench_dirs
# and sources bench/lib.sh and bench/harness.sh.

cd "$(dirname "$0")/.." || exit 4
ROOT=$(pwd)
KCHAT_BIN=${KCHAT_BIN:-bin/kchat}
BENCH_BUILD=${BENCH_BUILD:-build}
LOAD=$BENCH_BUILD/bench/load
ECHO=$BENCH_BUILD/bench/echo
LOG_LINES=${LOG_LINES:-30}

# The script's header comment, from its second line to `set -u`.
usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# need OPTION [VALUE...]: exit 2 unless OPTION has a value.
need() { [ $# -ge 2 ] || { echo "$NAME: $1 needs a value" >&2; exit 2; }; }

# bench_numbers V...: exit 2 unless each is a whole number.
bench_numbers() {
    local v
    for v in "$@"; do
        [[ $v =~ ^[0-9]+$ ]] || { echo "$NAME: '$v' is not a number" >&2; exit 2; }
    done
}

# bench_positive V...: exit 2 unless each is a whole number above 0.
bench_positive() {
    local v
    for v in "$@"; do
        [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] ||
            { echo "$NAME: '$v' is not a positive number" >&2; exit 2; }
    done
}

# bench_programs FILE...: exit 4 unless each is executable.
bench_programs() {
    local f
    for f in "$@"; do
        [ -x "$f" ] || { echo "$NAME: no $f (make bench-progs builds it)" >&2; exit 4; }
    done
}

# bench_dirs SUBDIR: the results directory OUT (unless set: bench/results/
# SUBDIR), created, and a fresh scratch directory TMP; exit 4 on failure.
bench_dirs() {
    OUT=${OUT:-bench/results/$1}
    mkdir -p "$OUT" || exit 4
    TMP=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/kchat-$NAME.XXXXXX") || exit 4
}
