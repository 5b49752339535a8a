// Loader throughput: decode (OpenCV) + resize to 256x256 + normalise + collate, images/s with
// 1 and 2 worker threads. Reads ../shared/datasets/magnetic_tile (JPEG, ~100-630 x 220-400 px)
// when present ($ADFW_SHARED overrides), else the generated demo data set (128 px PNG).
//   build/bin/bench_data   (warm-up, repetitions, recorded conditions: bench_common.hpp)
#include "bench_common.hpp"

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "adfw/core/threads.hpp"
#include "adfw/data/dataset.hpp"
#include "adfw/data/demo.hpp"
#include "adfw/data/loader.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<adfw::SampleInfo> bench_samples() {
  static std::vector<adfw::SampleInfo> samples = [] {
    std::vector<fs::path> candidates;
    if (const char* s = std::getenv("ADFW_SHARED"); s && *s) candidates.push_back(fs::path(s) / "datasets/magnetic_tile");
    candidates.push_back("../shared/datasets/magnetic_tile");
    candidates.push_back("../../shared/datasets/magnetic_tile");
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back(exe.parent_path() / "../../shared/datasets/magnetic_tile");
    std::vector<adfw::SampleInfo> v;
    for (const auto& c : candidates) {
      if (!fs::is_directory(c)) continue;
      adfw::MVTecOptions o;
      o.root = c.string();
      v = adfw::MVTecDataset(o).samples(adfw::Split::train);
      std::cerr << "bench_data: magnetic_tile train split at " << c.string() << "\n";
      break;
    }
    if (v.empty()) {
      adfw::DemoOptions o;
      o.cache_dir = (fs::temp_directory_path() / "adfw-bench-demo").string();
      v = adfw::DemoDataset(o).samples(adfw::Split::train);
      std::cerr << "bench_data: magnetic_tile not found; using the demo data set\n";
    }
    if (v.size() > 256) v.resize(256);
    return v;
  }();
  return samples;
}

void run_epochs(benchmark::State& state, bool cache) {
  adfw::bench::use_threads();
  const auto samples = bench_samples();
  adfw::TransformOptions t;
  t.resize = adfw::ImageSize(256, 256);
  t.normalize = "imagenet";
  adfw::LoaderOptions o;
  o.batch_size = 16;
  o.num_workers = static_cast<int>(state.range(0));
  o.prefetch = 4;
  o.cache = cache;
  adfw::Loader loader(samples, t, o);
  int64_t epoch = 0;
  if (cache) {  // fill the cache outside the timed loop
    loader.start_epoch(epoch++);
    while (loader.next()) {
    }
  }
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    int64_t n = 0;
    while (auto b = loader.next()) n += b->size();
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(samples.size()));
  state.counters["images"] = static_cast<double>(samples.size());
}

void BM_LoaderDecodeResize256(benchmark::State& state) { run_epochs(state, false); }
void BM_LoaderCached256(benchmark::State& state) { run_epochs(state, true); }

}  // namespace

BENCHMARK(BM_LoaderDecodeResize256)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
BENCHMARK(BM_LoaderCached256)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);

ADFW_BENCH_MAIN(1)
