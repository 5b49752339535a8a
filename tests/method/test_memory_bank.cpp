// Coreset selection, nearest-neighbour scoring, patch aggregation and per-position Gaussians
// against brute-force and closed-form references.
#include <array>
#include <cmath>
#include <set>

#include <algorithm>

#include "adfw/method/faiss_rounding.hpp"
#include "adfw/method/features.hpp"
#include "adfw/method/memory_bank.hpp"
#include "support.hpp"

namespace {

torch::Tensor randn(std::vector<int64_t> shape, uint64_t seed, torch::ScalarType t = torch::kFloat64) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randn(shape, gen, torch::TensorOptions().dtype(t));
}

// Greedy k-center with an explicit distance matrix (double loops over rows).
std::vector<int64_t> brute_force_greedy(const torch::Tensor& x, std::vector<double> min_d, int64_t count) {
  const int64_t n = x.size(0), d = x.size(1);
  auto a = x.accessor<double, 2>();
  std::vector<int64_t> out;
  for (int64_t it = 0; it < count; ++it) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (min_d[i] > min_d[best]) best = i;
    out.push_back(best);
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < d; ++k) s += (a[i][k] - a[best][k]) * (a[i][k] - a[best][k]);
      min_d[i] = std::min(min_d[i], std::sqrt(s));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("greedy k-center selects the same points as a brute-force reference", "[method][coreset]") {
  const torch::Tensor x = randn({300, 12}, 7);
  // Start from the mean distance to three anchors, as the approximate greedy sampler does.
  std::vector<double> start(300, 0.0);
  auto a = x.accessor<double, 2>();
  for (int anchor : {5, 77, 201})
    for (int64_t i = 0; i < 300; ++i) {
      double s = 0;
      for (int64_t k = 0; k < 12; ++k) s += (a[i][k] - a[anchor][k]) * (a[i][k] - a[anchor][k]);
      start[i] += std::sqrt(s) / 3.0;
    }
  const auto expected = brute_force_greedy(x, start, 40);
  const auto got = adfw::greedy_k_center(x, torch::tensor(start, torch::kFloat64), 40);
  CHECK(got == expected);
}

TEST_CASE("select_coreset: sizes, uniqueness, determinism and coverage", "[method][coreset]") {
  const torch::Tensor x = randn({2000, 64}, 3, torch::kFloat32);
  adfw::CoresetOptions o;
  o.ratio = 0.05;
  const auto a = adfw::select_coreset(x, o, 11);
  const auto b = adfw::select_coreset(x, o, 11);
  const auto c = adfw::select_coreset(x, o, 12);
  REQUIRE(a.size() == 100);  // int(2000 * 0.05)
  CHECK(a == b);
  CHECK(a != c);
  CHECK(std::set<int64_t>(a.begin(), a.end()).size() == a.size());
  // A greedy k-center coreset covers the set better than a random subset of the same size.
  auto radius = [&](const std::vector<int64_t>& idx) {
    torch::Tensor bank = x.index_select(0, torch::tensor(idx, torch::kInt64));
    return torch::cdist(x, bank).amin(1).amax().item<double>();
  };
  o.kind = "random";
  const auto r = adfw::select_coreset(x, o, 11);
  CHECK(radius(a) < radius(r));
  o.ratio = 1.0;
  CHECK(adfw::select_coreset(x, o, 1).size() == 2000);
  o.ratio = 0.0001;
  CHECK_THROWS_AS(adfw::select_coreset(x, o, 1), adfw::ConfigError);
}

TEST_CASE("memory bank kNN distances equal brute force for every backend and distance", "[method][knn]") {
  const torch::Tensor bank = randn({700, 16}, 21, torch::kFloat32);
  const torch::Tensor q = randn({40, 16}, 22, torch::kFloat32);
  const int64_t k = 3;
  for (const std::string distance : {"squared_l2", "l2", "cosine"}) {
    // Reference in double precision.
    torch::Tensor b64 = bank.to(torch::kFloat64), q64 = q.to(torch::kFloat64);
    torch::Tensor ref;
    if (distance == "cosine") {
      auto bn = b64 / b64.norm(2, 1, true);
      auto qn = q64 / q64.norm(2, 1, true);
      ref = 1.0 - torch::mm(qn, bn.t());
    } else {
      ref = torch::cdist(q64, b64);
      if (distance == "squared_l2") ref = ref.pow(2);
    }
    ref = std::get<0>(ref.topk(k, 1, false, true));
    for (const std::string backend : {"torch", "auto", "pruned"}) {
      for (bool fp16 : {false, true}) {
        if (backend == "pruned" && (fp16 || distance == "cosine")) {
          adfw::KnnOptions o;
          o.distance = distance;
          o.backend = backend;
          o.fp16_bank = fp16;
          CHECK_THROWS_AS(adfw::MemoryBank(o), adfw::ConfigError);
          continue;
        }
        adfw::KnnOptions o;
        o.k = k;
        o.distance = distance;
        o.backend = backend;
        o.fp16_bank = fp16;
        o.chunk = 128;  // several blocks, so the running top-k merge is exercised
        adfw::MemoryBank mb(o);
        mb.set(bank);
        torch::Tensor got = mb.search(q).to(torch::kFloat64);
        const double tol = fp16 ? 2e-2 : 1e-4;
        INFO(distance << " " << backend << " fp16=" << fp16 << " (" << mb.backend_in_use() << ")");
        CHECK(torch::allclose(got, ref, tol, tol));
        CHECK(torch::allclose(mb.score(q).to(torch::kFloat64), ref.mean(1), tol, tol));
      }
    }
  }
  adfw::MemoryBank empty;
  CHECK_THROWS_AS(empty.search(q), adfw::Error);
}

TEST_CASE("pruned kNN is exact, measures few rows on correlated features, and falls back on isotropic ones",
          "[method][knn]") {
  // Correlated features like a CNN's patches: 6 latent factors in 96 dimensions plus small noise.
  const torch::Tensor mix = randn({6, 96}, 31, torch::kFloat32);
  const auto correlated = [&](int64_t n, uint64_t seed) {
    return torch::mm(randn({n, 6}, seed, torch::kFloat32), mix) + 0.05 * randn({n, 96}, seed + 1, torch::kFloat32);
  };
  torch::Tensor bank = correlated(5000, 32);
  torch::Tensor q = correlated(600, 34);
  // Queries that sit exactly on bank rows (distance 0) and far outliers.
  q.slice(0, 0, 10).copy_(bank.slice(0, 100, 110));
  q.slice(0, 10, 20).mul_(25.0);
  const auto brute = [](const torch::Tensor& queries, const torch::Tensor& rows, int64_t k) {
    return std::get<0>(torch::cdist(queries.to(torch::kFloat64), rows.to(torch::kFloat64)).pow(2).topk(k, 1, false, true));
  };
  for (int64_t k : {1, 4}) {
    for (int64_t dims : {0, 8, 24}) {
      adfw::KnnOptions o;
      o.k = k;
      o.prune_dims = dims;
      o.arithmetic = "direct";  // exact sums of squares: the search itself is what is checked here
      adfw::MemoryBank mb(o);  // backend auto: pruned for a bank this size
      mb.set(bank);
      INFO("k " << k << ", prune_dims " << dims << ": " << mb.backend_in_use());
      REQUIRE(mb.pruning().dims == (dims == 0 ? 8 : dims));
      const torch::Tensor ref = brute(q, bank, k);
      const torch::Tensor got = mb.search(q).to(torch::kFloat64);
      CHECK(torch::allclose(got, ref, 1e-4, 1e-4));
      CHECK((got.slice(0, 0, 10).select(1, 0) == 0).all().item<bool>());
      const adfw::KnnPruningStats st = mb.pruning();
      CHECK(st.variance_kept > 0.99);
      CHECK(st.fallback_queries == 0);
      CHECK(st.queries == q.size(0));
      // The bound leaves a small fraction of the 5000 rows to measure.
      CHECK(double(st.exact) / double(st.queries) < 0.05 * 5000);
    }
  }
  // Isotropic noise: no few directions hold the variance, the bound prunes nothing, and the blocks
  // are searched in full, still exactly.
  bank = randn({3000, 64}, 35, torch::kFloat32);
  q = randn({300, 64}, 36, torch::kFloat32);
  adfw::KnnOptions o;
  o.backend = "pruned";
  o.k = 2;
  o.prune_dims = 8;
  o.arithmetic = "direct";
  adfw::MemoryBank mb(o);
  mb.set(bank);
  CHECK(torch::allclose(mb.search(q).to(torch::kFloat64), brute(q, bank, 2), 1e-4, 1e-4));
  CHECK(mb.pruning().fallback_queries == 300);
  CHECK(mb.pruning().dims == 8);
  // After kPruneStopAfter (4) blocks in a row gave up, the rest go to the full search untried: of
  // 1200 more queries (5 blocks), only 2 blocks measure rows before that.
  const int64_t measured_before = mb.pruning().exact;
  const torch::Tensor more = randn({1200, 64}, 37, torch::kFloat32);
  CHECK(torch::allclose(mb.search(more).to(torch::kFloat64), brute(more, bank, 2), 1e-4, 1e-4));
  CHECK(mb.pruning().fallback_queries == 1500);
  CHECK(mb.pruning().exact - measured_before <= 2 * 256 * 3000);
  CHECK(mb.pruning().exact - measured_before > 0);
  // l2 is the square root of the same search.
  o.distance = "l2";
  adfw::MemoryBank l2(o);
  l2.set(bank);
  CHECK(torch::allclose(l2.search(q).to(torch::kFloat64), brute(q, bank, 2).sqrt(), 1e-4, 1e-4));
}

#if ADFW_HAVE_FAISS
namespace {
/// faiss's IndexFlatL2 search and the pruned search with faiss's arithmetic, on one bank.
struct FaissAndPruned {
  static adfw::KnnOptions options(int64_t k, const std::string& backend, int64_t prune_dims) {
    adfw::KnnOptions o;
    o.k = k;
    o.backend = backend;
    o.prune_dims = prune_dims;
    if (backend == "pruned") o.arithmetic = "faiss";
    return o;
  }
  FaissAndPruned(const torch::Tensor& bank, int64_t k, int64_t prune_dims = 0)
      : faiss(options(k, "faiss", 0)), pruned(options(k, "pruned", prune_dims)) {
    faiss.set(bank);
    pruned.set(bank);
  }
  adfw::MemoryBank faiss, pruned;
};
}  // namespace
#endif

TEST_CASE("pruned kNN with faiss's arithmetic returns faiss's distances bit for bit", "[method][knn]") {
#if !ADFW_HAVE_FAISS
  WARN("skipped: adfw was built without faiss");
  return;
#else
  // The cases cover faiss's paths: fewer than 20 queries (pair by pair), one and two query blocks
  // (the second small: computed by the identical sgemm call), a bank with a one-row last block and
  // one with a large last block, dimensions that are and are not multiples of the BLAS's unroll.
  struct Case {
    int64_t d, n;
    std::vector<int64_t> queries;
  };
  const std::vector<Case> cases = {{1024, 2049, {7, 784}}, {64, 5000, {19, 20, 4100}}, {100, 3000, {300}}};
  for (const Case& c : cases) {
    std::string why;
    const auto rounding = adfw::L2Rounding::for_dim(c.d, &why);
    if (!rounding) {
      // A BLAS whose order adfw cannot reproduce: auto then uses direct sums (checked above).
      WARN("skipped: faiss's rounding is not reproducible with this BLAS: " << why);
      return;
    }
    // Correlated, non-negative features like a CNN's after ReLU (the bound prunes well on them).
    const torch::Tensor mix = randn({6, c.d}, 41, torch::kFloat32).abs();
    const auto features = [&](int64_t n, uint64_t seed) {
      return (torch::mm(randn({n, 6}, seed, torch::kFloat32).abs(), mix) +
              0.05 * randn({n, c.d}, seed + 1, torch::kFloat32)).clamp_min(0);
    };
    const torch::Tensor bank = features(c.n, 42);
    for (int64_t k : {1, 3}) {
      FaissAndPruned banks(bank, k);
      const adfw::MemoryBank& reference = banks.faiss;
      const adfw::MemoryBank& pruned = banks.pruned;
      for (int64_t m : c.queries) {
        torch::Tensor q = features(m, 43 + static_cast<uint64_t>(m));
        q.slice(0, 0, std::min<int64_t>(3, m)).copy_(bank.slice(0, 10, 10 + std::min<int64_t>(3, m)));
        INFO("d " << c.d << ", bank " << c.n << ", queries " << m << ", k " << k << ": " << pruned.backend_in_use());
        const torch::Tensor want = reference.search(q);
        const torch::Tensor got = pruned.search(q);
        CHECK(torch::equal(got, want));
        // ... and not by searching in full: the bound pruned.
        CHECK(pruned.pruning().fallback_queries == 0);
        if (m == 784) {
          // The direct arithmetic is what it says: sums of squared differences, which differ from
          // faiss's formula in the last bits somewhere (and are closer to the double-precision value).
          adfw::KnnOptions dop = FaissAndPruned::options(k, "pruned", 0);
          dop.arithmetic = "direct";
          adfw::MemoryBank direct(dop);
          direct.set(bank);
          CHECK(direct.pruning().arithmetic == "direct");
          const torch::Tensor exact = direct.search(q);
          CHECK_FALSE(torch::equal(exact, want));
          const torch::Tensor truth = std::get<0>(
              torch::cdist(q.to(torch::kFloat64), bank.to(torch::kFloat64)).pow(2).topk(k, 1, false, true));
          CHECK((exact.to(torch::kFloat64) - truth).abs().sum().item<double>() <
                (want.to(torch::kFloat64) - truth).abs().sum().item<double>());
        }
      }
      CHECK(pruned.pruning().arithmetic.rfind("faiss (sgemm blocks ", 0) == 0);
      CHECK(double(pruned.pruning().exact) < 0.2 * double(pruned.pruning().queries) * double(c.n));
    }
  }
  // Isotropic features: every block is searched in full (the fallback, then the stop after four
  // blocks in a row), still with faiss's values.
  const torch::Tensor bank = randn({3000, 64}, 45, torch::kFloat32);
  const torch::Tensor q = randn({1500, 64}, 46, torch::kFloat32);
  FaissAndPruned banks(bank, 2, 8);
  CHECK(torch::equal(banks.pruned.search(q), banks.faiss.search(q)));
  CHECK(banks.pruned.pruning().fallback_queries == 1500);
#endif
}

TEST_CASE("patch aggregation without a trace equals the traced (reference-order) computation bit for bit",
          "[method][aggregation]") {
  // The untraced CPU path pools the unfolded maps plane by plane instead of transposing them; it must
  // give the reference's adaptive_avg_pool1d values exactly, for window lengths that are whole,
  // fractional, and shorter than one element per output.
  const torch::Tensor a = randn({2, 5, 6, 7}, 41, torch::kFloat32);
  const torch::Tensor b = randn({2, 7, 3, 4}, 42, torch::kFloat32);
  for (int64_t layer_dim : {5, 10, 16, 45, 100}) {
    for (int p : {1, 3}) {
      adfw::PatchAggregationOptions o;
      o.patch_size = p;
      o.layer_dim = layer_dim;
      o.target_dim = 12;
      adfw::PatchAggregationTrace trace;
      const torch::Tensor traced = adfw::aggregate_patches({{"a", a}, {"b", b}}, {"a", "b"}, o, &trace);
      const torch::Tensor fast = adfw::aggregate_patches({{"a", a}, {"b", b}}, {"a", "b"}, o);
      INFO("layer_dim " << layer_dim << ", patch " << p);
      REQUIRE(fast.sizes() == traced.sizes());
      CHECK(torch::equal(fast, traced));
    }
  }
}

TEST_CASE("patch aggregation: identity settings and a hand-computed neighbourhood", "[method][aggregation]") {
  const torch::Tensor x = randn({2, 4, 5, 6}, 5, torch::kFloat32);
  adfw::PatchAggregationOptions o;
  o.patch_size = 1;
  o.layer_dim = 4;
  o.target_dim = 4;
  torch::Tensor e = adfw::aggregate_patches({{"a", x}}, {"a"}, o);
  REQUIRE(e.sizes() == torch::IntArrayRef({2, 5, 6, 4}));
  CHECK(torch::allclose(e, x.permute({0, 2, 3, 1})));

  // Patch size 3 without pooling: position (0,0) holds the zero-padded 3x3 neighbourhood in (C, p, p) order.
  o.patch_size = 3;
  o.layer_dim = 4 * 9;
  o.target_dim = 4 * 9;
  e = adfw::aggregate_patches({{"a", x}}, {"a"}, o);
  auto acc = x.accessor<float, 4>();
  for (int c = 0; c < 4; ++c)
    for (int di = 0; di < 3; ++di)
      for (int dj = 0; dj < 3; ++dj) {
        const int i = di - 1, j = dj - 1;
        const float expected = (i < 0 || j < 0) ? 0.f : acc[1][c][i][j];
        CHECK(e[1][0][0][c * 9 + di * 3 + dj].item<float>() == Approx(expected));
      }

  // Two layers: the deeper one is upsampled to the first's grid; pooling to 1 value averages everything.
  const torch::Tensor deep = randn({2, 3, 3, 3}, 6, torch::kFloat32);
  o.layer_dim = 1;
  o.target_dim = 1;
  e = adfw::aggregate_patches({{"a", x}, {"b", deep}}, {"a", "b"}, o);
  REQUIRE(e.sizes() == torch::IntArrayRef({2, 5, 6, 1}));
  // Closed form: pooling a layer's patch to one value is the mean of its zero-padded 3x3
  // neighbourhood over all channels, i.e. a 3x3 box filter (padding counted) of the channel mean.
  // The deeper layer's patch grid is brought to the first's by bilinear interpolation
  // (align_corners false), which commutes with that mean; the two layers are then averaged.
  namespace F = torch::nn::functional;
  auto patch_mean = [](const torch::Tensor& t) {
    return torch::avg_pool2d(t.mean(1, true), 3, 1, 1, false, true);
  };
  const torch::Tensor deep_on_grid = F::interpolate(
      patch_mean(deep), F::InterpolateFuncOptions().size(std::vector<int64_t>{5, 6}).mode(torch::kBilinear).align_corners(false));
  const torch::Tensor expected = (0.5 * (patch_mean(x) + deep_on_grid)).permute({0, 2, 3, 1});
  CHECK((e - expected).abs().max().item<double>() < 1e-5);
  // The interpolation is not nearest: position (0,1) of the 5x6 grid mixes two deep cells.
  const torch::Tensor deep_nearest = F::interpolate(
      patch_mean(deep), F::InterpolateFuncOptions().size(std::vector<int64_t>{5, 6}).mode(torch::kNearest));
  CHECK((deep_on_grid - deep_nearest).abs().max().item<double>() > 1e-3);
  CHECK_THROWS_AS(adfw::aggregate_patches({{"a", x}}, {"missing"}, o), adfw::Error);
}

TEST_CASE("per-position Gaussian: mean, covariance and Mahalanobis distance in closed form", "[method][gaussian]") {
  // 2 x 1 positions, d = 2, 30 training embeddings.
  const torch::Tensor train = randn({30, 2, 2, 1}, 9, torch::kFloat32) * 2 + 1;
  adfw::PatchGaussianOptions go;
  go.regularization = 0.01;
  adfw::PatchGaussian g(go);
  g.accumulate(train.slice(0, 0, 13));
  g.accumulate(train.slice(0, 13, 30));
  g.finalize();
  const torch::Tensor test = randn({4, 2, 2, 1}, 10, torch::kFloat32);
  const torch::Tensor got = g.distance(test);
  REQUIRE(got.sizes() == torch::IntArrayRef({4, 2, 1}));
  const torch::Tensor train64 = train.to(torch::kFloat64), test64 = test.to(torch::kFloat64);
  auto tr = train64.accessor<double, 4>();
  auto te = test64.accessor<double, 4>();
  for (int pos = 0; pos < 2; ++pos) {
    double m0 = 0, m1 = 0;
    for (int n = 0; n < 30; ++n) {
      m0 += tr[n][0][pos][0] / 30;
      m1 += tr[n][1][pos][0] / 30;
    }
    double c00 = 0, c01 = 0, c11 = 0;
    for (int n = 0; n < 30; ++n) {
      const double a = tr[n][0][pos][0] - m0;
      const double b = tr[n][1][pos][0] - m1;
      c00 += a * a / 29;
      c01 += a * b / 29;
      c11 += b * b / 29;
    }
    c00 += 0.01;
    c11 += 0.01;
    const double det = c00 * c11 - c01 * c01;
    for (int n = 0; n < 4; ++n) {
      const double a = te[n][0][pos][0] - m0;
      const double b = te[n][1][pos][0] - m1;
      const double md2 = (c11 * a * a - 2 * c01 * a * b + c00 * b * b) / det;
      CHECK(got[n][pos][0].item<double>() == Approx(std::sqrt(md2)).epsilon(1e-4));
    }
  }
  adfw::PatchGaussian one;
  one.accumulate(train.slice(0, 0, 1));
  CHECK_THROWS_AS(one.finalize(), adfw::Error);
}

namespace {
// Mahalanobis distance of `x` (d = 2) under the unbiased Gaussian of `samples` + reg I, in closed form.
double mahalanobis_2d(const std::vector<std::array<double, 2>>& samples, std::array<double, 2> x, double reg) {
  const double n = double(samples.size());
  double m0 = 0, m1 = 0;
  for (const auto& s : samples) m0 += s[0] / n, m1 += s[1] / n;
  double c00 = reg, c01 = 0, c11 = reg;
  for (const auto& s : samples) {
    c00 += (s[0] - m0) * (s[0] - m0) / (n - 1);
    c01 += (s[0] - m0) * (s[1] - m1) / (n - 1);
    c11 += (s[1] - m1) * (s[1] - m1) / (n - 1);
  }
  const double a = x[0] - m0, b = x[1] - m1;
  return std::sqrt((c11 * a * a - 2 * c01 * a * b + c00 * b * b) / (c00 * c11 - c01 * c01));
}
}  // namespace

TEST_CASE("per-position Gaussian pooled over a window of positions, clipped at the border", "[method][gaussian]") {
  // A 3 x 4 grid, d = 2; each position's own offset makes pooling visible in the distances.
  const int64_t h = 3, w = 4, n = 12;
  const torch::Tensor offsets = torch::arange(h * w, torch::kFloat32).view({1, 1, h, w}) * 0.7;
  const torch::Tensor train = (randn({n, 2, h, w}, 21, torch::kFloat32) + offsets).contiguous();
  const torch::Tensor test = (randn({3, 2, h, w}, 22, torch::kFloat32) * 2).contiguous();
  auto tr = train.accessor<float, 4>();
  auto te = test.accessor<float, 4>();
  // float32 sums take the path that overwrites each row's sums with its factors (keeping the rows
  // a later window still needs); float64 sums the one with separate factors.
  for (const std::string sums : {"float64", "float32"})
  for (const int64_t window : {int64_t(1), int64_t(3), int64_t(5), int64_t(9)}) {
    CAPTURE(sums, window);
    adfw::PatchGaussianOptions go;
    go.regularization = 0.05;
    go.window = window;
    go.sums = sums;
    adfw::PatchGaussian g(go);
    g.accumulate(train.slice(0, 0, 5));
    g.accumulate(train.slice(0, 5, n));
    g.finalize();
    const torch::Tensor got = g.distance(test);
    const int64_t r = window / 2;
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        // Window 9 covers the whole 3 x 4 grid from every position: one shared Gaussian.
        std::vector<std::array<double, 2>> samples;
        for (int64_t y = std::max<int64_t>(0, i - r); y <= std::min(h - 1, i + r); ++y)
          for (int64_t x = std::max<int64_t>(0, j - r); x <= std::min(w - 1, j + r); ++x)
            for (int64_t k = 0; k < n; ++k) samples.push_back({tr[k][0][y][x], tr[k][1][y][x]});
        if (window == 9) REQUIRE(samples.size() == std::size_t(n * h * w));
        for (int64_t k = 0; k < 3; ++k) {
          const double want = mahalanobis_2d(samples, {te[k][0][i][j], te[k][1][i][j]}, 0.05);
          CHECK(got[k][i][j].item<double>() == Approx(want).epsilon(sums == "float64" ? 1e-4 : 1e-3));
        }
      }
  }
  // An even window has no centre: refused when the options are read, naming the key, and by the
  // part itself for options built in code.
  adfw::PatchGaussianOptions even;
  CHECK_THROWS_WITH(adfw::read_options(even, toml::parse("window = 4\n"), "method.gaussian"),
                    Catch::Contains("method.gaussian.window") && Catch::Contains("value 4 is even; expected odd, >= 1"));
  even.window = 4;
  CHECK_THROWS_WITH(adfw::PatchGaussian(even), Catch::Contains("window must be odd"));
}

TEST_CASE("per-position Gaussian: float32 sums stay accurate for features far from zero", "[method][gaussian]") {
  // Means of 1000 and a spread of 1: raw float32 sums of squares (about 1e6 per sample) would lose
  // the covariance in rounding; the shifted sums keep it.
  const torch::Tensor train = randn({200, 2, 1, 2}, 31, torch::kFloat32) + 1000.0;
  const torch::Tensor test = randn({5, 2, 1, 2}, 32, torch::kFloat32) * 3 + 1000.0;
  auto tr = train.accessor<float, 4>();
  auto te = test.accessor<float, 4>();
  for (const std::string sums : {"float32", "float64"}) {
    adfw::PatchGaussianOptions go;
    go.sums = sums;
    adfw::PatchGaussian g(go);
    for (int64_t b = 0; b < 200; b += 50) g.accumulate(train.slice(0, b, b + 50));
    g.finalize();
    const torch::Tensor got = g.distance(test);
    for (int64_t j = 0; j < 2; ++j) {
      std::vector<std::array<double, 2>> samples;
      for (int64_t k = 0; k < 200; ++k) samples.push_back({tr[k][0][0][j], tr[k][1][0][j]});
      for (int64_t k = 0; k < 5; ++k)
        CHECK(got[k][0][j].item<double>() ==
              Approx(mahalanobis_2d(samples, {te[k][0][0][j], te[k][1][0][j]}, 0.01)).epsilon(1e-3));
    }
  }
}

TEST_CASE("upsample_on_grid puts every cell on its centre pixel and interpolates linearly", "[method][grid]") {
  // A map whose cells hold their own centre coordinate: bilinear resampling of a linear function is
  // exact, so every pixel between the outer centres reads its own coordinate; beyond them the
  // border cell's value.
  const int64_t h = 6, w = 5, H = 48, W = 40;
  for (const adfw::GridGeometry g : {adfw::GridGeometry{7.0, 7.0, 8.0}, adfw::GridGeometry{0.0, 0.0, 8.0},
                                     adfw::GridGeometry::centred(8)}) {
    const torch::Tensor ys = g.origin_y + g.stride * torch::arange(h, torch::kFloat32);
    const torch::Tensor xs = g.origin_x + g.stride * torch::arange(w, torch::kFloat32);
    const torch::Tensor map = torch::stack({ys.view({h, 1}).expand({h, w}), xs.view({1, w}).expand({h, w})}).unsqueeze(0);
    const torch::Tensor up = adfw::upsample_on_grid(map, H, W, g);
    REQUIRE(up.sizes() == torch::IntArrayRef({1, 2, H, W}));
    for (int64_t y = 0; y < H; ++y) {
      const double want = std::clamp<double>(y, g.origin_y, g.origin_y + g.stride * (h - 1));
      CHECK(up[0][0][y][3].item<double>() == Approx(want).margin(1e-4));
    }
    for (int64_t x = 0; x < W; ++x) {
      const double want = std::clamp<double>(x, g.origin_x, g.origin_x + g.stride * (w - 1));
      CHECK(up[0][1][2][x].item<double>() == Approx(want).margin(1e-4));
    }
  }
  // The centred grid is plain bilinear upsampling (align_corners false).
  const torch::Tensor m = torch::rand({2, 1, h, w});
  const torch::Tensor plain = torch::nn::functional::interpolate(
      m, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{H, W}).mode(torch::kBilinear).align_corners(false));
  CHECK(adfw::upsample_on_grid(m, H, W, adfw::GridGeometry::centred(8)).allclose(plain, 1e-5, 1e-5));
}

TEST_CASE("concat_taps: nearest repeats each deeper cell over its block, bilinear averages its neighbours",
          "[method][taps]") {
  // Tap a (1,1,4,4) holds its flat index; tap b (1,2,2,2) holds 10 * channel + cell index.
  std::map<std::string, torch::Tensor> maps;
  maps["a"] = torch::arange(16, torch::kFloat32).reshape({1, 1, 4, 4});
  maps["b"] = (torch::arange(4, torch::kFloat32).reshape({1, 1, 2, 2}) + torch::tensor({0.f, 10.f}).reshape({1, 2, 1, 1}));
  const torch::Tensor n = adfw::concat_taps(maps, {"a", "b"}, 4, 4, adfw::TapResize::nearest);
  REQUIRE(n.sizes() == torch::IntArrayRef({1, 3, 4, 4}));
  CHECK(n[0][0].equal(maps["a"][0][0]));  // already at the size: unchanged
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      const float cell = static_cast<float>((y / 2) * 2 + x / 2);
      CHECK(n[0][1][y][x].item<float>() == cell);
      CHECK(n[0][2][y][x].item<float>() == cell + 10.f);
    }
  // Bilinear (align_corners false): on a 4x4 grid, output pixel 1 sits at input coordinate 0.25, so
  // between cells 0 and 1 of a row it is 0.75 * v0 + 0.25 * v1; the border pixels keep the border cell.
  const torch::Tensor b = adfw::concat_taps(maps, {"b"}, 4, 4, adfw::TapResize::bilinear);
  REQUIRE(b.sizes() == torch::IntArrayRef({1, 2, 4, 4}));
  CHECK(b[0][0][0][0].item<float>() == Approx(0.0));
  CHECK(b[0][0][0][1].item<float>() == Approx(0.25));
  CHECK(b[0][0][1][1].item<float>() == Approx(0.75 * 0.25 + 0.25 * 2.25));
  CHECK(b[0][1][3][3].item<float>() == Approx(13.0));
  // A tap without a spatial grid (a ViT's class token) and a tap the backbone did not return.
  maps["cls"] = torch::zeros({1, 8});
  CHECK_THROWS_WITH(adfw::concat_taps(maps, {"a", "cls"}, 4, 4, adfw::TapResize::nearest),
                    Catch::Contains("tap 'cls' is not a spatial feature map"));
  CHECK_THROWS_WITH(adfw::concat_taps(maps, {"a", "layer9"}, 4, 4, adfw::TapResize::nearest),
                    Catch::Contains("no feature map 'layer9'"));
}
