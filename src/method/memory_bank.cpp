#include "adfw/method/memory_bank.hpp"

#include <algorithm>
#include <deque>
#include <cmath>
#include <random>

#if ADFW_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexScalarQuantizer.h>
#endif

#include "adfw/core/error.hpp"
#include "adfw/core/stages.hpp"

namespace F = torch::nn::functional;

namespace adfw {

// ---------------------------------------------------------------------------------------------
// Aggregation
// ---------------------------------------------------------------------------------------------
torch::Tensor aggregate_patches(const std::map<std::string, torch::Tensor>& maps, const std::vector<std::string>& layers,
                                const PatchAggregationOptions& o, PatchAggregationTrace* trace) {
  if (layers.empty()) throw Error("aggregate_patches: no layers given");
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

MemoryBank::MemoryBank(KnnOptions o) : opt_(std::move(o)) {
#if !ADFW_HAVE_FAISS
  if (opt_.backend == "faiss") throw ConfigError("knn backend \"faiss\" asked for, but adfw was built without faiss");
#endif
}
MemoryBank::~MemoryBank() = default;
MemoryBank::MemoryBank(MemoryBank&&) noexcept = default;
MemoryBank& MemoryBank::operator=(MemoryBank&&) noexcept = default;

int64_t MemoryBank::size() const { return bank_.defined() ? bank_.size(0) : 0; }
int64_t MemoryBank::dim() const { return bank_.defined() ? bank_.size(1) : 0; }

std::string MemoryBank::backend_in_use() const { return faiss_ ? "faiss" : "torch"; }

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
#if ADFW_HAVE_FAISS
  if (opt_.backend != "torch") {
    faiss_ = std::make_unique<Faiss>();
    const int d = static_cast<int>(f.size(1));
    const faiss::MetricType metric = opt_.distance == "cosine" ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
    if (opt_.fp16_bank) faiss_->index = std::make_unique<faiss::IndexScalarQuantizer>(d, faiss::ScalarQuantizer::QT_fp16, metric);
    else if (metric == faiss::METRIC_L2) faiss_->index = std::make_unique<faiss::IndexFlatL2>(d);
    else faiss_->index = std::make_unique<faiss::IndexFlatIP>(d);
    if (!faiss_->index->is_trained) faiss_->index->train(f.size(0), f.data_ptr<float>());
    faiss_->index->add(f.size(0), f.data_ptr<float>());
  }
#endif
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

torch::Tensor MemoryBank::search(const torch::Tensor& queries) const {
  torch::NoGradGuard ng;
  ScopedStage stage("nearest_neighbour");
  if (size() == 0) throw Error("memory bank is empty: fit the method before scoring");
  if (queries.dim() != 2 || queries.size(1) != dim())
    throw Error("memory bank: queries have " + std::to_string(queries.size(-1)) + " dims, the bank " + std::to_string(dim()));
  torch::Tensor q = queries.to(torch::kFloat32).contiguous();
  if (opt_.distance == "cosine") q = F::normalize(q, F::NormalizeFuncOptions().dim(1));
  torch::Tensor d;
#if ADFW_HAVE_FAISS
  if (faiss_) {
    const int64_t k = std::min(opt_.k, size());
    d = torch::empty({q.size(0), k});
    // faiss's index type is Index::idx_t up to 1.7 and faiss::idx_t later; ntotal has it on both.
    std::vector<decltype(faiss::Index::ntotal)> labels(static_cast<std::size_t>(q.size(0) * k));
    faiss_->index->search(q.size(0), q.data_ptr<float>(), k, d.data_ptr<float>(), labels.data());
    if (opt_.distance == "cosine") d = 1.0 - d;
  }
#endif
  if (!d.defined()) d = search_torch(q);
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
