// Pixel metrics on realistic test sets: 256 x 256 maps, about 1.5 % defect pixels in blobs, smooth
// scores with noise, so most scores are distinct. Sizes 1 M, 10 M and 100 M pixels (MVTec AD's largest
// category at 256 x 256 is about 100 M pixels).
//
// Measured (2 threads, Release, on a 2-core machine shared with other builds, load average 6-10, so
// wall times are inflated): all pixel metrics together (AUROC, AP, F1-max, AUPRO@0.3) at 100 M
// pixels 8.7 s (load 6) to 15.7 s (load 10); 10 M 0.9-1.7 s; 1 M 0.06-0.15 s. Each metric alone costs
// about the same (the sort dominates). Peak RSS of the 100 M run: 1.43 GB, of which 0.5 GB are the
// maps and masks themselves (scratch: 8 bytes per defect-free pixel, 8 per defect pixel).
#include <cmath>
#include <map>
#include <random>

#include "bench_common.hpp"

#include "adfw/core/threads.hpp"
#include "adfw/metric/curves.hpp"

namespace {

struct TestSet {
  int64_t n = 0, h = 256, w = 256;
  std::vector<float> maps;
  std::vector<uint8_t> masks;
};

const TestSet& test_set(int64_t pixels) {
  static std::map<int64_t, TestSet> cache;
  auto it = cache.find(pixels);
  if (it != cache.end()) return it->second;
  if (!cache.empty()) cache.clear();  // keep one set alive: 100 M pixels are 500 MB
  TestSet& s = cache[pixels];
  s.n = (pixels + s.h * s.w - 1) / (s.h * s.w);
  const std::size_t hw = static_cast<std::size_t>(s.h * s.w);
  s.maps.resize(s.n * hw);
  s.masks.assign(s.n * hw, 0);
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.f, 0.15f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (int64_t i = 0; i < s.n; ++i) {
    float* m = s.maps.data() + i * hw;
    uint8_t* g = s.masks.data() + i * hw;
    const bool defective = i % 3 != 0;
    const int blobs = defective ? 1 + static_cast<int>(rng() % 3) : 0;
    for (int b = 0; b < blobs; ++b) {
      const float cy = 20 + u(rng) * 216, cx = 20 + u(rng) * 216, r = 5 + u(rng) * 10;
      for (int y = std::max(0, int(cy - r)); y < std::min<int>(s.h, int(cy + r) + 1); ++y)
        for (int x = std::max(0, int(cx - r)); x < std::min<int>(s.w, int(cx + r) + 1); ++x)
          if ((y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r) g[y * s.w + x] = 1;
    }
    for (std::size_t j = 0; j < hw; ++j) m[j] = 0.3f * g[j] + noise(rng) + 0.1f * u(rng);
  }
  return s;
}

void run(benchmark::State& state, adfw::metric::PixelRequest req) {
  adfw::bench::use_threads();
  req.threads = 2;
  const TestSet& s = test_set(state.range(0));
  for (auto _ : state) {
    auto r = adfw::metric::pixel_metrics(s.maps.data(), s.masks.data(), s.n, s.h, s.w, req);
    benchmark::DoNotOptimize(r);
  }
  state.counters["pixels"] = static_cast<double>(s.n * s.h * s.w);
  state.SetItemsProcessed(state.iterations() * s.n * s.h * s.w);
}

void BM_PixelAuroc(benchmark::State& st) { run(st, {true, false, false, {}, 2}); }
void BM_PixelAp(benchmark::State& st) { run(st, {false, true, false, {}, 2}); }
void BM_PixelF1Max(benchmark::State& st) { run(st, {false, false, true, {}, 2}); }
void BM_Aupro(benchmark::State& st) { run(st, {false, false, false, {0.3}, 2}); }
void BM_AllPixelMetrics(benchmark::State& st) { run(st, {true, true, true, {0.3}, 2}); }

#define ADFW_SIZES ->Arg(1'000'000)->Arg(10'000'000)->Arg(100'000'000)->Unit(benchmark::kMillisecond)
BENCHMARK(BM_PixelAuroc) ADFW_SIZES->Apply(adfw::bench::measured_long);
BENCHMARK(BM_PixelAp) ADFW_SIZES->Apply(adfw::bench::measured_long);
BENCHMARK(BM_PixelF1Max) ADFW_SIZES->Apply(adfw::bench::measured_long);
BENCHMARK(BM_Aupro) ADFW_SIZES->Apply(adfw::bench::measured_long);
BENCHMARK(BM_AllPixelMetrics) ADFW_SIZES->Apply(adfw::bench::measured_long);

}  // namespace

ADFW_BENCH_MAIN(2)
