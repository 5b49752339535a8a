#include "adfw/method/faiss_rounding.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>

#if ADFW_HAVE_FAISS
#include <faiss/utils/distances.h>

// The BLAS faiss is linked with (faiss declares it the same way in its sources).
extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                      const float* beta, float* c, const int* ldc);
#endif

namespace adfw {

namespace {

// Products of at most this many multiply-adds (M x N x K) are computed with the same sgemm call
// faiss makes: a BLAS may use another kernel for small ones (OpenBLAS's small-matrix path starts at
// about 1e6 on AVX-512 CPUs). Larger ones are on the blocked path every order below describes.
constexpr int64_t kIdenticalCall = int64_t(1) << 24;

constexpr int64_t kLanes = L2Rounding::kLanes;

/// faiss's distance from its parts: dis = x_norm + y_norm - 2 ip, negative values (round-off of
/// identical vectors) set to 0 (exhaustive_L2sqr_blas).
inline float faiss_l2(float x_norm, float y_norm, float ip) {
  const float dis = x_norm + y_norm - 2 * ip;
  return dis < 0 ? 0.f : dis;
}

#define ADFW_DOT_KERNEL(FMA_EXPR)                                                             \
  for (int64_t c0 = 0; c0 < count; c0 += kLanes) {                                            \
    const int64_t lanes = std::min(kLanes, count - c0);                                       \
    const float* r[kLanes];                                                                   \
    for (int64_t l = 0; l < kLanes; ++l) r[l] = rows[c0 + std::min(l, lanes - 1)];            \
    float total[kLanes] = {0.f};                                                              \
    int32_t s = 0;                                                                            \
    for (std::size_t b = 0; b < ncuts; ++b) {                                                 \
      const int32_t e = cuts[b];                                                              \
      float acc[kLanes] = {0.f};                                                              \
      for (int32_t k = s; k < e; ++k) {                                                       \
        const float a = q[k];                                                                 \
        for (int64_t l = 0; l < kLanes; ++l) acc[l] = FMA_EXPR;                               \
      }                                                                                       \
      for (int64_t l = 0; l < kLanes; ++l) total[l] = total[l] + acc[l];                      \
      s = e;                                                                                  \
    }                                                                                         \
    for (int64_t l = 0; l < lanes; ++l) out[c0 + l] = total[l];                               \
  }

// The same chains three ways: fused with the CPU's instruction, fused in software (a CPU without
// FMA cannot have produced fused sums, but calibration still tries the order), and unfused with
// contraction forbidden, so a build with -mfma does not fuse them behind our back.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((target("fma")))
#endif
void dots_fused_hw(const float* q, const float* const* rows, int64_t count, const int32_t* cuts, std::size_t ncuts,
                   float* out) {
  ADFW_DOT_KERNEL(__builtin_fmaf(a, r[l][k], acc[l]))
}
void dots_fused_sw(const float* q, const float* const* rows, int64_t count, const int32_t* cuts, std::size_t ncuts,
                   float* out) {
  ADFW_DOT_KERNEL(std::fma(a, r[l][k], acc[l]))
}
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void dots_unfused(const float* q, const float* const* rows, int64_t count, const int32_t* cuts, std::size_t ncuts,
                  float* out) {
  ADFW_DOT_KERNEL(acc[l] + a * r[l][k])
}
#undef ADFW_DOT_KERNEL

bool cpu_has_fma() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const bool has = __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

/// OpenBLAS's level-3 driver's blocks along K (driver/level3/level3.c): GEMM_Q at a time, except
/// that a remainder between Q and 2Q is split in two halves rounded up to the unroll.
std::vector<int32_t> openblas_cuts(int32_t d, int32_t q, int32_t unroll) {
  std::vector<int32_t> cuts;
  int32_t ls = 0;
  while (ls < d) {
    int32_t len = d - ls;
    if (len >= 2 * q) len = q;
    else if (len > q) len = std::min(d - ls, ((len / 2 + unroll - 1) / unroll) * unroll);
    ls += len;
    cuts.push_back(ls);
  }
  return cuts;
}

}  // namespace

void L2Rounding::dots(const float* q, const float* const* rows, int64_t count, float* out) const {
  if (!fused_) dots_unfused(q, rows, count, cuts_.data(), cuts_.size(), out);
  else if (cpu_has_fma()) dots_fused_hw(q, rows, count, cuts_.data(), cuts_.size(), out);
  else dots_fused_sw(q, rows, count, cuts_.data(), cuts_.size(), out);
}

std::string L2Rounding::describe() const {
  std::string s = "sgemm blocks ";
  int32_t prev = 0;
  for (std::size_t i = 0; i < cuts_.size(); ++i) {
    s += (i ? "+" : "") + std::to_string(cuts_[i] - prev);
    prev = cuts_[i];
  }
  return s + (fused_ ? ", fused multiply-add" : ", separate multiply and add");
}

#if ADFW_HAVE_FAISS

void L2Rounding::norms(const float* x, int64_t n, float* out) const {
  faiss::fvec_norms_L2sqr(out, x, static_cast<std::size_t>(d_), static_cast<std::size_t>(n));
}

namespace {
void blas_product(const float* bank_rows, int64_t nb, const float* queries, int64_t nq, int64_t d, float* out) {
  const int mi = static_cast<int>(nb), ni = static_cast<int>(nq), di = static_cast<int>(d);
  const float one = 1.f, zero = 0.f;
  // faiss's call: the bank block transposed times the query block, column-major (nb x nq).
  sgemm_("Transposed", "Not transposed", &mi, &ni, &di, &one, bank_rows, &di, queries, &di, &zero, out, &mi);
}

std::shared_ptr<const L2Rounding> calibrate(int64_t d64, std::string* why) {
  const int32_t d = static_cast<int32_t>(d64);
  // A product well inside the blocked path: 1024 bank-like rows and enough queries.
  const int64_t nb = 1024;
  const int64_t nq = std::max<int64_t>(16, (2 * kIdenticalCall) / (nb * d64) + 1);
  std::mt19937 gen(20221);
  std::uniform_real_distribution<float> u(-0.5f, 1.5f);
  std::vector<float> y(static_cast<std::size_t>(nb * d)), x(static_cast<std::size_t>(nq * d));
  for (float& v : y) v = u(gen);
  for (float& v : x) v = u(gen);
  std::vector<float> c(static_cast<std::size_t>(nb * nq));
  blas_product(y.data(), nb, x.data(), nq, d, c.data());
  std::vector<const float*> rows(static_cast<std::size_t>(nb));
  for (int64_t j = 0; j < nb; ++j) rows[static_cast<std::size_t>(j)] = y.data() + j * d;

  std::set<std::vector<int32_t>> orders;
  for (int32_t q = 4; q < d + 4; q += 4)
    for (int32_t unroll : {1, 2, 4, 8, 16, 32, 64}) orders.insert(openblas_cuts(d, std::min(q, d), unroll));
  std::vector<float> got(static_cast<std::size_t>(nb));
  for (bool fused : {true, false}) {
    for (const std::vector<int32_t>& cuts : orders) {
      auto r = std::make_shared<L2Rounding>(d64, cuts, fused);
      const auto matches = [&](int64_t i, int64_t count) {
        r->dots(x.data() + i * d, rows.data(), count, got.data());
        return std::memcmp(got.data(), c.data() + i * nb, sizeof(float) * static_cast<std::size_t>(count)) == 0;
      };
      // A wrong order shows within a few pairs; the right one is checked on every pair.
      bool same = matches(0, 16);
      for (int64_t i = 0; i < nq && same; ++i) same = matches(i, nb);
      if (same) return r;
    }
  }
  if (why)
    *why = "the BLAS's sgemm sums products of length " + std::to_string(d) +
           " in an order adfw does not know (none of OpenBLAS's blockings, fused or not, matches it)";
  return nullptr;
}
}  // namespace

std::shared_ptr<const L2Rounding> L2Rounding::for_dim(int64_t d, std::string* why) {
  static std::mutex mutex;
  static std::map<int64_t, std::pair<std::shared_ptr<const L2Rounding>, std::string>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(d);
  if (it == cache.end()) {
    std::string reason;
    auto r = d > 0 && d < (int64_t(1) << 24) ? calibrate(d, &reason) : nullptr;
    if (!r && reason.empty()) reason = "unsupported dimension " + std::to_string(d);
    it = cache.emplace(d, std::make_pair(r, reason)).first;
  }
  if (!it->second.first && why) *why = it->second.second;
  return it->second.first;
}

L2SearchRounding::L2SearchRounding(const L2Rounding& r, const float* queries, int64_t m, const float* bank,
                                   const float* bank_norms, int64_t n)
    : r_(r), q_(queries), b_(bank), b_norms_(bank_norms), n_(n), d_(r.dim()) {
  q_norms_.resize(static_cast<std::size_t>(m));
  r.norms(queries, m, q_norms_.data());
  // faiss/utils/distances.cpp knn_L2sqr: fewer queries than the threshold go pair by pair.
  sequential_ = m < faiss::distance_compute_blas_threshold;
  if (sequential_) return;
  qbs_ = faiss::distance_compute_blas_query_bs;
  bbs_ = faiss::distance_compute_blas_database_bs;
  q_blocks_ = (m + qbs_ - 1) / qbs_;
  b_blocks_ = (n + bbs_ - 1) / bbs_;
  small_.resize(static_cast<std::size_t>(q_blocks_ * b_blocks_));
  for (int64_t qi = 0; qi < q_blocks_; ++qi) {
    const int64_t nxi = std::min(qbs_, m - qi * qbs_);
    for (int64_t bj = 0; bj < b_blocks_; ++bj) {
      const int64_t nyi = std::min(bbs_, n - bj * bbs_);
      if (nxi * nyi * d_ > kIdenticalCall) continue;
      std::vector<float>& c = small_[static_cast<std::size_t>(qi * b_blocks_ + bj)];
      c.resize(static_cast<std::size_t>(nxi * nyi));
      blas_product(bank + bj * bbs_ * d_, nyi, queries + qi * qbs_ * d_, nxi, d_, c.data());
    }
  }
}

const float* L2SearchRounding::small_element(int64_t i, int64_t j) const {
  const int64_t qi = i / qbs_, bj = j / bbs_;
  const std::vector<float>& c = small_[static_cast<std::size_t>(qi * b_blocks_ + bj)];
  if (c.empty()) return nullptr;
  const int64_t stride = std::min(bbs_, n_ - bj * bbs_);  // the block's bank rows (column-major product)
  return c.data() + (i - qi * qbs_) * stride + (j - bj * bbs_);
}

void L2SearchRounding::distances(int64_t i, const int64_t* js, int64_t count, float* out) const {
  const float* q = q_ + i * d_;
  if (sequential_) {
    for (int64_t c = 0; c < count; ++c) out[c] = faiss::fvec_L2sqr(q, b_ + js[c] * d_, static_cast<std::size_t>(d_));
    return;
  }
  const float* rows[kLanes];
  int64_t where[kLanes];
  float ip[kLanes];
  int64_t pending = 0;
  const float xn = q_norms_[static_cast<std::size_t>(i)];
  const auto flush = [&] {
    r_.dots(q, rows, pending, ip);
    for (int64_t l = 0; l < pending; ++l) out[where[l]] = faiss_l2(xn, b_norms_[js[where[l]]], ip[l]);
    pending = 0;
  };
  for (int64_t c = 0; c < count; ++c) {
    if (const float* small = small_element(i, js[c])) {
      out[c] = faiss_l2(xn, b_norms_[js[c]], *small);
      continue;
    }
    rows[pending] = b_ + js[c] * d_;
    where[pending++] = c;
    if (pending == kLanes) flush();
  }
  if (pending) flush();
}

void L2SearchRounding::block(int64_t q0, int64_t q1, int64_t b0, int64_t b1, float* out) const {
  const int64_t nq = q1 - q0, nb = b1 - b0;
  std::vector<int64_t> js(static_cast<std::size_t>(nb));
  for (int64_t j = 0; j < nb; ++j) js[static_cast<std::size_t>(j)] = b0 + j;
  if (sequential_ || nq * nb * d_ <= kIdenticalCall) {
    for (int64_t i = q0; i < q1; ++i) distances(i, js.data(), nb, out + (i - q0) * nb);
    return;
  }
  // One product on the blocked path (its elements are the emulated chains'), then faiss's small
  // blocks where they fall in this range.
  blas_product(b_ + b0 * d_, nb, q_ + q0 * d_, nq, d_, out);
  for (int64_t i = q0; i < q1; ++i) {
    const float xn = q_norms_[static_cast<std::size_t>(i)];
    float* row = out + (i - q0) * nb;
    for (int64_t j = b0; j < b1; ++j) {
      const float* small = small_element(i, j);
      row[j - b0] = faiss_l2(xn, b_norms_[j], small ? *small : row[j - b0]);
    }
  }
}

#else  // !ADFW_HAVE_FAISS

void L2Rounding::norms(const float*, int64_t, float*) const {}

std::shared_ptr<const L2Rounding> L2Rounding::for_dim(int64_t, std::string* why) {
  if (why) *why = "adfw was built without faiss";
  return nullptr;
}

L2SearchRounding::L2SearchRounding(const L2Rounding& r, const float* queries, int64_t m, const float* bank,
                                   const float* bank_norms, int64_t n)
    : r_(r), q_(queries), b_(bank), b_norms_(bank_norms), n_(n), d_(r.dim()), sequential_(true) {
  (void)m;
}
const float* L2SearchRounding::small_element(int64_t, int64_t) const { return nullptr; }
void L2SearchRounding::distances(int64_t, const int64_t*, int64_t, float*) const {}
void L2SearchRounding::block(int64_t, int64_t, int64_t, int64_t, float*) const {}

#endif

}  // namespace adfw
