#include "adfw/metric/curves.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <thread>

#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "adfw/core/threads.hpp"

namespace adfw::metric {

uint32_t descending_key(float score) {
  if (score == 0.f) score = 0.f;  // -0 == +0 as thresholds
  uint32_t bits;
  std::memcpy(&bits, &score, 4);
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return ~ascending;
}

float score_of_descending_key(uint32_t key) {
  const uint32_t ascending = ~key;
  const uint32_t bits = (ascending & 0x80000000u) ? (ascending & 0x7fffffffu) : ~ascending;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

int worker_count(int requested) {
  const int n = requested > 0 ? requested : available_cores();
  return std::max(1, n);
}

template <class F>
void parallel_for(int threads, int64_t count, F&& body) {
  // body(begin, end, thread_index) on contiguous ranges.
  threads = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, count)));
  if (threads <= 1) {
    body(int64_t{0}, count, 0);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    const int64_t b = count * t / threads, e = count * (t + 1) / threads;
    pool.emplace_back([&, b, e, t] {
      try {
        body(b, e, t);
      } catch (...) {
        errors[static_cast<std::size_t>(t)] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// The distinct score values of the positives, best first, with what each adds to the curve.
// Between two consecutive positive scores the curve is horizontal (only false positives grow), so
// these points plus the end point describe it exactly for AUROC, AP, F1-max and PRO: negatives are
// only counted into the buckets between positive scores and never sorted or stored.
struct PositiveGroups {
  std::vector<uint32_t> keys;    ///< distinct descending_key values, ascending
  std::vector<int64_t> tp_inc;   ///< positives at each key
  std::vector<double> pro_inc;   ///< sum of 1 / region size of those positives
};

// `pos` sorted: key << 32 | region.
PositiveGroups group_positives(const std::vector<uint64_t>& pos, const double* region_weight) {
  PositiveGroups g;
  for (std::size_t i = 0; i < pos.size();) {
    const auto key = static_cast<uint32_t>(pos[i] >> 32);
    int64_t count = 0;
    double pro = 0;
    for (; i < pos.size() && static_cast<uint32_t>(pos[i] >> 32) == key; ++i) {
      ++count;
      if (region_weight) pro += region_weight[static_cast<uint32_t>(pos[i])];
    }
    g.keys.push_back(key);
    g.tp_inc.push_back(count);
    g.pro_inc.push_back(pro);
  }
  return g;
}

// lower_bound over the positive keys in O(1) expected time: a table over the key range gives the
// few candidates between which the binary search runs. A negative with bucket j enters the curve at
// point j (its score is >= the j-th positive score and < the (j-1)-th); j = keys.size() = after all.
class BucketIndex {
 public:
  explicit BucketIndex(const std::vector<uint32_t>& keys) : keys_(keys) {
    if (keys.empty()) return;
    lo_ = keys.front();
    const uint32_t span = keys.back() - lo_;
    while ((static_cast<uint64_t>(span) >> shift_) >= (1u << 20)) ++shift_;
    const uint64_t buckets = (static_cast<uint64_t>(span) >> shift_) + 2;
    table_.resize(buckets + 1);
    std::size_t j = 0;
    for (uint64_t t = 0; t <= buckets; ++t) {
      const uint64_t bound = static_cast<uint64_t>(lo_) + (t << shift_);
      while (j < keys.size() && keys[j] < bound) ++j;
      table_[t] = static_cast<uint32_t>(j);
    }
  }
  std::size_t find(uint32_t key) const {
    if (keys_.empty() || key <= lo_) return 0;
    if (key > keys_.back()) return keys_.size();
    const uint64_t t = static_cast<uint64_t>(key - lo_) >> shift_;
    const uint32_t* k = keys_.data();
    return static_cast<std::size_t>(std::lower_bound(k + table_[t], k + table_[t + 1], key) - k);
  }
  /// Bucket of a negative key in walk()'s layout: 2j before positive key j, 2j + 1 tied with it.
  std::size_t slot(uint32_t key) const {
    const std::size_t j = find(key);
    return 2 * j + (j < keys_.size() && keys_[j] == key ? 1 : 0);
  }

 private:
  const std::vector<uint32_t>& keys_;
  uint32_t lo_ = 0;
  int shift_ = 0;
  std::vector<uint32_t> table_;
};

// Streaming consumers of the curve: one call per distinct threshold, in descending score order,
// with cumulative true/false positives and the cumulative PRO numerator.
struct CurveAccumulator {
  int64_t P = 0, N = 0;
  double regions = 0;
  // AUROC: twice the trapezoid area in integer units (exact).
  unsigned __int128 area2 = 0;
  long double ap_sum = 0;
  double f1_best = -1, f1_threshold = 0;
  int64_t tp_prev = 0, fp_prev = 0;
  struct Pro {
    double limit, px = 0, py = 0, area = 0;
    bool done = false;
  };
  std::vector<Pro> pro;

  void point(int64_t tp, int64_t fp, double pro_sum, float threshold) {
    area2 += static_cast<unsigned __int128>(fp - fp_prev) * static_cast<unsigned __int128>(tp + tp_prev);
    if (tp > tp_prev) ap_sum += static_cast<long double>(tp - tp_prev) * tp / static_cast<long double>(tp + fp);
    if (P > 0) {
      // >= : among equal F1 values the lowest threshold wins, like numpy's argmax over
      // sklearn's ascending-threshold precision/recall arrays.
      const double f1 = 2.0 * static_cast<double>(tp) / static_cast<double>(tp + fp + P);
      if (f1 >= f1_best) {
        f1_best = f1;
        f1_threshold = threshold;
      }
    }
    tp_prev = tp;
    fp_prev = fp;
    if (!pro.empty()) {
      const double x = std::min(1.0, static_cast<double>(fp) / static_cast<double>(N));
      const double y = std::min(1.0, pro_sum / regions);
      pro_point(x, y);
    }
  }
  void pro_point(double x, double y) {
    for (auto& p : pro) {
      if (p.done) continue;
      if (x <= p.limit) {
        p.area += 0.5 * (y + p.py) * (x - p.px);
        p.px = x;
        p.py = y;
      } else {
        const double yi = p.py + (y - p.py) * (p.limit - p.px) / (x - p.px);
        p.area += 0.5 * (yi + p.py) * (p.limit - p.px);
        p.done = true;
      }
    }
  }
  void finish() {
    if (!pro.empty()) pro_point(1.0, 1.0);  // the reference curve ends at (1, 1)
  }
};

// Emits the curve from bucket counts: counts[2j] = negatives scoring strictly between positive
// score j and the one before it (a horizontal segment at the previous tp), counts[2j + 1] =
// negatives tied with positive score j (entering together with its positives, a diagonal
// segment), counts[2D] = negatives below every positive score.
void walk(const PositiveGroups& g, const std::vector<int64_t>& counts, CurveAccumulator& acc) {
  int64_t tp = 0, fp = 0;
  double pro_sum = 0;
  const std::size_t D = g.keys.size();
  for (std::size_t j = 0; j <= D; ++j) {
    const float score = D ? score_of_descending_key(g.keys[std::min(j, D - 1)]) : 0.f;
    if (counts[2 * j] > 0) {
      // More false positives at the same tp: a strictly worse F1, so its threshold is moot.
      fp += counts[2 * j];
      acc.point(tp, fp, pro_sum, score);
    }
    if (j == D) break;
    tp += g.tp_inc[j];
    fp += counts[2 * j + 1];
    pro_sum += g.pro_inc[j];
    acc.point(tp, fp, pro_sum, score);
  }
  acc.finish();
}

std::string count_text(int64_t pos, int64_t neg) {
  std::ostringstream s;
  s << pos << " positive and " << neg << " negative";
  return s.str();
}

void fill_binary(const CurveAccumulator& acc, const BinaryRequest& req, BinaryMetrics& out) {
  out.positives = acc.P;
  out.negatives = acc.N;
  if (req.auroc)
    out.auroc = static_cast<double>(static_cast<long double>(acc.area2) /
                                    (2.0L * static_cast<long double>(acc.P) * static_cast<long double>(acc.N)));
  if (req.ap) out.ap = static_cast<double>(acc.ap_sum / static_cast<long double>(acc.P));
  if (req.f1) {
    out.f1_max = acc.f1_best;
    out.f1_threshold = acc.f1_threshold;
  }
}

void check_classes(const BinaryRequest& req, int64_t P, int64_t N, const std::string& level,
                   const std::string& pos_name, const std::string& neg_name) {
  if (req.auroc && (P == 0 || N == 0))
    throw Error(level + " AUROC needs at least one " + pos_name + " and one " + neg_name + "; got " +
                std::to_string(P) + " " + pos_name + "s and " + std::to_string(N) + " " + neg_name + "s");
  if ((req.ap || req.f1) && P == 0)
    throw Error(level + std::string(req.ap ? " AP" : " F1-max") + " needs at least one " + pos_name + "; got none (" +
                std::to_string(N) + " " + neg_name + "s)");
}

}  // namespace

BinaryMetrics binary_metrics(const float* scores, const int64_t* labels, std::size_t n, const BinaryRequest& req,
                             const std::string& what) {
  std::vector<uint32_t> neg;
  std::vector<uint64_t> pos;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(scores[i]))
      throw Error(what + ": score " + std::to_string(i) + " is " + (std::isnan(scores[i]) ? "NaN" : "infinite") +
                  "; metrics need finite scores");
    if (labels[i] == 1) pos.push_back(static_cast<uint64_t>(descending_key(scores[i])) << 32);
    else if (labels[i] == 0) neg.push_back(descending_key(scores[i]));
    else
      throw Error(what + ": label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                  "; labels must be 0 (normal) or 1 (anomalous)");
  }
  const int64_t P = static_cast<int64_t>(pos.size()), N = static_cast<int64_t>(neg.size());
  check_classes(req, P, N, "image-level", "anomalous (label 1) sample", "normal (label 0) sample");
  std::sort(pos.begin(), pos.end());
  const PositiveGroups g = group_positives(pos, nullptr);
  const BucketIndex index(g.keys);
  std::vector<int64_t> buckets(2 * g.keys.size() + 1, 0);
  for (uint32_t k : neg) ++buckets[index.slot(k)];
  CurveAccumulator acc;
  acc.P = P;
  acc.N = N;
  walk(g, buckets, acc);
  BinaryMetrics out;
  fill_binary(acc, req, out);
  return out;
}

BinaryMetrics binary_metrics(const std::vector<float>& scores, const std::vector<int64_t>& labels,
                             const BinaryRequest& req, const std::string& what) {
  if (scores.size() != labels.size())
    throw Error(what + ": " + std::to_string(scores.size()) + " scores but " + std::to_string(labels.size()) +
                " labels; they must have the same length");
  return binary_metrics(scores.data(), labels.data(), scores.size(), req, what);
}

PixelMetrics pixel_metrics(const float* maps, const uint8_t* masks, int64_t n, int64_t h, int64_t w,
                           const PixelRequest& req) {
  if (n < 0 || h <= 0 || w <= 0)
    throw Error("pixel metrics: invalid map shape (" + std::to_string(n) + ", " + std::to_string(h) + ", " +
                std::to_string(w) + ")");
  for (double l : req.aupro_limits)
    if (!(l > 0 && l <= 1))
      throw Error("AUPRO: FPR limit " + std::to_string(l) + " is outside (0, 1]");
  const bool want_pro = !req.aupro_limits.empty();
  const int threads = worker_count(req.threads);
  const int64_t hw = h * w;

  // Pass 1: validate and count defect pixels per image.
  std::vector<int64_t> pos_count(static_cast<std::size_t>(n), 0);
  parallel_for(threads, n, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const float* m = maps + i * hw;
      const uint8_t* g = masks + i * hw;
      int64_t c = 0;
      for (int64_t j = 0; j < hw; ++j) {
        if (!std::isfinite(m[j]))
          throw Error("anomaly map " + std::to_string(i) + " has a " + (std::isnan(m[j]) ? "NaN" : "infinite") +
                      " value at pixel (" + std::to_string(j / w) + ", " + std::to_string(j % w) +
                      "); metrics need finite scores");
        if (g[j] > 1)
          throw Error("mask " + std::to_string(i) + " has value " + std::to_string(g[j]) + " at pixel (" +
                      std::to_string(j / w) + ", " + std::to_string(j % w) +
                      "); masks must be 0/1 (binarise 0/255 masks with mask > 0 first)");
        c += g[j];
      }
      pos_count[static_cast<std::size_t>(i)] = c;
    }
  });
  std::vector<int64_t> pos_off(static_cast<std::size_t>(n) + 1, 0);
  for (int64_t i = 0; i < n; ++i) pos_off[i + 1] = pos_off[i] + pos_count[i];
  const int64_t P = pos_off[n];
  const int64_t N = n * hw - P;
  BinaryRequest breq{req.auroc, req.ap, req.f1};
  check_classes(breq, P, N, "pixel-level", "defect pixel (mask 1)", "defect-free pixel (mask 0)");
  if (want_pro && (P == 0 || N == 0))
    throw Error("AUPRO needs at least one ground-truth region and one defect-free pixel; got " + count_text(P, N) +
                " pixels");

  // Pass 2: positives with their 8-connected region (local ids, rebased below).
  std::vector<uint64_t> pos(static_cast<std::size_t>(P));
  std::vector<std::vector<uint32_t>> region_sizes(static_cast<std::size_t>(n));
  parallel_for(threads, n, [&](int64_t b, int64_t e, int) {
    cv::Mat cc_labels;
    for (int64_t i = b; i < e; ++i) {
      if (pos_count[i] == 0) continue;
      const float* m = maps + i * hw;
      const uint8_t* g = masks + i * hw;
      uint64_t* pk = pos.data() + pos_off[i];
      const int32_t* lab = nullptr;
      if (want_pro) {
        const cv::Mat gm(static_cast<int>(h), static_cast<int>(w), CV_8U, const_cast<uint8_t*>(g));
        const int count = cv::connectedComponents(gm, cc_labels, 8, CV_32S);
        auto& sizes = region_sizes[static_cast<std::size_t>(i)];
        sizes.assign(static_cast<std::size_t>(count - 1), 0);
        lab = cc_labels.ptr<int32_t>();
        for (int64_t j = 0; j < hw; ++j)
          if (lab[j] > 0) ++sizes[static_cast<std::size_t>(lab[j] - 1)];
      }
      for (int64_t j = 0; j < hw; ++j)
        if (g[j])
          *pk++ = (static_cast<uint64_t>(descending_key(m[j])) << 32) |
                  (lab ? static_cast<uint32_t>(lab[j] - 1) : 0u);
    }
  });
  std::vector<double> weight;
  if (want_pro) {
    std::vector<uint32_t> base(static_cast<std::size_t>(n), 0);
    uint64_t total = 0;
    for (int64_t i = 0; i < n; ++i) {
      base[i] = static_cast<uint32_t>(total);
      total += region_sizes[i].size();
    }
    if (total > UINT32_MAX) throw Error("AUPRO: more than 2^32 ground-truth regions");
    weight.reserve(total);
    for (const auto& s : region_sizes)
      for (uint32_t sz : s) weight.push_back(1.0 / sz);
    for (int64_t i = 0; i < n; ++i)
      if (base[i])
        for (int64_t k = pos_off[i]; k < pos_off[i + 1]; ++k) pos[k] += base[i];
  }

  // Sort the positives (two halves in parallel, then merged).
  if (threads > 1 && pos.size() > 65536) {
    const auto mid = pos.begin() + static_cast<std::ptrdiff_t>(pos.size() / 2);
    std::thread half([&] { std::sort(pos.begin(), mid); });
    std::sort(mid, pos.end());
    half.join();
    std::inplace_merge(pos.begin(), mid, pos.end());
  } else {
    std::sort(pos.begin(), pos.end());
  }
  const PositiveGroups groups = group_positives(pos, want_pro ? weight.data() : nullptr);
  std::vector<uint64_t>().swap(pos);

  // Pass 3: count each defect-free pixel into the bucket of its rank among the positive scores.
  const BucketIndex index(groups.keys);
  const std::size_t nb = 2 * groups.keys.size() + 1;
  const int workers = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, n)));
  std::vector<std::vector<int64_t>> partial(static_cast<std::size_t>(workers));
  parallel_for(workers, n, [&](int64_t b, int64_t e, int t) {
    auto& counts = partial[static_cast<std::size_t>(t)];
    counts.assign(nb, 0);
    for (int64_t i = b; i < e; ++i) {
      const float* m = maps + i * hw;
      const uint8_t* g = masks + i * hw;
      for (int64_t j = 0; j < hw; ++j)
        if (!g[j]) ++counts[index.slot(descending_key(m[j]))];
    }
  });
  std::vector<int64_t> buckets(nb, 0);
  for (const auto& c : partial)
    for (std::size_t j = 0; j < c.size(); ++j) buckets[j] += c[j];

  CurveAccumulator acc;
  acc.P = P;
  acc.N = N;
  for (double l : req.aupro_limits) acc.pro.push_back({l});
  acc.regions = static_cast<double>(weight.size());
  walk(groups, buckets, acc);

  PixelMetrics out;
  fill_binary(acc, breq, out.binary);
  out.regions = static_cast<int64_t>(weight.size());
  for (const auto& p : acc.pro) out.aupro[p.limit] = p.area / p.limit;
  return out;
}

}  // namespace adfw::metric
