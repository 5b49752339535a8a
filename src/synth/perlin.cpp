#include "adfw/synth/perlin.hpp"

#include <cmath>

#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"

namespace adfw {

void PerlinOptions::validate() const {
  if (min_scale >= max_scale)
    throw ConfigError("perlin: min_scale (" + std::to_string(min_scale) + ") must be below max_scale (" +
                      std::to_string(max_scale) + "): exponents are drawn from [min_scale, max_scale)");
  if (min_rotation > max_rotation)
    throw ConfigError("perlin: min_rotation must not exceed max_rotation");
}

namespace {

inline float fade(float t) { return t * t * t * (t * (t * 6.f - 15.f) + 10.f); }

}  // namespace

cv::Mat perlin_noise(int height, int width, int res_y, int res_x, std::mt19937_64& rng) {
  if (height <= 0 || width <= 0 || res_y <= 0 || res_x <= 0)
    throw Error("perlin_noise: sizes and lattice resolution must be positive");
  // Unit gradients at the (res_y+1) x (res_x+1) lattice corners, angle uniform in [0, 2pi).
  const int gh = res_y + 1, gw = res_x + 1;
  std::vector<float> gcos(gh * gw), gsin(gh * gw);
  for (int i = 0; i < gh * gw; ++i) {
    const double a = 2.0 * M_PI * uniform01(rng);
    gcos[i] = static_cast<float>(std::cos(a));
    gsin[i] = static_cast<float>(std::sin(a));
  }
  // Per-row and per-column lattice cell and fractional offset (pixel i sits at i*res/size).
  std::vector<int> cx(width);
  std::vector<float> fx(width), tx(width);
  for (int x = 0; x < width; ++x) {
    const double g = static_cast<double>(x) * res_x / width;
    cx[x] = static_cast<int>(std::floor(g));
    fx[x] = static_cast<float>(g - cx[x]);
    tx[x] = fade(fx[x]);
  }
  cv::Mat out(height, width, CV_32F);
  const float s2 = static_cast<float>(std::sqrt(2.0));
  for (int y = 0; y < height; ++y) {
    const double g = static_cast<double>(y) * res_y / height;
    const int cy = static_cast<int>(std::floor(g));
    const float fy = static_cast<float>(g - cy), ty = fade(fy);
    float* row = out.ptr<float>(y);
    const int r0 = cy * gw, r1 = (cy + 1) * gw;
    for (int x = 0; x < width; ++x) {
      const int c = cx[x];
      const float u = fx[x];
      // Dot products of the corner gradients with the offsets from each corner; the first
      // component pairs with the row axis as in rand_perlin_2d_np.
      const float n00 = gcos[r0 + c] * fy + gsin[r0 + c] * u;
      const float n10 = gcos[r1 + c] * (fy - 1.f) + gsin[r1 + c] * u;
      const float n01 = gcos[r0 + c + 1] * fy + gsin[r0 + c + 1] * (u - 1.f);
      const float n11 = gcos[r1 + c + 1] * (fy - 1.f) + gsin[r1 + c + 1] * (u - 1.f);
      const float a = n00 + ty * (n10 - n00);
      const float b = n01 + ty * (n11 - n01);
      row[x] = s2 * (a + tx[x] * (b - a));
    }
  }
  return out;
}

PerlinMaskGenerator::PerlinMaskGenerator(PerlinOptions options) : options_(std::move(options)) {
  options_.validate();
}

cv::Mat PerlinMaskGenerator::noise(int height, int width, std::mt19937_64& rng) const {
  const int ky = static_cast<int>(uniform_int(rng, options_.min_scale, options_.max_scale));
  const int kx = static_cast<int>(uniform_int(rng, options_.min_scale, options_.max_scale));
  cv::Mat n = perlin_noise(height, width, 1 << ky, 1 << kx, rng);
  const double angle = uniform(rng, options_.min_rotation, options_.max_rotation);
  if (options_.min_rotation == 0.0 && options_.max_rotation == 0.0) return n;
  // Rotation about the image centre with zero fill, like imgaug's Affine(rotate=...) on the
  // noise in DRAEM: the uncovered corners read 0 and never pass a positive threshold.
  const cv::Mat rot = cv::getRotationMatrix2D(cv::Point2f((width - 1) * 0.5f, (height - 1) * 0.5f), angle, 1.0);
  cv::Mat r;
  cv::warpAffine(n, r, rot, n.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar(0));
  return r;
}

double PerlinMaskGenerator::draw_threshold(const cv::Mat& noise, std::mt19937_64& rng) const {
  if (options_.threshold_mode == "fixed") return options_.threshold;
  // TransFusion (model/SyntAnomGenerator.py): one of four rules, 1/4 each. max(noise) yields an
  // (almost) empty mask, 0.5 + 0.5U a shrunken one, 0.5 the plain one, 0.5 - 0.5U a grown one.
  const double p = uniform01(rng);
  if (p < 0.25) {
    double mx = 0;
    cv::minMaxLoc(noise, nullptr, &mx);
    return mx;
  }
  if (p < 0.5) return 0.5 + 0.5 * uniform01(rng);
  if (p < 0.75) return 0.5;
  return 0.5 - 0.5 * uniform01(rng);
}

cv::Mat PerlinMaskGenerator::binarise(const cv::Mat& noise, double threshold) const {
  cv::Mat src = noise;
  if (options_.absolute) src = cv::abs(noise);
  cv::Mat m;
  cv::threshold(src, m, threshold, 1.0, cv::THRESH_BINARY);  // strictly greater -> 1, else 0
  return m;
}

PerlinMaskGenerator::Draw PerlinMaskGenerator::draw(int height, int width, std::mt19937_64& rng,
                                                    const cv::Mat& foreground) const {
  Draw d;
  if (options_.empty_probability > 0 && uniform01(rng) < options_.empty_probability) {
    d.mask = cv::Mat::zeros(height, width, CV_32F);
    d.forced_empty = true;
    return d;
  }
  d.noise = noise(height, width, rng);
  d.threshold = draw_threshold(d.noise, rng);
  d.mask = binarise(d.noise, d.threshold);
  if (!foreground.empty()) {
    if (foreground.rows != height || foreground.cols != width)
      throw Error("perlin mask: foreground mask is " + std::to_string(foreground.cols) + "x" +
                  std::to_string(foreground.rows) + ", expected " + std::to_string(width) + "x" +
                  std::to_string(height));
    cv::Mat fg;
    foreground.convertTo(fg, CV_32F);
    cv::Mat keep;
    cv::threshold(fg, keep, 0.0, 1.0, cv::THRESH_BINARY);
    d.mask = d.mask.mul(keep);
  }
  return d;
}

torch::Tensor mask_to_tensor(const cv::Mat& mask) {
  cv::Mat m;
  mask.convertTo(m, CV_32F);
  if (!m.isContinuous()) m = m.clone();
  return torch::from_blob(m.data, {1, m.rows, m.cols}, torch::kFloat32).clone();
}

cv::Mat tensor_to_mask(const torch::Tensor& mask) {
  if (!mask.defined()) return {};
  torch::Tensor t = mask.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  if (t.dim() == 3) t = t.squeeze(0);
  if (t.dim() != 2) throw Error("expected a (1,H,W) or (H,W) mask tensor");
  cv::Mat m(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_32F, t.data_ptr<float>());
  return m.clone();
}

}  // namespace adfw
