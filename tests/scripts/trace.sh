#!/usr/bin/env bash
# `adfw run --trace` writes <run>/trace.json in the Chrome trace format: the main thread's training
# steps and waits for batches, the loader workers' batches and synthesis on their own rows, one
# train_step event per optimiser step; metrics.json's timing.fit_stages counts the same stages.
set -euo pipefail
. "$(dirname "$0")/common.bash" "$@"
"$adfw" --quiet run experiments/demo/draem.toml --preset presets/smoke --set loader_workers=2 --trace \
  --output "$work/runs" --run-id traced > /dev/null
dir=$(dirname "$(ls "$work"/runs/*/traced/metrics.json)")
trace="$dir/trace.json"
fail=0
test -s "$trace" || { echo "FAILED: no trace.json in $dir"; exit 1; }
grep -q '"traceEvents":\[' "$trace" || { echo "FAILED: trace.json has no traceEvents list"; fail=1; }
for row in '"main"' '"loader worker 1"' '"loader worker 2"'; do
  grep -q "\"args\":{\"name\":$row}" "$trace" || { echo "FAILED: no thread row named $row"; fail=1; }
done
for stage in train_step train_wait_for_batch load_batch load_sample_hook predict; do
  grep -q "\"name\":\"$stage\"" "$trace" || { echo "FAILED: no $stage event"; fail=1; }
done
# One train_step event per optimiser step of the run.
steps=$(tr -d '\n ' < "$dir/metrics.json" | grep -o '"steps":[0-9]*' | head -1 | cut -d: -f2)
events=$(grep -o '"name":"train_step"' "$trace" | wc -l)
if [ -z "$steps" ] || [ "$steps" -lt 1 ] || [ "$events" -ne "$steps" ]; then
  echo "FAILED: $events train_step events for $steps steps"; fail=1
fi
# The batches are made on the workers' rows, not on the main thread's.
main_tid=$(grep -o '"args":{"name":"main"},"name":"thread_name","ph":"M","pid":1,"tid":[0-9]*' "$trace" | grep -o '[0-9]*$' || true)
if [ -n "$main_tid" ] && grep -q "\"name\":\"load_batch\",\"ph\":\"X\",\"pid\":1,\"tid\":$main_tid," "$trace"; then
  echo "FAILED: load_batch ran on the main thread"; fail=1
fi
# metrics.json: timing.fit_stages with the same step count.
calls=$(tr -d '\n ' < "$dir/metrics.json" | grep -o '"train_step":{"calls":[0-9]*' | cut -d: -f3)
[ "$calls" = "$steps" ] || { echo "FAILED: timing.fit_stages.train_step.calls '$calls', steps '$steps'"; fail=1; }
# A run without --trace writes none.
"$adfw" --quiet run experiments/demo/draem.toml --preset presets/smoke --output "$work/runs" --run-id plain > /dev/null
[ ! -e "$(dirname "$dir")/plain/trace.json" ] || { echo "FAILED: trace.json written without --trace"; fail=1; }
exit $fail
