#!/usr/bin/env bash
# The whole suite three times: the normal build, ASan+UBSan, and TSan. Each
# run prints its own summary; the last line is the total, which CI reads:
#   N passed, N failed
set -u
cd "$(dirname "$0")/.."
total_p=0; total_f=0; bad=()
for san in "" address,undefined thread; do
  label=${san:-plain}
  echo "##### make check ${san:+SANITIZE=$san}"
  log=$(mktemp)
  make -s ${san:+SANITIZE=$san} check 2>&1 | tee "$log"
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
[ ${#bad[@]} -gt 0 ] && echo "failing variants: ${bad[*]}"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ] && [ ${#bad[@]} -eq 0 ]
