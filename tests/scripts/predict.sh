#!/usr/bin/env bash
# adfw predict on a finished run: scoring the run's own test images from model.safetensors gives
# the image scores the run wrote in per_image.csv (the predictor rebuilds the method from
# config.toml and loads the fitted state instead of fitting); maps and overlays are written for
# every image; a broken image is reported and does not stop the others; a run folder without a
# model is refused with a message naming the file.
set -euo pipefail
. "$(dirname "$0")/common.bash" "$@"
fail=0
check_run() {  # experiment, extra args...
  local exp=$1; shift
  "$adfw" --quiet run "$exp" --preset presets/smoke "$@" --output "$work/runs" --run-id p > /dev/null
  local dir
  dir=$(dirname "$(ls "$work"/runs/*/p/metrics.json | head -1)")
  test -s "$dir/model.safetensors" || { echo "FAILED: $exp: no model.safetensors"; fail=1; return; }
  # The run's test images, in per_image.csv order; one unreadable file among them.
  tail -n +2 "$dir/per_image.csv" | cut -d, -f1 > "$work/list.txt"
  mapfile -t imgs < "$work/list.txt"
  printf 'not an image' > "$work/broken.png"
  local rc=0
  "$adfw" --quiet predict "$dir" "${imgs[@]}" "$work/broken.png" --out "$work/pred" --threshold-test \
    --batch 3 > /dev/null 2> "$work/pred.err" || rc=$?
  [ "$rc" -eq 1 ] || { echo "FAILED: $exp: predict with one broken image exited $rc, expected 1"; fail=1; }
  cat "$work/pred.err"
  grep -q "broken.png" "$work/pred.err" || { echo "FAILED: $exp: the broken image is not named"; fail=1; }
  # Scores: predict vs the run, image by image (same float32 computation, other code path).
  awk -F, 'NR == FNR { if (FNR > 1) run[$1] = $4; next }
           FNR > 1 && $5 == "" { n++; d = $3 - run[$1]; if (d < 0) d = -d;
                                 tol = 1e-5 * (run[$1] < 0 ? -run[$1] : run[$1]) + 1e-7;
                                 if (!($1 in run) || d > tol) { print "score differs: " $1 " run " run[$1] " predict " $3; bad = 1 } }
           END { if (n != '"${#imgs[@]}"') { print "predicted " n " of '"${#imgs[@]}"' images"; bad = 1 } exit bad }' \
    "$dir/per_image.csv" "$work/pred/predictions.csv" || { echo "FAILED: $exp: predict scores differ from the run's"; fail=1; }
  local n_png n_tiff n_ovl
  n_png=$(ls "$work/pred/maps/"*.png | wc -l); n_tiff=$(ls "$work/pred/maps/"*.tiff | wc -l)
  n_ovl=$(ls "$work/pred/overlays/"*.png | wc -l)
  if [ "$n_png" -ne "${#imgs[@]}" ] || [ "$n_tiff" -ne "${#imgs[@]}" ] || [ "$n_ovl" -ne "${#imgs[@]}" ]; then
    echo "FAILED: $exp: $n_png PNG maps, $n_tiff TIFF maps, $n_ovl overlays for ${#imgs[@]} images"; fail=1
  fi
  grep -q '"threshold_chosen_on_test_set": true' "$work/pred/predictions.json" ||
    { echo "FAILED: $exp: predictions.json does not flag the test-set threshold"; fail=1; }
  rm -rf "$work/runs" "$work/pred"
}
check_run experiments/patchcore.toml --set method.backbone.weights=random
check_run experiments/demo/draem.toml
# A run folder without a fitted model: a clear error and exit code 1.
mkdir -p "$work/empty_run"
rc=0
"$adfw" --quiet predict "$work/empty_run" "$work/broken.png" --out "$work/x" > /dev/null 2> "$work/err.txt" || rc=$?
[ "$rc" -ne 0 ] || { echo "FAILED: predict on a folder without a model succeeded"; fail=1; }
grep -q "config.toml\|model.safetensors" "$work/err.txt" || { echo "FAILED: the error does not name the missing file"; cat "$work/err.txt"; fail=1; }
exit $fail
