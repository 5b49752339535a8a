#!/usr/bin/env bash
# Installs adfw's build and run dependencies from Debian bookworm's packages and configures
# + builds adfw into ./build. Run as root (or with sudo). Safe to run again.
#   --tests   also installs what the test suite needs beyond the build (a one-node Slurm cluster
#             for the Slurm sweep test: slurm-wlm, munge; headless Chromium for the report test:
#             chromium), so nothing is installed while ctest runs.
set -euo pipefail
with_tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) with_tests=1 ;;
    *) echo "setup-debian.sh: unknown option '$arg' (known: --tests)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# libopenblas0-pthread replaces Debian's reference libblas.so.3, which LibTorch's matmuls
# and faiss would otherwise run on (many times slower).
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake ninja-build ccache lld git ca-certificates \
  libtorch-dev libopencv-dev libboost-program-options-dev libboost-filesystem-dev \
  libtomlplusplus-dev nlohmann-json3-dev catch2 libbenchmark-dev libfaiss-dev \
  libopenblas0-pthread > /dev/null
if [ "$with_tests" -eq 1 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge chromium > /dev/null
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
