#include "adfw/core/stages.hpp"

#include <atomic>
#include <mutex>

namespace adfw {
namespace {

std::atomic<bool> g_active{false};
std::mutex g_mutex;
std::map<std::string, StageTotals> g_totals;

}  // namespace

void StageTimes::start() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_totals.clear();
  g_active = true;
}

std::map<std::string, StageTotals> StageTimes::stop() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_active = false;
  std::map<std::string, StageTotals> out;
  out.swap(g_totals);
  return out;
}

bool StageTimes::active() { return g_active.load(std::memory_order_relaxed); }

void StageTimes::add(const std::string& stage, double seconds) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_active) return;
  StageTotals& t = g_totals[stage];
  t.seconds += seconds;
  ++t.calls;
}

}  // namespace adfw
