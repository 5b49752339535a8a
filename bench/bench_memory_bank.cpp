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

// Patch-like features: `factors` latent directions mixed into d dims plus small noise, so that a
// few principal components hold ~99.9% of the variance, as in CNN patch features (the WRN50
// layer2+3 bank of magnetic_tile: 16 components hold 99.5%). factors = 0: isotropic noise, where no
// bound prunes.
torch::Tensor patch_like(int64_t n, int64_t d, int64_t factors, uint64_t seed) {
  if (factors == 0) return features(n, d, seed);
  const torch::Tensor mix = features(factors, d, 11);
  return torch::mm(features(n, factors, seed), mix) + 0.05 * features(n, d, seed + 100);
}

// Scoring: query patches per second against a bank of n x 1024 (k = 1). Arguments: bank rows,
// queries, threads, latent factors of the data (0 = isotropic). `arithmetic`: the pruned backend's
// rounding (faiss's, what auto picks with faiss, or direct sums of squares).
void BM_Knn(benchmark::State& state, const std::string& backend, const std::string& arithmetic = "auto") {
  adfw::configure_threads(static_cast<int>(state.range(2)));
  adfw::KnnOptions o;
  o.backend = backend;
  o.arithmetic = arithmetic;
  adfw::MemoryBank bank(o);
  bank.set(patch_like(state.range(0), 1024, state.range(3), 2));
  const torch::Tensor q = patch_like(state.range(1), 1024, state.range(3), 3);
  for (auto _ : state) {
    auto d = bank.score(q);
    benchmark::DoNotOptimize(d.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * state.range(1));
  const adfw::KnnPruningStats st = bank.pruning();
  if (st.dims > 0) {
    state.SetLabel("arithmetic " + st.arithmetic);
    const double all = double(st.queries + st.fallback_queries);
    state.counters["rows_measured_per_query"] = double(st.exact) / all;
    state.counters["searched_in_full"] = double(st.fallback_queries) / all;
  }
}
#if ADFW_HAVE_FAISS
BENCHMARK_CAPTURE(BM_Knn, faiss, std::string("faiss"))
    ->Args({16384, 6272, 2, 0})->Args({65536, 6272, 2, 0})->Args({65536, 6272, 2, 12})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
#endif
BENCHMARK_CAPTURE(BM_Knn, torch, std::string("torch"))
    ->Args({16384, 6272, 2, 0})->Args({65536, 6272, 2, 0})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
BENCHMARK_CAPTURE(BM_Knn, pruned, std::string("pruned"))
    ->Args({65536, 6272, 2, 12})->Args({65536, 6272, 1, 12})->Args({65536, 6272, 2, 0})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
BENCHMARK_CAPTURE(BM_Knn, pruned_direct, std::string("pruned"), std::string("direct"))
    ->Args({65536, 6272, 2, 12})->Args({65536, 6272, 2, 0})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);

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
