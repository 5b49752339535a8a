// Platform-stable random numbers for data generation and augmentation. std::uniform_*_distribution
// differ between standard libraries, so values are drawn from raw 64-bit engine output here.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace adfw::data_detail {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// Seed of stream (`seed`, `name`, `index`).
inline uint64_t mix_seed(uint64_t seed, const std::string& name, uint64_t index = 0) {
  return splitmix64(splitmix64(seed ^ fnv1a(name)) + splitmix64(index + 0x632BE59BD9B4E019ull));
}

/// Uniform double in [0, 1) from one engine draw.
inline double uniform01(std::mt19937_64& g) { return static_cast<double>(g() >> 11) * 0x1.0p-53; }
inline double uniform(std::mt19937_64& g, double lo, double hi) { return lo + (hi - lo) * uniform01(g); }
/// Uniform integer in [lo, hi] (inclusive).
inline int64_t uniform_int(std::mt19937_64& g, int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int64_t>(g() % span);  // bias negligible for the small spans used here
}
inline bool bernoulli(std::mt19937_64& g, double p) { return p > 0 && uniform01(g) < p; }

/// Fisher-Yates with uniform_int, identical on every platform.
template <class T>
void stable_shuffle(std::vector<T>& v, std::mt19937_64& g) {
  for (std::size_t i = v.size(); i > 1; --i) {
    const auto j = static_cast<std::size_t>(uniform_int(g, 0, static_cast<int64_t>(i) - 1));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace adfw::data_detail
