#include "adfw/core/stages.hpp"

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "adfw/core/io.hpp"

namespace adfw {
namespace {

std::atomic<bool> g_active{false};
std::mutex g_mutex;
std::map<std::string, StageTotals> g_totals;

struct TraceEvent {
  const char* stage;
  int64_t begin_us, duration_us;
  int thread;
};
std::atomic<bool> g_trace_active{false};
std::mutex g_trace_mutex;
std::vector<TraceEvent> g_events;
std::size_t g_dropped = 0;
std::chrono::steady_clock::time_point g_trace_origin;
std::map<std::thread::id, int> g_thread_index;
std::map<int, std::string> g_thread_names;

// Under g_trace_mutex.
int thread_index() {
  const auto id = std::this_thread::get_id();
  auto it = g_thread_index.find(id);
  if (it != g_thread_index.end()) return it->second;
  const int n = static_cast<int>(g_thread_index.size());
  g_thread_index[id] = n;
  g_thread_names[n] = "thread " + std::to_string(n);
  return n;
}

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

void Trace::start() {
  std::lock_guard<std::mutex> lock(g_trace_mutex);
  g_events.clear();
  g_dropped = 0;
  g_thread_index.clear();
  g_thread_names.clear();
  g_trace_origin = std::chrono::steady_clock::now();
  g_thread_names[thread_index()] = "main";
  g_trace_active = true;
}

bool Trace::active() { return g_trace_active.load(std::memory_order_relaxed); }

void Trace::name_thread(const std::string& name) {
  if (!active()) return;
  std::lock_guard<std::mutex> lock(g_trace_mutex);
  g_thread_names[thread_index()] = name;
}

void Trace::add(const char* stage, std::chrono::steady_clock::time_point begin,
                std::chrono::steady_clock::time_point end) {
  std::lock_guard<std::mutex> lock(g_trace_mutex);
  if (!g_trace_active) return;
  if (g_events.size() >= kMaxEvents) {
    ++g_dropped;
    return;
  }
  using us = std::chrono::microseconds;
  g_events.push_back({stage, std::chrono::duration_cast<us>(begin - g_trace_origin).count(),
                      std::chrono::duration_cast<us>(end - begin).count(), thread_index()});
}

void Trace::write(const std::filesystem::path& file) {
  std::vector<TraceEvent> events;
  std::map<int, std::string> names;
  std::size_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(g_trace_mutex);
    g_trace_active = false;
    events.swap(g_events);
    names = g_thread_names;
    dropped = g_dropped;
  }
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [tid, name] : names)
    list.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", tid}, {"args", {{"name", name}}}});
  for (const auto& e : events)
    list.push_back({{"name", e.stage}, {"cat", "adfw"}, {"ph", "X"}, {"pid", 1}, {"tid", e.thread},
                    {"ts", e.begin_us}, {"dur", e.duration_us}});
  nlohmann::json doc = {{"traceEvents", list},
                        {"displayTimeUnit", "ms"},
                        {"otherData", {{"events", events.size()}, {"dropped_events", dropped}}}};
  write_file_atomic(file, doc.dump() + "\n");
}

}  // namespace adfw
