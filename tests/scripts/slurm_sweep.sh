#!/usr/bin/env bash
# A real Slurm cluster of one node on localhost (Debian's slurm-wlm + munge, no cgroups): submits
# a four-run sweep on the demo data under the smoke preset with `adfw sweep --backend slurm`, waits
# for it through `adfw sweep status`, checks the run folders and the table, and stops the daemons.
# Needs root (starts daemons) and the packages `scripts/setup-debian.sh --tests` installs: without
# them it prints "skipped: ..." and exits 77 (ctest's SKIP_RETURN_CODE), except under CI=true where
# it must run. It never installs anything itself.
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
adfw="$build/bin/adfw"

if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "slurm_sweep: CI=true but not root: cannot install slurm-wlm or start its daemons" >&2
    exit 1
  fi
  echo "skipped: slurm_sweep needs root to start munged/slurmctld/slurmd"
  exit 77
fi
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null || ! command -v munged > /dev/null ||
   ! command -v sbatch > /dev/null; then
  if [ "${CI:-}" = "true" ]; then
    echo "slurm_sweep: CI=true but slurm-wlm/munge are not installed (scripts/setup-debian.sh --tests)" >&2
    exit 1
  fi
  echo "skipped: slurm_sweep needs slurm-wlm and munge: run scripts/setup-debian.sh --tests"
  exit 77
fi

work=$(mktemp -d /tmp/adfw_slurm.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$p" 2> /dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    for f in slurmctld.log slurmd.log munged.log; do
      [ -f "$work/$f" ] && { echo "--- $f (end)"; tail -20 "$work/$f"; }
    done
    for f in "$work"/sweeps/slurm-smoke/slurm/logs/*.out; do
      [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# Ports and the munge socket are private to this test, so a system Slurm or munge is left alone.
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 20000 ))
    (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
  done
}
ctld_port=$(free_port)
slurmd_port=$(free_port)
host=$(hostname -s)
cpus=$(nproc)

mkdir -p "$work/munge" "$work/state" "$work/spool"
chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.sock" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/munged.log" --seed-file="$work/munge/seed"
for _ in $(seq 50); do [ -S "$work/munge/munge.sock" ] && break; sleep 0.1; done
pids+=("$(cat "$work/munge/munged.pid")")

cat > "$work/slurm.conf" << EOF
ClusterName=adfwtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
# Slurm 24 (Debian 13) starts its cgroup plugin in slurmd even with proctrack/linuxproc and
# task/none, and slurmd then fails where no cgroup file system is mounted (a chroot);
# CgroupPlugin=disabled (Slurm 24.11 has it; 22.05 does not list that value) keeps it out of cgroups.
slurm_major=$(slurmd -V | sed -n 's/^slurm[^ ]* \([0-9]*\)\..*/\1/p')
if [ "${slurm_major:-0}" -ge 24 ]; then
  echo "CgroupPlugin=disabled" > "$work/cgroup.conf"
fi
export SLURM_CONF="$work/slurm.conf"
slurmctld -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$work/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/slurmctld.pid")")
slurmd -f "$SLURM_CONF" -N "$host"
for _ in $(seq 100); do [ -s "$work/slurmd.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/slurmd.pid")")
# The node must be idle before submitting, or the array waits on a down node.
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o '%T' 2> /dev/null || true)
  case "$state" in idle*) break ;; esac
  sleep 0.5
done
echo "slurm node $host: ${state:-unknown}"
case "$state" in idle*) ;; *) echo "slurm node did not become idle" >&2; exit 1 ;; esac

# Two layer sets x two seeds of PaDiM (resnet18, random weights) on the demo data, smoke-sized.
export ADFW_CACHE="$work/cache"
cat > "$work/sweep.toml" << EOF
name = "slurm-smoke"
base = "$src/experiments/padim.toml"
presets = ["$src/configs/presets/smoke.toml"]
output = "$work/sweeps"
seeds = [0, 1]
reproduces = { paper = "Defard et al., ICPR 2021", table = "Table 1", rows = "PaDiM-R18 (smoke-sized)" }
set = { "method.backbone.weights" = "random", "method.backbone.arch" = "resnet18", "method.dims" = 16 }
[grid]
"method.backbone.layers" = [["layer1"], ["layer1", "layer2"]]
[table]
rows = "method.backbone.layers"
metrics = ["image_auroc", "pixel_auroc"]
reference = false
[slurm]
partition = "debug"
time = "00:10:00"
cpus_per_task = 1
EOF

cd "$work"
"$adfw" sweep "$work/sweep.toml" --dry-run
"$adfw" sweep "$work/sweep.toml" --backend slurm | tee "$work/submit.txt"
grep -q "submitted Slurm job [0-9]*: array 0-3 (4 of 4 runs)" "$work/submit.txt"
grep -q "^#SBATCH --array=0-3$" "$work/sweeps/slurm-smoke/slurm/sweep.sbatch"

# Wait (at most 150 s) until no run is pending, queued or running.
deadline=$(( $(date +%s) + 150 ))
while :; do
  summary=$("$adfw" sweep status "$work/sweeps/slurm-smoke" | tail -1)
  left=$(echo "$summary" | grep -cE "running|queued|pending" || true)
  [ "$left" -eq 0 ] && break
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "timed out waiting for the Slurm sweep" >&2
    "$adfw" sweep status "$work/sweeps/slurm-smoke" >&2 || true
    squeue >&2 || true
    exit 1
  fi
  sleep 2
done
"$adfw" sweep status "$work/sweeps/slurm-smoke" | tee "$work/status.txt"
grep -q "4 runs: 4 done" "$work/status.txt"
ls "$work"/sweeps/slurm-smoke/slurm/logs/*.out > /dev/null

# The table: one row per layer set, mean ± std over the two seeds, the reproduces caption.
"$adfw" table "$work/sweep.toml" | tee "$work/table.md"
grep -q "Reproduces Table 1 (rows: PaDiM-R18 (smoke-sized)) of Defard et al., ICPR 2021." "$work/table.md"
grep -q "^| layers | image_auroc | pixel_auroc |" "$work/table.md"
grep -Eq "^\| layer1 \| [0-9]+\.[0-9] ± [0-9]+\.[0-9] \| [0-9]+\.[0-9] ± [0-9]+\.[0-9] \|$" "$work/table.md"
grep -Eq "^\| layer1\+layer2 \| [0-9]+\.[0-9] ± [0-9]+\.[0-9] \|" "$work/table.md"
grep -q "n=2 runs (seeds) per cell" "$work/table.md"
"$adfw" table "$work/sweeps/slurm-smoke" --format csv --raw --out "$work/table.csv"
head -1 "$work/table.csv" | grep -qx "layers,image_auroc,pixel_auroc"
grep -Eq "^layer1,[01]\.[0-9]{3} ± [01]\.[0-9]{3},[01]\.[0-9]{3} ± [01]\.[0-9]{3}$" "$work/table.csv"
grep -Eq "^layer1\+layer2,[01]\.[0-9]{3} ± " "$work/table.csv"
grep -Eq "^Mean," "$work/table.csv"
# Submitting again finds nothing to do.
"$adfw" sweep "$work/sweep.toml" --backend slurm > "$work/resubmit.txt"
grep -q "nothing to submit" "$work/resubmit.txt"
echo "slurm sweep: ok"
