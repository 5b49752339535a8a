// DRAEM-style synthetic anomalies per second at 256x256 (perlin_texture with DTD textures and
// magnetic-tile images), 1 and 2 concurrent worker threads as in a data loader, textures
// decoded on every draw (cache 0) or kept decoded (cache 1). Needs the shared data sets:
// ADFW_SHARED=/path/to/shared (default ../shared); skipped otherwise.
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>

#include "bench_common.hpp"

#include "adfw/core/threads.hpp"
#include "adfw/synth/perlin_blend.hpp"
#include "adfw/synth/preview.hpp"

namespace fs = std::filesystem;

namespace {

fs::path shared_root() {
  if (const char* e = std::getenv("ADFW_SHARED"); e && *e) return e;
  return "../shared";
}

struct Fixture {
  std::vector<torch::Tensor> images;
  std::shared_ptr<adfw::Synthesizer> synth[2];
  std::string error;
};

Fixture& fixture() {
  static Fixture f;
  static std::once_flag once;
  std::call_once(once, [] {
    const fs::path tiles = shared_root() / "datasets/magnetic_tile/train/good";
    const fs::path dtd = shared_root() / "datasets/dtd_subset/images";
    if (!fs::exists(tiles) || !fs::exists(dtd)) {
      f.error = "shared data sets not found under " + shared_root().string() + " (set ADFW_SHARED)";
      return;
    }
    const auto files = adfw::list_images(tiles.string());
    for (std::size_t i = 0; i < 16 && i < files.size(); ++i) f.images.push_back(adfw::load_image_tensor(files[i], 256));
    for (int cache = 0; cache < 2; ++cache) {
      adfw::PerlinTextureOptions o;
      o.folder = dtd.string();
      o.cache_textures = cache == 1;
      o.blend.anomaly_probability = 1.0;  // every sample pays for a full synthesis
      f.synth[cache] = std::make_shared<adfw::PerlinTextureSynthesizer>(o);
    }
  });
  return f;
}

void BM_DraemSynth(benchmark::State& state) {
  adfw::bench::use_threads();
  Fixture& f = fixture();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  const auto& synth = *f.synth[state.range(0)];
  std::mt19937_64 rng(1234 + state.thread_index());
  std::size_t i = 0;
  for (auto _ : state) {
    auto r = synth.apply(f.images[i++ % f.images.size()], rng);
    benchmark::DoNotOptimize(r.image.data_ptr());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DraemSynth)->ArgName("cache")->Arg(0)->Arg(1)->Threads(1)->Threads(2)->UseRealTime()->Apply(adfw::bench::measured);

}  // namespace

ADFW_BENCH_MAIN(1)
