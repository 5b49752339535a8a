// EfficientAD latency on the CPU: the forward pass of the inference, teacher + student +
// autoencoder of EfficientAD-S (PDN small, 384 teacher / 768 student channels, autoencoder widths
// 32 / 64) on one 256 x 256 image, and the map (normalisation, padding, bilinear upsampling), with
// random weights (the cost does not depend on their values).
//   BM_EfficientAd_Forward/1: the three networks only (what the paper's 4.4 ms on an A6000 times);
//   BM_EfficientAd_Predict/1: EfficientAd::infer, the whole inference of one image.
// At batch 1 the time per iteration is the time per image. Each benchmark warms up (5 untimed
// passes), then runs 5 repetitions of 3 iterations; Google Benchmark reports their mean, median,
// standard deviation and coefficient of variation. The context lists the intra-op thread
// count (ADFW_BENCH_THREADS, default 1) and OMP_WAIT_POLICY; run with OMP_WAIT_POLICY=PASSIVE.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "adfw/core/plugin.hpp"
#include "adfw/core/threads.hpp"
#include "methods/efficientad/efficientad.hpp"

namespace {

int bench_threads() {
  const char* t = std::getenv("ADFW_BENCH_THREADS");
  return t ? std::max(1, std::atoi(t)) : 1;
}

std::unique_ptr<adfw::EfficientAd> make() {
  static bool loaded = [] {
    adfw::load_all_plugins();
    return true;
  }();
  (void)loaded;
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
  adfw::configure_threads(bench_threads());
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
  for (int i = 0; i < 5; ++i) run();
  for (auto _ : state) run();
}
BENCHMARK(BM_EfficientAd_Forward)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3)
    ->Repetitions(5);

void BM_EfficientAd_Predict(benchmark::State& state) {
  adfw::configure_threads(bench_threads());
  auto m = make();
  torch::manual_seed(0);
  const torch::Tensor images = torch::rand({state.range(0), 3, 256, 256});
  m->fit_quantiles(std::vector<torch::Tensor>{images});
  for (int i = 0; i < 5; ++i) benchmark::DoNotOptimize(m->infer(images, 256, 256).scores.data_ptr<float>());
  for (auto _ : state) benchmark::DoNotOptimize(m->infer(images, 256, 256).scores.data_ptr<float>());
}
BENCHMARK(BM_EfficientAd_Predict)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3)->Repetitions(5);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("intra_op_threads", std::to_string(bench_threads()));
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  benchmark::AddCustomContext("OMP_WAIT_POLICY", wait ? wait : "(unset)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
