#!/usr/bin/env bash
# report.html in a real browser: the reports of a PatchCore run, a short DRAEM run (training
# curves) and a sweep open in headless Chromium without any console message, every chart reports
# that Chart.js drew it (<body data-charts-drawn> = data-charts-expected > 0), and the pages load
# nothing from outside themselves. Screenshots are kept in <build>/report-screenshots/.
# Without Chromium the test is skipped (exit 77) with a message, except under CI=true, where the
# set-up script installs it and its absence is a failure.
set -euo pipefail
. "$(dirname "$0")/common.bash" "$@"
browser=""
for b in chromium chromium-browser; do
  if command -v "$b" > /dev/null; then browser=$(command -v "$b"); break; fi
done
if [ -z "$browser" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "FAILED: chromium is not installed (scripts/setup-debian.sh --tests installs it)"; exit 1
  fi
  echo "SKIPPED: chromium is not installed (apt-get install chromium); the report's browser test did not run"
  exit 77
fi
shots="$build/report-screenshots"
mkdir -p "$shots"
fail=0
# Chromium wants a writable home for its profile; keep it inside the scratch folder.
export HOME="$work/home"
mkdir -p "$HOME"
browse() {  # page name: loads the page, checks the DOM and the console, takes a screenshot
  local page=$1 name=$2
  timeout 120 "$browser" --headless=new --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
    --user-data-dir="$work/profile" --dump-dom "file://$page" > "$work/$name.dom" 2> "$work/$name.log" || {
    echo "FAILED: $name: chromium exited with an error"; tail -5 "$work/$name.log"; fail=1; return; }
  local body expected drawn
  body=$(grep -o '<body[^>]*>' "$work/$name.dom" | head -1)
  expected=$(sed -n 's/.*data-charts-expected="\([0-9]*\)".*/\1/p' <<< "$body")
  drawn=$(sed -n 's/.*data-charts-drawn="\([0-9]*\)".*/\1/p' <<< "$body")
  if [ -z "$expected" ] || [ "$expected" -lt 1 ] || [ "$drawn" != "$expected" ]; then
    echo "FAILED: $name: $drawn of $expected charts drawn (body: $body)"; fail=1
  else
    echo "$name: $drawn of $expected charts drawn"
  fi
  # Any console message (errors, warnings, logs) from the page: Chromium logs them as CONSOLE lines.
  if grep -E ':CONSOLE[:(]' "$work/$name.log"; then echo "FAILED: $name: the page wrote to the console"; fail=1; fi
  timeout 120 "$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/profile" \
    --screenshot="$shots/$name.png" --window-size=1280,5000 "file://$page" > /dev/null 2>&1 ||
    { echo "FAILED: $name: no screenshot"; fail=1; }
  test -s "$shots/$name.png" || { echo "FAILED: $name: empty screenshot"; fail=1; }
}
self_contained() {  # page name: every image is inlined, no script, stylesheet or frame is fetched
  local page=$1 name=$2
  if grep -oE '<(img|script|iframe)[^>]* src="[^d][^"]*"|<link[^>]*href=' "$page" | head -3 | grep .; then
    echo "FAILED: $name: the page loads files from outside itself"; fail=1
  fi
}

# A PatchCore run (the quickstart at smoke size) and a DRAEM run long enough for training curves.
"$adfw" --quiet run experiments/quickstart.toml --preset presets/smoke --output "$work/runs" --run-id pc > /dev/null
"$adfw" --quiet run experiments/demo/draem.toml --preset presets/smoke --set limits.epochs=12 --set limits.steps=12 \
  --output "$work/runs" --run-id dr > /dev/null
pc=$(dirname "$(ls "$work"/runs/*/pc/metrics.json)")
dr=$(dirname "$(ls "$work"/runs/*/dr/metrics.json)")
for dir in "$pc" "$dr"; do
  for f in report.html curves.json gallery/index.json; do
    test -s "$dir/$f" || { echo "FAILED: the run did not write $dir/$f"; fail=1; }
  done
done
grep -q 'id="train-loss-0"' "$dr/report.html" || { echo "FAILED: the DRAEM report has no training chart"; fail=1; }
grep -q 'src="data:image/png;base64,' "$pc/report.html" || { echo "FAILED: the PatchCore report has no gallery image"; fail=1; }
# `adfw report` rewrites a run's report from its folder alone.
rm "$pc/report.html"
"$adfw" --quiet report "$pc" > /dev/null
test -s "$pc/report.html" || { echo "FAILED: adfw report did not rewrite $pc/report.html"; fail=1; }

# A sweep: two categories x two seeds.
cat > "$work/sweep.toml" << EOF
name = "report-sweep"
base = "$src/experiments/patchcore.toml"
presets = ["presets/smoke"]
seeds = [0, 1]
output = "$work/sweeps"
set = { "method.backbone.weights" = "random", "method.backbone.arch" = "resnet18" }
[grid]
"data.categories" = [["grid"], ["disc"]]
[table]
rows = "data.categories"
metrics = ["image_auroc", "pixel_auroc", "aupro"]
reference = false
EOF
"$adfw" --quiet sweep "$work/sweep.toml" -j 1 > /dev/null
"$adfw" --quiet report "$work/sweep.toml" > /dev/null
sweep_page="$work/sweeps/report-sweep/report.html"
test -s "$sweep_page" || { echo "FAILED: adfw report on the sweep wrote no $sweep_page"; fail=1; }

browse "$pc/report.html" patchcore
browse "$dr/report.html" draem
browse "$sweep_page" sweep
self_contained "$pc/report.html" patchcore
self_contained "$dr/report.html" draem
self_contained "$sweep_page" sweep
# A report of something that is not a run: a clear error naming what is missing, exit code 1 or 2.
mkdir -p "$work/not_a_run"
rc=0
"$adfw" --quiet report "$work/not_a_run" > /dev/null 2> "$work/err.txt" || rc=$?
[ "$rc" -ne 0 ] || { echo "FAILED: adfw report on an empty folder succeeded"; fail=1; }
grep -q "not_a_run" "$work/err.txt" || { echo "FAILED: the error does not name the folder"; cat "$work/err.txt"; fail=1; }
[ "$fail" -eq 0 ] && echo "screenshots: $shots"
exit $fail
