// TransFusion on the CPU at 256x256 (intra-op threads: ADFW_BENCH_THREADS, default 2), the
// paper's U-Net (base 64, multipliers [1,2,2,2]) with random weights:
//   BM_TransFusion_TrainStep/8: one optimisation step at batch 8 (TransFusion::train_step: forward
//     process, rotation, the network, the six loss terms of the recipe; backward, AdamW update)
//     per iteration;
//   BM_TransFusion_Inference/1: the full 18-step reverse process and the map for one image.
// Run from the build folder (plugins are loaded from lib/adfw/plugins).
#include "bench_common.hpp"

#include "adfw/core/threads.hpp"
#include "methods/transfusion/transfusion.hpp"

namespace {

std::unique_ptr<adfw::TransFusion> make() {
  adfw::bench::load_plugins_once();
  adfw::TransFusion::Options o;
  toml::table t = toml::parse("[synthesizer]\ntype = 'transparency'\ntexture_probability = 0.0\n");
  adfw::read_options(o, t, "method");
  auto m = std::make_unique<adfw::TransFusion>(o);
  adfw::RunContext ctx;
  m->build(ctx);
  return m;
}

void BM_TransFusion_TrainStep(benchmark::State& state) {
  adfw::bench::use_threads();
  auto m = make();
  const int64_t n = state.range(0);
  torch::manual_seed(0);
  adfw::TransFusionTrainInput in;
  in.x0 = torch::rand({n, 3, 256, 256}) * 2 - 1;
  in.source = torch::rand({n, 3, 256, 256}) * 2 - 1;
  in.mask = (torch::rand({n, 1, 256, 256}) > 0.7).to(torch::kFloat32);
  in.hint = in.mask;
  in.t = torch::randint(1, 20, {n}, torch::kLong);
  std::mt19937_64 rng(0);
  torch::optim::AdamW opt(m->module()->parameters(), torch::optim::AdamWOptions(1e-5));
  m->module()->train();
  for (auto _ : state) {
    opt.zero_grad();
    const adfw::LossValues v = m->train_step(in, rng).losses;
    v.total.backward();
    opt.step();
    benchmark::DoNotOptimize(v.total.item<double>());
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(n * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TransFusion_TrainStep)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured_long);

void BM_TransFusion_Inference(benchmark::State& state) {
  adfw::bench::use_threads();
  auto m = make();
  adfw::Batch b;
  b.images = torch::rand({state.range(0), 3, 256, 256});
  adfw::RunContext ctx;
  for (auto _ : state) {
    auto p = m->predict(b, ctx);
    benchmark::DoNotOptimize(p.scores.data_ptr<float>());
  }
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(state.range(0) * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TransFusion_Inference)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured_long);

}  // namespace

ADFW_BENCH_MAIN(2)
