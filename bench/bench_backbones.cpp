// Backbone throughput (images/s) on CPU (intra-op threads: ADFW_BENCH_THREADS, default 2), random
// weights:
// wide_resnet50_2 up to layer3 at 256x256 (the default fused inference, and eager for comparison:
// bench/reference/resnet_forward.py times the same network from Python), DINOv2 ViT-S/14 last
// block at 224 and 448; batch 1 and 8.
// Warm-up, repetitions and the recorded conditions: bench_common.hpp.
#include "bench_common.hpp"

#include "adfw/backbone/dinov2.hpp"
#include "adfw/backbone/resnet.hpp"
#include "adfw/core/threads.hpp"

namespace {

void run(benchmark::State& state, adfw::Backbone& bb, int64_t size) {
  const int64_t batch = state.range(0);
  const torch::Tensor x = torch::randn({batch, 3, size, size});
  for (auto _ : state) {
    auto out = bb.forward(x);
    benchmark::DoNotOptimize(out);
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

void BM_WideResNet50_Layer3_256(benchmark::State& state, const std::string& inference) {
  adfw::bench::use_threads();
  adfw::ResNetOptions o;
  o.arch = "wide_resnet50_2";
  o.weights = "random";
  o.layers = {"layer2", "layer3"};
  o.inference = inference;
  adfw::ResNetBackbone bb(o);
  run(state, bb, 256);
}

void BM_DinoV2_ViTS14(benchmark::State& state, int64_t size) {
  adfw::bench::use_threads();
  adfw::DinoV2Options o;
  o.arch = "dinov2_vits14";
  o.weights = "random";
  adfw::DinoV2Backbone bb(o);
  run(state, bb, size);
}

}  // namespace

BENCHMARK_CAPTURE(BM_WideResNet50_Layer3_256, fused, "fused")->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
BENCHMARK_CAPTURE(BM_WideResNet50_Layer3_256, eager, "eager")->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
BENCHMARK_CAPTURE(BM_DinoV2_ViTS14, 224, 224)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
BENCHMARK_CAPTURE(BM_DinoV2_ViTS14, 448, 448)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->Apply(adfw::bench::measured);
ADFW_BENCH_MAIN(2)
