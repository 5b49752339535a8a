#!/usr/bin/env bash
# Installs adfw into a temporary prefix, builds examples/plugin against it with
# find_package(adfw), and checks the installed CLI loads the plugin (--plugin and
# ADFW_PLUGIN_PATH), lists and describes its component. Then builds examples/predict the same way
# and checks that the C++ predictor, on a run of the installed CLI, gives the run's image scores.
set -euo pipefail
src=$1
build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src/examples/plugin" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
plugin="$work/build/mean_image.so"
test -f "$plugin"
adfw="$work/prefix/bin/adfw"
"$adfw" --plugin "$plugin" list method | tee "$work/list.txt"
grep -q "example_mean_image" "$work/list.txt"
grep -q "mean_image.so" "$work/list.txt"
ADFW_PLUGIN_PATH="$work/build" "$adfw" list method > "$work/methods.txt"
grep -q "example_mean_image" "$work/methods.txt"
"$adfw" --plugin "$plugin" describe method example_mean_image | tee "$work/describe.txt"
grep -q "min_std : float = 0.02" "$work/describe.txt"
# Without the plugin the name is unknown, with a suggestion list (exit code 2).
set +e
"$adfw" describe method example_mean_image 2> "$work/err.txt"
rc=$?
set -e
test "$rc" -eq 2
grep -q "unknown method 'example_mean_image'" "$work/err.txt"
echo "out-of-tree plugin: ok"

# examples/predict: a program linking the installed adfw scores a run's own test images.
cmake -S "$src/examples/predict" -B "$work/build_predict" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure2.log" || { cat "$work/configure2.log"; exit 1; }
cmake --build "$work/build_predict" > "$work/build2.log" || { cat "$work/build2.log"; exit 1; }
export ADFW_CACHE="$work/cache"
(cd "$src" && "$adfw" --quiet run experiments/padim.toml --preset presets/smoke --set method.backbone.weights=random \
  --output "$work/runs" --run-id p > /dev/null)
run=$(dirname "$(ls "$work"/runs/*/p/metrics.json)")
tail -n +2 "$run/per_image.csv" | cut -d, -f1 > "$work/images.txt"
mapfile -t images < "$work/images.txt"
(cd "$src" && "$work/build_predict/score_images" "$run" "${images[@]}") > "$work/scores.csv"
awk -F, 'NR == FNR { if (FNR > 1) run[$1] = $4; next }
         { n++; d = $2 - run[$1]; if (d < 0) d = -d; if (!($1 in run) || d > 1e-5 * (run[$1] < 0 ? -run[$1] : run[$1]) + 1e-6) {
             print "score differs: " $1 " run " run[$1] " example " $2; bad = 1 } }
         END { if (n != '"${#images[@]}"') { print "scored " n " images"; bad = 1 } exit bad }' "$run/per_image.csv" "$work/scores.csv"
test -s "${images[0]}.heat.png"
echo "predictor example: ok"
