// LibTorch's CPU allocator hands every tensor to malloc, and glibc serves blocks above 32 MiB (its
// largest mmap threshold) with a fresh mmap that is unmapped again on free. A training step at
// 256 px allocates and frees hundreds of such blocks (one 8 x 128 x 256 x 256 activation is
// 256 MiB), so every step pays again for page faults and for the kernel zeroing those pages:
// 16 % of DRAEM's reconstructive step was kernel time in page-fault handling.
//
// install_cpu_allocator() puts a caching allocator in front of LibTorch's default one. Blocks of
// at least 1 MiB are kept after they are freed and handed out again to a later request of the
// same or a slightly smaller size (at most 1/8 larger than asked); smaller blocks go to the
// default allocator unchanged. A request that finds no cached block first releases cached blocks
// (largest first) until at least its own size has been given back, then maps a new one. So the
// memory the process holds, live plus cached, never grows beyond the largest amount it had live
// at once: the peak resident memory is what it was without the cache, and a loop that repeats the
// same allocations (every training step, every batch of a scoring pass) stops faulting after its
// first pass.
//
// ADFW_CPU_ALLOCATOR=system in the environment leaves LibTorch's allocator in place.
#pragma once

#include <cstdint>
#include <string>

namespace adfw {

/// Counters of the caching allocator since it was installed (all zero when it is not).
struct CpuAllocatorStats {
  int64_t hits = 0;            ///< large requests served from a cached block
  int64_t misses = 0;          ///< large requests that mapped a new block
  int64_t mapped_bytes = 0;    ///< bytes mapped by those misses
  int64_t live_bytes = 0;      ///< bytes in large blocks handed out and not yet freed
  int64_t cached_bytes = 0;    ///< bytes in freed large blocks kept for reuse
  int64_t peak_live_bytes = 0; ///< the largest live total seen
  int64_t peak_held_bytes = 0; ///< the largest live + cached seen (never above peak_live_bytes)
  int64_t released_bytes = 0;  ///< bytes of cached blocks given back to the system
};

/// Installs the caching allocator as LibTorch's CPU allocator, once per process; later calls do
/// nothing. Returns false when ADFW_CPU_ALLOCATOR=system asked for LibTorch's own allocator.
/// Tensors allocated before the call keep their own deleter and are freed as before.
bool install_cpu_allocator();

/// Whether the caching allocator serves LibTorch's CPU tensors in this process.
bool cpu_allocator_installed();

/// "caching (blocks >= 1 MiB)" or "system", for run records and benchmark contexts.
std::string cpu_allocator_name();

/// The caching allocator's counters.
CpuAllocatorStats cpu_allocator_stats();

/// Gives every cached (freed) block back to the system, e.g. between two phases of a long-lived
/// process whose allocation sizes change. Live tensors are not affected.
void release_cached_cpu_memory();

}  // namespace adfw
