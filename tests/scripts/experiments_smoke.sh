#!/usr/bin/env bash
# Every experiment file in experiments/ (with the swap cells of experiments/ablations/; its sweep
# files, which name a `base`, are left to the sweep tests) runs end to end under the smoke preset
# on the demo data, writes a complete run folder (with the fitted model), and its resolved
# config.toml runs again to the same metrics. With ADFW_SMOKE_RECORD=<file> it also appends each
# experiment's metrics to that file (see below); ADFW_SMOKE_ONLY=<extended regex> runs only the
# files whose path matches it (e.g. to compare two trees on the experiments a change touches).
set -euo pipefail
. "$(dirname "$0")/common.bash" "$@"
shared=${ADFW_SHARED:-$src/../shared}
dtd="$shared/datasets/dtd_subset/images"
status=0
skipped=0
# have <folder> <what>: true when the shared folder is there; otherwise the experiment fails under
# CI=true and is skipped elsewhere (the caller goes on to the next experiment).
have() {
  [ -d "$1" ] && return 0
  if [ "${CI:-}" = true ]; then
    echo "FAILED: $exp needs $2 and $1 is missing"; status=1
  else
    echo "skipped: $exp ($2: $1 not found; set ADFW_SHARED)"; skipped=1
  fi
  return 1
}
while IFS= read -r exp; do
  # One experiment's run folders at a time: the trained methods' checkpoints (weights and optimiser
  # state, twice with the rerun) add up to tens of GB over all files on a small CI disk.
  rm -rf "$work/runs" "$work/rerun"
  extra=()
  # No pretrained weights on a test machine: experiments with a backbone use a seeded random init.
  if "$adfw" config "$exp" --preset presets/smoke | grep -E '^[[:space:]]*\[method\.backbone\]' > /dev/null; then
    extra+=(--set method.backbone.weights=random)
  fi
  # Texture-based synthesizers read the DTD subset of the shared material.
  if "$adfw" config "$exp" --preset presets/smoke | sed -n '/^ *\[method\.synthesizer\]/,/^ *\[/p' | grep -E "^ *folder = ['\"].+['\"]" > /dev/null; then
    have "$dtd" textures || continue
    extra+=(--set "method.synthesizer.folder=$dtd")
  fi
  # DSR needs a pretrained VQ-VAE (a run of dsr_vq_pretrain.toml): an untrained one here.
  if "$adfw" config "$exp" --preset presets/smoke | grep -E "^ *vq_checkpoint = ['\"].+['\"]" > /dev/null; then
    extra+=(--set method.vq_checkpoint=random)
  fi
  # VQ-VAE pretraining and teacher distillation read image folders: eight DTD images stand in for the
  # user's (the whole subset would take minutes of feature statistics).
  if "$adfw" config "$exp" --preset presets/smoke | grep -E "^ *folders = \[ *['\"]" > /dev/null; then
    have "$dtd" "an image folder" || continue
    if [ ! -d "$work/folder" ]; then
      mkdir -p "$work/folder"
      # Through a file: `head` in a pipe would end `find` with SIGPIPE, which pipefail reports.
      find "$dtd" -type f \( -name '*.jpg' -o -name '*.png' \) | sort > "$work/folder.txt"
      while IFS= read -r f; do cp "$f" "$work/folder/"; done < <(sed -n '1,8p' "$work/folder.txt")
    fi
    extra+=(--set "method.folders=[\"$work/folder\"]")
  fi
  # EfficientAD's penalty images (ImageNet in the paper; a folder of the shared material here): the
  # file's ../shared is the project's default; ADFW_SHARED may put it elsewhere.
  penalty=$("$adfw" config "$exp" --preset presets/smoke | sed -n "s/^ *penalty_folder = ['\"]\(.*\)['\"] *$/\1/p")
  if [ -n "$penalty" ]; then
    penalty=${penalty/#..\/shared/$shared}
    have "$penalty" "penalty images" || continue
    extra+=(--set "method.penalty_folder=$penalty")
  fi
  # EfficientAD's networks take 256-px images only (the method says so when they differ).
  if "$adfw" config "$exp" --preset presets/smoke | grep -E "^type = ['\"]efficientad['\"]" > /dev/null; then
    extra+=(--set input.resize=256)
  fi
  # No published EfficientAD teacher on a test machine: a seeded random one.
  if "$adfw" config "$exp" --preset presets/smoke | grep -E "^teacher_weights = ['\"].+['\"]" | grep -v random > /dev/null; then
    extra+=(--set method.teacher_weights=random)
  fi
  echo "== $exp"
  if ! "$adfw" --quiet run "$exp" --preset presets/smoke "${extra[@]}" --output "$work/runs" --run-id smoke \
      > "$work/out.json" 2> "$work/err.txt"; then
    echo "FAILED: $exp"; cat "$work/err.txt"; status=1; continue
  fi
  "$adfw" config "$exp" --preset presets/smoke > "$work/resolved.toml"
  name=$(sed -n "/^name = [\"'].*[\"']\$/{s/^name = [\"']\(.*\)[\"']\$/\1/p;q;}" "$work/resolved.toml")
  dir="$work/runs/$name/smoke"
  for f in config.toml env.json log.txt metrics.json model.safetensors per_image.csv status.json report.html curves.json; do
    test -s "$dir/$f" || { echo "FAILED: $exp: missing $dir/$f"; status=1; }
  done
  grep -q '"state": "done"' "$dir/status.json" || { echo "FAILED: $exp: status"; status=1; }
  grep -q '"image_auroc"' "$dir/metrics.json" || { echo "FAILED: $exp: no image_auroc"; status=1; }
  # The resolved config repeats the run exactly (CPU, same seed).
  "$adfw" --quiet run "$dir/config.toml" --output "$work/rerun" --run-id again > "$work/out2.json" 2>> "$work/err.txt" ||
    { echo "FAILED: rerun of $exp"; cat "$work/err.txt"; status=1; continue; }
  if ! diff <(grep -v run_folder "$work/out.json") <(grep -v run_folder "$work/out2.json") > /dev/null; then
    echo "FAILED: $exp: rerun of the resolved config gave different metrics"; diff "$work/out.json" "$work/out2.json" || true
    status=1
  fi
  # ADFW_SMOKE_RECORD=<file>: one line per experiment with its full-precision metrics, to compare
  # two trees (before and after a restructuring) with `diff`.
  if [ -n "${ADFW_SMOKE_RECORD:-}" ]; then
    printf '%s\t%s\n' "$exp" "$(tr -d '\n' < "$dir/metrics.json" | grep -o '"metrics": *{[^}]*}' | sed -n 1p | tr -s ' ')" \
      >> "$ADFW_SMOKE_RECORD"
  fi
# Every experiment file, the single-run ablations in experiments/ablations included; sweep files
# (a `base` key before any table, run by `adfw sweep`) are left out: their base experiments run
# here. A `base` inside a table (TransFusion's [method.network]) does not make a sweep.
done < <(find experiments -name '*.toml' | sort | grep -E "${ADFW_SMOKE_ONLY:-.}" | while IFS= read -r f; do
  awk '/^[[:space:]]*\[/ { exit } /^[[:space:]]*base[[:space:]]*=/ { sweep = 1; exit } END { exit sweep }' "$f" && echo "$f"
done)
# Every file that could run passed, but some could not run here: report the test as skipped.
if [ "$status" -eq 0 ] && [ "$skipped" -eq 1 ]; then exit 77; fi
exit $status
