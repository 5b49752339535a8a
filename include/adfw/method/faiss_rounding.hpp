// faiss's rounding of squared L2 distances, reproduced one pair at a time.
//
// faiss's IndexFlatL2 (what the PatchCore reference searches with) computes |q|^2 + |b|^2 - 2 q.b,
// the norms with its own fvec_norm_L2sqr and the products q.b as one BLAS sgemm per block of 4096
// queries x 1024 bank rows (faiss/utils/distances.cpp, exhaustive_L2sqr_blas); for fewer than 20
// queries it sums squared differences instead (fvec_L2sqr). The cancellation in that formula moves
// the last bits of every distance, and with them the last digits of the metrics. A search that
// measures only some pairs (the pruned backend) gives faiss's values bit for bit if each pair it
// measures is rounded as faiss would have rounded it:
//
//  - Products. A BLAS computes one element of a large product as a chain of multiply-adds over the
//    shared dimension, cut into blocks (OpenBLAS: GEMM_Q, with its rule for the last two blocks),
//    each block summed from zero and added to the element in turn. Which blocks, and whether the
//    multiply-adds are fused, depends on the BLAS and the CPU; L2Rounding::for_dim finds out once
//    per dimension by comparing candidate orders with a real sgemm call, and declines when none
//    matches (then the caller keeps its own arithmetic).
//  - Small blocks. A BLAS may take another path for small products (OpenBLAS's small-matrix kernels
//    on AVX-512 CPUs). faiss's blocks that are small enough for that (the bank's last, partial
//    block; a short last query block) are computed with the very sgemm call faiss makes.
//  - Norms and the short-query path call faiss's own functions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace adfw {

class L2Rounding {
 public:
  /// Pairs per dots() kernel pass: eight independent chains keep the multiply-add units busy
  /// although each chain is sequential. Callers that batch pairs use the same count.
  static constexpr int64_t kLanes = 8;

  /// The BLAS rounding order for products of length `d`, found on first use and cached; nullptr
  /// (with the reason in *why) when adfw was built without faiss or no known order matches.
  static std::shared_ptr<const L2Rounding> for_dim(int64_t d, std::string* why = nullptr);

  int64_t dim() const { return d_; }
  /// "sgemm blocks 320+320+192+192, fused multiply-add" (for logs and run records).
  std::string describe() const;
  /// faiss::fvec_norms_L2sqr of n rows.
  void norms(const float* x, int64_t n, float* out) const;
  /// q.rows[c] for c < count, each rounded as an element of a large sgemm product.
  void dots(const float* q, const float* const* rows, int64_t count, float* out) const;

  /// Use for_dim(). `cuts` are the block ends along d (the last is d).
  L2Rounding(int64_t d, std::vector<int32_t> cuts, bool fused) : d_(d), cuts_(std::move(cuts)), fused_(fused) {}

 private:
  int64_t d_;
  std::vector<int32_t> cuts_;
  bool fused_;
};

/// One faiss IndexFlatL2::search call over `m` queries and `n` bank rows (both row-major, `d`
/// columns), seen pair by pair: distance(i, j) is the value faiss computes for that pair in that
/// call. `bank_norms` are the bank's L2Rounding::norms.
class L2SearchRounding {
 public:
  L2SearchRounding(const L2Rounding& r, const float* queries, int64_t m, const float* bank, const float* bank_norms,
                   int64_t n);
  /// faiss's squared distances of query i to the bank rows js[0..count) (clamped at 0 as faiss does).
  void distances(int64_t i, const int64_t* js, int64_t count, float* out) const;
  /// All pairs of queries [q0, q1) and bank rows [b0, b1): out[(i - q0) * (b1 - b0) + (j - b0)].
  void block(int64_t q0, int64_t q1, int64_t b0, int64_t b1, float* out) const;
  /// |q_i|^2 as faiss computes it (the rounding allowance of a caller's bound is relative to it).
  float query_norm(int64_t i) const { return q_norms_[static_cast<std::size_t>(i)]; }

 private:
  /// The product q_i.b_j from faiss's identical sgemm call when (i, j) lies in a small block, else null.
  const float* small_element(int64_t i, int64_t j) const;
  const L2Rounding& r_;
  const float* q_;
  const float* b_;
  const float* b_norms_;
  int64_t n_, d_;
  bool sequential_;            // fewer queries than faiss's BLAS threshold: direct differences
  int64_t qbs_ = 1, bbs_ = 1;  // faiss's query and bank block sizes
  int64_t q_blocks_ = 0, b_blocks_ = 0;
  std::vector<float> q_norms_;
  std::vector<std::vector<float>> small_;  // per (query block, bank block): the product when small
};

}  // namespace adfw
