#!/usr/bin/env bash
# Installs adfw into a temporary prefix, builds examples/plugin against it with
# find_package(adfw), and checks the installed CLI loads the plugin (--plugin and
# ADFW_PLUGIN_PATH), lists and describes its component.
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
