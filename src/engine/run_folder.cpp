#include "adfw/engine/run_folder.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <random>

#include <opencv2/core/version.hpp>
#include <torch/torch.h>
#include <torch/version.h>

#include "adfw/build_info.hpp"
#include "adfw/git_commit.hpp"
#include "adfw/core/clock.hpp"
#include "adfw/core/cpu_allocator.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/core/threads.hpp"

namespace fs = std::filesystem;

namespace adfw {

const char* to_string(RunState s) {
  switch (s) {
    case RunState::missing: return "missing";
    case RunState::running: return "running";
    case RunState::done: return "done";
    case RunState::failed: return "failed";
  }
  return "?";
}

namespace {
std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (auto& c : all)
    if (c == '\0') c = ' ';
  while (!all.empty() && all.back() == ' ') all.pop_back();
  return all;
}
}  // namespace

std::string new_run_id() {
  std::random_device rd;
  char suffix[8];
  std::snprintf(suffix, sizeof(suffix), "%04x", rd() & 0xffff);
  return format_now("%Y%m%d-%H%M%S", false) + "-" + suffix;
}

RunFolder RunFolder::open(const fs::path& root, const std::string& experiment, const std::string& run_id,
                          bool resume) {
  RunFolder r;
  r.id_ = run_id.empty() ? new_run_id() : run_id;
  r.dir_ = root / experiment / r.id_;
  const RunState s = read_run_state(r.dir_);
  if (s != RunState::missing && !resume)
    throw ConfigError("run folder " + r.dir_.string() + " already holds a run (" + to_string(s) +
                      "). Use --resume to continue it or choose another --run-id.");
  std::error_code ec;
  fs::create_directories(r.dir_, ec);
  if (ec) throw Error("cannot create run folder " + r.dir_.string() + ": " + ec.message());
  return r;
}

RunFolder RunFolder::existing(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw ConfigError("not a run folder: " + dir.string());
  RunFolder r;
  r.dir_ = dir;
  r.id_ = dir.filename().string();
  return r;
}

RunState read_run_state(const fs::path& dir) {
  const fs::path f = dir / "status.json";
  if (!fs::exists(f)) return fs::exists(dir / "config.toml") ? RunState::running : RunState::missing;
  try {
    const auto j = nlohmann::json::parse(read_file(f));
    const std::string s = j.value("state", "");
    if (s == "done") return RunState::done;
    if (s == "failed") return RunState::failed;
    return RunState::running;
  } catch (const std::exception&) {
    return RunState::failed;
  }
}

RunState RunFolder::state() const { return read_run_state(dir_); }

void RunFolder::set_state(RunState s, const std::string& error) const {
  nlohmann::json j;
  const fs::path f = file("status.json");
  if (fs::exists(f)) {
    try {
      j = nlohmann::json::parse(read_file(f));
    } catch (const std::exception&) {
      j = nlohmann::json::object();
    }
  }
  j["state"] = to_string(s);
  j["updated"] = utc_now_iso();
  if (s == RunState::running && !j.contains("started")) j["started"] = utc_now_iso();
  if (s == RunState::failed) j["error"] = error;
  else j.erase("error");
  write_json(f, j);
}

nlohmann::json environment_info(const std::string& device, int threads, uint64_t seed) {
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  nlohmann::json j;
  j["adfw_version"] = ADFW_VERSION;
  j["git_commit"] = ADFW_GIT_COMMIT;
  j["libtorch_version"] = TORCH_VERSION;
  j["opencv_version"] = CV_VERSION;
  j["cuda_available"] = torch::cuda::is_available();
  j["device"] = device;
  j["threads"] = threads;
  j["cores"] = available_cores();
  j["blas"] = blas_library();
  j["cpu_allocator"] = cpu_allocator_name();
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  j["omp_wait_policy"] = wait ? wait : "(default: active)";
  j["seed"] = seed;
  j["host"] = host;
  j["command_line"] = command_line();
  j["started"] = utc_now_iso();
  j["faiss"] = ADFW_HAVE_FAISS ? true : false;
  return j;
}

void write_json(const fs::path& path, const nlohmann::json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

nlohmann::json read_json(const fs::path& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path.string() + ": invalid JSON: " + e.what());
  }
}

}  // namespace adfw
