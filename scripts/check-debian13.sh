#!/usr/bin/env bash
# Builds adfw on Debian 13 (trixie: GCC 14, CMake 3.31, LibTorch 2.6, Catch2 v3, OpenCV 4.10,
# Boost 1.83, TOML++ 3.4, faiss 1.11) inside a Debian 13 root made with mmdebstrap and kept in a
# cache folder, runs the ctest suite there with ../shared bound in, and runs the quickstart.
# The host (Debian 12) build in build/ is not touched: the Debian 13 build lives inside the root.
#
# Usage: scripts/check-debian13.sh [--subset] [--no-quickstart] [--prepare]
#   --subset         run every test except the long script tests (LONG_TESTS below): what CI runs
#   --no-quickstart  do not run experiments/quickstart.toml after the tests
#   --prepare        only make (or check) the cached root, then stop: CI starts this early, next to
#                    the Debian 12 build
# Environment:
#   ADFW_DEBIAN13_ROOT    the cached root (default /var/cache/adfw/debian13-root). It is made on
#                         first use and whenever the package list below changes; the build folder
#                         and the compiler cache inside it make later runs incremental.
#   ADFW_DEBIAN13_MIRROR  Debian mirror to make the root from (default http://deb.debian.org/debian)
#   ADFW_SHARED           the shared material (default ../shared next to the repository)
#   CI                    passed on to the tests (CI=true: missing shared material fails)
#   JOBS                  build and ctest parallelism (default: nproc)
# Needs root (mmdebstrap --mode=root, mounts in a private mount namespace, chroot), mmdebstrap
# (apt-get install mmdebstrap) and, on first use, the mirror. Exit code: 0 all passed, 1 a step
# failed (its name is printed), 2 usage or set-up error, 3 the root is not made yet and the
# mirror's trixie index cannot be fetched (no network to it: nothing of adfw was checked).
#
# Budget, measured on the 2-core build machine while other jobs kept it busy (load ~7):
#   making the root (609 packages, 2.6 GB unpacked)         348 s; cached afterwards
#   build from scratch (no compiler cache)                  24 min of CPU (user), i.e. ~13 min at -j2
#                                                           on two free cores; the host's ccache is of
#                                                           no use here (other compiler and headers),
#                                                           so none is bound in
#   incremental rebuild (one source, relinks, benchmarks)   118 s
#   ctest --subset (204 tests, -j2)                         497 s; experiments_smoke alone takes
#                                                           20-40 min, as on Debian 12
#   quickstart                                              ~10-30 s
# With the Debian 12 part of CI at 15-25 min, the full suite here (another ~25 min + smoke) would
# take CI far past 40 min. CI therefore runs --subset (everything but experiments_smoke, which
# runs on Debian 12) and makes the root (--prepare) in the background during the Debian 12 build:
# an expected CI total of ~35-45 min, to be checked against the first CI runs.
set -euo pipefail

subset=0
quickstart=1
prepare_only=0
for arg in "$@"; do
  case "$arg" in
    --subset) subset=1 ;;
    --no-quickstart) quickstart=0 ;;
    --prepare) prepare_only=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-debian13.sh: unknown option '$arg' (known: --subset, --no-quickstart, --prepare)" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
root=${ADFW_DEBIAN13_ROOT:-/var/cache/adfw/debian13-root}
mirror=${ADFW_DEBIAN13_MIRROR:-http://deb.debian.org/debian}
shared=${ADFW_SHARED:-$repo/../shared}
jobs=${JOBS:-$(nproc)}
# What --subset leaves out: the script test that takes many minutes (every experiment file, run
# on Debian 12), and the browser test of the report page (its generator uses no LibTorch, the
# root has no Chromium, and Debian 12 runs it).
LONG_TESTS='^script\.(experiments_smoke|report_browser)$'

# The build and test dependencies (scripts/setup-debian.sh's list, same names in trixie).
packages=(g++ cmake ninja-build ccache lld git ca-certificates
  libtorch-dev libopencv-dev libboost-program-options-dev libboost-filesystem-dev
  libtomlplusplus-dev nlohmann-json3-dev catch2 libbenchmark-dev libfaiss-dev
  libopenblas0-pthread slurm-wlm munge)
stamp_name=.adfw-debian13-packages
stamp_text="trixie ${packages[*]}"

fail() { echo "check-debian13.sh: $1" >&2; exit "${2:-1}"; }
now() { date +%s; }
t0=$(now)
phase_start=$t0
phase() {  # phase NAME: ends the previous phase (printing its time) and names the next
  local t; t=$(now)
  [ -n "${phase_name:-}" ] && echo "== ${phase_name}: $((t - phase_start)) s"
  phase_name=$1; phase_start=$t
  [ -n "$phase_name" ] && echo "== ${phase_name} ..."
  return 0
}
trap 'rc=$?; [ $rc -ne 0 ] && [ -n "${phase_name:-}" ] && echo "check-debian13.sh: step \"$phase_name\" failed (exit $rc)" >&2' EXIT

[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap --mode=root, mount, chroot): run it with sudo" 2
for tool in mmdebstrap unshare chroot mount; do
  command -v "$tool" > /dev/null || fail "'$tool' not found (apt-get install mmdebstrap util-linux)" 2
done
[ -d "$shared" ] || fail "shared material not found at $shared (set ADFW_SHARED)" 2
shared=$(cd "$shared" && pwd)

# --- The Debian 13 root -------------------------------------------------------------------------
phase "Debian 13 root ($root)"
if [ -f "$root/$stamp_name" ] && [ "$(cat "$root/$stamp_name")" = "$stamp_text" ]; then
  echo "reusing the cached root"
else
  if [ -e "$root" ]; then
    # Only a folder this script made (it has the stamp) is removed; anything else is left alone.
    [ -f "$root/$stamp_name" ] || fail "$root exists but was not made by this script: remove it or set ADFW_DEBIAN13_ROOT" 2
    echo "the package list changed: making the root again"
    rm -rf --one-file-system "$root"
  fi
  mkdir -p "$(dirname "$root")"
  # Without the mirror there is nothing to build in; say so apart from a failed build (exit 3).
  probe=$(mktemp)
  if ! /usr/lib/apt/apt-helper download-file "$mirror/dists/trixie/InRelease" "$probe" > /dev/null 2>&1; then
    rm -f "$probe"
    fail "cannot fetch $mirror/dists/trixie/InRelease: the Debian 13 root cannot be made here (network? set ADFW_DEBIAN13_MIRROR)" 3
  fi
  rm -f "$probe"
  # Made under a temporary name and renamed when complete, so an interrupted run leaves no
  # half-made root behind that a later run would reuse.
  tmp="$root.partial"
  rm -rf --one-file-system "$tmp"
  include=$(IFS=,; echo "${packages[*]}")
  if ! mmdebstrap --variant=apt --mode=root --include="$include" \
         --aptopt='APT::Install-Recommends "false"' trixie "$tmp" "$mirror"; then
    rm -rf --one-file-system "$tmp"
    fail "mmdebstrap could not make the Debian 13 root from $mirror (network? set ADFW_DEBIAN13_MIRROR)"
  fi
  echo "$stamp_text" > "$tmp/$stamp_name"
  mv "$tmp" "$root"
fi
if [ "$prepare_only" -eq 1 ]; then
  phase ""
  echo "check-debian13.sh: the Debian 13 root is ready ($root)"
  exit 0
fi

# --- Build, test and quickstart inside the root ---------------------------------------------------
# One private mount namespace: the binds vanish with it, whatever way the script ends.
ctest_args=(--output-on-failure -j "$jobs")
[ "$subset" -eq 1 ] && ctest_args+=(-E "$LONG_TESTS")
inner=$(cat << 'EOF'
set -euo pipefail
t() { date +%s; }
step() { echo "== $1 ..."; step_name=$1; step_start=$(t); }
done_step() { echo "== $step_name: $(( $(t) - step_start )) s"; }
trap 'rc=$?; [ $rc -ne 0 ] && echo "check-debian13.sh: step \"${step_name:-?}\" failed inside the root (exit $rc)" >&2' EXIT
ver() { dpkg-query -W -f '${Version}' "$1" 2> /dev/null || echo "?"; }
echo "Debian 13 stack: Debian $(cat /etc/debian_version), GCC $(gcc -dumpfullversion), CMake $(cmake --version | sed -n '1s/.* //p'), LibTorch $(ver libtorch-dev), Catch2 $(ver catch2), OpenCV $(ver libopencv-dev), Boost $(ver libboost-filesystem-dev), TOML++ $(ver libtomlplusplus-dev), nlohmann-json $(ver nlohmann-json3-dev), faiss $(ver libfaiss-dev), Google Benchmark $(ver libbenchmark-dev), OpenBLAS $(ver libopenblas0-pthread)"
export CCACHE_DIR=/adfw/ccache
step "configure"
cmake -S /adfw/src -B /adfw/build -G Ninja -DCMAKE_BUILD_TYPE=Release > /adfw/configure.log ||
  { cat /adfw/configure.log; exit 1; }
grep '^-- adfw:' /adfw/configure.log
done_step
step "build (-j$JOBS)"
cmake --build /adfw/build -j "$JOBS"
done_step
step "ctest"
ctest --test-dir /adfw/build "${CTEST_ARGS[@]}"
done_step
if [ "$QUICKSTART" = 1 ]; then
  step "quickstart"
  rm -rf /adfw/quickstart && mkdir -p /adfw/quickstart && cd /adfw/quickstart
  ADFW_CACHE=/adfw/quickstart/cache /adfw/build/bin/adfw run /adfw/src/experiments/quickstart.toml
  done_step
fi
EOF
)
phase "build and test in the Debian 13 root"
# The build folder inside the root serves one checkout: Ninja trusts file times, and objects built
# from another checkout can be newer than this one's sources (a clone made before that build).
# A build folder made from another checkout starts afresh (the compiler cache keeps that cheap).
source_stamp="$root/adfw/build/.adfw-source"
if [ -d "$root/adfw/build" ] && [ "$(cat "$source_stamp" 2> /dev/null)" != "$repo" ]; then
  echo "check-debian13.sh: the build folder in the root was made from another checkout; starting it afresh"
  rm -rf "$root/adfw/build"
fi
mkdir -p "$root/adfw/build"
echo "$repo" > "$source_stamp"
INNER=$inner JOBS=$jobs QUICKSTART=$quickstart unshare --mount --propagation private bash -c '
  set -euo pipefail
  root=$1 repo=$2 shared=$3; shift 3
  mkdir -p "$root/adfw/src" "$root/adfw/shared"
  # The checkout and the shared material read-only; the build folder stays inside the root.
  mount --bind "$repo" "$root/adfw/src" && mount -o remount,bind,ro "$root/adfw/src"
  mount --bind "$shared" "$root/adfw/shared" && mount -o remount,bind,ro "$root/adfw/shared"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/tmp"
  mount -t tmpfs tmpfs "$root/run"
  exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    CI="${CI:-}" ADFW_SHARED=/adfw/shared JOBS="$JOBS" QUICKSTART="$QUICKSTART" \
    bash -c "CTEST_ARGS=(\"\$@\"); $INNER" _ "$@"
' _ "$root" "$repo" "$shared" "${ctest_args[@]}"
phase ""
echo "check-debian13.sh: passed in $(( $(now) - t0 )) s"
