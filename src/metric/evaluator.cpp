#include "adfw/metric/evaluator.hpp"

#include <unistd.h>

#include <cmath>
#include <fstream>
#include <optional>
#include <set>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/metric/metric.hpp"
#include "adfw/metric/overlay.hpp"

namespace adfw {
namespace fs = std::filesystem;

namespace {

std::string shape_str(const torch::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

// (N,H,W) contiguous CPU tensor of `dtype` from (N,H,W) or (N,1,H,W).
torch::Tensor as_nhw(const torch::Tensor& t, torch::Dtype dtype, const std::string& what) {
  torch::Tensor x = t;
  if (x.dim() == 4 && x.size(1) == 1) x = x.squeeze(1);
  if (x.dim() != 3) throw Error(what + " must be (N,H,W) or (N,1,H,W); got " + shape_str(t));
  return x.to(torch::kCPU).to(dtype).contiguous();
}

struct Prepared {
  torch::Tensor maps, masks, labels, scores;
};

Prepared prepare(const EvalInput& in, bool need_pixels) {
  Prepared p;
  if (!in.labels.defined()) throw Error("evaluation needs labels (N)");
  p.labels = in.labels.to(torch::kCPU).reshape({-1}).to(torch::kLong).contiguous();
  const int64_t n = p.labels.size(0);
  if (in.maps.defined()) {
    p.maps = as_nhw(in.maps, torch::kFloat, "anomaly maps");
    if (p.maps.size(0) != n)
      throw Error("anomaly maps " + shape_str(in.maps) + " hold " + std::to_string(p.maps.size(0)) +
                  " images but there are " + std::to_string(n) + " labels");
  }
  if (need_pixels) {
    if (!p.maps.defined()) throw Error("pixel metrics need anomaly maps");
    if (!in.masks.defined()) throw Error("pixel metrics need ground-truth masks");
    torch::Tensor m = in.masks;
    if (m.dim() == 4 && m.size(1) == 1) m = m.squeeze(1);
    if (m.sizes() != p.maps.sizes())
      throw Error("masks " + shape_str(in.masks) + " do not match anomaly maps " + shape_str(in.maps));
    m = m.to(torch::kCPU);
    if (m.is_floating_point()) {
      const auto bad = torch::logical_and(m != 0, m != 1);
      if (bad.any().item<bool>())
        throw Error("masks must be 0/1; found value " + std::to_string(m.masked_select(bad)[0].item<double>()));
    }
    // Integer masks keep their values so that 255 is reported as such by the metric core.
    p.masks = m.to(torch::kByte).contiguous();
    if (!m.is_floating_point() && m.scalar_type() != torch::kByte && m.scalar_type() != torch::kBool &&
        (m.min().item<int64_t>() < 0 || m.max().item<int64_t>() > 1))
      throw Error("masks must be 0/1; found values in [" + std::to_string(m.min().item<int64_t>()) + ", " +
                  std::to_string(m.max().item<int64_t>()) + "]");
  }
  if (in.image_scores.defined()) {
    p.scores = in.image_scores.to(torch::kCPU).reshape({-1}).to(torch::kFloat).contiguous();
    if (p.scores.size(0) != n)
      throw Error(std::to_string(p.scores.size(0)) + " image scores but " + std::to_string(n) + " labels");
  } else if (p.maps.defined()) {
    p.scores = n ? std::get<0>(p.maps.reshape({n, -1}).max(1)).contiguous() : torch::zeros({0});
  } else {
    throw Error("evaluation needs image scores or anomaly maps to take them from");
  }
  return p;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// Pixel metrics of the images of defect type `type` together with all normal images (the
// image-level breakdown's protocol), or nothing when that subset lacks defect or normal pixels.
std::optional<metric::PixelMetrics> per_defect_pixel_metrics(const EvalData& d, const std::vector<std::string>& types,
                                                             const std::string& type, metric::PixelRequest request) {
  const int64_t hw = d.h * d.w;
  std::vector<int64_t> chosen;
  for (int64_t i = 0; i < d.n; ++i)
    if (d.labels[i] == 0 || types[static_cast<std::size_t>(i)] == type) chosen.push_back(i);
  const auto m = static_cast<int64_t>(chosen.size());
  std::vector<float> maps(static_cast<std::size_t>(m * hw));
  std::vector<uint8_t> masks(static_cast<std::size_t>(m * hw));
  for (int64_t k = 0; k < m; ++k) {
    std::copy_n(d.maps + chosen[static_cast<std::size_t>(k)] * hw, hw, maps.begin() + k * hw);
    std::copy_n(d.masks + chosen[static_cast<std::size_t>(k)] * hw, hw, masks.begin() + k * hw);
  }
  const auto positives = std::count_if(masks.begin(), masks.end(), [](uint8_t v) { return v != 0; });
  if (positives == 0 || positives == static_cast<int64_t>(masks.size())) return std::nullopt;
  request.f1 = false;  // F1-max is a thresholded figure of the whole set; the breakdown ranks only
  request.threads = d.threads;
  return metric::pixel_metrics(maps.data(), masks.data(), m, d.h, d.w, request);
}

// Median map value of the normal pixels of each image type's images (upper median for even counts).
std::map<std::string, double> normal_pixel_medians(const EvalData& d, const std::vector<std::string>& types) {
  const int64_t hw = d.h * d.w;
  std::map<std::string, std::vector<float>> normal;
  for (int64_t i = 0; i < d.n; ++i) {
    std::vector<float>& v = normal[types[static_cast<std::size_t>(i)]];
    for (int64_t k = i * hw; k < (i + 1) * hw; ++k)
      if (d.masks[k] == 0) v.push_back(d.maps[k]);
  }
  std::map<std::string, double> out;
  for (auto& [t, v] : normal) {
    if (v.empty()) continue;
    auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    out[t] = *mid;
  }
  return out;
}

}  // namespace

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j;
  j["metrics"] = values;
  j["per_defect_type"] = nlohmann::json::object();
  for (const auto& [k, v] : per_defect_auroc) j["per_defect_type"][k] = {{"image_auroc", v}};
  for (const auto& [k, v] : per_defect_pixel) {
    nlohmann::json& t = j["per_defect_type"][k];
    if (v.binary.positives > 0 && v.binary.negatives > 0) {
      t["pixel_auroc"] = v.binary.auroc;
      t["pixel_ap"] = v.binary.ap;
    }
    if (!v.aupro.empty()) t["aupro"] = v.aupro.begin()->second;
    t["defect_pixels"] = v.binary.positives;
  }
  for (const auto& [k, v] : normal_pixel_median) j["per_defect_type"][k]["normal_pixel_median"] = v;
  j["counts"] = {{"images", images}, {"anomalous_images", anomalous_images}};
  return j;
}

EvalResult evaluate(const EvalInput& in, const EvalOptions& opt) {
  std::vector<std::unique_ptr<Metric>> metrics;
  MetricPlan plan;
  for (const auto& name : opt.metrics) {
    metrics.push_back(metric::make_metric(name, opt.fpr_limit));
    metrics.back()->plan(plan);
  }
  const Prepared p = prepare(in, plan.pixel);
  const int64_t n = p.labels.size(0);
  if (!in.defect_types.empty() && static_cast<int64_t>(in.defect_types.size()) != n)
    throw Error(std::to_string(in.defect_types.size()) + " defect types but " + std::to_string(n) + " images");
  if (!in.paths.empty() && static_cast<int64_t>(in.paths.size()) != n)
    throw Error(std::to_string(in.paths.size()) + " paths but " + std::to_string(n) + " images");

  EvalData d;
  d.n = n;
  d.labels = p.labels.data_ptr<int64_t>();
  d.image_scores = p.scores.data_ptr<float>();
  d.threads = opt.threads;
  if (plan.pixel) {
    d.maps = p.maps.data_ptr<float>();
    d.masks = p.masks.data_ptr<uint8_t>();
    d.h = p.maps.size(1);
    d.w = p.maps.size(2);
  }
  const MetricResults r = run_plan(plan, d);
  EvalResult out;
  out.values = nlohmann::json::object();
  for (const auto& m : metrics) m->report(r, out.values);
  out.image_threshold = r.image.f1_threshold;
  out.pixel_threshold = r.pixel.binary.f1_threshold;
  out.image_scores.assign(d.image_scores, d.image_scores + n);
  out.images = n;
  for (int64_t i = 0; i < n; ++i) out.anomalous_images += d.labels[i] == 1;

  // Each defect type against all normal images (MVTec-style breakdown).
  if (!in.defect_types.empty()) {
    std::set<std::string> types;
    for (int64_t i = 0; i < n; ++i)
      if (d.labels[i] == 1) types.insert(in.defect_types[static_cast<std::size_t>(i)]);
    for (const auto& t : types) {
      std::vector<float> s;
      std::vector<int64_t> l;
      for (int64_t i = 0; i < n; ++i) {
        if (d.labels[i] == 0 || in.defect_types[static_cast<std::size_t>(i)] == t) {
          s.push_back(d.image_scores[i]);
          l.push_back(d.labels[i]);
        }
      }
      if (std::count(l.begin(), l.end(), 0) == 0) break;  // no normal images: nothing to compare with
      out.per_defect_auroc[t] = metric::binary_metrics(s, l, {true, false, false}, "image scores").auroc;
    }
    if (plan.pixel) {
      for (const auto& t : types) {
        auto sub = per_defect_pixel_metrics(d, in.defect_types, t, plan.pixel_request);
        if (sub) out.per_defect_pixel[t] = *sub;
      }
      out.normal_pixel_median = normal_pixel_medians(d, in.defect_types);
    }
  }
  return out;
}

void write_metrics_json(const fs::path& file, const EvalResult& result, const nlohmann::json& protocol) {
  nlohmann::json j = result.to_json();
  j["protocol"] = protocol;
  write_file_atomic(file, j.dump(2) + "\n");
}

void write_per_image_csv(const fs::path& file, const EvalInput& in, const EvalResult& result) {
  const auto labels = in.labels.to(torch::kCPU).reshape({-1}).to(torch::kLong).contiguous();
  const int64_t n = labels.size(0);
  if (static_cast<int64_t>(result.image_scores.size()) != n)
    throw Error("per_image.csv: " + std::to_string(result.image_scores.size()) + " scores for " +
                std::to_string(n) + " images");
  std::ostringstream s;
  s.precision(9);
  s << "path,defect_type,label,score\n";
  for (int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    s << csv_field(k < in.paths.size() ? in.paths[k] : std::to_string(i)) << ','
      << csv_field(k < in.defect_types.size() ? in.defect_types[k] : std::string()) << ','
      << labels[i].item<int64_t>() << ',' << result.image_scores[k] << '\n';
  }
  write_file_atomic(file, s.str());
}

std::vector<fs::path> write_overlays(const fs::path& dir, const EvalInput& in, const EvalResult& result,
                                     const OverlayOptions& opt) {
  std::vector<fs::path> written;
  if (!in.maps.defined() || (opt.count <= 0 && opt.indices.empty())) return written;
  const auto maps = as_nhw(in.maps, torch::kFloat, "anomaly maps");
  torch::Tensor masks;
  if (in.masks.defined()) masks = as_nhw(in.masks, torch::kFloat, "masks");
  const auto labels = in.labels.to(torch::kCPU).reshape({-1}).to(torch::kLong).contiguous();
  const int64_t n = maps.size(0), h = maps.size(1), w = maps.size(2);
  if (n == 0) return written;
  const double thr = std::isnan(opt.threshold) ? result.pixel_threshold : opt.threshold;
  // One colour scale for the set, with the pixel threshold at mid-scale (as `adfw predict` draws
  // its threshold at half scale): a min-max scale lets a few extreme pixels turn every other map
  // blue, while this one shows at a glance which regions come near the decision. Without a usable
  // threshold the scale is the set's min-max.
  const double lo = maps.min().item<float>();
  double hi = maps.max().item<float>();
  if (std::isfinite(thr) && thr > lo) hi = lo + 2.0 * (thr - lo);

  // Sample: three quarters from the anomalous images, the rest normal, evenly spread.
  std::vector<int64_t> anomalous, normal, chosen;
  for (int64_t i = 0; i < n; ++i) (labels[i].item<int64_t>() ? anomalous : normal).push_back(i);
  const auto pick = [&](const std::vector<int64_t>& from, int count) {
    count = std::min<int>(count, static_cast<int>(from.size()));
    for (int k = 0; k < count; ++k) chosen.push_back(from[from.size() * k / count]);
  };
  const int want_anom = std::min<int>(static_cast<int>(anomalous.size()), (opt.count * 3 + 3) / 4);
  if (!opt.indices.empty()) {
    for (int64_t i : opt.indices)
      if (i < 0 || i >= n)
        throw Error("overlay of image " + std::to_string(i) + " requested; the set has " + std::to_string(n) + " images");
    chosen = opt.indices;
  } else {
    pick(anomalous, want_anom);
    pick(normal, opt.count - want_anom);
    std::sort(chosen.begin(), chosen.end());
  }

  fs::create_directories(dir);
  for (int64_t i : chosen) {
    const auto k = static_cast<std::size_t>(i);
    cv::Mat input;
    if (k < in.paths.size() && fs::exists(in.paths[k])) input = cv::imread(in.paths[k], cv::IMREAD_COLOR);
    const cv::Mat map(static_cast<int>(h), static_cast<int>(w), CV_32F, maps[i].data_ptr<float>());
    cv::Mat gt;
    if (masks.defined()) {
      const cv::Mat gm(static_cast<int>(h), static_cast<int>(w), CV_32F, masks[i].data_ptr<float>());
      gt = gm > 0.5f;
    }
    const cv::Mat row = overlay_panels(input, map, gt, lo, hi, thr);
    std::string stem = std::to_string(i);
    if (k < in.paths.size()) {
      const fs::path src(in.paths[k]);
      stem += "_" + (src.parent_path().filename().string().empty() ? std::string() : src.parent_path().filename().string() + "_") +
              src.stem().string();
    }
    const fs::path file = dir / (stem + ".png");
    const fs::path tmp = dir / (stem + ".tmp." + std::to_string(::getpid()) + ".png");
    if (!cv::imwrite(tmp.string(), row)) throw Error("cannot write overlay '" + tmp.string() + "'");
    fs::rename(tmp, file);
    written.push_back(file);
  }
  return written;
}

}  // namespace adfw
