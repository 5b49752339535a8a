// Coreset selection and nearest-neighbour scoring throughput (PatchCore's two hot loops), and
// PaDiM's per-position Gaussians: the streamed fit and Mahalanobis scoring.
//   build/bin/bench_memory_bank   (warm-up, repetitions, recorded conditions: bench_common.hpp; the
//   coreset and kNN benchmarks take their thread count from their last argument)
#include "bench_common.hpp"

#include "adfw/core/threads.hpp"
#include "adfw/method/memory_bank.hpp"

namespace {

torch::Tensor features(int64_t n, int64_t d, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randn({n, d}, gen);
}

// 100k patches x 1024 dims at 10%: the reference size (WRN50 layer2+3 features of ~130
// training images at 224 px).
void BM_Coreset(benchmark::State& state) {
  adfw::configure_threads(static_cast<int>(state.range(2)));
  const torch::Tensor x = features(state.range(0), state.range(1), 1);
  adfw::CoresetOptions o;
  o.ratio = 0.1;
  for (auto _ : state) {
    auto idx = adfw::select_coreset(x, o, 7);
    benchmark::DoNotOptimize(idx.data());
  }
  state.counters["selected"] = static_cast<double>(state.range(0)) * 0.1;
}
BENCHMARK(BM_Coreset)->Args({100000, 1024, 2})->Args({100000, 1024, 1})->Unit(benchmark::kSecond)
    ->UseRealTime()->Apply(adfw::bench::measured_long);

// Scoring: query patches per second against a bank of n x 1024 (k = 1), faiss and torch backends.
void BM_Knn(benchmark::State& state, const std::string& backend) {
  adfw::configure_threads(static_cast<int>(state.range(2)));
  adfw::KnnOptions o;
  o.backend = backend;
  adfw::MemoryBank bank(o);
  bank.set(features(state.range(0), 1024, 2));
  const torch::Tensor q = features(state.range(1), 1024, 3);
  for (auto _ : state) {
    auto d = bank.score(q);
    benchmark::DoNotOptimize(d.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * state.range(1));
}
BENCHMARK_CAPTURE(BM_Knn, faiss, std::string("auto"))
    ->Args({16384, 6272, 2})->Args({65536, 6272, 2})->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
BENCHMARK_CAPTURE(BM_Knn, torch, std::string("torch"))
    ->Args({16384, 6272, 2})->Args({65536, 6272, 2})->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);

// PaDiM fit: stream `images` embeddings of d channels on a side x side grid in batches of 16, then
// one Cholesky factor and its inverse per position. magnetic_tile's file: 18 x 18, d = 1536.
void BM_GaussianFit(benchmark::State& state) {
  adfw::bench::use_threads();
  const int64_t side = state.range(0), d = state.range(1), images = 64;
  const torch::Tensor e = features(16 * d * side * side, 1, 4).view({16, d, side, side}).relu();
  for (auto _ : state) {
    adfw::PatchGaussian g;
    for (int64_t b = 0; b < images; b += 16) g.accumulate(e);
    g.finalize();
    benchmark::DoNotOptimize(g.mean().data_ptr<float>());
  }
  state.counters["positions"] = static_cast<double>(side * side);
}
BENCHMARK(BM_GaussianFit)->Args({14, 500})->Args({18, 1536})->Unit(benchmark::kSecond)->UseRealTime()->Apply(adfw::bench::measured_long);

// PaDiM scoring: test images per second through the per-position Mahalanobis distance.
void BM_GaussianScore(benchmark::State& state) {
  adfw::bench::use_threads();
  const int64_t side = state.range(0), d = state.range(1);
  const torch::Tensor e = features(32 * d * side * side, 1, 5).view({32, d, side, side}).relu();
  adfw::PatchGaussian g;
  g.accumulate(e);
  g.finalize();
  const torch::Tensor test = e.slice(0, 0, 16);
  for (auto _ : state) {
    auto dist = g.distance(test);
    benchmark::DoNotOptimize(dist.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_GaussianScore)->Args({14, 500})->Args({18, 1536})->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);

}  // namespace

ADFW_BENCH_MAIN(2)
