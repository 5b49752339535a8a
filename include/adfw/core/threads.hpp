// Thread policy. Debian's LibTorch starts with one OpenMP thread, and OpenMP and
// OpenBLAS worker pools spin against each other on small machines, so adfw sets both
// explicitly: n intra-op threads for LibTorch/OpenMP and for OpenBLAS.
#pragma once

#include <string>

namespace adfw {

/// Sets LibTorch intra-op threads, OpenMP and OpenBLAS threads to `n` (0 = all cores).
/// Returns the count used.
int configure_threads(int n);

/// Hardware threads of this machine (respecting the CPU affinity mask).
int available_cores();

/// Which BLAS library the process runs on, e.g. "openblas-pthread (/usr/lib/.../libblas.so.3)"
/// or "reference BLAS (slow) (...)". Read from the libraries actually loaded.
std::string blas_library();

/// Re-executes the current process with OMP_WAIT_POLICY=PASSIVE when the user did not set it
/// (OpenMP reads it before main runs). Measured: a ViT forward on 2 cores was 3x faster with
/// passive waiting, because idle OpenMP threads stop spinning on the cores OpenBLAS needs.
void ensure_passive_omp_wait(char** argv);

}  // namespace adfw
