#include "adfw/method/memory_bank.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <limits>
#include <mutex>
#include <random>

#include <ATen/Parallel.h>

#if ADFW_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexScalarQuantizer.h>
#endif

#include "adfw/core/error.hpp"
#include "adfw/core/stages.hpp"
#include "adfw/method/faiss_rounding.hpp"

namespace F = torch::nn::functional;

namespace adfw {

// ---------------------------------------------------------------------------------------------
// Aggregation
// ---------------------------------------------------------------------------------------------
namespace {
/// adaptive_avg_pool1d over the flattened neighbourhood axis of unfolded maps (N, L, h, w) -> (N, out, h, w),
/// computed plane by plane on this layout. Each element sums the same values in the same order as
/// ATen's pool of the transposed rows (window [floor(i L / out), ceil((i + 1) L / out)), a float sum from
/// zero, divided by the window length), so the result is identical bit for bit; it saves transposing
/// a tensor of C*p*p channels per position.
torch::Tensor pool_neighbourhoods(const torch::Tensor& unf, int64_t out_dim) {
  const int64_t n = unf.size(0), len = unf.size(1), hw = unf.size(2) * unf.size(3);
  torch::Tensor out = torch::empty({n, out_dim, unf.size(2), unf.size(3)});
  const float* src = unf.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, n * out_dim, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<std::size_t>(hw));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t img = t / out_dim, i = t % out_dim;
      const int64_t first = (i * len) / out_dim, last = 1 + ((i + 1) * len - 1) / out_dim;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t e = first; e < last; ++e) {
        const float* plane = src + (img * len + e) * hw;
        for (int64_t q = 0; q < hw; ++q) acc[q] += plane[q];
      }
      const float count = static_cast<float>(last - first);
      float* o = dst + t * hw;
      for (int64_t q = 0; q < hw; ++q) o[q] = acc[q] / count;
    }
  });
  return out;
}
}  // namespace

torch::Tensor aggregate_patches(const std::map<std::string, torch::Tensor>& maps, const std::vector<std::string>& layers,
                                const PatchAggregationOptions& o, PatchAggregationTrace* trace) {
  if (layers.empty()) throw Error("aggregate_patches: no layers given");
  ScopedStage stage("aggregate");
  const int p = o.patch_size;
  const int pad = (p - 1) / 2;
  int64_t n = 0, h0 = 0, w0 = 0;
  std::vector<torch::Tensor> per_layer;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    auto it = maps.find(layers[i]);
    if (it == maps.end()) throw Error("aggregate_patches: the backbone returned no feature map '" + layers[i] + "'");
    torch::Tensor x = it->second.to(torch::kFloat32);
    const int64_t c = x.size(1);
    // (N, C*p*p, L) with the (C, p, p) order of the reference's patchify.
    torch::Tensor unf = F::unfold(x, F::UnfoldFuncOptions({p, p}).padding(pad).stride(1));
    const int64_t h = x.size(2) + 2 * pad - (p - 1), w = x.size(3) + 2 * pad - (p - 1);
    unf = unf.view({x.size(0), c * p * p, h, w});
    if (i == 0) {
      n = x.size(0);
      h0 = h;
      w0 = w;
    } else if (h != h0 || w != w0) {
      unf = F::interpolate(unf, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{h0, w0})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
    }
    // Without a trace or autograd, on the CPU: the same pool without the transpose (identical values).
    if (!trace && unf.device().is_cpu() && !(torch::GradMode::is_enabled() && unf.requires_grad())) {
      const torch::Tensor pooled = pool_neighbourhoods(unf.contiguous(), o.layer_dim);
      per_layer.push_back(pooled.permute({0, 2, 3, 1}).reshape({n * h0 * w0, o.layer_dim}));
      continue;
    }
    // (N*h0*w0, 1, C*p*p) -> adaptive average pool over the flattened neighbourhood.
    torch::Tensor flat = unf.permute({0, 2, 3, 1}).reshape({n * h0 * w0, 1, c * p * p});
    if (trace) trace->patches.push_back(flat.view({n * h0 * w0, c, p, p}));
    per_layer.push_back(F::adaptive_avg_pool1d(flat, F::AdaptiveAvgPool1dFuncOptions(o.layer_dim)).squeeze(1));
  }
  torch::Tensor stacked = torch::stack(per_layer, 1);  // (M, layers, layer_dim)
  if (trace) trace->pooled = stacked;
  torch::Tensor pooled = F::adaptive_avg_pool1d(stacked.reshape({stacked.size(0), 1, -1}),
                                                F::AdaptiveAvgPool1dFuncOptions(o.target_dim));
  return pooled.reshape({n, h0, w0, o.target_dim});
}

// ---------------------------------------------------------------------------------------------
// Coreset
// ---------------------------------------------------------------------------------------------
namespace {
/// Euclidean distances between every row of `a` (n, d) and row vector `b` (d), as the
/// reference computes them: sqrt(clamp(|a|^2 - 2 a.b + |b|^2, 0)).
torch::Tensor distances_to(const torch::Tensor& a, const torch::Tensor& a_sq, const torch::Tensor& b) {
  return (a_sq - 2 * torch::mv(a, b) + b.dot(b)).clamp_min(0).sqrt();
}
}  // namespace

std::vector<int64_t> greedy_k_center(const torch::Tensor& projected, torch::Tensor min_distance, int64_t count) {
  torch::NoGradGuard ng;
  const torch::Tensor sq = (projected * projected).sum(1);
  std::vector<int64_t> selected;
  selected.reserve(static_cast<std::size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t idx = min_distance.argmax().item<int64_t>();
    selected.push_back(idx);
    min_distance = torch::minimum(min_distance, distances_to(projected, sq, projected[idx]));
  }
  return selected;
}

std::vector<int64_t> select_coreset(const torch::Tensor& features, const CoresetOptions& o, uint64_t seed) {
  torch::NoGradGuard ng;
  const int64_t n = features.size(0);
  const int64_t count = static_cast<int64_t>(static_cast<double>(n) * o.ratio);  // reference: int(len * percentage)
  std::vector<int64_t> all(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
  if (o.ratio >= 1.0 || count >= n) return all;
  if (count <= 0)
    throw ConfigError("coreset ratio " + std::to_string(o.ratio) + " keeps no patch of " + std::to_string(n) +
                      "; raise method.coreset.ratio");
  std::mt19937_64 rng(seed);
  if (o.kind == "random") {
    std::shuffle(all.begin(), all.end(), rng);
    all.resize(static_cast<std::size_t>(count));
    return all;
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor x = features.to(torch::kFloat32).contiguous();
  if (o.projection_dim > 0 && o.projection_dim < x.size(1)) {
    // torch.nn.Linear's default initialisation (kaiming uniform, a = sqrt(5)): U(-1/sqrt(d), 1/sqrt(d)).
    const double bound = 1.0 / std::sqrt(static_cast<double>(x.size(1)));
    torch::Tensor w = torch::empty({o.projection_dim, x.size(1)}).uniform_(-bound, bound, gen);
    x = torch::mm(x, w.t());
  }
  const torch::Tensor sq = (x * x).sum(1);
  torch::Tensor min_distance;
  if (o.kind == "approximate_greedy") {
    const int64_t starts = std::min(o.starting_points, n);
    std::vector<int64_t> perm = all;
    std::shuffle(perm.begin(), perm.end(), rng);
    torch::Tensor acc = torch::zeros({n});
    for (int64_t s = 0; s < starts; ++s) acc += distances_to(x, sq, x[perm[static_cast<std::size_t>(s)]]);
    min_distance = acc / static_cast<double>(starts);
  } else {
    const int64_t start = static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
    min_distance = distances_to(x, sq, x[start]);
  }
  return greedy_k_center(x, min_distance, count);
}

// ---------------------------------------------------------------------------------------------
// Memory bank
// ---------------------------------------------------------------------------------------------
struct MemoryBank::Faiss {
#if ADFW_HAVE_FAISS
  std::unique_ptr<faiss::Index> index;
#endif
};

// The pruned backend's bound. With the bank's mean m, an orthonormal basis V (d x r) of its first
// principal directions, and for any row x its coordinates p(x) = V^T (x - m) and the length
// e(x) = |(x - m) - V p(x)| of what V leaves out, Pythagoras and the triangle inequality give
//   |q - b|^2 = |p(q) - p(b)|^2 + |e-vectors' difference|^2 >= |p(q) - p(b)|^2 + (e(q) - e(b))^2.
// The bound costs r multiply-adds per pair instead of d; patch features are strongly correlated,
// so a few dozen components hold nearly all the variance and the bound is tight. Only rows whose
// bound is below the current k-th smallest exact distance are measured, so the search is exact.
struct MemoryBank::Pruning {
  int64_t dims = 0;
  double variance_kept = 0;
  torch::Tensor mean;         // (d) float32
  torch::Tensor basis;        // (d, r) float32, orthonormal columns
  torch::Tensor proj;         // (n, r) bank coordinates p(b)
  torch::Tensor proj_sq;      // (n) |p(b)|^2
  torch::Tensor resid;        // (n) e(b)
  double max_centred_sq = 0;  // max_b |b - m|^2, for the rounding allowance
  // faiss's rounding of the measured distances (knn.arithmetic), with the bank's norms as faiss
  // computes them; null: direct sums of squared differences.
  std::shared_ptr<const L2Rounding> rounding;
  torch::Tensor faiss_norms;  // (n)
  float max_faiss_norm = 0;
  mutable std::atomic<int64_t> queries{0}, exact{0}, fallback_queries{0};
  // Consecutive query blocks where the bound pruned too little; from kPruneStopAfter on, the bank
  // is searched in full without trying (features without the low-rank structure).
  mutable std::atomic<int> gave_up_in_a_row{0};
  mutable std::once_flag full_once;
  mutable std::unique_ptr<Faiss> full;  // faiss index of the bank, for the blocks searched in full
};

namespace {

/// Squared Euclidean distance of two float rows, summed in 16 lanes (vectorised by the compiler)
/// and then in a fixed order, so a pair's distance never depends on threads or blocking.
float squared_distance(const float* a, const float* b, int64_t d) {
  float lane[16] = {0.f};
  int64_t j = 0;
  for (; j + 16 <= d; j += 16)
    for (int l = 0; l < 16; ++l) {
      const float t = a[j + l] - b[j + l];
      lane[l] += t * t;
    }
  float s = 0.f;
  for (; j < d; ++j) {
    const float t = a[j] - b[j];
    s += t * t;
  }
  for (float v : lane) s += v;
  return s;
}

/// The smallest k distances seen so far for one query, ascending (k is small: insertion).
struct TopK {
  float* dist;
  int64_t k, filled = 0;
  float threshold() const { return filled < k ? std::numeric_limits<float>::infinity() : dist[k - 1]; }
  void offer(float v) {
    if (filled == k && v >= dist[k - 1]) return;
    int64_t i = filled < k ? filled++ : k - 1;
    while (i > 0 && dist[i - 1] > v) {
      dist[i] = dist[i - 1];
      --i;
    }
    dist[i] = v;
  }
};

/// Rows x (m, d) in the bound's terms: coordinates p(x) in the basis, length e(x) of what it leaves
/// out, and |x - mean|^2. The bank's rows and the queries go through this same computation.
struct Projected {
  torch::Tensor coords, resid, centred_sq;
};
Projected project(const torch::Tensor& x, const torch::Tensor& mean, const torch::Tensor& basis) {
  const torch::Tensor c = x - mean;
  Projected out;
  out.coords = torch::mm(c, basis);
  out.resid = (c - torch::mm(out.coords, basis.t())).norm(2, 1).contiguous();
  out.centred_sq = (c * c).sum(1).contiguous();
  return out;
}

constexpr int64_t kPruneQueryBlock = 256;   // queries per bound tile
constexpr int64_t kPruneBankBlock = 4096;   // bank rows per bound tile (tile: 4 MB, stays in cache)
// A block whose exact measurements exceed this fraction of its pairs is searched in full instead:
// the bound is not pruning there, and a full distance block is cheaper than that many single rows.
constexpr double kPruneGiveUp = 1.0 / 8.0;
constexpr int kPruneStopAfter = 4;
// Rounding allowance of the bound, relative to the squared lengths it is computed from. The float32
// bound's error is a few 1e-7 of them; 1e-5 keeps every row that could be the nearest.
constexpr double kPruneSlack = 1e-5;
// With faiss's rounding a measured distance may also fall below the exact one, by at most
// (|q|^2 + |b|^2) times this per dimension plus a constant: the d-term sums of the product and the
// norms (gamma_d each, d unit round-offs) and the formula's two operations. The allowance keeps
// every row whose rounded distance could still be among the k smallest rounded ones.
constexpr double kFaissSlackPerDim = 2.0 / 16777216.0;  // 2 u, u = 2^-24
constexpr double kFaissSlackConst = 8.0 / 16777216.0;

/// The k smallest of `rows` distance rows (nq x nb, row-major) offered to each query's TopK.
void offer_rows(std::vector<TopK>& top, const float* rows, int64_t nq, int64_t nb) {
  at::parallel_for(0, nq, 8, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      TopK& t = top[static_cast<std::size_t>(i)];
      const float* row = rows + i * nb;
      for (int64_t j = 0; j < nb; ++j)
        if (row[j] < t.threshold()) t.offer(row[j]);
    }
  });
}

}  // namespace

MemoryBank::MemoryBank(KnnOptions o) : opt_(std::move(o)) {
#if !ADFW_HAVE_FAISS
  if (opt_.backend == "faiss") throw ConfigError("knn backend \"faiss\" asked for, but adfw was built without faiss");
  if (opt_.arithmetic == "faiss")
    throw ConfigError("knn arithmetic \"faiss\" asked for, but adfw was built without faiss; use \"direct\" or \"auto\"");
#endif
  if (opt_.backend == "pruned" && (opt_.distance == "cosine" || opt_.fp16_bank))
    throw ConfigError("knn backend \"pruned\" needs distance squared_l2 or l2 and a float32 bank (fp16_bank = false); "
                      "use backend \"auto\" to pick one that fits");
}
MemoryBank::~MemoryBank() = default;
MemoryBank::MemoryBank(MemoryBank&&) noexcept = default;
MemoryBank& MemoryBank::operator=(MemoryBank&&) noexcept = default;

int64_t MemoryBank::size() const { return bank_.defined() ? bank_.size(0) : 0; }
int64_t MemoryBank::dim() const { return bank_.defined() ? bank_.size(1) : 0; }

std::string MemoryBank::backend_in_use() const {
  if (pruning_)
    return "pruned (exact; " + std::to_string(pruning_->dims) + " of " + std::to_string(dim()) +
           " principal components in the bound; " + pruning().arithmetic + " arithmetic)";
  return faiss_ ? "faiss" : "torch";
}

KnnPruningStats MemoryBank::pruning() const {
  KnnPruningStats st;
  if (!pruning_) return st;
  st.dims = pruning_->dims;
  st.variance_kept = pruning_->variance_kept;
  st.queries = pruning_->queries.load();
  st.exact = pruning_->exact.load();
  st.fallback_queries = pruning_->fallback_queries.load();
  st.arithmetic = pruning_->rounding ? "faiss (" + pruning_->rounding->describe() + ")" : "direct";
  return st;
}

void MemoryBank::set(torch::Tensor features) {
  torch::NoGradGuard ng;
  if (features.dim() != 2 || features.size(0) == 0) throw Error("memory bank: expected a non-empty (n, d) feature matrix");
  torch::Tensor f = features.to(torch::kFloat32).contiguous();
  if (opt_.distance == "cosine") f = F::normalize(f, F::NormalizeFuncOptions().dim(1));
  // A float16 bank: the norms and the index see the rows as stored, so distances are consistent
  // (and a restored bank gives the same ones).
  if (opt_.fp16_bank) f = f.to(torch::kFloat16).to(torch::kFloat32);
  index(f);
}

void MemoryBank::restore(const torch::Tensor& stored) {
  if (stored.dim() != 2 || stored.size(0) == 0) throw Error("memory bank: expected a non-empty (n, d) feature matrix");
  const bool half = stored.scalar_type() == torch::kFloat16;
  if (half != opt_.fp16_bank)
    throw Error(std::string("memory bank: the saved bank is ") + (half ? "float16" : "float32") +
                " but knn.fp16_bank is " + (opt_.fp16_bank ? "true" : "false") + "; use the run's configuration");
  torch::NoGradGuard ng;
  index(stored.to(torch::kFloat32).contiguous());
}

void MemoryBank::index(const torch::Tensor& f) {
  bank_ = opt_.fp16_bank ? f.to(torch::kFloat16) : f;
  bank_sq_norms_ = (f * f).sum(1);
  faiss_.reset();
  pruning_.reset();
  const bool prune = opt_.backend == "pruned" ||
                     (opt_.backend == "auto" && opt_.distance != "cosine" && !opt_.fp16_bank && f.size(0) >= 2048 &&
                      f.size(1) >= 32);
  if (prune) {
    // Principal directions from the covariance of the bank (float32 products, float64 eigensolver;
    // the bound holds for any orthonormal basis, the principal one only makes it tight).
    const int64_t n = f.size(0), d = f.size(1);
    auto p = std::make_unique<Pruning>();
    p->mean = f.mean(0);
    torch::Tensor cov = torch::zeros({d, d});
    for (int64_t s = 0; s < n; s += 8192) {
      const torch::Tensor c = f.slice(0, s, std::min(n, s + 8192)) - p->mean;
      cov.addmm_(c.t(), c);
    }
    const auto eig = torch::linalg_eigh(cov.to(torch::kFloat64));
    const torch::Tensor values = std::get<0>(eig).flip(0).clamp_min(0);  // descending
    const torch::Tensor vectors = std::get<1>(eig).flip(1);
    const double total = std::max(values.sum().item<double>(), 1e-30);
    const torch::Tensor kept = values.cumsum(0) / total;
    int64_t r = opt_.prune_dims;
    if (r <= 0) {
      // The fewest multiple of 8 holding 99% of the variance, at most 64 and half the dimensions
      // (beyond that the bound costs as much as the distances it saves).
      const int64_t most = std::max<int64_t>(8, std::min<int64_t>(64, d / 2));
      r = 8;
      while (r < most && kept[r - 1].item<double>() < 0.99) r += 8;
    }
    r = std::min(r, d);
    p->dims = r;
    p->variance_kept = kept[r - 1].item<double>();
    p->basis = vectors.slice(1, 0, r).to(torch::kFloat32).contiguous();
    p->proj = torch::empty({n, r});
    p->resid = torch::empty({n});
    for (int64_t s = 0; s < n; s += 8192) {
      const int64_t e = std::min(n, s + 8192);
      const Projected rows = project(f.slice(0, s, e), p->mean, p->basis);
      p->proj.slice(0, s, e).copy_(rows.coords);
      p->resid.slice(0, s, e).copy_(rows.resid);
      p->max_centred_sq = std::max(p->max_centred_sq, rows.centred_sq.max().item<double>());
    }
    p->proj_sq = (p->proj * p->proj).sum(1);
    if (opt_.arithmetic != "direct") {
      std::string why;
      p->rounding = L2Rounding::for_dim(d, &why);
      if (!p->rounding && opt_.arithmetic == "faiss")
        throw ConfigError("knn arithmetic \"faiss\": " + why + "; use \"direct\" or \"auto\"");
      if (p->rounding) {
        p->faiss_norms = torch::empty({n});
        p->rounding->norms(f.data_ptr<float>(), n, p->faiss_norms.data_ptr<float>());
        p->max_faiss_norm = p->faiss_norms.max().item<float>();
      }
    }
    pruning_ = std::move(p);
    return;
  }
  if (opt_.backend != "torch") faiss_ = make_faiss(f);
}

std::unique_ptr<MemoryBank::Faiss> MemoryBank::make_faiss(const torch::Tensor& f) const {
#if ADFW_HAVE_FAISS
  auto fx = std::make_unique<Faiss>();
  const int d = static_cast<int>(f.size(1));
  const faiss::MetricType metric = opt_.distance == "cosine" ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
  if (opt_.fp16_bank) fx->index = std::make_unique<faiss::IndexScalarQuantizer>(d, faiss::ScalarQuantizer::QT_fp16, metric);
  else if (metric == faiss::METRIC_L2) fx->index = std::make_unique<faiss::IndexFlatL2>(d);
  else fx->index = std::make_unique<faiss::IndexFlatIP>(d);
  if (!fx->index->is_trained) fx->index->train(f.size(0), f.data_ptr<float>());
  fx->index->add(f.size(0), f.data_ptr<float>());
  return fx;
#else
  (void)f;
  return nullptr;
#endif
}

torch::Tensor MemoryBank::search_full(const torch::Tensor& q) const {
  const Faiss* fx = faiss_.get();
  // The pruned backend falls back to faiss where its bound does not prune, built on first need.
  if (!fx && pruning_) {
    std::call_once(pruning_->full_once, [&] { pruning_->full = make_faiss(bank_); });
    fx = pruning_->full.get();
  }
#if ADFW_HAVE_FAISS
  if (fx) {
    const int64_t k = std::min(opt_.k, size());
    torch::Tensor d = torch::empty({q.size(0), k});
    // faiss's index type is Index::idx_t up to 1.7 and faiss::idx_t later; ntotal has it on both.
    std::vector<decltype(faiss::Index::ntotal)> labels(static_cast<std::size_t>(q.size(0) * k));
    fx->index->search(q.size(0), q.data_ptr<float>(), k, d.data_ptr<float>(), labels.data());
    return opt_.distance == "cosine" ? 1.0 - d : d;
  }
#endif
  return search_torch(q);
}

torch::Tensor MemoryBank::search_torch(const torch::Tensor& q) const {
  const int64_t k = std::min(opt_.k, size());
  const torch::Tensor q_sq = (q * q).sum(1, true);
  torch::Tensor best;  // (m, k) smallest squared distances (or largest similarities for cosine)
  const bool cosine = opt_.distance == "cosine";
  for (int64_t start = 0; start < size(); start += opt_.chunk) {
    const int64_t end = std::min(size(), start + opt_.chunk);
    const torch::Tensor b = bank_.slice(0, start, end).to(torch::kFloat32);
    torch::Tensor d;
    if (cosine) d = 1.0 - torch::mm(q, b.t());
    else d = (q_sq - 2 * torch::mm(q, b.t()) + bank_sq_norms_.slice(0, start, end).unsqueeze(0)).clamp_min(0);
    const int64_t kk = std::min<int64_t>(k, d.size(1));
    torch::Tensor part = std::get<0>(d.topk(kk, 1, /*largest=*/false, /*sorted=*/true));
    best = best.defined() ? std::get<0>(torch::cat({best, part}, 1).topk(k, 1, false, true)) : part;
  }
  return best;
}

torch::Tensor MemoryBank::search_pruned(const torch::Tensor& q) const {
  const Pruning& p = *pruning_;
  const int64_t m = q.size(0), n = size(), d = dim(), k = std::min(opt_.k, size());
  const Projected qx = project(q, p.mean, p.basis);
  const torch::Tensor& q_proj = qx.coords;
  const torch::Tensor& q_resid = qx.resid;
  const torch::Tensor& q_centred_sq = qx.centred_sq;
  const torch::Tensor q_proj_sq = (q_proj * q_proj).sum(1).contiguous();
  torch::Tensor out = torch::empty({m, k});
  const float* qd = q.data_ptr<float>();
  const float* bd = bank_.data_ptr<float>();
  const float* qr = q_resid.data_ptr<float>();
  const float* qs = q_proj_sq.data_ptr<float>();
  const float* qcs = q_centred_sq.data_ptr<float>();
  const float* br = p.resid.data_ptr<float>();
  const float* bs = p.proj_sq.data_ptr<float>();
  float* od = out.data_ptr<float>();
  // faiss's rounding: every measured pair as faiss's search of these m queries would round it.
  std::unique_ptr<L2SearchRounding> faiss_round;
  if (p.rounding)
    faiss_round = std::make_unique<L2SearchRounding>(*p.rounding, qd, m, bd, p.faiss_norms.data_ptr<float>(), n);
  // Queries [a, b) against the whole bank: faiss itself, or with faiss's rounding our own blocks
  // (a faiss call on part of the queries could round differently from one on all of them).
  const auto search_all = [&](int64_t a, int64_t b) {
    if (!faiss_round) {
      out.slice(0, a, b).copy_(search_full(q.slice(0, a, b)));
      return;
    }
    for (int64_t q0 = a; q0 < b; q0 += kPruneQueryBlock) {
      const int64_t q1 = std::min(b, q0 + kPruneQueryBlock);
      std::vector<TopK> top;
      for (int64_t i = q0; i < q1; ++i) top.push_back(TopK{od + i * k, k});
      std::vector<float> rows(static_cast<std::size_t>((q1 - q0) * kPruneBankBlock));
      for (int64_t b0 = 0; b0 < n; b0 += kPruneBankBlock) {
        const int64_t b1 = std::min(n, b0 + kPruneBankBlock);
        faiss_round->block(q0, q1, b0, b1, rows.data());
        offer_rows(top, rows.data(), q1 - q0, b1 - b0);
      }
      // Rows of NaN never enter a TopK; faiss leaves its initial +inf there.
      for (TopK& t : top)
        for (int64_t l = t.filled; l < k; ++l) t.dist[l] = std::numeric_limits<float>::infinity();
    }
  };
  int64_t exact_total = 0, fallback = 0;
  for (int64_t q0 = 0; q0 < m; q0 += kPruneQueryBlock) {
    const int64_t q1 = std::min(m, q0 + kPruneQueryBlock), nq = q1 - q0;
    if (p.gave_up_in_a_row.load() >= kPruneStopAfter) {
      search_all(q0, m);
      fallback += m - q0;
      break;
    }
    std::vector<float> slack(static_cast<std::size_t>(nq));
    for (int64_t i = 0; i < nq; ++i) {
      const double len = std::sqrt(double(qcs[q0 + i])) + std::sqrt(p.max_centred_sq);
      double tol = kPruneSlack * len * len;
      if (faiss_round)
        tol += (kFaissSlackPerDim * double(d) + kFaissSlackConst) *
               (double(faiss_round->query_norm(q0 + i)) + double(p.max_faiss_norm));
      slack[static_cast<std::size_t>(i)] = static_cast<float>(tol);
    }
    std::vector<TopK> top;
    for (int64_t i = 0; i < nq; ++i) top.push_back(TopK{od + (q0 + i) * k, k});
    const torch::Tensor qp = q_proj.slice(0, q0, q1);
    std::atomic<int64_t> measured{0};
    bool gave_up = false;
    for (int64_t b0 = 0; b0 < n && !gave_up; b0 += kPruneBankBlock) {
      const int64_t b1 = std::min(n, b0 + kPruneBankBlock), nb = b1 - b0;
      const torch::Tensor dots = torch::mm(qp, p.proj.slice(0, b0, b1).t()).contiguous();  // (nq, nb)
      const float* g = dots.data_ptr<float>();
      at::parallel_for(0, nq, 8, [&](int64_t i0, int64_t i1) {
        int64_t count = 0;
        int64_t pending[L2Rounding::kLanes];
        float values[L2Rounding::kLanes];
        for (int64_t i = i0; i < i1; ++i) {
          TopK& t = top[static_cast<std::size_t>(i)];
          const float* row = g + i * nb;
          const float a = qs[q0 + i], ra = qr[q0 + i], tol = slack[static_cast<std::size_t>(i)];
          const float* qrow = qd + (q0 + i) * d;
          int64_t np = 0;
          // With faiss's rounding, candidates are measured kLanes (8) at a time (the emulated
          // products run as chains side by side); the threshold then lags by at most seven rows.
          const auto flush = [&] {
            faiss_round->distances(q0 + i, pending, np, values);
            for (int64_t l = 0; l < np; ++l) t.offer(values[l]);
            np = 0;
          };
          for (int64_t j = 0; j < nb; ++j) {
            const float e = ra - br[b0 + j];
            const float bound = a + bs[b0 + j] - 2.f * row[j] + e * e;
            if (bound <= t.threshold() + tol) {
              ++count;
              if (!faiss_round) {
                t.offer(squared_distance(qrow, bd + (b0 + j) * d, d));
                continue;
              }
              pending[np++] = b0 + j;
              if (np == L2Rounding::kLanes) flush();
            }
          }
          if (np) flush();
        }
        measured += count;
      });
      if (double(measured.load()) > kPruneGiveUp * double(nq) * double(b1)) gave_up = true;
    }
    // Non-finite features compare false against every bound; let the full search report them.
    for (const TopK& t : top) gave_up = gave_up || t.filled < k;
    if (gave_up) {
      // The bound does not separate these queries from the bank: one full distance block instead.
      search_all(q0, q1);
      fallback += nq;
      ++p.gave_up_in_a_row;
    } else {
      p.gave_up_in_a_row = 0;
    }
    exact_total += measured.load();
  }
  p.queries += m - fallback;
  p.fallback_queries += fallback;
  p.exact += exact_total;
  return out.clamp_min(0);
}

torch::Tensor MemoryBank::search(const torch::Tensor& queries) const {
  torch::NoGradGuard ng;
  ScopedStage stage("nearest_neighbour");
  if (size() == 0) throw Error("memory bank is empty: fit the method before scoring");
  if (queries.dim() != 2 || queries.size(1) != dim())
    throw Error("memory bank: queries have " + std::to_string(queries.size(-1)) + " dims, the bank " + std::to_string(dim()));
  torch::Tensor q = queries.to(torch::kFloat32).contiguous();
  if (opt_.distance == "cosine") q = F::normalize(q, F::NormalizeFuncOptions().dim(1));
  torch::Tensor d = pruning_ ? search_pruned(q) : search_full(q);
  if (opt_.distance == "l2") d = d.clamp_min(0).sqrt();
  return d;
}

torch::Tensor MemoryBank::score(const torch::Tensor& queries) const { return search(queries).mean(1); }

// ---------------------------------------------------------------------------------------------
// Gaussian
// ---------------------------------------------------------------------------------------------
PatchGaussian::PatchGaussian(PatchGaussianOptions o) : opt_(std::move(o)) {
  // Options read from TOML were checked there; this guards options built in code.
  if (opt_.window % 2 == 0)
    throw Error("PatchGaussian: window must be odd (a neighbourhood centred on each position), got " +
                std::to_string(opt_.window));
}

void PatchGaussian::accumulate(const torch::Tensor& e) {
  torch::NoGradGuard ng;
  if (e.dim() != 4) throw Error("PatchGaussian: expected embeddings (N, d, h, w)");
  if (n_ == 0) {
    d_ = e.size(1);
    h_ = e.size(2);
    w_ = e.size(3);
    // float64 sums by default; float32 when they would not fit in 4 GB.
    const double bytes = double(h_ * w_) * double(d_) * double(d_) * 8.0;
    const bool f64 = opt_.sums == "float64" || (opt_.sums == "auto" && bytes <= 4e9);
    const auto dtype = f64 ? torch::kFloat64 : torch::kFloat32;
    sum_ = torch::zeros({h_ * w_, d_}, dtype);
    sum_outer_ = torch::zeros({h_ * w_, d_, d_}, dtype);
    // The sums are taken about the first batch's channel means: the covariance is then a difference
    // of numbers of the size of the spread, not of the raw means, which float32 sums need. One shift
    // for all positions keeps window pooling exact.
    shift_ = e.to(dtype).mean({0, 2, 3});
  } else if (e.size(1) != d_ || e.size(2) != h_ || e.size(3) != w_) {
    throw Error("PatchGaussian: embedding shape changed between batches (all training images must have the same size)");
  }
  torch::Tensor x = (e.to(sum_.scalar_type()).flatten(2).permute({2, 0, 1}) - shift_).contiguous();  // (P, N, d)
  sum_ += x.sum(1);
  // In place: a bmm result would be a second positions x d x d tensor for every batch.
  sum_outer_.baddbmm_(x.transpose(1, 2), x);
  n_ += e.size(0);
}

void PatchGaussian::finalize() {
  torch::NoGradGuard ng;
  if (n_ < 2) throw Error("PatchGaussian: need at least 2 training images to estimate a covariance, got " + std::to_string(n_));
  const auto dtype = sum_.scalar_type();
  const int64_t r = opt_.window / 2;
  const auto sums = sum_.view({h_, w_, d_});
  const auto outers = sum_outer_.view({h_, w_, d_, d_});
  const torch::Tensor eye = torch::eye(d_, torch::TensorOptions().dtype(dtype));
  mean_ = torch::empty({h_ * w_, d_}, torch::kFloat32);
  // The factors have the shape of the outer-product sums. When those are float32 (large d), each
  // grid row's factors overwrite that row's sums once it is done, so the peak is one positions x
  // d x d tensor instead of two (PaDiM with all 1536 MobileNet channels: 3.8 GB less). Rows a
  // later window still needs are kept aside first (r of them).
  const bool in_place = dtype == torch::kFloat32;
  inv_chol_ = in_place ? sum_outer_ : torch::empty({h_ * w_, d_, d_}, torch::kFloat32);
  std::deque<torch::Tensor> kept;  // the original sums of rows i - r .. i - 1 (in_place only)
  const auto outer_row = [&](int64_t k, int64_t i) {
    return in_place && k < i ? kept[kept.size() - static_cast<std::size_t>(i - k)] : outers[k];
  };
  for (int64_t i = 0; i < h_; ++i) {
    // Window sums along the rows, then along the columns (a separable box sum clipped at the border).
    const int64_t i0 = std::max<int64_t>(0, i - r), i1 = std::min<int64_t>(h_, i + r + 1);
    torch::Tensor row_sum = sums.slice(0, i0, i1).sum(0);  // (w, d)
    torch::Tensor row_outer = outer_row(i0, i).clone();    // (w, d, d)
    for (int64_t k = i0 + 1; k < i1; ++k) row_outer += outer_row(k, i);
    torch::Tensor s = row_sum, so = row_outer;
    std::vector<double> count(w_);
    if (r > 0) {
      const auto cs = torch::cat({torch::zeros({1, d_}, row_sum.options()), row_sum.cumsum(0)});
      const auto cso = torch::cat({torch::zeros({1, d_, d_}, row_outer.options()), row_outer.cumsum(0)});
      row_outer = torch::Tensor();
      std::vector<torch::Tensor> s_cols, so_cols;
      for (int64_t j = 0; j < w_; ++j) {
        const int64_t j0 = std::max<int64_t>(0, j - r), j1 = std::min<int64_t>(w_, j + r + 1);
        s_cols.push_back(cs[j1] - cs[j0]);
        so_cols.push_back(cso[j1] - cso[j0]);
        count[j] = double(n_) * double((i1 - i0) * (j1 - j0));
      }
      s = torch::stack(s_cols);
      so = torch::stack(so_cols);
    } else {
      std::fill(count.begin(), count.end(), double(n_));
    }
    const auto cnt = torch::tensor(count, torch::TensorOptions().dtype(dtype));
    torch::Tensor mean = s / cnt.unsqueeze(1);
    // Unbiased covariance (numpy.cov's default) plus the regulariser.
    torch::Tensor cov = (so - cnt.view({-1, 1, 1}) * torch::bmm(mean.unsqueeze(2), mean.unsqueeze(1))) /
                        (cnt - 1).view({-1, 1, 1});
    so = torch::Tensor();
    row_outer = torch::Tensor();
    cov += opt_.regularization * eye.unsqueeze(0);
    // The ATen function: LibTorch 2.6's torch/torch.h no longer declares torch::linalg::cholesky.
    torch::Tensor chol = torch::linalg_cholesky(cov);
    cov = torch::Tensor();
    torch::Tensor inv = torch::linalg_solve_triangular(chol, eye.expand({w_, d_, d_}), /*upper=*/false);
    if (in_place && r > 0) {
      kept.push_back(outers[i].clone());
      if (static_cast<int64_t>(kept.size()) > r) kept.pop_front();
    }
    inv_chol_.slice(0, i * w_, (i + 1) * w_).copy_(inv);
    mean_.slice(0, i * w_, (i + 1) * w_).copy_(mean + shift_);
  }
  sum_ = torch::Tensor();
  sum_outer_ = torch::Tensor();
  shift_ = torch::Tensor();
}

torch::Tensor PatchGaussian::distance(const torch::Tensor& e) const {
  torch::NoGradGuard ng;
  ScopedStage stage("mahalanobis");
  if (!inv_chol_.defined()) throw Error("PatchGaussian: fit before scoring");
  if (e.size(1) != d_ || e.size(2) != h_ || e.size(3) != w_)
    throw Error("PatchGaussian: test embeddings (" + std::to_string(e.size(2)) + "x" + std::to_string(e.size(3)) +
                ") differ from the training ones (" + std::to_string(h_) + "x" + std::to_string(w_) +
                "); use the same input size for training and test");
  torch::Tensor x = e.to(torch::kFloat32).flatten(2).permute({2, 0, 1});  // (P, N, d)
  torch::Tensor y = torch::bmm(x - mean_.unsqueeze(1), inv_chol_.transpose(1, 2));
  return y.pow(2).sum(2).sqrt().t().reshape({e.size(0), h_, w_});
}

torch::Tensor PatchGaussian::geometry() const { return torch::tensor({h_, w_, n_}, torch::kInt64); }

void PatchGaussian::restore(const torch::Tensor& mean, const torch::Tensor& inv_chol, const torch::Tensor& geometry,
                            const std::string& source) {
  if (geometry.numel() != 3 || mean.dim() != 2 || inv_chol.dim() != 3)
    throw Error(source + ": the Gaussians' tensors have the wrong rank (mean (P,d), inv_chol (P,d,d), geometry [h,w,n])");
  const auto g = geometry.to(torch::kInt64).contiguous();
  const int64_t h = g[0].item<int64_t>(), w = g[1].item<int64_t>();
  const int64_t p = mean.size(0), d = mean.size(1);
  if (h * w != p || inv_chol.size(0) != p || inv_chol.size(1) != d || inv_chol.size(2) != d)
    throw Error(source + ": the Gaussians' shapes do not fit together: grid " + std::to_string(h) + "x" +
                std::to_string(w) + ", mean " + std::to_string(p) + "x" + std::to_string(d) + ", inv_chol " +
                std::to_string(inv_chol.size(0)) + "x" + std::to_string(inv_chol.size(1)));
  h_ = h;
  w_ = w;
  d_ = d;
  n_ = g[2].item<int64_t>();
  mean_ = mean.to(torch::kFloat32).contiguous();
  inv_chol_ = inv_chol.to(torch::kFloat32).contiguous();
  sum_ = sum_outer_ = shift_ = torch::Tensor();
}

}  // namespace adfw
