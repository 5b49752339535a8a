#include "adfw/engine/evaluate.hpp"

#include <set>

#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/safetensors.hpp"
#include "adfw/engine/experiment.hpp"
#include "adfw/metric/curve_points.hpp"
#include "adfw/metric/curves.hpp"
#include "adfw/metric/evaluator.hpp"

namespace fs = std::filesystem;

namespace adfw {

namespace {

// The layout `adfw eval-maps` reads back, so a run's maps can be re-scored or analysed
// elsewhere without rerunning the method.
void write_maps_file(const fs::path& file, const EvalInput& ei) {
  const int64_t n = ei.maps.size(0), h = ei.maps.size(1), w = ei.maps.size(2);
  const torch::Tensor maps = ei.maps.contiguous();
  const torch::Tensor masks = ei.masks.to(torch::kUInt8).contiguous();
  const torch::Tensor labels = ei.labels.to(torch::kInt64).contiguous();
  const torch::Tensor scores = ei.image_scores.to(torch::kFloat32).contiguous();
  const auto count = static_cast<std::size_t>(n * h * w);
  std::vector<safetensors::TensorData> t;
  t.push_back(safetensors::make_tensor("anomaly_maps", {n, h, w}, maps.data_ptr<float>(), count));
  t.push_back(safetensors::make_tensor("masks", {n, h, w}, masks.data_ptr<uint8_t>(), count));
  t.push_back(safetensors::make_tensor("labels", {n}, labels.data_ptr<int64_t>(), static_cast<std::size_t>(n)));
  t.push_back(safetensors::make_tensor("image_scores", {n}, scores.data_ptr<float>(), static_cast<std::size_t>(n)));
  safetensors::write(file, t,
                     {{"paths", nlohmann::json(ei.paths).dump()}, {"defect_types", nlohmann::json(ei.defect_types).dump()}});
}

// curves.json: the image-level and pixel-level ROC / PR / PRO curves, thinned for plotting (the
// report draws them; the metric values stay the exact ones in metrics.json).
void write_curves_file(const fs::path& file, const EvalInput& ei, const EvalOptions& options) {
  nlohmann::json j = nlohmann::json::object();
  const torch::Tensor labels = ei.labels.to(torch::kInt64).contiguous();
  const torch::Tensor scores = ei.image_scores.to(torch::kFloat32).contiguous();
  const auto n = static_cast<std::size_t>(labels.numel());
  const int64_t positives = labels.sum().item<int64_t>();
  metric::CurveTraceOptions to;
  to.threads = options.threads;
  if (positives > 0 && positives < static_cast<int64_t>(n))
    j["image"] = metric::image_curve_trace(scores.data_ptr<float>(), labels.data_ptr<int64_t>(), n, to).to_json();
  if (ei.maps.defined()) {
    const torch::Tensor maps = ei.maps.contiguous();
    const torch::Tensor masks = ei.masks.to(torch::kUInt8).contiguous();
    const int64_t defect = masks.sum().item<int64_t>();
    if (defect > 0 && defect < masks.numel())
      j["pixel"] = metric::pixel_curve_trace(maps.data_ptr<float>(), masks.data_ptr<uint8_t>(), maps.size(0),
                                             maps.size(1), maps.size(2), to)
                       .to_json();
  }
  j["fpr_limit"] = options.fpr_limit;
  write_file_atomic(file, j.dump() + "\n");
}

// gallery/: overlays of the images a reader should look at first, at the image F1-max threshold
// of the test set (an oracle threshold, as the F1-max metric itself): the highest-scoring normal
// images (false positives when above it), the lowest-scoring anomalous ones (false negatives when
// below it) and true positives around their median score. index.json lists them for the report.
void write_gallery(const fs::path& dir, const EvalInput& ei, const EvalResult& r, int per_group) {
  const torch::Tensor labels_t = ei.labels.to(torch::kInt64).contiguous();
  const int64_t* labels = labels_t.data_ptr<int64_t>();
  const auto n = static_cast<int64_t>(r.image_scores.size());
  const std::vector<float>& scores = r.image_scores;
  std::vector<int64_t> normal, anomalous;
  for (int64_t i = 0; i < n; ++i) (labels[i] ? anomalous : normal).push_back(i);
  if (normal.empty() || anomalous.empty()) return;
  std::vector<int64_t> all_labels(labels, labels + n);
  const double thr = metric::binary_metrics(scores, all_labels, {false, false, true}).f1_threshold;
  const auto by_score = [&](bool descending) {
    return [&, descending](int64_t a, int64_t b) {
      return descending ? scores[a] > scores[b] || (scores[a] == scores[b] && a < b)
                        : scores[a] < scores[b] || (scores[a] == scores[b] && a < b);
    };
  };
  std::sort(normal.begin(), normal.end(), by_score(true));
  std::sort(anomalous.begin(), anomalous.end(), by_score(false));
  const auto count = [&](const std::vector<int64_t>& v) { return std::min<int64_t>(per_group, v.size()); };

  struct Group {
    std::string kind, title;
    std::vector<int64_t> images;
  };
  std::vector<Group> groups;
  std::set<int64_t> shown;
  // The misclassified images when there are any (the worst first), else the closest to being so.
  const auto add_errors = [&](const std::vector<int64_t>& sorted, bool wrong_above, const std::string& kind,
                              const std::string& title, const std::string& fallback) {
    std::vector<int64_t> wrong;
    for (int64_t i : sorted)
      if ((scores[i] >= thr) == wrong_above) wrong.push_back(i);
    const std::vector<int64_t>& from = wrong.empty() ? sorted : wrong;
    Group g{kind, wrong.empty() ? fallback : title + std::to_string(wrong.size()) + " in all)", {}};
    for (int64_t k = 0; k < count(from); ++k) g.images.push_back(from[k]);
    shown.insert(g.images.begin(), g.images.end());
    groups.push_back(g);
  };
  add_errors(normal, true, "false_positive", "Worst false positives (normal images scored as anomalous; ",
             "Highest-scoring normal images (no false positive at this threshold)");
  add_errors(anomalous, false, "false_negative", "Worst false negatives (anomalous images scored as normal; ",
             "Lowest-scoring anomalous images (no false negative at this threshold)");
  {
    std::vector<int64_t> tp;
    for (int64_t i : anomalous)
      if (scores[i] >= thr && !shown.count(i)) tp.push_back(i);
    Group g{"true_positive", "Typical true positives (around the median score of the detected anomalies)", {}};
    const int64_t take = count(tp);
    const int64_t first = std::max<int64_t>(0, static_cast<int64_t>(tp.size()) / 2 - take / 2);
    for (int64_t k = first; k < first + take; ++k) g.images.push_back(tp[k]);
    if (!g.images.empty()) groups.push_back(g);
  }

  OverlayOptions oo;
  for (const auto& g : groups) oo.indices.insert(oo.indices.end(), g.images.begin(), g.images.end());
  fs::remove_all(dir);  // a rerun's gallery replaces the old one, never mixes with it
  const std::vector<fs::path> files = write_overlays(dir, ei, r, oo);
  nlohmann::json index = {{"image_threshold", thr},
                          {"threshold_rule", "image F1-max threshold on the test set (oracle)"},
                          {"pixel_threshold", r.pixel_threshold},
                          {"panels",
                           {"input", "ground truth (red contour)",
                            "anomaly map (one colour scale for the set; the pixel threshold at mid-scale)",
                            "map >= pixel F1-max threshold (yellow)"}},
                          {"groups", nlohmann::json::array()}};
  std::size_t f = 0;
  for (const auto& g : groups) {
    nlohmann::json items = nlohmann::json::array();
    for (int64_t i : g.images) {
      const auto k = static_cast<std::size_t>(i);
      items.push_back({{"file", files[f++].filename().string()},
                       {"path", k < ei.paths.size() ? ei.paths[k] : std::to_string(i)},
                       {"defect_type", k < ei.defect_types.size() ? ei.defect_types[k] : std::string()},
                       {"label", labels[i]},
                       {"score", scores[k]},
                       {"outcome", labels[i] ? (scores[k] >= thr ? "true positive" : "false negative")
                                             : (scores[k] >= thr ? "false positive" : "true negative")}});
    }
    index["groups"].push_back({{"kind", g.kind}, {"title", g.title}, {"items", items}});
  }
  write_file_atomic(dir / "index.json", index.dump(2) + "\n");
}

}  // namespace

void EvalInputs::add(const Batch& batch, const Prediction& p) {
  const int64_t n = batch.size();
  if (!p.maps.defined() || p.maps.dim() != 4 || p.maps.size(0) != n || p.maps.size(1) != 1)
    throw Error("method returned anomaly maps of an unexpected shape; expected (N,1,H,W) with N = " + std::to_string(n));
  if (!p.scores.defined() || p.scores.numel() != n)
    throw Error("method returned " + std::to_string(p.scores.defined() ? p.scores.numel() : 0) + " image scores for " +
                std::to_string(n) + " images");
  torch::Tensor maps = p.maps.detach().to(torch::kCPU, torch::kFloat32);
  torch::Tensor masks = batch.masks.to(torch::kCPU);
  if (maps.size(2) != masks.size(2) || maps.size(3) != masks.size(3))
    throw Error("method returned maps of " + std::to_string(maps.size(2)) + "x" + std::to_string(maps.size(3)) +
                " for inputs of " + std::to_string(masks.size(2)) + "x" + std::to_string(masks.size(3)) +
                "; maps must be at the input resolution");
  torch::Tensor scores = p.scores.detach().to(torch::kCPU, torch::kFloat32).reshape({n});
  for (int64_t i = 0; i < n; ++i) {
    this->maps.push_back(maps[i][0].contiguous());
    this->masks.push_back((masks[i][0] > 0.5).to(torch::kUInt8).contiguous());
    this->scores.push_back(scores[i].item<float>());
    labels.push_back(static_cast<int>(batch.labels[i].item<int64_t>()));
    has_mask.push_back(batch.has_mask[i].item<bool>());
    info.push_back(batch.info[static_cast<std::size_t>(i)]);
  }
}

nlohmann::json evaluate_and_report(const EvalInputs& in, const EvalOptions& options, const fs::path& dir,
                                   const nlohmann::json& protocol) {
  if (in.maps.empty()) throw Error("nothing to evaluate: the test split is empty");
  for (std::size_t i = 1; i < in.maps.size(); ++i)
    if (!in.maps[i].sizes().equals(in.maps[0].sizes()))
      throw ConfigError("test images have different sizes after the input pipeline (" + in.info[0].path + " vs " +
                        in.info[i].path + "); set input.resize so every map has the same size");
  EvalInput ei;
  ei.maps = torch::stack(in.maps);
  ei.masks = torch::stack(in.masks);
  ei.labels = torch::tensor(std::vector<int64_t>(in.labels.begin(), in.labels.end()), torch::kInt64);
  ei.image_scores = torch::tensor(in.scores, torch::kFloat32);
  for (const auto& s : in.info) {
    ei.defect_types.push_back(s.defect_type);
    ei.paths.push_back(s.path);
  }
  EvalOptions eo = options;
  nlohmann::json proto = protocol;
  // Pixel metrics need a mask for every anomalous image; a set with image-label-only anomalies
  // is scored at image level only (and the report says so).
  bool all_masked = true;
  for (std::size_t i = 0; i < in.labels.size(); ++i)
    if (in.labels[i] == 1 && !in.has_mask[i]) all_masked = false;
  if (!all_masked) {
    std::vector<std::string> kept;
    for (const auto& m : eo.metrics)
      if (m.rfind("image_", 0) == 0) kept.push_back(m);
    if (kept.size() != eo.metrics.size()) {
      log_warn("some anomalous test images have no pixel mask: pixel metrics are skipped");
      proto["pixel_metrics_skipped"] = "anomalous test images without pixel masks";
    }
    eo.metrics = kept;
    ei.maps = torch::Tensor();
    ei.masks = torch::Tensor();
  }
  EvalResult r = evaluate(ei, eo);
  nlohmann::json out = r.to_json();
  out["protocol"] = proto;
  if (!dir.empty()) {
    write_per_image_csv(dir / "per_image.csv", ei, r);
    if (options.overlays > 0 && ei.maps.defined()) {
      OverlayOptions oo;
      oo.count = options.overlays;
      write_overlays(dir / "maps", ei, r, oo);
    }
    if (options.save_maps && ei.maps.defined()) write_maps_file(dir / "maps.safetensors", ei);
    write_curves_file(dir / "curves.json", ei, eo);
    if (options.gallery > 0 && ei.maps.defined()) write_gallery(dir / "gallery", ei, r, options.gallery);
  }
  return out;
}

}  // namespace adfw
