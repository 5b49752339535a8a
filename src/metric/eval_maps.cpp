#include "adfw/metric/eval_maps.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <regex>

#include <opencv2/imgcodecs.hpp>

#include "adfw/core/error.hpp"
#include "adfw/core/safetensors.hpp"
#include "adfw/metric/metric.hpp"

namespace adfw::metric {
namespace fs = std::filesystem;

cv::Mat read_npy(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error("cannot open '" + file.string() + "'");
  const std::vector<unsigned char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string where = "npy file '" + file.string() + "'";
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw Error(where + ": not a .npy file (bad magic)");
  const int major = b[6];
  std::size_t header_len, header_start;
  if (major == 1) {
    header_len = b[8] | (b[9] << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) throw Error(where + ": truncated header");
    header_len = b[8] | (b[9] << 8) | (static_cast<std::size_t>(b[10]) << 16) | (static_cast<std::size_t>(b[11]) << 24);
    header_start = 12;
  } else {
    throw Error(where + ": unsupported format version " + std::to_string(major));
  }
  if (header_start + header_len > b.size()) throw Error(where + ": header runs past the end of the file");
  const std::string header(b.begin() + static_cast<long>(header_start),
                           b.begin() + static_cast<long>(header_start + header_len));
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'")))
    throw Error(where + ": header has no 'descr'");
  const std::string descr = m[1];
  if (std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*True")))
    throw Error(where + ": Fortran-order arrays are not supported; save with np.ascontiguousarray");
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)"))) throw Error(where + ": header has no 'shape'");
  std::vector<int64_t> shape;
  const std::string dims = m[1];
  const std::regex number("\\d+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it)
    shape.push_back(std::stoll(it->str()));
  std::vector<int64_t> squeezed;
  for (auto d : shape)
    if (d != 1) squeezed.push_back(d);
  while (squeezed.size() < 2 && shape.size() >= 2) squeezed.insert(squeezed.begin(), 1);
  if (squeezed.size() != 2)
    throw Error(where + ": expected a 2-D map ((H,W), (1,H,W) or (H,W,1)); got " + std::to_string(shape.size()) +
                " dimensions");
  const int h = static_cast<int>(squeezed[0]), w = static_cast<int>(squeezed[1]);
  std::size_t elem;
  int type;
  if (descr == "<f4") elem = 4, type = CV_32F;
  else if (descr == "<f8") elem = 8, type = CV_64F;
  else if (descr == "|u1" || descr == "<u1") elem = 1, type = CV_8U;
  else throw Error(where + ": dtype '" + descr + "' is not supported (use float32, float64 or uint8)");
  const std::size_t data_start = header_start + header_len;
  const std::size_t need = static_cast<std::size_t>(h) * static_cast<std::size_t>(w) * elem;
  if (b.size() - data_start != need)
    throw Error(where + ": " + std::to_string(b.size() - data_start) + " data bytes, expected " + std::to_string(need));
  cv::Mat raw(h, w, type);
  std::memcpy(raw.data, b.data() + data_start, need);
  cv::Mat out;
  raw.convertTo(out, CV_32F);
  return out;
}

cv::Mat read_map_file(const fs::path& file) {
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  if (ext == ".npy") return read_npy(file);
  const cv::Mat m = cv::imread(file.string(), cv::IMREAD_UNCHANGED);
  if (m.empty()) throw Error("cannot read image '" + file.string() + "'");
  if (m.channels() != 1)
    throw Error("'" + file.string() + "' has " + std::to_string(m.channels()) +
                " channels; anomaly maps and masks must be single-channel");
  cv::Mat out;
  m.convertTo(out, CV_32F);
  return out;
}

namespace {

bool is_map_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".tif" || ext == ".tiff" || ext == ".npy";
}

fs::path find_mask(const fs::path& masks_dir, const fs::path& rel) {
  const fs::path stem_dir = masks_dir / rel.parent_path();
  const std::string stem = rel.stem().string();
  for (const std::string& s : {stem, stem + "_mask"})
    for (const char* ext : {".png", ".tif", ".tiff", ".npy", ".bmp"}) {
      const fs::path p = stem_dir / (s + ext);
      if (fs::exists(p)) return p;
    }
  return {};
}

}  // namespace

nlohmann::json eval_maps(const EvalMapsOptions& opt) {
  std::vector<float> maps, scores;
  std::vector<uint8_t> masks;
  std::vector<int64_t> labels;
  int64_t n = 0, h = 0, w = 0;
  if (!fs::exists(opt.input)) throw ConfigError("eval-maps: '" + opt.input.string() + "' does not exist");
  if (fs::is_regular_file(opt.input)) {
    if (!opt.masks.empty())
      throw ConfigError("eval-maps: --masks is for a folder of maps; a safetensors file carries its own masks");
    const auto f = safetensors::File::open(opt.input);
    const auto& mv = f.at("anomaly_maps");
    if (mv.shape.size() != 3) throw Error("eval-maps: anomaly_maps must be (N,H,W)");
    n = mv.shape[0];
    h = mv.shape[1];
    w = mv.shape[2];
    maps = f.to_float("anomaly_maps");
    const auto& gv = f.at("masks");
    if (gv.shape != mv.shape)
      throw Error("eval-maps: masks shape does not match anomaly_maps (N,H,W) = (" + std::to_string(n) + ", " +
                  std::to_string(h) + ", " + std::to_string(w) + ")");
    const auto m64 = f.to_float("masks");
    masks.resize(m64.size());
    for (std::size_t i = 0; i < m64.size(); ++i) {
      if (m64[i] != 0.f && m64[i] != 1.f)
        throw Error("eval-maps: masks must be 0/1; found " + std::to_string(m64[i]) + " at flat index " + std::to_string(i));
      masks[i] = static_cast<uint8_t>(m64[i]);
    }
    labels = f.to_int64("labels");
    if (static_cast<int64_t>(labels.size()) != n)
      throw Error("eval-maps: " + std::to_string(labels.size()) + " labels for " + std::to_string(n) + " maps");
    if (f.contains("image_scores")) scores = f.to_float("image_scores");
  } else {
    if (opt.masks.empty() || !fs::is_directory(opt.masks))
      throw ConfigError("eval-maps: a folder of maps needs --masks <folder of ground-truth masks>");
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(opt.input))
      if (e.is_regular_file() && is_map_file(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw Error("eval-maps: no .png/.tif/.tiff/.npy maps under '" + opt.input.string() + "'");
    n = static_cast<int64_t>(files.size());
    for (const auto& file : files) {
      const cv::Mat m = read_map_file(file);
      if (maps.empty()) {
        h = m.rows;
        w = m.cols;
        maps.reserve(static_cast<std::size_t>(n * h * w));
        masks.reserve(static_cast<std::size_t>(n * h * w));
      } else if (m.rows != h || m.cols != w) {
        throw Error("eval-maps: '" + file.string() + "' is " + std::to_string(m.cols) + "x" + std::to_string(m.rows) +
                    " but earlier maps are " + std::to_string(w) + "x" + std::to_string(h) + "; all maps must share a size");
      }
      for (int r = 0; r < h; ++r) maps.insert(maps.end(), m.ptr<float>(r), m.ptr<float>(r) + w);
      const fs::path mask_file = find_mask(opt.masks, fs::relative(file, opt.input));
      int64_t label = 0;
      if (mask_file.empty()) {
        masks.insert(masks.end(), static_cast<std::size_t>(h * w), 0);
      } else {
        const cv::Mat g = read_map_file(mask_file);
        if (g.rows != h || g.cols != w)
          throw Error("eval-maps: mask '" + mask_file.string() + "' is " + std::to_string(g.cols) + "x" +
                      std::to_string(g.rows) + " but its map '" + file.string() + "' is " + std::to_string(w) + "x" +
                      std::to_string(h));
        for (int r = 0; r < h; ++r)
          for (int c = 0; c < w; ++c) {
            const uint8_t v = g.at<float>(r, c) > 0 ? 1 : 0;  // 0/255 PNG masks
            masks.push_back(v);
            label |= v;
          }
      }
      labels.push_back(label);
    }
  }
  if (scores.empty()) {
    scores.resize(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      scores[i] = *std::max_element(maps.begin() + i * h * w, maps.begin() + (i + 1) * h * w);
  } else if (static_cast<int64_t>(scores.size()) != n) {
    throw Error("eval-maps: " + std::to_string(scores.size()) + " image_scores for " + std::to_string(n) + " maps");
  }

  std::vector<std::unique_ptr<Metric>> metrics;
  MetricPlan plan;
  for (const auto& name : opt.metrics) {
    metrics.push_back(make_metric(name, opt.fpr_limit));
    metrics.back()->plan(plan);
  }
  EvalData d;
  d.maps = maps.data();
  d.masks = masks.data();
  d.n = n;
  d.h = h;
  d.w = w;
  d.image_scores = scores.data();
  d.labels = labels.data();
  d.threads = opt.threads;
  const auto r = run_plan(plan, d);
  nlohmann::json out = nlohmann::json::object();
  for (const auto& m : metrics) m->report(r, out);
  out["images"] = n;
  out["anomalous_images"] = std::count(labels.begin(), labels.end(), 1);
  out["map_size"] = {h, w};
  return out;
}

}  // namespace adfw::metric
