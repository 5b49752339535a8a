// The "metric" family: registered evaluation metrics. A metric does not compute on its own; it
// states which shared computations it needs (plan) and reads its values from their results
// (report), so that all pixel metrics of one evaluation share a single sort of the pixels.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adfw/core/options.hpp"
#include "adfw/metric/curves.hpp"

namespace adfw {

/// Flat, row-major views of a whole test set (nothing is copied).
struct EvalData {
  const float* maps = nullptr;     ///< n x h x w anomaly maps (pixel metrics)
  const uint8_t* masks = nullptr;  ///< n x h x w 0/1 ground truth (pixel metrics)
  int64_t n = 0, h = 0, w = 0;
  const float* image_scores = nullptr;  ///< n image scores (image metrics)
  const int64_t* labels = nullptr;      ///< n labels 0/1 (image metrics)
  int threads = 0;                      ///< worker threads, 0 = all cores
};

/// What the metrics of one evaluation need, merged.
struct MetricPlan {
  bool image = false;
  metric::BinaryRequest image_request{false, false, false};
  bool pixel = false;
  metric::PixelRequest pixel_request{false, false, false, {}, 0};
};

struct MetricResults {
  metric::BinaryMetrics image;
  metric::PixelMetrics pixel;
};

class Metric {
 public:
  static constexpr const char* family = "metric";
  virtual ~Metric() = default;
  /// Adds what this metric needs to `plan`.
  virtual void plan(MetricPlan& plan) const = 0;
  /// Writes this metric's values (its key, e.g. "pixel_auroc", and companions such as the
  /// F1 threshold or the FPR limit) into `out`.
  virtual void report(const MetricResults& results, nlohmann::json& out) const = 0;
  /// The main value's JSON key.
  virtual std::string key() const = 0;
};

/// Runs the merged plan: image metrics from scores/labels, pixel metrics in one pass.
MetricResults run_plan(const MetricPlan& plan, const EvalData& data);
/// Convenience: one metric alone, its main value.
double compute_metric(const Metric& m, const EvalData& data);

namespace metric {

struct ImageAuroc : Metric {
  using Options = NoOptions;
  explicit ImageAuroc(const Options& = {}) {}
  void plan(MetricPlan& p) const override;
  void report(const MetricResults& r, nlohmann::json& out) const override;
  std::string key() const override { return "image_auroc"; }
};
struct ImageAp : Metric {
  using Options = NoOptions;
  explicit ImageAp(const Options& = {}) {}
  void plan(MetricPlan& p) const override;
  void report(const MetricResults& r, nlohmann::json& out) const override;
  std::string key() const override { return "image_ap"; }
};
/// Also reports image_f1_threshold.
struct ImageF1Max : Metric {
  using Options = NoOptions;
  explicit ImageF1Max(const Options& = {}) {}
  void plan(MetricPlan& p) const override;
  void report(const MetricResults& r, nlohmann::json& out) const override;
  std::string key() const override { return "image_f1_max"; }
};
struct PixelAuroc : Metric {
  using Options = NoOptions;
  explicit PixelAuroc(const Options& = {}) {}
  void plan(MetricPlan& p) const override;
  void report(const MetricResults& r, nlohmann::json& out) const override;
  std::string key() const override { return "pixel_auroc"; }
};
struct PixelAp : Metric {
  using Options = NoOptions;
  explicit PixelAp(const Options& = {}) {}
  void plan(MetricPlan& p) const override;
  void report(const MetricResults& r, nlohmann::json& out) const override;
  std::string key() const override { return "pixel_ap"; }
};
/// Also reports pixel_f1_threshold.
struct PixelF1Max : Metric {
  using Options = NoOptions;
  explicit PixelF1Max(const Options& = {}) {}
  void plan(MetricPlan& p) const override;
  void report(const MetricResults& r, nlohmann::json& out) const override;
  std::string key() const override { return "pixel_f1_max"; }
};

struct AuproOptions {
  double fpr_limit = 0.3;
  template <class V>
  void fields(V& v) {
    v("fpr_limit", fpr_limit, "integrate the PRO curve up to this false-positive rate, then divide by it",
      Check{0.0, 1.0, true, false, {}});
  }
};
/// Reports "aupro" and "aupro_fpr_limit".
struct Aupro : Metric {
  using Options = AuproOptions;
  explicit Aupro(const Options& o = {}) : options(o) {}
  void plan(MetricPlan& p) const override;
  void report(const MetricResults& r, nlohmann::json& out) const override;
  std::string key() const override { return "aupro"; }
  Options options;
};

/// The built-in metric names, in report order.
const std::vector<std::string>& builtin_metric_names();
/// Builds a metric by name: the built-ins directly (aupro with `fpr_limit`), anything else from
/// the registry (plugins). Unknown names are a ConfigError with suggestions.
std::unique_ptr<Metric> make_metric(const std::string& name, double fpr_limit = 0.3);

}  // namespace metric
}  // namespace adfw
