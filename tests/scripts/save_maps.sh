#!/usr/bin/env bash
# eval.save_maps writes the test maps in the layout `adfw eval-maps` reads: scoring the saved file
# gives the run's own metrics, and the metadata names every test image.
set -euo pipefail
. "$(dirname "$0")/common.bash" "$@"
"$adfw" --quiet run experiments/padim.toml --preset presets/smoke --set method.backbone.weights=random \
  --set eval.save_maps=true --output "$work/runs" --run-id maps > /dev/null
dir=$(dirname "$(ls "$work"/runs/*/maps/metrics.json)")
test -s "$dir/maps.safetensors" || { echo "FAILED: no maps.safetensors in $dir"; exit 1; }
"$adfw" eval-maps "$dir/maps.safetensors" > "$work/rescored.json"
value() { sed -n "/^ *\"$1\": [-0-9.e]*,\{0,1\}\$/{s/^ *\"$1\": \([-0-9.e]*\),\{0,1\}\$/\1/p;q;}" "$2"; }
fail=0
for key in image_auroc image_ap pixel_auroc pixel_ap aupro; do
  a=$(value "$key" "$dir/metrics.json"); b=$(value "$key" "$work/rescored.json")
  if [ -z "$a" ] || [ -z "$b" ] || ! awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }'; then
    echo "FAILED: $key: run $a, eval-maps on the saved maps $b"; fail=1
  fi
done
# The run records what it used: CPU seconds and peak memory, both positive (the run took some CPU
# and LibTorch alone is over 50 MB resident).
cpu=$(value cpu_user_seconds "$dir/metrics.json"); rss=$(value peak_rss_mb "$dir/metrics.json")
if [ -z "$cpu" ] || [ -z "$rss" ] || ! awk -v c="$cpu" -v r="$rss" 'BEGIN { exit !(c > 0 && r > 50) }'; then
  echo "FAILED: timing.cpu_user_seconds '$cpu' / timing.peak_rss_mb '$rss' missing or implausible"; fail=1
fi
# The metadata lists the image paths in the order of per_image.csv.
n=$(($(wc -l < "$dir/per_image.csv") - 1))
first=$(sed -n '2p' "$dir/per_image.csv" | cut -d, -f1)
# The safetensors header: an 8-byte little-endian length, then that many bytes of JSON. Read into a
# file first: `grep -q` in a pipe exits at its first match, and under pipefail the writer's SIGPIPE
# would fail the test at random.
hlen=$(od -An -t u8 -N 8 "$dir/maps.safetensors" | tr -d ' ')
head -c $((hlen + 8)) "$dir/maps.safetensors" | tail -c "$hlen" > "$work/header.json"
grep -q "$first" "$work/header.json" || { echo "FAILED: $first not in the metadata"; fail=1; }
grep -q "\"images\": $n" "$work/rescored.json" || { echo "FAILED: eval-maps did not see $n images"; fail=1; }
exit $fail
