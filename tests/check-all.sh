#!/usr/bin/env bash
# The whole suite three times: the normal build, ASan+UBSan, and TSan; then
# the integration programs marked for it once more on a real Apache Kafka
# (make check-kafka, plain build); then each fuzz harness under libFuzzer for
# a bounded time (make fuzz). Each run prints its own summary; the last line
# is the total, which CI reads:
#   N passed, N failed
set -u
cd "$(dirname "$0")/.."
total_p=0; total_f=0; bad=()
for san in "" address,undefined thread kafka; do
  label=${san:-plain}
  target=check
  if [ "$san" = kafka ]; then target=check-kafka; san=; fi
  echo "##### make $target ${san:+SANITIZE=$san}"
  log=$(mktemp)
  make -s ${san:+SANITIZE=$san} $target 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  rm -f "$log"
  if [ -z "$line" ]; then
    echo "##### $label: no summary (build failed?)"; total_f=$((total_f + 1)); bad+=("$label")
    continue
  fi
  p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
  total_p=$((total_p + p)); total_f=$((total_f + f))
  [ "$rc" -ne 0 ] && bad+=("$label")
  echo "##### $label: $line"
done

# Then every libFuzzer harness for FUZZ_SECONDS (default 30) each: make fuzz
# (tests/fuzz/fuzz.mk), one test per harness.
echo "##### make fuzz"
log=$(mktemp)
make -s fuzz 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
rm -f "$log"
if [ -z "$line" ]; then
  echo "##### fuzz: no summary (build failed?)"; total_f=$((total_f + 1)); bad+=(fuzz)
else
  p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
  total_p=$((total_p + p)); total_f=$((total_f + f))
  [ "$rc" -ne 0 ] && bad+=(fuzz)
  echo "##### fuzz: $line"
fi

[ ${#bad[@]} -gt 0 ] && echo "failing variants: ${bad[*]}"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ] && [ ${#bad[@]} -eq 0 ]
