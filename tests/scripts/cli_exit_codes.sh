#!/usr/bin/env bash
# The exit-code contract: 0 success, 2 usage/config errors, 1 runtime failures; messages on stderr.
set -uo pipefail
src=$1
build=$2
adfw="$build/bin/adfw"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
expect() {  # expect <code> <stderr pattern> <args...>
  local code=$1 pattern=$2; shift 2
  "$adfw" "$@" > "$work/out" 2> "$work/err"
  local rc=$?
  if [ "$rc" -ne "$code" ] || { [ -n "$pattern" ] && ! grep -qF -- "$pattern" "$work/err"; }; then
    echo "FAILED: adfw $* -> rc $rc (expected $code), stderr:"; cat "$work/err"; fail=1
  fi
}
expect 0 "" --version
# The version names the commit the binary was built from: taken at build time, so a commit after
# the last configure is not left out (env.json records the same string).
if head=$(git -C "$src" rev-parse --short=12 HEAD 2> /dev/null); then
  if ! "$adfw" --version | grep -qE "\($head(-dirty)?\)"; then
    echo "FAILED: adfw --version does not name the source tree's commit $head: $("$adfw" --version)"; fail=1
  fi
fi
expect 2 "usage: adfw"
expect 2 "unknown command 'rn'. (did you mean 'run'?)" rn x.toml
expect 2 "cannot open config file $work/none.toml" run "$work/none.toml"
printf '[method]\ntype = "patchcor"\n' > "$work/typo.toml"
expect 2 "$work/typo.toml:2:8: method.type: unknown method 'patchcor'. (did you mean 'patchcore'?)" run "$work/typo.toml"
printf 'seed = "zero"\n[method]\ntype = "patchcore"\n' > "$work/type.toml"
expect 2 "$work/type.toml:1:8: seed: expected integer, got string \"zero\"" config "$work/type.toml"
expect 2 "unknown component family 'methd'. (did you mean 'method'?)" describe methd patchcore
# A value the option's range allows but the part cannot use, caught before any data is read.
expect 2 "method.gaussian.window: value 4 is even; expected odd, >= 1" run "$src/experiments/padim.toml" --preset presets/smoke \
  --set method.backbone.weights=random --set method.gaussian.window=4 --output "$work/runs"
# A runtime failure: the data folder does not exist.
printf '[data]\ntype = "mvtec"\nroot = "%s/nowhere"\n[method]\ntype = "padim"\n[method.backbone]\ntype = "resnet"\narch = "resnet18"\nweights = "random"\n' "$work" > "$work/nodata.toml"
expect 1 "$work/nowhere" run "$work/nodata.toml" --output "$work/runs"
grep -q '"state": "failed"' "$work"/runs/nodata/*/status.json || { echo "FAILED: failed run not recorded in status.json"; fail=1; }
# A copied executable with its own plugin folder (a second installation) still loads each plugin
# once: the plugins beside the libadfw it runs shadow the copies of the same name.
mkdir -p "$work/copy/bin" "$work/copy/lib/adfw/plugins"
cp "$adfw" "$work/copy/bin/" && cp "$build"/lib/adfw/plugins/*.so "$work/copy/lib/adfw/plugins/"
if ! "$work/copy/bin/adfw" list method > "$work/copy.txt" 2>&1 || [ "$(grep -c '^  patchcore ' "$work/copy.txt")" != 1 ]; then
  echo "FAILED: a copied adfw with its own plugin folder:"; cat "$work/copy.txt"; fail=1
fi
exit $fail
