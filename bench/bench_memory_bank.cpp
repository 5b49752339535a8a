// Coreset selection and nearest-neighbour scoring throughput (PatchCore's two hot loops).
//   OMP_WAIT_POLICY=PASSIVE build/bin/bench_memory_bank
#include <benchmark/benchmark.h>

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
BENCHMARK(BM_Coreset)->Args({100000, 1024, 2})->Args({100000, 1024, 1})->Unit(benchmark::kSecond)->Iterations(1)
    ->UseRealTime();

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
    ->Args({16384, 6272, 2})->Args({65536, 6272, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Knn, torch, std::string("torch"))
    ->Args({16384, 6272, 2})->Args({65536, 6272, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
