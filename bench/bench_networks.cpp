// Network step times on CPU (intra-op threads: ADFW_BENCH_THREADS, default 2), 256x256 inputs,
// random weights:
//   *_TrainStep: forward + backward of a scalar loss (no optimiser step), train mode;
//   DiffusionUNet_Inference: one denoising call (forward, eval mode, no autograd) per image.
// The batch is the benchmark argument. Warm-up, repetitions, conditions: bench_common.hpp.
// bench/reference/draem_step.py times the DRAEM reference's own sub-networks on the same terms.
#include "bench_common.hpp"

#include "adfw/core/threads.hpp"
#include "adfw/train/networks/diffusion_unet.hpp"
#include "adfw/train/networks/draem_unets.hpp"

namespace {

void train_step(benchmark::State& state, adfw::Network& net, const torch::Tensor& x, const torch::Tensor& c = {}) {
  net.module()->train();
  for (auto _ : state) {
    for (auto& p : net.module()->parameters()) p.mutable_grad() = torch::Tensor();
    const torch::Tensor loss = net.forward(x, c).square().mean();
    loss.backward();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(x.size(0) * state.iterations()), benchmark::Counter::kIsRate);
}

void BM_DraemReconstructive_TrainStep(benchmark::State& state) {
  adfw::bench::use_threads();
  torch::manual_seed(0);
  adfw::DraemReconstructive net({});
  train_step(state, net, torch::rand({state.range(0), 3, 256, 256}));
}

void BM_DraemDiscriminative_TrainStep(benchmark::State& state) {
  adfw::bench::use_threads();
  torch::manual_seed(0);
  adfw::DraemDiscriminative net({});
  train_step(state, net, torch::rand({state.range(0), 6, 256, 256}));
}

void BM_DiffusionUNet_TrainStep(benchmark::State& state) {
  adfw::bench::use_threads();
  torch::manual_seed(0);
  adfw::DiffusionUNet net({});
  const int64_t n = state.range(0);
  train_step(state, net, torch::rand({n, 4, 256, 256}), torch::randint(1, 20, {n}, torch::kLong));
}

void BM_DiffusionUNet_Inference(benchmark::State& state) {
  adfw::bench::use_threads();
  torch::manual_seed(0);
  adfw::DiffusionUNet net({});
  net.module()->eval();
  const int64_t n = state.range(0);
  const torch::Tensor x = torch::rand({n, 4, 256, 256});
  const torch::Tensor t = torch::full({n}, 10, torch::kLong);
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    auto out = net.forward(x, t);
    benchmark::DoNotOptimize(out);
  }
  // Arg 1: the reported time is the time per image.
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(n * state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

// Each training iteration takes tens of seconds on 2 cores: one iteration per run.
BENCHMARK(BM_DraemReconstructive_TrainStep)->Arg(8)->Unit(benchmark::kSecond)->UseRealTime()->Apply(adfw::bench::measured_long);
BENCHMARK(BM_DraemDiscriminative_TrainStep)->Arg(8)->Unit(benchmark::kSecond)->UseRealTime()->Apply(adfw::bench::measured_long);
BENCHMARK(BM_DiffusionUNet_TrainStep)->Arg(8)->Unit(benchmark::kSecond)->UseRealTime()->Apply(adfw::bench::measured_long);
BENCHMARK(BM_DiffusionUNet_Inference)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
ADFW_BENCH_MAIN(2)
