#include "adfw/synth/augment.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "adfw/synth/perlin.hpp"

namespace adfw {

const char* to_string(DraemOp op) {
  switch (op) {
    case DraemOp::gamma_contrast: return "gamma_contrast";
    case DraemOp::brightness: return "brightness";
    case DraemOp::sharpness: return "sharpness";
    case DraemOp::hue_saturation: return "hue_saturation";
    case DraemOp::solarize: return "solarize";
    case DraemOp::posterize: return "posterize";
    case DraemOp::invert: return "invert";
    case DraemOp::autocontrast: return "autocontrast";
    case DraemOp::equalize: return "equalize";
    case DraemOp::rotate: return "rotate";
  }
  return "?";
}

namespace {

uchar sat(double v) { return cv::saturate_cast<uchar>(std::lround(v)); }

void per_channel_lut(cv::Mat& rgb, const std::array<std::array<uchar, 256>, 3>& luts) {
  for (int y = 0; y < rgb.rows; ++y) {
    auto* p = rgb.ptr<cv::Vec3b>(y);
    for (int x = 0; x < rgb.cols; ++x)
      for (int c = 0; c < 3; ++c) p[x][c] = luts[c][p[x][c]];
  }
}

void gamma_contrast(cv::Mat& rgb, std::mt19937_64& rng) {
  std::array<std::array<uchar, 256>, 3> luts;
  for (int c = 0; c < 3; ++c) {
    const double g = uniform(rng, 0.5, 2.0);
    for (int v = 0; v < 256; ++v) luts[c][v] = sat(255.0 * std::pow(v / 255.0, g));
  }
  per_channel_lut(rgb, luts);
}

void brightness(cv::Mat& rgb, std::mt19937_64& rng) {
  const double mul = uniform(rng, 0.8, 1.2);
  const double add = uniform(rng, -30.0, 30.0);
  cv::Mat ycc;
  cv::cvtColor(rgb, ycc, cv::COLOR_RGB2YCrCb);
  for (int y = 0; y < ycc.rows; ++y) {
    auto* p = ycc.ptr<cv::Vec3b>(y);
    for (int x = 0; x < ycc.cols; ++x) p[x][0] = sat(p[x][0] * mul + add);
  }
  cv::cvtColor(ycc, rgb, cv::COLOR_YCrCb2RGB);
}

// PIL ImageEnhance.Sharpness: blend with PIL's SMOOTH filter (3x3, centre 5, others 1, /13),
// whose border pixels are the original ones; factor 0 = smoothed, 1 = original, 2 = sharpened.
void sharpness(cv::Mat& rgb, std::mt19937_64& rng) {
  const double f = uniform(rng, 0.0, 2.0);
  cv::Mat kernel = (cv::Mat_<float>(3, 3) << 1, 1, 1, 1, 5, 1, 1, 1, 1) / 13.f;
  cv::Mat deg;
  cv::filter2D(rgb, deg, -1, kernel, cv::Point(-1, -1), 0, cv::BORDER_REPLICATE);
  if (rgb.rows > 2 && rgb.cols > 2) {
    rgb.row(0).copyTo(deg.row(0));
    rgb.row(rgb.rows - 1).copyTo(deg.row(rgb.rows - 1));
    rgb.col(0).copyTo(deg.col(0));
    rgb.col(rgb.cols - 1).copyTo(deg.col(rgb.cols - 1));
  }
  for (int y = 0; y < rgb.rows; ++y) {
    auto* p = rgb.ptr<cv::Vec3b>(y);
    const auto* d = deg.ptr<cv::Vec3b>(y);
    for (int x = 0; x < rgb.cols; ++x)
      for (int c = 0; c < 3; ++c) p[x][c] = sat(d[x][c] + f * (p[x][c] - d[x][c]));
  }
}

// imgaug AddToHueAndSaturation: values in [-255, 255]; the hue value is projected onto
// OpenCV's 0..180 hue circle and wraps, saturation is added and clipped.
void hue_saturation(cv::Mat& rgb, std::mt19937_64& rng) {
  const int dh = static_cast<int>(uniform_int(rng, -50, 51));
  const int ds = static_cast<int>(uniform_int(rng, -50, 51));
  const int hue_shift = static_cast<int>(std::lround(dh * (180.0 / 255.0)));
  cv::Mat hsv;
  cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);
  for (int y = 0; y < hsv.rows; ++y) {
    auto* p = hsv.ptr<cv::Vec3b>(y);
    for (int x = 0; x < hsv.cols; ++x) {
      p[x][0] = static_cast<uchar>(((p[x][0] + hue_shift) % 180 + 180) % 180);
      p[x][1] = cv::saturate_cast<uchar>(p[x][1] + ds);
    }
  }
  cv::cvtColor(hsv, rgb, cv::COLOR_HSV2RGB);
}

void solarize(cv::Mat& rgb, std::mt19937_64& rng) {
  const bool active = uniform01(rng) < 0.5;
  const double thr = uniform(rng, 32.0, 128.0);
  if (!active) return;
  std::array<std::array<uchar, 256>, 3> luts;
  for (int v = 0; v < 256; ++v) luts[0][v] = luts[1][v] = luts[2][v] = v >= thr ? 255 - v : v;
  per_channel_lut(rgb, luts);
}

void posterize(cv::Mat& rgb, std::mt19937_64& rng) {
  const int bits = static_cast<int>(uniform_int(rng, 1, 9));
  const uchar keep = static_cast<uchar>(0xFF << (8 - bits));
  cv::bitwise_and(rgb, cv::Scalar(keep, keep, keep), rgb);
}

void invert(cv::Mat& rgb) { cv::bitwise_not(rgb, rgb); }

// PIL ImageOps.autocontrast with a cutoff percentage per end, channel by channel.
void autocontrast(cv::Mat& rgb, std::mt19937_64& rng) {
  const int cutoff = static_cast<int>(uniform_int(rng, 0, 21));
  std::array<std::array<uchar, 256>, 3> luts;
  const double n = static_cast<double>(rgb.total());
  for (int c = 0; c < 3; ++c) {
    std::array<double, 256> hist{};
    for (int y = 0; y < rgb.rows; ++y) {
      const auto* p = rgb.ptr<cv::Vec3b>(y);
      for (int x = 0; x < rgb.cols; ++x) hist[p[x][c]] += 1;
    }
    double cut = n * cutoff / 100.0;
    for (int v = 0; v < 256 && cut > 0; ++v) {
      const double take = std::min(cut, hist[v]);
      hist[v] -= take;
      cut -= take;
    }
    cut = n * cutoff / 100.0;
    for (int v = 255; v >= 0 && cut > 0; --v) {
      const double take = std::min(cut, hist[v]);
      hist[v] -= take;
      cut -= take;
    }
    int lo = 0, hi = 255;
    while (lo < 256 && hist[lo] <= 0) ++lo;
    while (hi >= 0 && hist[hi] <= 0) --hi;
    for (int v = 0; v < 256; ++v) {
      if (hi <= lo) {
        luts[c][v] = static_cast<uchar>(v);
      } else {
        const double scale = 255.0 / (hi - lo);
        luts[c][v] = sat((v - lo) * scale);
      }
    }
  }
  per_channel_lut(rgb, luts);
}

void equalize(cv::Mat& rgb) {
  std::vector<cv::Mat> ch;
  cv::split(rgb, ch);
  for (auto& c : ch) cv::equalizeHist(c, c);
  cv::merge(ch, rgb);
}

void rotate(cv::Mat& rgb, std::mt19937_64& rng) {
  const double angle = uniform(rng, -45.0, 45.0);
  const cv::Mat rot =
      cv::getRotationMatrix2D(cv::Point2f((rgb.cols - 1) * 0.5f, (rgb.rows - 1) * 0.5f), angle, 1.0);
  cv::Mat out;
  cv::warpAffine(rgb, out, rot, rgb.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  rgb = out;
}

}  // namespace

void apply_draem_op(DraemOp op, cv::Mat& rgb, std::mt19937_64& rng) {
  if (rgb.type() != CV_8UC3) throw Error("DRAEM augmentation expects an 8-bit 3-channel RGB image");
  switch (op) {
    case DraemOp::gamma_contrast: gamma_contrast(rgb, rng); break;
    case DraemOp::brightness: brightness(rgb, rng); break;
    case DraemOp::sharpness: sharpness(rgb, rng); break;
    case DraemOp::hue_saturation: hue_saturation(rgb, rng); break;
    case DraemOp::solarize: solarize(rgb, rng); break;
    case DraemOp::posterize: posterize(rgb, rng); break;
    case DraemOp::invert: invert(rgb); break;
    case DraemOp::autocontrast: autocontrast(rgb, rng); break;
    case DraemOp::equalize: equalize(rgb); break;
    case DraemOp::rotate: rotate(rgb, rng); break;
  }
}

std::vector<DraemOp> draem_augment(cv::Mat& rgb, std::mt19937_64& rng, int n_ops) {
  n_ops = std::clamp(n_ops, 0, kDraemOpCount);
  std::array<int, kDraemOpCount> idx;
  for (int i = 0; i < kDraemOpCount; ++i) idx[i] = i;
  // Partial Fisher-Yates: the first n_ops entries are a uniform draw without replacement.
  for (int i = 0; i < n_ops; ++i) std::swap(idx[i], idx[uniform_int(rng, i, kDraemOpCount)]);
  std::vector<DraemOp> used;
  for (int i = 0; i < n_ops; ++i) {
    const auto op = static_cast<DraemOp>(idx[i]);
    apply_draem_op(op, rgb, rng);
    used.push_back(op);
  }
  return used;
}

}  // namespace adfw
