// The caching CPU allocator (adfw/core/cpu_allocator.hpp): a repeated training loop stops mapping
// new blocks after its first passes and computes exactly what it computed on fresh memory; a miss
// gives cached blocks back so that live + cached stays within the largest live total; oneDNN's
// raw allocations and small blocks pass through.
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <ATen/ops/mkldnn_convolution.h>
#include <c10/core/CPUAllocator.h>

#include "adfw/core/cpu_allocator.hpp"
#include "support.hpp"

namespace {

/// The test binary installs the allocator in main(); ADFW_CPU_ALLOCATOR=system turns it off.
bool allocator_or_skip() {
  if (adfw::install_cpu_allocator()) return true;
  WARN("skipped: the caching CPU allocator is off (ADFW_CPU_ALLOCATOR=system)");
  return false;
}

void check_within_peak() {
  const adfw::CpuAllocatorStats s = adfw::cpu_allocator_stats();
  CHECK(s.live_bytes + s.cached_bytes <= s.peak_live_bytes);
  CHECK(s.peak_held_bytes <= s.peak_live_bytes);
}

}  // namespace

TEST_CASE("CPU allocator: a repeated training step stops mapping and gives the same numbers", "[core][allocator]") {
  if (!allocator_or_skip()) return;
  torch::manual_seed(3);
  // Activations of 2 x 16 x 128 x 128 floats are 2 MiB: every one goes through the cache.
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)),
                            torch::nn::BatchNorm2d(16), torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 16, 3).padding(1)),
                            torch::nn::Upsample(torch::nn::UpsampleOptions()
                                                    .scale_factor(std::vector<double>{2, 2})
                                                    .mode(torch::kBilinear)
                                                    .align_corners(true)),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 3, 3).padding(1)));
  net->train();
  const torch::Tensor x = torch::rand({2, 3, 128, 128});
  std::vector<int64_t> misses, hits, mapped;
  std::vector<float> losses;
  std::vector<torch::Tensor> first_grads;
  for (int step = 0; step < 5; ++step) {
    for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
    const adfw::CpuAllocatorStats before = adfw::cpu_allocator_stats();
    const torch::Tensor loss = net->forward(x).square().mean();
    loss.backward();
    const adfw::CpuAllocatorStats after = adfw::cpu_allocator_stats();
    misses.push_back(after.misses - before.misses);
    hits.push_back(after.hits - before.hits);
    mapped.push_back(after.mapped_bytes - before.mapped_bytes);
    losses.push_back(loss.item<float>());
    if (step == 0)
      for (auto& p : net->parameters()) first_grads.push_back(p.grad().clone());
    check_within_peak();
  }
  CAPTURE(misses, hits, mapped);
  CHECK(misses[0] > 0);  // the first step maps its blocks
  // Later steps reuse them. Keeping live + cached within the peak live total costs a few misses
  // where the sizes of one moment do not tile the ranges freed by another.
  for (std::size_t step = 1; step < 5; ++step) {
    CHECK(hits[step] >= 4 * misses[step]);
    CHECK(mapped[step] * 2 <= mapped[0]);
  }
  // Recycled (not zeroed) blocks change nothing: every step computes the first step's loss and
  // gradients bit for bit.
  for (float l : losses) CHECK(l == losses[0]);
  const auto params = net->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) CHECK(torch::equal(params[i].grad(), first_grads[i]));
}

TEST_CASE("CPU allocator: best fit, split and merged ranges, and a miss gives free ranges back", "[core][allocator]") {
  if (!allocator_or_skip()) return;
  constexpr int64_t MiB = int64_t(1) << 20;
  adfw::release_cached_cpu_memory();  // only this test's ranges are free below
  const int64_t a_bytes = 37 * MiB + 3 * 4096;
  char* a_ptr = nullptr;
  {
    torch::Tensor a = torch::empty({a_bytes}, torch::kUInt8);
    a_ptr = static_cast<char*>(a.data_ptr());
  }
  const int64_t misses = adfw::cpu_allocator_stats().misses;
  {
    // Two smaller blocks are cut from the freed range, one after the other.
    torch::Tensor b = torch::empty({20 * MiB}, torch::kUInt8);
    torch::Tensor c = torch::empty({17 * MiB}, torch::kUInt8);
    CHECK(b.data_ptr() == a_ptr);
    CHECK(c.data_ptr() == a_ptr + 20 * MiB);
  }
  {
    // Freed, the two pieces and the rest merge into the whole range again.
    torch::Tensor d = torch::empty({a_bytes}, torch::kUInt8);
    CHECK(d.data_ptr() == a_ptr);
  }
  CHECK(adfw::cpu_allocator_stats().misses == misses);
  check_within_peak();

  // A block larger than anything live so far, freed, then a request 1.25x its size: holding both
  // would exceed the largest live total, so the cached one is released first.
  adfw::CpuAllocatorStats s = adfw::cpu_allocator_stats();
  const int64_t x_bytes = s.peak_live_bytes - s.live_bytes + 64 * MiB;
  { torch::Tensor big = torch::empty({x_bytes}, torch::kUInt8); }
  s = adfw::cpu_allocator_stats();
  CHECK(s.cached_bytes >= x_bytes);
  const int64_t released_before = s.released_bytes;
  { torch::Tensor bigger = torch::empty({x_bytes + x_bytes / 4}, torch::kUInt8); }
  s = adfw::cpu_allocator_stats();
  CHECK(s.released_bytes - released_before >= x_bytes);
  check_within_peak();

  adfw::release_cached_cpu_memory();
  CHECK(adfw::cpu_allocator_stats().cached_bytes == 0);
}

TEST_CASE("CPU allocator: oneDNN tensors, raw allocations and small blocks", "[core][allocator]") {
  if (!allocator_or_skip()) return;
  CHECK(adfw::cpu_allocator_installed());
  CHECK(adfw::cpu_allocator_name().rfind("caching", 0) == 0);
  c10::Allocator* alloc = c10::GetCPUAllocator();
  for (std::size_t n : {std::size_t(100), std::size_t(3) << 20}) {
    void* p = alloc->raw_allocate(n);
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);  // LibTorch's alignment
    std::memset(p, 0x5a, n);
    alloc->raw_deallocate(p);
  }
  if (!at::hasMKLDNN()) return;
  torch::manual_seed(5);
  const torch::Tensor x = torch::rand({2, 32, 64, 64});  // 1 MiB: cached
  const torch::Tensor w = torch::rand({32, 32, 3, 3});
  const torch::Tensor b = torch::rand({32});
  const torch::Tensor ref = at::mkldnn_convolution(x, w, b, {1, 1}, {1, 1}, {1, 1}, 1);
  for (int i = 0; i < 3; ++i) {
    const torch::Tensor y = at::mkldnn_convolution(x.to_mkldnn(), w.to_mkldnn(), b.to_mkldnn(), {1, 1}, {1, 1},
                                                   {1, 1}, 1)
                                .to_dense();
    CHECK(torch::allclose(y, ref, 1e-5, 1e-5));
  }
  check_within_peak();
}
