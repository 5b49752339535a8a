// The HTML reports of runs and sweeps (report.hpp). Plain C++: no LibTorch, every input is a file
// of the run folder.
#include "adfw/engine/report.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "adfw/core/csv.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/engine/run_folder.hpp"

namespace adfw::embedded {
extern const char* const chartjs;  // third_party/chartjs/chart.umd.min.js, embedded by the build
}

namespace adfw::report {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- text helpers -------------------------------------------------------------------------

std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::string base64(const std::string& bytes) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  o.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += t[(v >> 6) & 63];
    o += t[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += t[(v >> 6) & 63];
    o += '=';
  }
  return o;
}

// JSON inside <script>: "</" would end the element early; "<\/" is the same JSON string.
std::string script_json(const json& j) {
  std::string s = j.dump();
  std::string o;
  o.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<' && i + 1 < s.size() && s[i + 1] == '/') {
      o += "<\\/";
      ++i;
    } else {
      o += s[i];
    }
  }
  return o;
}

std::string fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

// Metrics that are fractions are shown as percentages, as in the papers' tables.
bool is_fraction_metric(const std::string& k) {
  static const std::set<std::string> f = {"image_auroc", "image_ap",     "image_f1_max", "pixel_auroc",
                                          "pixel_ap",    "pixel_f1_max", "aupro"};
  return f.count(k) > 0;
}

std::string metric_label(const std::string& k) {
  static const std::map<std::string, std::string> names = {{"image_auroc", "Image AUROC"},
                                                           {"image_ap", "Image AP"},
                                                           {"image_f1_max", "Image F1-max"},
                                                           {"pixel_auroc", "Pixel AUROC"},
                                                           {"pixel_ap", "Pixel AP"},
                                                           {"pixel_f1_max", "Pixel F1-max"},
                                                           {"aupro", "AUPRO"},
                                                           {"image_f1_threshold", "Image F1-max threshold"},
                                                           {"pixel_f1_threshold", "Pixel F1-max threshold"},
                                                           {"aupro_fpr_limit", "AUPRO FPR limit"}};
  const auto it = names.find(k);
  return it == names.end() ? k : it->second;
}

std::string json_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    std::ostringstream os;
    os << std::setprecision(6) << v.get<double>();
    return os.str();
  }
  return v.dump();
}

// RFC 4180 CSV (quoted fields with doubled quotes), as per_image.csv and train_log.csv are written.
// A number of a CSV cell: "nan"/"inf" (written by the trainer for missing loss terms) become null.
json csv_number(const std::string& s, const fs::path& file, std::size_t line) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size())
    throw Error(file.string() + ":" + std::to_string(line) + ": '" + s + "' is not a number");
  if (!std::isfinite(v)) return nullptr;
  return v;
}

// ---- page skeleton ------------------------------------------------------------------------

const char* kStyle = R"css(
:root { --fg: #1d232b; --muted: #5b6675; --line: #d9dee5; --accent: #2a6fdb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       margin: 0 auto; padding: 20px 28px 48px; max-width: 1400px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
.sub { color: var(--muted); margin: 0 0 10px; }
.note { color: var(--muted); font-size: 13px; margin: 4px 0 8px; }
.warn { background: #fff4d6; border: 1px solid #e9c46a; padding: 6px 10px; border-radius: 4px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f4f6f9; font-weight: 600; }
td.num, th.num { text-align: right; }
.kv td:first-child { color: var(--muted); white-space: nowrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px 22px; }
.chart { position: relative; height: 300px; }
.chart.wide { height: 320px; }
figure { margin: 0 0 12px; }
figure img { width: 100%; image-rendering: pixelated; border: 1px solid var(--line); display: block; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 3px; word-break: break-all; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 10px 18px; }
details { margin: 8px 0; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto; font-size: 12px; }
b.best { font-weight: 700; }
)css";

// Builds the charts from the page's data block and counts those Chart.js has rendered; the
// error-bar plugin draws a sweep's ± std whiskers and seed dots over its bars.
const char* kScript = R"js(
(function () {
  var data = JSON.parse(document.getElementById('adfw-data').textContent);
  var body = document.body, drawn = 0;
  body.setAttribute('data-charts-expected', String(data.charts.length));
  body.setAttribute('data-charts-drawn', '0');
  var counter = {
    id: 'adfwDrawn',
    afterRender: function (chart) {
      if (chart.$adfwDrawn) return;
      chart.$adfwDrawn = true;
      drawn += 1;
      body.setAttribute('data-charts-drawn', String(drawn));
    }
  };
  var spread = {
    id: 'adfwSpread',
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx;
      chart.data.datasets.forEach(function (ds, di) {
        if (!ds.adfwSpread) return;
        var meta = chart.getDatasetMeta(di);
        if (meta.hidden) return;
        var y = chart.scales[meta.yAxisID];
        ctx.save();
        ctx.strokeStyle = '#1d232b';
        ctx.fillStyle = '#1d232b';
        ctx.lineWidth = 1.5;
        meta.data.forEach(function (bar, i) {
          var s = ds.adfwSpread[i];
          if (!s || s.n === 0) return;
          var half = Math.max(3, Math.min(8, bar.width / 4));
          if (s.n > 1) {
            var y0 = y.getPixelForValue(s.mean - s.std), y1 = y.getPixelForValue(s.mean + s.std);
            ctx.beginPath();
            ctx.moveTo(bar.x, y0); ctx.lineTo(bar.x, y1);
            ctx.moveTo(bar.x - half, y0); ctx.lineTo(bar.x + half, y0);
            ctx.moveTo(bar.x - half, y1); ctx.lineTo(bar.x + half, y1);
            ctx.stroke();
          }
          s.values.forEach(function (v, k) {
            var dx = s.values.length > 1 ? (k / (s.values.length - 1) - 0.5) * half * 1.6 : 0;
            ctx.beginPath();
            ctx.arc(bar.x + dx, y.getPixelForValue(v), 2.6, 0, 2 * Math.PI);
            ctx.fill();
          });
        });
        ctx.restore();
      });
    }
  };
  Chart.defaults.animation = false;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = '#1d232b';
  data.charts.forEach(function (c) {
    var canvas = document.getElementById(c.id);
    if (!canvas) { console.error('report: no canvas for chart ' + c.id); return; }
    c.config.plugins = [counter, spread];
    new Chart(canvas, c.config);
  });
})();
)js";

const std::vector<std::string> kPalette = {"#2a6fdb", "#e4572e", "#2e9e5b", "#8e44ad", "#f2a541",
                                           "#17a2b8", "#c0392b", "#7f8c8d", "#d35400", "#1abc9c"};

// Collects the page's charts: each is a <canvas> in the HTML and a Chart.js config in the data.
struct Charts {
  json list = json::array();
  std::string add(const std::string& id, const json& config, bool wide = false) {
    list.push_back({{"id", id}, {"config", config}});
    return "<div class=\"chart" + std::string(wide ? " wide" : "") + "\"><canvas id=\"" + esc(id) +
           "\" role=\"img\" aria-label=\"" + esc(config.value(json::json_pointer("/options/plugins/title/text"), id)) +
           "\"></canvas></div>\n";
  }
};

std::string page(const std::string& title, const std::string& body, const Charts& charts) {
  std::string h;
  h.reserve(body.size() + 300000);
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<meta name=\"generator\" content=\"adfw report\">\n";
  h += "<title>" + esc(title) + "</title>\n<style>" + std::string(kStyle) + "</style>\n</head>\n<body>\n";
  h += body;
  h += "<script type=\"application/json\" id=\"adfw-data\">" + script_json({{"charts", charts.list}}) + "</script>\n";
  h += "<script>/* Chart.js 4.6.2, MIT License, https://www.chartjs.org (third_party/chartjs) */\n";
  h += embedded::chartjs;
  h += "\n</script>\n<script>" + std::string(kScript) + "</script>\n</body>\n</html>\n";
  return h;
}

json axis(const std::string& title, double min, double max, const std::string& type = "linear") {
  json a = {{"type", type}, {"title", {{"display", true}, {"text", title}, {"font", {{"size", 13}}}}}};
  if (!std::isnan(min)) a["min"] = min;
  if (!std::isnan(max)) a["max"] = max;
  return a;
}

json line_options(const std::string& title, const json& x, const json& y, bool legend = true) {
  return {{"responsive", true},
          {"maintainAspectRatio", false},
          {"parsing", false},
          {"scales", {{"x", x}, {"y", y}}},
          {"plugins",
           {{"title", {{"display", true}, {"text", title}, {"font", {{"size", 14}}}}},
            {"legend", {{"display", legend}, {"position", "bottom"}}},
            {"tooltip", {{"enabled", true}}}}}};
}

json xy(const std::vector<double>& x, const std::vector<double>& y) {
  json pts = json::array();
  for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) pts.push_back({{"x", x[i]}, {"y", y[i]}});
  return pts;
}

json line_dataset(const std::string& label, const json& points, const std::string& colour, bool dashed = false) {
  json d = {{"label", label},   {"data", points},   {"borderColor", colour}, {"backgroundColor", colour},
            {"showLine", true}, {"pointRadius", 0}, {"borderWidth", 2},      {"fill", false}};
  if (dashed) d["borderDash"] = {5, 4};
  return d;
}

std::vector<double> doubles(const json& j, const char* key) {
  std::vector<double> v;
  if (!j.contains(key)) return v;
  for (const auto& x : j.at(key)) v.push_back(x.is_number() ? x.get<double>() : NAN);
  return v;
}

// ---- run report sections ------------------------------------------------------------------

// The run's single category (data.category or a one-element data.categories), or "".
std::string run_category(const fs::path& config_file) {
  if (!fs::exists(config_file)) return "";
  toml::table t;
  try {
    t = toml::parse_file(config_file.string());
  } catch (const toml::parse_error& e) {
    throw Error(config_file.string() + ": " + std::string(e.description()));
  }
  if (auto c = t["data"]["category"].value<std::string>()) return *c;
  if (auto arr = t["data"]["categories"].as_array(); arr && arr->size() == 1)
    if (auto c = (*arr)[0].value<std::string>()) return *c;
  return "";
}

std::string metrics_section(const json& m, const std::string& category) {
  const json& values = m.at("metrics");
  const json* ref = nullptr;
  std::string ref_source;
  if (m.contains("reference") && m["reference"].is_object()) {
    const json& r = m["reference"];
    ref_source = r.value("source", "");
    if (!category.empty() && r.contains("categories") && r["categories"].contains(category))
      ref = &r["categories"][category];
  }
  std::string h = "<h2 id=\"metrics\">Metrics</h2>\n<table>\n<tr><th>metric</th><th class=\"num\">value</th>";
  if (ref) h += "<th class=\"num\">reference</th><th class=\"num\">difference</th>";
  h += "</tr>\n";
  // The papers' order first (image, pixel, region metrics), then whatever else the run reported.
  std::vector<std::string> keys;
  for (const auto& k : {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"})
    if (values.contains(k)) keys.push_back(k);
  for (const auto& [k, v] : values.items())
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  for (const auto& k : keys) {
    const json& v = values.at(k);
    if (!v.is_number()) continue;
    const bool frac = is_fraction_metric(k);
    const double x = v.get<double>();
    h += "<tr><td>" + esc(metric_label(k)) + "</td><td class=\"num\">" +
         (frac ? fixed(100 * x, 1) + " %" : json_text(v)) + "</td>";
    if (ref) {
      if (frac && ref->contains(k) && (*ref)[k].is_number()) {
        const double r = (*ref)[k].get<double>();
        h += "<td class=\"num\">" + fixed(100 * r, 1) + " %</td><td class=\"num\">" + (x >= r ? "+" : "") +
             fixed(100 * (x - r), 1) + "</td>";
      } else {
        h += "<td></td><td></td>";
      }
    }
    h += "</tr>\n";
  }
  h += "</table>\n";
  if (ref && !ref_source.empty())
    h += "<p class=\"note\">Reference: " + esc(ref_source) + " (category " + esc(category) + ").</p>\n";
  if (m.contains("counts"))
    h += "<p class=\"note\">" + json_text(m["counts"].value("images", json(0))) + " test images, " +
         json_text(m["counts"].value("anomalous_images", json(0))) +
         " anomalous. F1-max values and thresholds are "
         "the best over all thresholds on the test set (an oracle figure, as in the literature).</p>\n";

  h += "<h3>Protocol</h3>\n<table class=\"kv\">\n";
  if (m.contains("protocol"))
    for (const auto& [k, v] : m["protocol"].items())
      h += "<tr><td>" + esc(k) + "</td><td>" + esc(json_text(v)) + "</td></tr>\n";
  if (m.contains("timing"))
    for (const auto& [k, v] : m["timing"].items())
      h += "<tr><td>" + esc(k) + "</td><td>" + esc(json_text(v)) + "</td></tr>\n";
  h += "</table>\n";
  if (m.contains("protocol") && m["protocol"].value("selected_on_test", false))
    h += "<p class=\"warn\">The weights were selected on the test set: these metrics are optimistic.</p>\n";
  return h;
}

std::string curves_section(const fs::path& file, Charts& charts) {
  std::string h = "<h2 id=\"curves\">Curves</h2>\n";
  if (!fs::exists(file))
    return h +
           "<p class=\"note\">No curves.json in this run folder (written by adfw runs "
           "since curves were added to the evaluation).</p>\n";
  json c;
  try {
    c = json::parse(read_file(file));
  } catch (const json::parse_error& e) {
    throw Error(file.string() + ": invalid JSON: " + e.what());
  }
  const double limit = c.value("fpr_limit", 0.3);
  h += "<div class=\"grid\">\n";
  const auto roc_pr = [&](const char* level, const std::string& name) {
    if (!c.contains(level)) return;
    const json& t = c[level];
    std::vector<double> fpr = doubles(t, "fpr"), tpr = doubles(t, "tpr"), prec = doubles(t, "precision");
    fpr.insert(fpr.begin(), 0.0);
    tpr.insert(tpr.begin(), 0.0);
    const std::string counts = json_text(t.value("positives", json(0))) + " anomalous, " +
                               json_text(t.value("negatives", json(0))) + " normal";
    json roc = {{"type", "scatter"},
                {"data",
                 {{"datasets",
                   {line_dataset("ROC (" + counts + ")", xy(fpr, tpr), kPalette[0]),
                    line_dataset("chance", xy({0, 1}, {0, 1}), "#9aa4b1", true)}}}},
                {"options",
                 line_options(name + " ROC", axis("False positive rate", 0, 1), axis("True positive rate", 0, 1.0))}};
    h += charts.add(std::string(level) + "-roc", roc);
    // The precision-recall curve starts at recall 0, precision 1 (scikit-learn's convention).
    std::vector<double> recall = doubles(t, "tpr");
    recall.insert(recall.begin(), 0.0);
    prec.insert(prec.begin(), 1.0);
    const double pos = t.value("positives", 0.0), neg = t.value("negatives", 0.0);
    const double base = pos + neg > 0 ? pos / (pos + neg) : 0;
    json pr = {{"type", "scatter"},
               {"data",
                {{"datasets",
                  {line_dataset("precision-recall", xy(recall, prec), kPalette[1]),
                   line_dataset("chance (" + fixed(100 * base, 1) + " % anomalous)", xy({0, 1}, {base, base}),
                                "#9aa4b1", true)}}}},
               {"options", line_options(name + " precision-recall", axis("Recall", 0, 1), axis("Precision", 0, 1.0))}};
    h += charts.add(std::string(level) + "-pr", pr);
  };
  roc_pr("image", "Image-level");
  roc_pr("pixel", "Pixel-level");
  if (c.contains("pixel") && c["pixel"].contains("pro")) {
    const json& t = c["pixel"];
    std::vector<double> fpr = doubles(t, "fpr"), pro = doubles(t, "pro");
    fpr.insert(fpr.begin(), 0.0);
    pro.insert(pro.begin(), 0.0);
    json cfg = {
        {"type", "scatter"},
        {"data",
         {{"datasets",
           {line_dataset("PRO (" + json_text(t.value("regions", json(0))) + " defect regions)", xy(fpr, pro),
                         kPalette[2]),
            line_dataset("AUPRO limit (FPR " + fixed(limit, 2) + ")", xy({limit, limit}, {0, 1}), "#e4572e", true)}}}},
        {"options", line_options("Per-region overlap (PRO)", axis("False positive rate (pixels)", 0, 1),
                                 axis("Mean region overlap", 0, 1.0))}};
    h += charts.add("pixel-pro", cfg);
  }
  h += "</div>\n";
  if (!c.contains("image") && !c.contains("pixel"))
    h += "<p class=\"note\">The test set lacks normal or anomalous images (pixels): no curve can be drawn.</p>\n";
  return h;
}

std::string defect_section(const json& m, const fs::path& per_image, Charts& charts) {
  std::string h = "<h2 id=\"defects\">Per defect type</h2>\n";
  std::map<std::string, int> images;
  std::map<std::string, std::vector<double>> scores;
  if (fs::exists(per_image)) {
    const auto rows = csv::read(per_image);
    if (rows.empty() || rows[0].size() < 4 || rows[0][1] != "defect_type" || rows[0][3] != "score")
      throw Error(per_image.string() + ": expected the header path,defect_type,label,score");
    for (std::size_t i = 1; i < rows.size(); ++i) {
      if (rows[i].size() < 4) throw Error(per_image.string() + ":" + std::to_string(i + 1) + ": expected 4 fields");
      ++images[rows[i][1]];
      const json s = csv_number(rows[i][3], per_image, i + 1);
      if (s.is_number()) scores[rows[i][1]].push_back(s.get<double>());
    }
  }
  const json types = m.value("per_defect_type", json::object());
  if (types.empty() && images.empty()) return h + "<p class=\"note\">No per-defect-type results.</p>\n";
  const std::vector<std::string> cols = {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"};
  h += "<table>\n<tr><th>type</th><th class=\"num\">images</th><th class=\"num\">median score</th>";
  for (const auto& c : cols) h += "<th class=\"num\">" + esc(metric_label(c)) + "</th>";
  h += "<th class=\"num\">defect pixels</th><th class=\"num\">median map value of normal pixels</th></tr>\n";
  std::set<std::string> names;
  for (const auto& [k, v] : types.items()) names.insert(k);
  for (const auto& [k, v] : images) names.insert(k);
  std::vector<std::string> labels;
  std::map<std::string, json> bars;
  for (const auto& t : names) {
    const json e = types.value(t, json::object());
    std::string median;
    if (auto it = scores.find(t); it != scores.end() && !it->second.empty()) {
      std::vector<double> v = it->second;
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      std::ostringstream os;
      os << std::setprecision(5) << v[v.size() / 2];
      median = os.str();
    }
    h += "<tr><td>" + esc(t) + "</td><td class=\"num\">" + (images.count(t) ? std::to_string(images[t]) : "") +
         "</td><td class=\"num\">" + median + "</td>";
    for (const auto& c : cols)
      h += "<td class=\"num\">" + (e.contains(c) ? fixed(100 * e[c].get<double>(), 1) : std::string()) + "</td>";
    h += "<td class=\"num\">" + (e.contains("defect_pixels") ? json_text(e["defect_pixels"]) : "") +
         "</td><td class=\"num\">" + (e.contains("normal_pixel_median") ? json_text(e["normal_pixel_median"]) : "") +
         "</td></tr>\n";
    if (t == "good") continue;
    labels.push_back(t);
    for (const auto& c : cols) bars[c].push_back(e.contains(c) ? json(100 * e[c].get<double>()) : json(nullptr));
  }
  h += "</table>\n<p class=\"note\">Each defect type is scored against all normal test images. The median map "
       "value of normal pixels per image type shows a shift between the sets that caps pooled pixel metrics.</p>\n";
  json datasets = json::array();
  for (std::size_t i = 0; i < cols.size(); ++i) {
    const auto& col = bars[cols[i]];
    if (std::all_of(col.begin(), col.end(), [](const json& v) { return v.is_null(); })) continue;
    datasets.push_back({{"label", metric_label(cols[i])}, {"data", col}, {"backgroundColor", kPalette[i]}});
  }
  if (!labels.empty() && !datasets.empty()) {
    json cfg = {{"type", "bar"},
                {"data", {{"labels", labels}, {"datasets", datasets}}},
                {"options",
                 {{"responsive", true},
                  {"maintainAspectRatio", false},
                  {"scales", {{"x", axis("Defect type", NAN, NAN, "category")}, {"y", axis("%", 0, 100)}}},
                  {"plugins",
                   {{"title", {{"display", true}, {"text", "Per-defect-type results"}, {"font", {{"size", 14}}}}},
                    {"legend", {{"position", "bottom"}}}}}}}};
    h += "<div class=\"grid\">" + charts.add("defect-types", cfg) + "</div>\n";
  }
  return h;
}

struct TrainLog {
  std::string note;  // how the points were thinned ("" when every step is a point)
  std::vector<std::string> terms;
  std::vector<double> step, lr;
  std::vector<std::vector<json>> values;  // [term][point]
};

TrainLog read_train_log(const fs::path& file, int max_points) {
  const auto rows = csv::read(file);
  if (rows.empty() || rows[0].size() < 4 || rows[0][0] != "step" || rows[0][2] != "lr")
    throw Error(file.string() + ": expected the header step,epoch,lr,loss,...");
  TrainLog log;
  const auto& header = rows[0];
  for (std::size_t c = 3; c < header.size(); ++c) log.terms.push_back(header[c]);
  log.values.resize(log.terms.size());
  const std::size_t n = rows.size() - 1;
  // Equal runs of consecutive steps are averaged (loss) or sampled at their end (lr, step), so a
  // long log keeps its shape without a point per step.
  const std::size_t bucket = std::max<std::size_t>(
      1, (n + static_cast<std::size_t>(max_points) - 1) / static_cast<std::size_t>(std::max(1, max_points)));
  for (std::size_t b = 0; b * bucket < n; ++b) {
    const std::size_t lo = 1 + b * bucket, hi = std::min(rows.size(), lo + bucket);
    std::vector<double> sum(log.terms.size(), 0);
    std::vector<int> cnt(log.terms.size(), 0);
    for (std::size_t r = lo; r < hi; ++r) {
      if (rows[r].size() != header.size())
        throw Error(file.string() + ":" + std::to_string(r + 1) + ": " + std::to_string(rows[r].size()) +
                    " fields, the header has " + std::to_string(header.size()));
      for (std::size_t t = 0; t < log.terms.size(); ++t) {
        const json v = csv_number(rows[r][3 + t], file, r + 1);
        if (v.is_number()) {
          sum[t] += v.get<double>();
          ++cnt[t];
        }
      }
    }
    const json step = csv_number(rows[hi - 1][0], file, hi);
    const json lr = csv_number(rows[hi - 1][2], file, hi);
    log.step.push_back(step.is_number() ? step.get<double>() : NAN);
    log.lr.push_back(lr.is_number() ? lr.get<double>() : NAN);
    for (std::size_t t = 0; t < log.terms.size(); ++t)
      log.values[t].push_back(cnt[t] ? json(sum[t] / cnt[t]) : json(nullptr));
  }
  if (bucket > 1) log.note = " (mean over " + std::to_string(bucket) + " steps per point)";
  return log;
}

std::string training_section(const fs::path& dir, const RunReportOptions& opt, Charts& charts) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (e.is_regular_file() && f.rfind("train_log", 0) == 0 && e.path().extension() == ".csv")
      files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return "";
  std::string h = "<h2 id=\"training\">Training</h2>\n<div class=\"grid\">\n";
  int k = 0;
  for (const auto& f : files) {
    TrainLog log = read_train_log(f, opt.max_train_points);
    if (log.step.empty()) {
      h += "<p class=\"note\">" + esc(f.filename().string()) + " holds no step yet.</p>\n";
      continue;
    }
    const std::string stem = f.stem().string();
    const std::string stage =
        stem == "train_log" ? std::string() : " — stage " + stem.substr(std::string("train_log_").size());
    json loss_sets = json::array();
    for (std::size_t t = 0; t < log.terms.size(); ++t) {
      json pts = json::array();
      for (std::size_t i = 0; i < log.step.size(); ++i) pts.push_back({{"x", log.step[i]}, {"y", log.values[t][i]}});
      json d = line_dataset(log.terms[t] == "loss" ? "total loss" : log.terms[t], pts, kPalette[t % kPalette.size()]);
      d["borderWidth"] = t == 0 ? 2.5 : 1.5;
      d["spanGaps"] = true;
      loss_sets.push_back(d);
    }
    // A log axis when the loss spans orders of magnitude (the usual case early in training).
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& col : log.values)
      for (const auto& v : col)
        if (v.is_number()) lo = std::min(lo, v.get<double>()), hi = std::max(hi, v.get<double>());
    const bool log_y = lo > 0 && hi / lo > 50;
    json cfg = {{"type", "scatter"},
                {"data", {{"datasets", loss_sets}}},
                {"options",
                 line_options("Loss" + stage + log.note, axis("Step", NAN, NAN),
                              axis(log_y ? "Loss (log scale)" : "Loss", NAN, NAN, log_y ? "logarithmic" : "linear"))}};
    if (log_y) cfg["options"]["scales"]["y"]["ticks"] = {{"autoSkipPadding", 12}};
    h += charts.add("train-loss-" + std::to_string(k), cfg, true);
    json lr_cfg = {{"type", "scatter"},
                   {"data", {{"datasets", {line_dataset("learning rate", xy(log.step, log.lr), kPalette[3])}}}},
                   {"options", line_options("Learning rate" + stage, axis("Step", NAN, NAN),
                                            axis("Learning rate", 0, NAN), false)}};
    lr_cfg["options"]["scales"]["y"]["ticks"] = {{"maxTicksLimit", 8}};
    h += charts.add("train-lr-" + std::to_string(k), lr_cfg, true);
    ++k;
  }
  return h + "</div>\n";
}

std::string gallery_section(const fs::path& dir) {
  std::string h = "<h2 id=\"gallery\">Gallery</h2>\n";
  const fs::path index_file = dir / "index.json";
  if (!fs::exists(index_file))
    return h + "<p class=\"note\">No gallery/ in this run folder (eval.gallery = 0, or no anomaly maps).</p>\n";
  json index;
  try {
    index = json::parse(read_file(index_file));
  } catch (const json::parse_error& e) {
    throw Error(index_file.string() + ": invalid JSON: " + e.what());
  }
  std::ostringstream thr;
  thr << std::setprecision(5) << index.value("image_threshold", 0.0);
  h += "<p class=\"note\">Threshold: " + esc(index.value("threshold_rule", std::string("image F1-max"))) + " = " +
       thr.str() + ". Panels: ";
  std::string panels;
  for (const auto& p : index.value("panels", json::array())) panels += (panels.empty() ? "" : " | ") + json_text(p);
  h += esc(panels) + ".</p>\n";
  for (const auto& g : index.at("groups")) {
    h += "<h3>" + esc(g.value("title", std::string())) + "</h3>\n<div class=\"gallery\">\n";
    for (const auto& it : g.at("items")) {
      const fs::path img = dir / it.at("file").get<std::string>();
      const std::string bytes = read_file(img);
      std::ostringstream cap;
      cap << std::setprecision(5)
          << (it.contains("outcome") ? it.value("outcome", std::string()) + " — " : std::string())
          << (it.value("defect_type", std::string()).empty() ? "" : it.value("defect_type", std::string()) + " — ")
          << "score " << it.value("score", 0.0) << " — " << it.value("path", std::string());
      h += "<figure><img alt=\"" + esc(it.value("path", std::string())) + "\" src=\"data:image/png;base64," +
           base64(bytes) + "\"><figcaption>" + esc(cap.str()) + "</figcaption></figure>\n";
    }
    h += "</div>\n";
  }
  return h;
}

std::string details_file(const fs::path& file, const std::string& title) {
  if (!fs::exists(file)) return "";
  return "<details><summary>" + esc(title) + "</summary><pre>" + esc(read_file(file)) + "</pre></details>\n";
}

}  // namespace

std::string run_report_html(const fs::path& dir, const RunReportOptions& opt) {
  const fs::path metrics_file = dir / "metrics.json";
  if (!fs::exists(metrics_file))
    throw Error("report: " + metrics_file.string() + " does not exist (is " + dir.string() +
                " a finished run folder?)");
  const json m = read_json(metrics_file);
  if (!m.contains("metrics") || !m["metrics"].is_object())
    throw Error("report: " + metrics_file.string() + " has no \"metrics\" object");
  json env = json::object();
  if (fs::exists(dir / "env.json")) env = read_json(dir / "env.json");
  Charts charts;
  const std::string experiment = m.value("experiment", dir.parent_path().filename().string());
  const std::string run_id = m.value("run_id", dir.filename().string());
  const std::string method = m.contains("method") && m["method"].is_object() ? m["method"].value("name", "") : "";
  std::string b = "<h1>" + esc(experiment) + " <span style=\"font-weight:400;color:#5b6675\">" + esc(run_id) +
                  "</span></h1>\n<p class=\"sub\">";
  if (!method.empty()) b += "method " + esc(method) + " · ";
  const std::string category = run_category(dir / "config.toml");
  if (!category.empty()) b += "category " + esc(category) + " · ";
  if (env.contains("adfw")) b += "adfw " + esc(json_text(env["adfw"])) + " · ";
  if (env.contains("device")) b += "device " + esc(json_text(env["device"])) + " · ";
  b += "run folder " + esc(dir.string()) + "</p>\n";
  b += metrics_section(m, category);
  b += curves_section(dir / "curves.json", charts);
  b += defect_section(m, dir / "per_image.csv", charts);
  b += training_section(dir, opt, charts);
  b += gallery_section(dir / "gallery");
  b += "<h2 id=\"config\">Configuration and environment</h2>\n";
  b += details_file(dir / "config.toml", "config.toml (the resolved configuration; adfw run repeats it)");
  b += details_file(dir / "env.json", "env.json");
  if (m.contains("method"))
    b += "<details><summary>method summary</summary><pre>" + esc(m["method"].dump(2)) + "</pre></details>\n";
  return page(experiment + " " + run_id + " — adfw report", b, charts);
}

fs::path write_run_report(const fs::path& dir, const RunReportOptions& opt) {
  const fs::path out = dir / "report.html";
  write_file_atomic(out, run_report_html(dir, opt));
  return out;
}

std::string sweep_report_html(const table::RunSet& set, const table::TableOptions& options,
                              const fs::path& report_dir) {
  const table::Table t = table::build_table(set, options);
  Charts charts;
  std::string b = "<h1>" + esc(set.name) + "</h1>\n<p class=\"sub\">" + std::to_string(t.runs_used) + " runs done";
  if (t.runs_missing) b += ", " + std::to_string(t.runs_missing) + " not done";
  b += " · rows " + esc(t.rows_key) + (t.cols_key.empty() ? "" : " · columns " + esc(t.cols_key)) + "</p>\n";

  // The paper table, as `adfw table` computes it.
  b += "<h2 id=\"table\">Table</h2>\n";
  if (!t.caption.empty()) b += "<p class=\"note\">" + esc(t.caption) + "</p>\n";
  const auto value = [&](std::size_t mi, double v) {
    const bool pct = options.percent && t.fraction[mi];
    const int digits = options.digits >= 0 ? options.digits : pct ? 1 : 3;
    return fixed(pct ? 100 * v : v, digits);
  };
  b += "<table>\n<tr><th>" + esc(t.rows_key) + "</th>";
  for (std::size_t mi = 0; mi < t.metrics.size(); ++mi) {
    for (const auto& c : t.columns)
      b += "<th class=\"num\">" + esc(metric_label(t.metrics[mi])) + (c.empty() ? "" : "<br>" + esc(c)) + "</th>";
    if (t.show_reference[mi]) b += "<th class=\"num\">" + esc(metric_label(t.metrics[mi])) + "<br>reference</th>";
  }
  b += "</tr>\n";
  const auto row_html = [&](const table::Row& r, bool mean_row) {
    std::string h = "<tr><td>" + (mean_row ? "<b>" + esc(r.label) + "</b>" : esc(r.label)) + "</td>";
    for (std::size_t mi = 0; mi < t.metrics.size(); ++mi) {
      for (std::size_t ci = 0; ci < t.columns.size(); ++ci) {
        const table::Cell& c = r.cells[mi][ci];
        std::string text = c.present() ? value(mi, c.mean) + (c.n > 1 ? " ± " + value(mi, c.std) : "") : "–";
        if (c.present() && r.best[mi][ci]) text = "<b class=\"best\">" + text + "</b>";
        h += "<td class=\"num\" title=\"" + std::to_string(c.n) + " run(s)\">" + text + "</td>";
      }
      if (t.show_reference[mi])
        h += "<td class=\"num\">" + (r.reference[mi] ? value(mi, *r.reference[mi]) : std::string("–")) + "</td>";
    }
    return h + "</tr>\n";
  };
  for (const auto& r : t.rows) b += row_html(r, false);
  if (t.mean) b += row_html(*t.mean, true);
  b += "</table>\n";
  b += "<p class=\"note\">Cells: mean ± sample standard deviation over the runs of a cell (usually seeds; n = " +
       std::to_string(t.common_n) + "); the best value of each row in bold." +
       (t.reference_source.empty() ||
                std::none_of(t.show_reference.begin(), t.show_reference.end(), [](bool shown) { return shown; })
            ? std::string()
            : " Reference: " + esc(t.reference_source) + ".") +
       "</p>\n";
  for (const auto& n : t.notes) b += "<p class=\"note\">" + esc(n) + "</p>\n";

  // Rows that are numbers (N pixel-labelled anomalies, a coreset ratio, ...) also get a line per
  // column of the metric against that number; a row that is not a number in such a table (e.g.
  // "unsupervised" beside N = 0, 49, 196) is drawn as a dashed level across the plot.
  std::vector<double> row_x(t.rows.size(), NAN);
  std::size_t numeric_rows = 0;
  for (std::size_t ri = 0; ri < t.rows.size(); ++ri) {
    if (table::parses_as_number(t.rows[ri].label, &row_x[ri])) ++numeric_rows;
  }
  // Axis titles for the keys the engine records in metrics.json's protocol.
  const std::map<std::string, std::string> kKeyTitles = {
      {"protocol.n_pixel_labelled", "N: pixel-labelled anomalous training images"},
      {"protocol.train_anomalous_image_labelled", "image-labelled anomalous training images"},
      {"protocol.train_images", "training images"}};
  const auto key_title = [&](const std::string& k) {
    const auto it = kKeyTitles.find(k);
    return it == kKeyTitles.end() ? k : it->second;
  };
  if (numeric_rows >= 2) {
    double x_lo = INFINITY, x_hi = -INFINITY;
    for (double x : row_x)
      if (std::isfinite(x)) x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
    b += "<h2 id=\"against\">Against " + esc(key_title(t.rows_key)) + "</h2>\n<div class=\"grid\">\n";
    for (std::size_t mi = 0; mi < t.metrics.size(); ++mi) {
      const double scale = options.percent && t.fraction[mi] ? 100.0 : 1.0;
      json datasets = json::array();
      for (std::size_t ci = 0; ci < t.columns.size(); ++ci) {
        const std::string colour = kPalette[ci % kPalette.size()];
        const std::string name = t.columns[ci].empty() ? metric_label(t.metrics[mi]) : t.columns[ci];
        json mean_pts = json::array(), run_pts = json::array();
        for (std::size_t ri = 0; ri < t.rows.size(); ++ri) {
          const table::Cell& c = t.rows[ri].cells[mi][ci];
          if (!c.present()) continue;
          if (std::isfinite(row_x[ri])) {
            mean_pts.push_back({{"x", row_x[ri]}, {"y", scale * c.mean}});
            for (double v : c.values) run_pts.push_back({{"x", row_x[ri]}, {"y", scale * v}});
          } else {
            json level = line_dataset(name + " (" + t.rows[ri].label + ")",
                                      xy({x_lo, x_hi}, {scale * c.mean, scale * c.mean}), colour, true);
            datasets.push_back(level);
          }
        }
        if (mean_pts.empty()) continue;
        json line = line_dataset(name, mean_pts, colour);
        line["pointRadius"] = 4;
        datasets.push_back(line);
        json dots = {{"label", name + ": each run"}, {"data", run_pts}, {"showLine", false},
                     {"pointRadius", 2.5},            {"borderColor", colour}, {"backgroundColor", colour + "80"}};
        datasets.push_back(dots);
      }
      const std::string label = metric_label(t.metrics[mi]) + (scale == 100.0 ? " (%)" : "");
      json cfg = {{"type", "scatter"},
                  {"data", {{"datasets", datasets}}},
                  {"options", line_options(metric_label(t.metrics[mi]) + " against " + key_title(t.rows_key),
                                           axis(key_title(t.rows_key), NAN, NAN), axis(label, NAN, NAN))}};
      cfg["options"]["plugins"]["subtitle"] = {{"display", true},
                                               {"text", "line: mean over runs · dots: each run · dashed: rows that are not numbers"},
                                               {"padding", {{"bottom", 8}}}};
      b += charts.add("against-" + std::to_string(mi), cfg, true);
    }
    b += "</div>\n";
  }

  // Per-row bars of every metric: mean over seeds, ± std whiskers and each seed's value.
  b += "<h2 id=\"bars\">Per " + esc(t.rows_key) + "</h2>\n<div class=\"grid\">\n";
  for (std::size_t mi = 0; mi < t.metrics.size(); ++mi) {
    const bool pct = options.percent && t.fraction[mi];
    const double scale = pct ? 100.0 : 1.0;
    json labels = json::array();
    for (const auto& r : t.rows) labels.push_back(r.label);
    json datasets = json::array();
    double lo = INFINITY;
    for (std::size_t ci = 0; ci < t.columns.size(); ++ci) {
      json data = json::array(), spread = json::array();
      for (const auto& r : t.rows) {
        const table::Cell& c = r.cells[mi][ci];
        if (!c.present()) {
          data.push_back(nullptr);
          spread.push_back(nullptr);
          continue;
        }
        json vals = json::array();
        for (double v : c.values) {
          vals.push_back(scale * v);
          lo = std::min(lo, scale * v);
        }
        lo = std::min(lo, scale * (c.mean - c.std));
        data.push_back(scale * c.mean);
        spread.push_back({{"mean", scale * c.mean}, {"std", scale * c.std}, {"n", c.n}, {"values", vals}});
      }
      const std::string colour = kPalette[ci % kPalette.size()];
      datasets.push_back({{"label", t.columns[ci].empty() ? metric_label(t.metrics[mi]) : t.columns[ci]},
                          {"data", data},
                          {"backgroundColor", colour + "b3"},
                          {"borderColor", colour},
                          {"borderWidth", 1},
                          {"adfwSpread", spread}});
    }
    // Bars start near the lowest value so that differences of a point or two stay visible.
    json y = axis(pct ? metric_label(t.metrics[mi]) + " (%)" : metric_label(t.metrics[mi]), NAN, NAN);
    if (std::isfinite(lo)) {
      const double step = pct ? 10.0 : 0.1;
      y["min"] = std::max(0.0, std::floor((lo - step / 5) / step) * step);
      if (pct) y["max"] = 100;
    }
    json cfg = {{"type", "bar"},
                {"data", {{"labels", labels}, {"datasets", datasets}}},
                {"options",
                 {{"responsive", true},
                  {"maintainAspectRatio", false},
                  {"scales", {{"x", axis(t.rows_key, NAN, NAN, "category")}, {"y", y}}},
                  {"plugins",
                   {{"title",
                     {{"display", true},
                      {"text", metric_label(t.metrics[mi]) + " per " + t.rows_key},
                      {"font", {{"size", 14}}}}},
                    {"subtitle",
                     {{"display", true},
                      {"text", "bars: mean over runs · whiskers: ± sample std · dots: each run"},
                      {"padding", {{"bottom", 8}}}}},
                    {"legend", {{"display", !t.cols_key.empty()}, {"position", "bottom"}}}}}}}};
    b += charts.add("sweep-" + std::to_string(mi), cfg, true);
  }
  b += "</div>\n";

  // Every run, with a link to its own report.
  b += "<h2 id=\"runs\">Runs</h2>\n<table>\n<tr><th>run</th><th>state</th>";
  for (const auto& k : set.axis_keys) b += "<th>" + esc(k) + "</th>";
  b += "<th>report</th></tr>\n";
  for (const auto& r : set.runs) {
    b += "<tr><td>" + esc(r.id) + "</td><td>" + esc(to_string(r.state)) + "</td>";
    for (const auto& k : set.axis_keys) b += "<td>" + esc(table::value_label(r.config.at_path(k).node())) + "</td>";
    const fs::path rep = r.dir / "report.html";
    if (fs::exists(rep)) {
      std::error_code ec;
      fs::path rel = fs::relative(rep, report_dir, ec);
      if (ec || rel.empty()) rel = fs::absolute(rep);
      b += "<td><a href=\"" + esc(rel.generic_string()) + "\">report.html</a></td>";
    } else {
      b += "<td></td>";
    }
    b += "</tr>\n";
  }
  b += "</table>\n";
  return page(set.name + " — adfw sweep report", b, charts);
}

}  // namespace adfw::report
