// Patch-feature building blocks of the training-free methods: PatchCore's local aggregation,
// coreset subsampling, exact k-nearest-neighbour scoring against a memory bank, and PaDiM's
// per-position Gaussians.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "adfw/core/options.hpp"

namespace adfw {

// ---------------------------------------------------------------------------------------------
// Feature aggregation (PatchCore, Roth et al. CVPR 2022; patchcore-inspection
// src/patchcore/patchcore.py `_embed`, common.py `PatchMaker`, `MeanMapper`, `Aggregator`)
// ---------------------------------------------------------------------------------------------
struct PatchAggregationOptions {
  int patch_size = 3;
  int64_t layer_dim = 1024;
  int64_t target_dim = 1024;
  template <class V>
  void fields(V& v) {
    v("patch_size", patch_size, "local neighbourhood (p x p) aggregated around each position (default 3)",
      Check::at_least(1));
    v("layer_dim", layer_dim,
      "each layer's flattened C*p*p neighbourhood is average-pooled to this length (reference: "
      "pretrain_embed_dimension, default 1024)",
      Check::at_least(1));
    v("target_dim", target_dim,
      "the concatenated layer vectors are average-pooled to this length (reference: target_embed_dimension, "
      "default 1024)",
      Check::at_least(1));
  }
};

/// The intermediate tensors of aggregate_patches (tests compare them with the reference's).
struct PatchAggregationTrace {
  std::vector<torch::Tensor> patches;  ///< per layer (N*h*w, C, p, p) on the first layer's grid, rows (n, y, x)
  torch::Tensor pooled;                ///< (N*h*w, layers, layer_dim): each layer's pooled neighbourhood
};

/// Turns feature maps (in `layers` order; the first sets the patch grid) into patch features
/// (N, h, w, target_dim): unfold p x p neighbourhoods (zero padding p/2), bilinearly upsample
/// deeper layers' unfolded maps to the first layer's grid, adaptive-average-pool each layer's
/// C*p*p vector to layer_dim, concatenate, pool to target_dim. `trace`, when given, receives the
/// intermediate tensors.
torch::Tensor aggregate_patches(const std::map<std::string, torch::Tensor>& maps, const std::vector<std::string>& layers,
                                const PatchAggregationOptions& o, PatchAggregationTrace* trace = nullptr);

// ---------------------------------------------------------------------------------------------
// Coreset subsampling
// ---------------------------------------------------------------------------------------------
struct CoresetOptions {
  double ratio = 0.1;
  int64_t projection_dim = 128;
  int64_t starting_points = 10;
  std::string kind = "approximate_greedy";
  template <class V>
  void fields(V& v) {
    v("ratio", ratio, "fraction of training patches kept in the memory bank (default 0.1; 1 = keep all)",
      Check::range(0, 1));
    v("projection_dim", projection_dim,
      "random linear projection used to measure distances during selection (reference: 128; 0 = none)",
      Check::at_least(0));
    v("starting_points", starting_points,
      "approximate greedy: random points whose mean distance initialises the coverage (reference: 10)",
      Check::at_least(1));
    v("kind", kind,
      "approximate_greedy (reference PatchCore sampler), greedy (exact k-center start: one random point), random",
      Check::one_of({"approximate_greedy", "greedy", "random"}));
  }
};

/// Indices (into rows of `features` (n, d)) of the selected coreset, in selection order.
/// Greedy k-center: repeatedly take the point farthest from everything selected so far, with
/// distances measured after a random projection to projection_dim (seeded by `seed`).
std::vector<int64_t> select_coreset(const torch::Tensor& features, const CoresetOptions& o, uint64_t seed);

/// The greedy k-center loop on already projected features with given starting coverage
/// distances (exposed for testing against a brute-force reference).
std::vector<int64_t> greedy_k_center(const torch::Tensor& projected, torch::Tensor min_distance, int64_t count);

// ---------------------------------------------------------------------------------------------
// Exact k-nearest-neighbour search against a memory bank
// ---------------------------------------------------------------------------------------------
struct KnnOptions {
  int64_t k = 1;
  std::string distance = "squared_l2";
  std::string backend = "auto";
  bool fp16_bank = false;
  int64_t chunk = 8192;
  int64_t prune_dims = 0;
  std::string arithmetic = "auto";
  template <class V>
  void fields(V& v) {
    v("k", k, "nearest neighbours averaged into a patch score (reference: anomaly_scorer_num_nn = 1)",
      Check::at_least(1));
    v("distance", distance,
      "squared_l2 (what the reference's faiss IndexFlatL2 returns), l2, or cosine (1 - cosine similarity)",
      Check::one_of({"squared_l2", "l2", "cosine"}));
    v("backend", backend,
      "auto (pruned for (squared) L2 on a float32 bank of at least 2048 rows, else faiss when built with it, else "
      "torch), pruned (exact: a principal-component lower bound skips the bank rows that cannot be among the k "
      "nearest, and only the rest are measured), faiss (IndexFlat), or torch (chunked matmuls, bounded memory)",
      Check::one_of({"auto", "pruned", "faiss", "torch"}));
    v("fp16_bank", fp16_bank, "store the bank in float16 (half the memory; distances computed in float32)");
    v("chunk", chunk, "torch backend: bank rows per distance block (bounds memory to queries x chunk)",
      Check::at_least(1));
    v("prune_dims", prune_dims,
      "pruned backend: principal components in the lower bound; 0 = the fewest (a multiple of 8, from 8 to 64 and "
      "at most half the feature dimension) that hold 99% of the bank's variance. More prune more rows but cost more "
      "per row",
      Check::at_least(0));
    v("arithmetic", arithmetic,
      "pruned backend: how a measured distance is rounded. faiss: |q|^2 + |b|^2 - 2 q.b with the BLAS product, "
      "as faiss's IndexFlatL2 (and so the reference) computes it, giving faiss's values bit for bit; direct: the sum "
      "of squared differences (no cancellation; the last bits differ from faiss's); auto (default): faiss where adfw "
      "has faiss and the BLAS's summation order could be matched, else direct",
      Check::one_of({"auto", "faiss", "direct"}));
  }
};

/// How the pruned backend has done so far (see MemoryBank::pruning()).
struct KnnPruningStats {
  int64_t dims = 0;             ///< principal components in the bound
  double variance_kept = 0;     ///< fraction of the bank's variance those components hold
  int64_t queries = 0;          ///< queries answered by the bound
  int64_t exact = 0;            ///< bank rows measured exactly for them
  int64_t fallback_queries = 0; ///< queries of blocks where the bound pruned too little (searched in full)
  std::string arithmetic;       ///< "faiss (<the BLAS order>)" or "direct"
};

class MemoryBank {
 public:
  explicit MemoryBank(KnnOptions o = {});
  ~MemoryBank();
  MemoryBank(MemoryBank&&) noexcept;
  MemoryBank& operator=(MemoryBank&&) noexcept;

  /// Replaces the bank with `features` (n, d) float32.
  void set(torch::Tensor features);
  /// Replaces the bank with a features() of a bank with the same options (a saved state): taken
  /// as stored, without normalising again, so the distances are the saved bank's bit for bit.
  void restore(const torch::Tensor& stored);
  int64_t size() const;
  int64_t dim() const;
  const torch::Tensor& features() const { return bank_; }

  /// Distances to the k nearest bank rows for each query row (m, d) -> (m, k), ascending.
  torch::Tensor search(const torch::Tensor& queries) const;
  /// Mean of the k nearest distances per query -> (m,).
  torch::Tensor score(const torch::Tensor& queries) const;
  std::string backend_in_use() const;
  /// Counters of the pruned backend (all zero for the others).
  KnnPruningStats pruning() const;

 private:
  torch::Tensor search_torch(const torch::Tensor& q) const;
  torch::Tensor search_pruned(const torch::Tensor& q) const;
  torch::Tensor search_full(const torch::Tensor& q) const;  ///< faiss when built with it, else torch
  struct Faiss;
  std::unique_ptr<Faiss> make_faiss(const torch::Tensor& f) const;
  void index(const torch::Tensor& f);  ///< bank rows as they are: norms, faiss index or the pruning bound
  KnnOptions opt_;
  torch::Tensor bank_;
  torch::Tensor bank_sq_norms_;
  std::unique_ptr<Faiss> faiss_;
  struct Pruning;
  std::unique_ptr<Pruning> pruning_;
};

// ---------------------------------------------------------------------------------------------
// Per-position Gaussians (PaDiM, Defard et al. ICPR 2021; xiahaifeng1995 main.py)
// ---------------------------------------------------------------------------------------------
struct PatchGaussianOptions {
  double regularization = 0.01;
  int64_t window = 1;
  std::string sums = "auto";
  template <class V>
  void fields(V& v) {
    v("regularization", regularization, "added to every covariance diagonal (reference: 0.01 I)", Check::positive());
    v("window", window,
      "each position's mean and covariance are estimated from the window x window neighbourhood of grid positions "
      "(clipped at the border): 1 = the position alone (reference); odd sizes; a size >= twice the grid side gives "
      "one Gaussian shared by all positions. Larger windows trade spatial specificity for samples, which helps "
      "textures and objects that are not aligned",
      Check::odd_at_least(1));
    v("sums", sums,
      "precision of the streamed sums: auto (float64 while they fit in 4 GB, else float32), float64, float32; "
      "both are taken about a common shift, so float32 stays accurate",
      Check::one_of({"auto", "float64", "float32"}));
  }
};

class PatchGaussian {
 public:
  /// Throws Error for options its checks refuse (an even window), before any data is streamed.
  explicit PatchGaussian(PatchGaussianOptions o = {});
  /// Accumulates embeddings (N, d, h, w) (streaming: memory is positions x d x d in the `sums` precision).
  void accumulate(const torch::Tensor& embeddings);
  /// Mean, covariance + reg I, and the inverse Cholesky factor per position (pooled over the
  /// window). Works one grid row at a time, so the peak beyond the sums is one row's matrices.
  void finalize();
  /// Mahalanobis distance per position (N, h, w).
  torch::Tensor distance(const torch::Tensor& embeddings) const;
  int64_t count() const { return n_; }
  const torch::Tensor& mean() const { return mean_; }         ///< (P, d)
  const torch::Tensor& inv_chol() const { return inv_chol_; } ///< (P, d, d) inverse Cholesky factors
  /// [h, w, images] of the fitted grid, for saving with mean() and inv_chol().
  torch::Tensor geometry() const;
  /// The state of a finalize()d PatchGaussian from its saved mean, inverse Cholesky factors and
  /// geometry. Throws Error naming `source` when the shapes do not fit together.
  void restore(const torch::Tensor& mean, const torch::Tensor& inv_chol, const torch::Tensor& geometry,
               const std::string& source);

 private:
  PatchGaussianOptions opt_;
  int64_t n_ = 0, h_ = 0, w_ = 0, d_ = 0;
  torch::Tensor sum_, sum_outer_, shift_;
  torch::Tensor mean_, inv_chol_;
};

}  // namespace adfw
