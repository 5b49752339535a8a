#!/usr/bin/env bash
# A trained run killed with SIGKILL part-way through and resumed with --resume ends with exactly
# the metrics and per-image scores of the same run left uninterrupted (CPU, same seed).
set -euo pipefail
. "$(dirname "$0")/common.bash" "$@"
args=(experiments/draem.toml --preset presets/smoke --output "$work/runs"
      --set method.synthesizer.type=perlin_self
      --set method.reconstructive.base_width=16 --set method.discriminative.base_width=8
      --set limits.epochs=0 --set limits.steps=0
      --set method.trainer.epochs=10 --set method.trainer.batch_size=4
      --set method.trainer.checkpoint_every=1)

"$adfw" --quiet run "${args[@]}" --run-id full > /dev/null

"$adfw" --quiet run "${args[@]}" --run-id killed > "$work/killed.out" 2>&1 &
pid=$!
state="$work/runs/draem/killed/checkpoint/state.json"
for _ in $(seq 1 1200); do
  if [ -f "$state" ] && grep -Eq '"step": ([2-9]|[1-9][0-9])' "$state"; then break; fi
  kill -0 $pid 2> /dev/null || break
  sleep 0.05
done
if ! kill -0 $pid 2> /dev/null; then
  echo "FAILED: the run ended before it could be killed (make it longer)"; cat "$work/killed.out"; exit 1
fi
kill -9 $pid
wait $pid 2> /dev/null || true
grep -q '"state": "done"' "$work/runs/draem/killed/status.json" 2> /dev/null &&
  { echo "FAILED: killed run claims to be done"; exit 1; }
echo "killed at: $(grep '"step"' "$state")"

"$adfw" --quiet run "${args[@]}" --run-id killed --resume > /dev/null
grep -q '"resumed_from_step"' "$work/runs/draem/killed/metrics.json" ||
  { echo "FAILED: the resumed run did not start from the checkpoint"; exit 1; }
cmp "$work/runs/draem/full/per_image.csv" "$work/runs/draem/killed/per_image.csv" ||
  { echo "FAILED: per-image scores differ after resume"; exit 1; }
pick() { grep -E '"(image|pixel)_[a-z0-9_]+"|"aupro' "$1" | grep -v reference; }
diff <(pick "$work/runs/draem/full/metrics.json") <(pick "$work/runs/draem/killed/metrics.json") ||
  { echo "FAILED: metrics differ after resume"; exit 1; }
cmp "$work/runs/draem/full/train_log.csv" "$work/runs/draem/killed/train_log.csv" ||
  { echo "FAILED: train_log.csv differs after resume"; exit 1; }
echo "resume: identical metrics, per-image scores and training log"
