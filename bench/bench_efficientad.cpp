// EfficientAD latency on the CPU: the forward pass of the inference, teacher + student +
// autoencoder of EfficientAD-S (PDN small, 384 teacher / 768 student channels, autoencoder widths
// 32 / 64) on one 256 x 256 image, and the map (normalisation, padding, bilinear upsampling), with
// random weights (the cost does not depend on their values).
//   BM_EfficientAd_Forward/1: the three networks only (what the paper's 4.4 ms on an A6000 times);
//   BM_EfficientAd_Predict/1: EfficientAd::infer, the whole inference of one image.
// At batch 1 the time per iteration is the time per image. Each benchmark warms up for a second,
// then runs 5 repetitions (bench_common.hpp: median, spread and the conditions in
// the context); intra-op threads: ADFW_BENCH_THREADS, default 1.
#include "bench_common.hpp"

#include <cstdlib>
#include <string>

#include "adfw/core/threads.hpp"
#include "methods/efficientad/efficientad.hpp"

namespace {

std::unique_ptr<adfw::EfficientAd> make() {
  adfw::bench::load_plugins_once();
  adfw::EfficientAd::Options o;
  adfw::read_options(o, toml::parse("teacher_weights = 'random'\n"), "method");
  auto m = std::make_unique<adfw::EfficientAd>(o);
  m->build(adfw::RunContext{});
  m->set_teacher_statistics({torch::zeros({1, 384, 1, 1}), torch::ones({1, 384, 1, 1})});
  m->teacher()->eval();
  m->student()->eval();
  m->autoencoder()->eval();
  return m;
}

void BM_EfficientAd_Forward(benchmark::State& state) {
  adfw::bench::use_threads();
  auto m = make();
  torch::manual_seed(0);
  const torch::Tensor x = adfw::efficientad_normalize(torch::rand({state.range(0), 3, 256, 256}));
  torch::NoGradGuard ng;
  auto run = [&] {
    const torch::Tensor t = m->teacher()->forward(x);
    const torch::Tensor s = m->student()->forward(x);
    const torch::Tensor a = m->autoencoder()->forward(x);
    benchmark::DoNotOptimize(t.data_ptr<float>());
    benchmark::DoNotOptimize(s.data_ptr<float>());
    benchmark::DoNotOptimize(a.data_ptr<float>());
  };
  for (auto _ : state) run();
}
BENCHMARK(BM_EfficientAd_Forward)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    
    ->Apply(adfw::bench::measured);

void BM_EfficientAd_Predict(benchmark::State& state) {
  adfw::bench::use_threads();
  auto m = make();
  torch::manual_seed(0);
  const torch::Tensor images = torch::rand({state.range(0), 3, 256, 256});
  m->fit_quantiles(std::vector<torch::Tensor>{images});
  for (auto _ : state) benchmark::DoNotOptimize(m->infer(images, 256, 256).scores.data_ptr<float>());
}
BENCHMARK(BM_EfficientAd_Predict)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);

}  // namespace

ADFW_BENCH_MAIN(1)
