#include "adfw/synth/preview.hpp"

#include <algorithm>
#include <filesystem>
#include <random>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/synth/perlin_blend.hpp"

namespace fs = std::filesystem;

namespace adfw {

std::vector<std::string> list_images(const std::string& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw ConfigError("image folder '" + folder + "' does not exist");
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(folder, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" || ext == ".tiff")
      out.push_back(it->path().string());
  }
  if (out.empty()) throw ConfigError("image folder '" + folder + "' holds no image files");
  std::sort(out.begin(), out.end());
  return out;
}

torch::Tensor load_image_tensor(const std::string& path, int size) {
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  if (bgr.empty()) throw Error("image '" + path + "' could not be decoded");
  cv::Mat rgb, f;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  cv::resize(rgb, rgb, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  rgb.convertTo(f, CV_32FC3, 1.0 / 255.0);
  return mat_to_image(f);
}

namespace {
cv::Mat to_bgr8(const torch::Tensor& image) {
  cv::Mat f = image_to_mat(image), u, bgr;
  f.convertTo(u, CV_8UC3, 255.0);
  cv::cvtColor(u, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}
}  // namespace

cv::Mat synth_preview_grid(const Synthesizer& synth, const std::vector<std::string>& images,
                           const PreviewOptions& o) {
  if (images.empty()) throw ConfigError("synth preview: no images");
  const int s = o.size, per_row = std::max(1, o.per_row), rows = (o.n + per_row - 1) / per_row;
  const int gap = 4;
  const int tile_w = 3 * s + 2 * gap;
  cv::Mat grid(rows * (s + gap) - gap, per_row * (tile_w + 3 * gap) - 3 * gap, CV_8UC3, cv::Scalar(40, 40, 40));
  std::mt19937_64 rng(o.seed);
  std::vector<std::size_t> order(images.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (int k = 0; k < o.n; ++k) {
    const torch::Tensor img = load_image_tensor(images[order[k % order.size()]], s);
    SynthResult r = synth.apply(img, rng);
    for (int tries = 0; o.only_anomalous && r.label == 0 && tries < 20; ++tries) r = synth.apply(img, rng);
    cv::Mat in = to_bgr8(img), out = to_bgr8(r.image);
    cv::Mat m = tensor_to_mask(r.mask), m8, m3;
    m.convertTo(m8, CV_8U, 255.0);
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(m8.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
    cv::Mat outlined = out.clone();
    cv::drawContours(outlined, contours, -1, cv::Scalar(0, 0, 255), 1);
    cv::cvtColor(m8, m3, cv::COLOR_GRAY2BGR);
    const int x0 = (k % per_row) * (tile_w + 3 * gap), y0 = (k / per_row) * (s + gap);
    in.copyTo(grid(cv::Rect(x0, y0, s, s)));
    outlined.copyTo(grid(cv::Rect(x0 + s + gap, y0, s, s)));
    m3.copyTo(grid(cv::Rect(x0 + 2 * (s + gap), y0, s, s)));
  }
  return grid;
}

void write_image_atomic(const std::string& path, const cv::Mat& image) {
  const std::string ext = fs::path(path).extension().string();
  std::vector<uchar> bytes;
  bool ok = false;
  try {
    ok = !ext.empty() && cv::imencode(ext, image, bytes);
  } catch (const cv::Exception&) {
    ok = false;
  }
  if (!ok) throw ConfigError("cannot write '" + path + "': unsupported image extension '" + ext + "' (use .png)");
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace adfw
