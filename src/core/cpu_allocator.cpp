#include "adfw/core/cpu_allocator.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

namespace adfw {

namespace {

constexpr std::size_t kMinCachedBlock = std::size_t(1) << 20;  // smaller blocks: LibTorch's allocator
constexpr std::size_t kPage = 4096;
// Fresh mappings from this size on ask the kernel for transparent huge pages (madvise mode): one
// fault per 2 MiB instead of per 4 KiB on first touch, and fewer TLB misses while a block is
// streamed through by convolutions.
constexpr std::size_t kHugePageFrom = std::size_t(4) << 20;

/// Large blocks come from a heap of page ranges: a request takes the smallest free range that
/// holds it (best fit) and leaves the rest free; a freed range merges with free neighbours. So a
/// step whose tensors change sizes over time (activations, then their gradients) reuses the same
/// memory instead of needing one cached block per size.
class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(c10::Allocator* fallback) : fallback_(fallback) {}

  // LibTorch 1.x declares allocate() const, 2.3 and later non-const with a copy_data() to define.
  // Both signatures are declared here; the one the base class has is the override.
  c10::DataPtr allocate(std::size_t n) const { return make(n); }
  c10::DataPtr allocate(std::size_t n) { return make(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const {
    if (count > 0) std::memcpy(dest, src, count);
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_block; }

  CpuAllocatorStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void release_all() const {
    Ranges out;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      take_free(std::numeric_limits<std::size_t>::max(), out);
    }
    unmap(out);
  }

  static CachingCpuAllocator* instance;

 private:
  using Ranges = std::vector<std::pair<char*, std::size_t>>;

  c10::DataPtr make(std::size_t n) const {
    if (n < kMinCachedBlock) return fallback_->allocate(n);
    const std::size_t size = (n + kPage - 1) / kPage * kPage;
    Ranges released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = by_size_.lower_bound(size);
      if (it != by_size_.end()) {
        char* p = it->second;
        const std::size_t got = it->first;
        erase_free(it);
        if (got > size) insert_free(p + size, got - size);  // the rest stays free
        live_.emplace(p, size);
        stats_.cached_bytes -= static_cast<int64_t>(size);
        stats_.live_bytes += static_cast<int64_t>(size);
        ++stats_.hits;
        return {p, p, &free_block, c10::Device(c10::DeviceType::CPU)};
      }
      // A miss. Free ranges are given back only as far as needed for live + cached to stay
      // within the largest live total so far (counting this request): the resident memory of
      // large blocks never exceeds what it would be without the cache.
      const int64_t live_after = stats_.live_bytes + static_cast<int64_t>(size);
      const int64_t limit = std::max(stats_.peak_live_bytes, live_after);
      const int64_t excess = live_after + stats_.cached_bytes - limit;
      if (excess > 0) take_free(static_cast<std::size_t>(excess), released);
      ++stats_.misses;
      stats_.mapped_bytes += static_cast<int64_t>(size);
      stats_.live_bytes = live_after;
      stats_.peak_live_bytes = limit;
      stats_.peak_held_bytes = std::max(stats_.peak_held_bytes, stats_.live_bytes + stats_.cached_bytes);
    }
    unmap(released);
    char* p = map(size);
    if (!p) {
      release_all();
      p = map(size);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (!p) {
      stats_.live_bytes -= static_cast<int64_t>(size);
      stats_.mapped_bytes -= static_cast<int64_t>(size);
      --stats_.misses;
    }
    TORCH_CHECK(p != nullptr, "adfw CPU allocator: out of memory, could not map ", size,
                " bytes (set ADFW_CPU_ALLOCATOR=system to compare with LibTorch's allocator)");
    live_.emplace(p, size);
    return {p, p, &free_block, c10::Device(c10::DeviceType::CPU)};
  }

  static void free_block(void* raw) {
    CachingCpuAllocator& self = *instance;
    char* p = static_cast<char*>(raw);
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      auto it = self.live_.find(p);
      if (it != self.live_.end()) {
        const std::size_t size = it->second;
        self.live_.erase(it);
        self.insert_free(p, size);
        self.stats_.live_bytes -= static_cast<int64_t>(size);
        self.stats_.cached_bytes += static_cast<int64_t>(size);
        return;
      }
    }
    // Not one of ours: a small block handed out by the fallback and returned through
    // raw_deallocate (oneDNN's scratch memory takes that path).
    self.fallback_->raw_deleter()(p);
  }

  /// Adds [p, p + size) to the free ranges, merged with a free range ending at p or starting at
  /// p + size. Caller holds the mutex.
  void insert_free(char* p, std::size_t size) const {
    auto next = by_addr_.lower_bound(p);
    if (next != by_addr_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == p) {
        p = prev->first;
        size += prev->second;
        erase_free(prev);
      }
    }
    next = by_addr_.find(p + size);
    if (next != by_addr_.end()) {
      size += next->second;
      erase_free(next);
    }
    by_addr_.emplace(p, size);
    by_size_.emplace(size, p);
  }

  void erase_free(std::map<char*, std::size_t>::iterator it) const {
    auto range = by_size_.equal_range(it->second);
    for (auto s = range.first; s != range.second; ++s)
      if (s->second == it->first) {
        by_size_.erase(s);
        break;
      }
    by_addr_.erase(it);
  }
  void erase_free(std::multimap<std::size_t, char*>::iterator it) const { erase_free(by_addr_.find(it->second)); }

  /// Moves free ranges into `out` until they hold at least `at_least` bytes or none is left: the
  /// smallest range that covers what is still needed, else the largest and go on. Caller holds
  /// the mutex.
  void take_free(std::size_t at_least, Ranges& out) const {
    std::size_t gathered = 0;
    while (gathered < at_least && !by_size_.empty()) {
      auto it = by_size_.lower_bound(at_least - gathered);
      if (it == by_size_.end()) it = std::prev(by_size_.end());
      out.emplace_back(it->second, it->first);
      gathered += it->first;
      stats_.cached_bytes -= static_cast<int64_t>(it->first);
      stats_.released_bytes += static_cast<int64_t>(it->first);
      erase_free(it);
    }
  }

  static char* map(std::size_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
    if (size >= kHugePageFrom) ::madvise(p, size, MADV_HUGEPAGE);  // advisory: failure is harmless
#endif
    return static_cast<char*>(p);
  }

  static void unmap(const Ranges& ranges) {
    for (const auto& [p, size] : ranges) ::munmap(p, size);
  }

  c10::Allocator* fallback_;
  mutable std::mutex mutex_;
  mutable std::map<char*, std::size_t> by_addr_;        // free ranges by start
  mutable std::multimap<std::size_t, char*> by_size_;   // the same ranges by size
  mutable std::unordered_map<char*, std::size_t> live_; // handed-out blocks and their sizes
  mutable CpuAllocatorStats stats_;
};

CachingCpuAllocator* CachingCpuAllocator::instance = nullptr;

bool system_requested() {
  const char* v = std::getenv("ADFW_CPU_ALLOCATOR");
  return v && std::string(v) == "system";
}

}  // namespace

bool install_cpu_allocator() {
  static const bool installed = [] {
    if (system_requested()) return false;
    c10::Allocator* current = c10::GetCPUAllocator();
    if (!current || !current->raw_deleter()) return false;
    // Never destroyed: tensors may still be freed while static objects are torn down.
    CachingCpuAllocator::instance = new CachingCpuAllocator(current);
    c10::SetCPUAllocator(CachingCpuAllocator::instance, /*priority=*/1);
    return c10::GetCPUAllocator() == CachingCpuAllocator::instance;
  }();
  return installed;
}

bool cpu_allocator_installed() {
  return CachingCpuAllocator::instance != nullptr && c10::GetCPUAllocator() == CachingCpuAllocator::instance;
}

std::string cpu_allocator_name() {
  return cpu_allocator_installed() ? "caching (blocks >= 1 MiB)" : "system";
}

CpuAllocatorStats cpu_allocator_stats() {
  return CachingCpuAllocator::instance ? CachingCpuAllocator::instance->stats() : CpuAllocatorStats{};
}

void release_cached_cpu_memory() {
  if (CachingCpuAllocator::instance) CachingCpuAllocator::instance->release_all();
}

}  // namespace adfw
