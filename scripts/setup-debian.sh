#!/usr/bin/env bash
# Installs adfw's build and run dependencies from Debian bookworm's packages and configures
# + builds adfw into ./build. Run as root (or with sudo). Safe to run again.
set -euo pipefail
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
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
