#include "adfw/core/threads.hpp"

#include <dlfcn.h>
#include <link.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include <torch/torch.h>

namespace adfw {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

int configure_threads(int n) {
  if (n <= 0) n = available_cores();
  torch::set_num_threads(n);
  // OpenBLAS has its own pool; keep it at the same size (looked up at run time so the
  // build does not depend on which BLAS is installed).
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
  return n;
}

namespace {
int collect_blas(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  if (info->dlpi_name && *info->dlpi_name) {
    const std::string name = info->dlpi_name;
    if (name.find("blas") != std::string::npos || name.find("mkl") != std::string::npos) out->push_back(name);
  }
  return 0;
}
}  // namespace

std::string blas_library() {
  std::vector<std::string> libs;
  dl_iterate_phdr(collect_blas, &libs);
  if (libs.empty()) return "none loaded";
  std::string out;
  for (const auto& l : libs) {
    std::error_code ec;
    const std::string real = std::filesystem::canonical(l, ec).string();
    const std::string shown = ec ? l : real;
    std::string kind = "other";
    if (shown.find("openblas") != std::string::npos) kind = "openblas";
    else if (shown.find("mkl") != std::string::npos) kind = "mkl";
    else if (shown.find("/blas/") != std::string::npos) kind = "reference BLAS (slow; install libopenblas0-pthread)";
    else if (shown.find("blis") != std::string::npos) kind = "blis";
    else if (shown.find("atlas") != std::string::npos) kind = "atlas";
    if (!out.empty()) out += "; ";
    out += kind + " (" + shown + ")";
  }
  return out;
}

void ensure_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("ADFW_NO_REEXEC")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  setenv("ADFW_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  // execv only returns on failure; carry on with the active policy.
}

}  // namespace adfw
