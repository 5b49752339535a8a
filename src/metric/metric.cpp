#include "adfw/metric/metric.hpp"

#include <algorithm>
#include <set>

#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"

namespace adfw {

MetricResults run_plan(const MetricPlan& plan, const EvalData& d) {
  MetricResults r;
  if (plan.image) {
    if (!d.image_scores || !d.labels) throw Error("image metrics need image scores and labels");
    r.image = metric::binary_metrics(d.image_scores, d.labels, static_cast<std::size_t>(d.n), plan.image_request,
                                     "image scores");
  }
  if (plan.pixel) {
    if (!d.maps || !d.masks) throw Error("pixel metrics need anomaly maps and ground-truth masks");
    metric::PixelRequest req = plan.pixel_request;
    req.threads = d.threads;
    r.pixel = metric::pixel_metrics(d.maps, d.masks, d.n, d.h, d.w, req);
  }
  return r;
}

double compute_metric(const Metric& m, const EvalData& data) {
  MetricPlan p;
  m.plan(p);
  nlohmann::json out;
  m.report(run_plan(p, data), out);
  return out.at(m.key()).get<double>();
}

namespace metric {

void ImageAuroc::plan(MetricPlan& p) const { p.image = p.image_request.auroc = true; }
void ImageAuroc::report(const MetricResults& r, nlohmann::json& out) const { out[key()] = r.image.auroc; }
void ImageAp::plan(MetricPlan& p) const { p.image = p.image_request.ap = true; }
void ImageAp::report(const MetricResults& r, nlohmann::json& out) const { out[key()] = r.image.ap; }
void ImageF1Max::plan(MetricPlan& p) const { p.image = p.image_request.f1 = true; }
void ImageF1Max::report(const MetricResults& r, nlohmann::json& out) const {
  out[key()] = r.image.f1_max;
  out["image_f1_threshold"] = r.image.f1_threshold;
}
void PixelAuroc::plan(MetricPlan& p) const { p.pixel = p.pixel_request.auroc = true; }
void PixelAuroc::report(const MetricResults& r, nlohmann::json& out) const { out[key()] = r.pixel.binary.auroc; }
void PixelAp::plan(MetricPlan& p) const { p.pixel = p.pixel_request.ap = true; }
void PixelAp::report(const MetricResults& r, nlohmann::json& out) const { out[key()] = r.pixel.binary.ap; }
void PixelF1Max::plan(MetricPlan& p) const { p.pixel = p.pixel_request.f1 = true; }
void PixelF1Max::report(const MetricResults& r, nlohmann::json& out) const {
  out[key()] = r.pixel.binary.f1_max;
  out["pixel_f1_threshold"] = r.pixel.binary.f1_threshold;
}
void Aupro::plan(MetricPlan& p) const {
  if (!(options.fpr_limit > 0 && options.fpr_limit <= 1))
    throw ConfigError("aupro: fpr_limit " + std::to_string(options.fpr_limit) + " must be in (0, 1]");
  p.pixel = true;
  auto& l = p.pixel_request.aupro_limits;
  if (std::find(l.begin(), l.end(), options.fpr_limit) == l.end()) l.push_back(options.fpr_limit);
}
void Aupro::report(const MetricResults& r, nlohmann::json& out) const {
  out[key()] = r.pixel.aupro.at(options.fpr_limit);
  out["aupro_fpr_limit"] = options.fpr_limit;
}

const std::vector<std::string>& builtin_metric_names() {
  static const std::vector<std::string> names = {"image_auroc", "image_ap",     "image_f1_max", "pixel_auroc",
                                                 "pixel_ap",    "pixel_f1_max", "aupro"};
  return names;
}

std::unique_ptr<Metric> make_metric(const std::string& name, double fpr_limit) {
  if (name == "image_auroc") return std::make_unique<ImageAuroc>();
  if (name == "image_ap") return std::make_unique<ImageAp>();
  if (name == "image_f1_max") return std::make_unique<ImageF1Max>();
  if (name == "pixel_auroc") return std::make_unique<PixelAuroc>();
  if (name == "pixel_ap") return std::make_unique<PixelAp>();
  if (name == "pixel_f1_max") return std::make_unique<PixelF1Max>();
  if (name == "aupro") {
    AuproOptions o;
    o.fpr_limit = fpr_limit;
    return std::make_unique<Aupro>(o);
  }
  auto& reg = Registry<Metric>::instance();
  if (reg.contains(name)) return reg.make(name);
  std::set<std::string> all(builtin_metric_names().begin(), builtin_metric_names().end());
  for (const auto& n : reg.names()) all.insert(n);
  throw ConfigError("unknown metric '" + name + "'." +
                    suggest_from(name, std::vector<std::string>(all.begin(), all.end())));
}

}  // namespace metric
}  // namespace adfw
