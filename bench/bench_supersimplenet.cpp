// SuperSimpleNet's optimisation step on the CPU at the paper's batch (32) and size (256 x 256), the
// unsupervised recipe of experiments/supersimplenet.toml with random backbone weights (intra-op
// threads: ADFW_BENCH_THREADS, default 2). One iteration = SuperSimpleNet::step_tensors (frozen
// WRN50 layer2 + layer3, upscale and 3 x 3 pooling, adaptor, Perlin-masked feature noise on the
// duplicated batch, both heads) + the recipe's three losses + backward + one AdamW update of the
// adaptor and both heads. Run from the build folder (plugins are loaded from lib/adfw/plugins).
// bench/reference/supersimplenet_step.py times the reference's own model code on the same terms.
#include "bench_common.hpp"

#include <random>

#include "methods/supersimplenet/supersimplenet.hpp"

namespace {

std::unique_ptr<adfw::SuperSimpleNet> make() {
  adfw::bench::load_plugins_once();
  adfw::SuperSimpleNet::Options o;
  const toml::table t = toml::parse(
      "[backbone]\ntype = 'resnet'\narch = 'wide_resnet50_2'\nweights = 'random'\nlayers = ['layer2', 'layer3']\n");
  adfw::read_options(o, t, "method");
  auto m = std::make_unique<adfw::SuperSimpleNet>(o);
  adfw::RunContext ctx;
  m->build(ctx);
  return m;
}

void BM_SuperSimpleNet_TrainStep(benchmark::State& state) {
  adfw::bench::use_threads();
  auto m = make();
  const int64_t n = state.range(0);
  torch::manual_seed(0);
  adfw::Batch b;
  b.images = torch::randn({n, 3, 256, 256});
  b.masks = torch::zeros({n, 1, 256, 256});
  b.labels = torch::zeros({n}, torch::kLong);
  b.has_mask = torch::ones({n}, torch::kBool);
  b.info.resize(static_cast<std::size_t>(n));
  std::vector<torch::Tensor> params;
  for (const char* part : {"adaptor", "segmentation", "classification"}) {
    auto module = m->part(part).module();
    module->train();
    for (const auto& p : module->parameters()) params.push_back(p);
  }
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(2e-4));
  std::mt19937_64 rng(0);
  for (auto _ : state) {
    opt.zero_grad();
    const adfw::LossValues v = m->losses(m->step_tensors(b, rng, torch::kCPU));
    v.total.backward();
    opt.step();
    benchmark::DoNotOptimize(v.total.item<double>());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(n * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SuperSimpleNet_TrainStep)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured_long);

}  // namespace

ADFW_BENCH_MAIN(2)
