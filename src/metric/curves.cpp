#include "adfw/metric/curves.hpp"
#include "adfw/metric/curve_points.hpp"

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

// LSD radix sort of 32-bit keys in three 11-bit passes; passes where every key shares the digit
// are skipped (common: scores in a narrow range share their high bits). `tmp` has size n.
void radix_sort_u32(uint32_t* data, uint32_t* tmp, std::size_t n) {
  if (n < 2) return;
  if (n < 4096) {
    std::sort(data, data + n);
    return;
  }
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  std::vector<std::size_t> hist(3 * kBuckets, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const uint32_t k = data[i];
    ++hist[k & (kBuckets - 1)];
    ++hist[kBuckets + ((k >> kBits) & (kBuckets - 1))];
    ++hist[2 * kBuckets + (k >> (2 * kBits))];
  }
  uint32_t* src = data;
  uint32_t* dst = tmp;
  for (int pass = 0; pass < 3; ++pass) {
    std::size_t* h = hist.data() + pass * kBuckets;
    const int shift = pass * kBits;
    if (h[(src[0] >> shift) & (kBuckets - 1)] == n) continue;  // one bucket holds everything
    std::size_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const std::size_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const uint32_t k = src[i];
      dst[h[(k >> shift) & (kBuckets - 1)]++] = k;
    }
    std::swap(src, dst);
  }
  if (src != data) std::memcpy(data, src, n * sizeof(uint32_t));
}

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
  // Optional thinned copy of the curve for plots (curve_points.hpp).
  CurveTrace* trace = nullptr;
  double trace_step = 0;
  bool trace_pending = false;  // the latest point was not kept (the last one always is, in finish)
  float last_threshold = 0;
  double last_pro = 0;

  void trace_point(int64_t tp, int64_t fp, double pro_value, float threshold) {
    const double x = N ? static_cast<double>(fp) / static_cast<double>(N) : 0.0;
    const double y = P ? static_cast<double>(tp) / static_cast<double>(P) : 0.0;
    const double prec = tp + fp ? static_cast<double>(tp) / static_cast<double>(tp + fp) : 1.0;
    auto& t = *trace;
    const bool keep = t.fpr.empty() || std::abs(x - t.fpr.back()) >= trace_step ||
                      std::abs(y - t.tpr.back()) >= trace_step || std::abs(prec - t.precision.back()) >= trace_step ||
                      (!pro.empty() && std::abs(pro_value - t.pro.back()) >= trace_step);
    trace_pending = !keep;
    if (!keep) return;
    t.threshold.push_back(threshold);
    t.fpr.push_back(x);
    t.tpr.push_back(y);
    t.precision.push_back(prec);
    if (!pro.empty()) t.pro.push_back(pro_value);
  }

  void point(int64_t tp, int64_t fp, double pro_sum, float threshold) {
    if (trace) {
      last_pro = pro.empty() ? 0.0 : std::min(1.0, pro_sum / regions);
      last_threshold = threshold;
      trace_point(tp, fp, last_pro, threshold);
    }
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
    if (trace && trace_pending) {
      trace_step = 0;  // keep the last point whatever its distance
      trace_point(tp_prev, fp_prev, last_pro, last_threshold);
    }
  }
};

// Walks sorted negative runs and sorted positive entries (key << 32 | region) together in
// ascending key order (= descending score), emitting one curve point per distinct key.
void walk(const std::vector<std::pair<const uint32_t*, const uint32_t*>>& neg_runs, const uint64_t* pos,
          const uint64_t* pos_end, const double* region_weight, CurveAccumulator& acc) {
  auto runs = neg_runs;
  int64_t tp = 0, fp = 0;
  double pro_sum = 0;
  for (;;) {
    uint64_t next = UINT64_MAX;
    if (pos != pos_end) next = *pos >> 32;
    for (const auto& r : runs)
      if (r.first != r.second) next = std::min<uint64_t>(next, *r.first);
    if (next == UINT64_MAX) break;
    const auto key = static_cast<uint32_t>(next);
    for (auto& r : runs) {
      const uint32_t* p = r.first;
      while (p != r.second && *p == key) ++p;
      fp += p - r.first;
      r.first = p;
    }
    while (pos != pos_end && (*pos >> 32) == key) {
      ++tp;
      if (region_weight) pro_sum += region_weight[static_cast<uint32_t>(*pos)];
      ++pos;
    }
    acc.point(tp, fp, pro_sum, score_of_descending_key(key));
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
  std::sort(neg.begin(), neg.end());
  std::sort(pos.begin(), pos.end());
  CurveAccumulator acc;
  acc.P = P;
  acc.N = N;
  walk({{neg.data(), neg.data() + neg.size()}}, pos.data(), pos.data() + pos.size(), nullptr, acc);
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

namespace {

// The pixels of a test set as the curve walk consumes them: defect-free keys sorted in runs, defect
// keys sorted with their region ids, and each region's PRO weight (1 / its size).
struct SortedPixels {
  std::vector<uint32_t> neg;
  std::vector<uint64_t> pos;
  std::vector<double> weight;
  std::vector<std::pair<const uint32_t*, const uint32_t*>> neg_runs;
  int64_t P = 0, N = 0;
};

void sort_pixels(const float* maps, const uint8_t* masks, int64_t n, int64_t h, int64_t w, const PixelRequest& req,
                 SortedPixels& out) {
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

  // Pass 2: keys, and 8-connected regions of each mask (local ids, rebased below).
  out.P = P;
  out.N = N;
  std::vector<uint32_t>& neg = out.neg;
  std::vector<uint64_t>& pos = out.pos;
  neg.resize(static_cast<std::size_t>(N));
  pos.resize(static_cast<std::size_t>(P));
  std::vector<std::vector<uint32_t>> region_sizes(static_cast<std::size_t>(n));
  parallel_for(threads, n, [&](int64_t b, int64_t e, int) {
    cv::Mat cc_labels;
    for (int64_t i = b; i < e; ++i) {
      const float* m = maps + i * hw;
      const uint8_t* g = masks + i * hw;
      uint32_t* nk = neg.data() + (i * hw - pos_off[i]);
      uint64_t* pk = pos.data() + pos_off[i];
      if (pos_count[i] == 0) {
        for (int64_t j = 0; j < hw; ++j) nk[j] = descending_key(m[j]);
        continue;
      }
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
      for (int64_t j = 0; j < hw; ++j) {
        const uint32_t k = descending_key(m[j]);
        if (g[j]) *pk++ = (static_cast<uint64_t>(k) << 32) | (lab ? static_cast<uint32_t>(lab[j] - 1) : 0u);
        else *nk++ = k;
      }
    }
  });
  std::vector<double>& weight = out.weight;
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

  // Sort: each thread radix-sorts one run of the negatives; the walk merges the runs.
  const int runs = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, N / 65536)));
  auto& neg_runs = out.neg_runs;
  {
    std::vector<uint32_t> tmp(static_cast<std::size_t>(N));
    parallel_for(runs, runs, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t lo = N * r / runs, hi = N * (r + 1) / runs;
        radix_sort_u32(neg.data() + lo, tmp.data() + lo, static_cast<std::size_t>(hi - lo));
        if (r == 0) std::sort(pos.begin(), pos.end());
      }
    });
  }
  for (int r = 0; r < runs; ++r)
    neg_runs.emplace_back(neg.data() + N * r / runs, neg.data() + N * (r + 1) / runs);

}

}  // namespace

PixelMetrics pixel_metrics(const float* maps, const uint8_t* masks, int64_t n, int64_t h, int64_t w,
                           const PixelRequest& req) {
  SortedPixels sp;
  sort_pixels(maps, masks, n, h, w, req, sp);
  const bool want_pro = !req.aupro_limits.empty();
  const BinaryRequest breq{req.auroc, req.ap, req.f1};
  const int64_t P = sp.P, N = sp.N;
  const auto& weight = sp.weight;
  CurveAccumulator acc;
  acc.P = P;
  acc.N = N;
  for (double l : req.aupro_limits) acc.pro.push_back({l});
  acc.regions = static_cast<double>(weight.size());
  walk(sp.neg_runs, sp.pos.data(), sp.pos.data() + sp.pos.size(), want_pro ? weight.data() : nullptr, acc);

  PixelMetrics out;
  fill_binary(acc, breq, out.binary);
  out.regions = static_cast<int64_t>(weight.size());
  for (const auto& p : acc.pro) out.aupro[p.limit] = p.area / p.limit;
  return out;
}

nlohmann::json CurveTrace::to_json() const {
  nlohmann::json j = {{"threshold", threshold}, {"fpr", fpr},         {"tpr", tpr},
                      {"precision", precision}, {"positives", positives}, {"negatives", negatives}};
  if (!pro.empty()) {
    j["pro"] = pro;
    j["regions"] = regions;
  }
  return j;
}

CurveTrace image_curve_trace(const float* scores, const int64_t* labels, std::size_t n,
                             const CurveTraceOptions& options) {
  std::vector<uint32_t> neg;
  std::vector<uint64_t> pos;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(scores[i]))
      throw Error("image scores: score " + std::to_string(i) + " is " + (std::isnan(scores[i]) ? "NaN" : "infinite") +
                  "; curves need finite scores");
    if (labels[i] == 1) pos.push_back(static_cast<uint64_t>(descending_key(scores[i])) << 32);
    else if (labels[i] == 0) neg.push_back(descending_key(scores[i]));
    else
      throw Error("image labels: label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                  "; labels must be 0 (normal) or 1 (anomalous)");
  }
  const int64_t P = static_cast<int64_t>(pos.size()), N = static_cast<int64_t>(neg.size());
  check_classes({true, false, false}, P, N, "image-level curves", "anomalous (label 1) sample", "normal (label 0) sample");
  std::sort(neg.begin(), neg.end());
  std::sort(pos.begin(), pos.end());
  CurveTrace trace;
  CurveAccumulator acc;
  acc.P = trace.positives = P;
  acc.N = trace.negatives = N;
  acc.trace = &trace;
  acc.trace_step = 1.0 / std::max(1, options.max_points);
  walk({{neg.data(), neg.data() + neg.size()}}, pos.data(), pos.data() + pos.size(), nullptr, acc);
  return trace;
}

CurveTrace pixel_curve_trace(const float* maps, const uint8_t* masks, int64_t n, int64_t h, int64_t w,
                             const CurveTraceOptions& options) {
  PixelRequest req;
  req.ap = req.f1 = false;
  req.aupro_limits = options.pro ? std::vector<double>{1.0} : std::vector<double>{};
  req.threads = options.threads;
  SortedPixels sp;
  sort_pixels(maps, masks, n, h, w, req, sp);
  CurveTrace trace;
  CurveAccumulator acc;
  acc.P = trace.positives = sp.P;
  acc.N = trace.negatives = sp.N;
  if (options.pro) acc.pro.push_back({1.0});
  acc.regions = static_cast<double>(sp.weight.size());
  trace.regions = static_cast<int64_t>(sp.weight.size());
  acc.trace = &trace;
  acc.trace_step = 1.0 / std::max(1, options.max_points);
  walk(sp.neg_runs, sp.pos.data(), sp.pos.data() + sp.pos.size(), options.pro ? sp.weight.data() : nullptr, acc);
  return trace;
}

}  // namespace adfw::metric
