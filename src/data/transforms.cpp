#include "adfw/data/transforms.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "random.hpp"

namespace adfw {

void ImageSize::read_toml(const toml::node& n, const std::string& path) {
  auto check = [&](int64_t v) {
    if (v < 0 || v > 100000) throw config_error(pos_of(n), path, "size " + std::to_string(v) + " is out of range");
    return static_cast<int>(v);
  };
  if (n.is_integer()) {
    height = width = check(n.as_integer()->get());
    return;
  }
  if (n.is_array()) {
    const auto& a = *n.as_array();
    if (a.empty()) {
      height = width = 0;
      return;
    }
    if (a.size() == 2 && a[0].is_integer() && a[1].is_integer()) {
      height = check(a[0].as_integer()->get());
      width = check(a[1].as_integer()->get());
      return;
    }
  }
  throw config_error(pos_of(n), path, "expected an integer or [height, width], got " + describe_node(n));
}

toml::array ImageSize::to_toml() const {
  toml::array a;
  if (!empty()) {
    a.push_back(height);
    a.push_back(width);
  }
  return a;
}

std::string ImageSize::default_str() const {
  return empty() ? "[]" : "[" + std::to_string(height) + ", " + std::to_string(width) + "]";
}

Transform::Transform(TransformOptions o) : opt_(std::move(o)) {
  const std::string& i = opt_.interpolation;
  if (i == "bilinear") interp_ = cv::INTER_LINEAR;
  else if (i == "bicubic") interp_ = cv::INTER_CUBIC;
  else if (i == "area") interp_ = cv::INTER_AREA;
  else if (i == "nearest") interp_ = cv::INTER_NEAREST;
  else throw ConfigError("transforms.interpolation: unknown '" + i + "'." +
                         suggest_from(i, {"bilinear", "bicubic", "area", "nearest"}));
  if (opt_.normalize == "imagenet") {
    mean_ = {0.485f, 0.456f, 0.406f};
    std_ = {0.229f, 0.224f, 0.225f};
  } else if (opt_.normalize == "mobilenet") {
    mean_ = {0.5f, 0.5f, 0.5f};
    std_ = {0.5f, 0.5f, 0.5f};
  } else if (opt_.normalize == "custom") {
    if (opt_.mean.size() != opt_.std.size() || (opt_.mean.size() != 1 && opt_.mean.size() != 3))
      throw ConfigError("transforms: normalize = \"custom\" needs mean and std with 1 or 3 values each");
    for (double s : opt_.std)
      if (!(s > 0)) throw ConfigError("transforms.std: every value must be > 0");
    mean_.assign(opt_.mean.begin(), opt_.mean.end());
    std_.assign(opt_.std.begin(), opt_.std.end());
  } else if (opt_.normalize == "auto") {
    throw ConfigError("transforms.normalize = \"auto\" must be resolved from the method's backbone before images "
                      "are loaded; name the normalisation (imagenet, mobilenet, none, custom) when using the loader directly");
  } else if (opt_.normalize != "none") {
    throw ConfigError("transforms.normalize: unknown '" + opt_.normalize + "'." +
                      suggest_from(opt_.normalize, {"imagenet", "none", "mobilenet", "custom"}));
  }
  if (!opt_.resize.empty() && !opt_.center_crop.empty() &&
      (opt_.center_crop.height > opt_.resize.height || opt_.center_crop.width > opt_.resize.width))
    throw ConfigError("transforms.center_crop " + opt_.center_crop.default_str() + " is larger than resize " +
                      opt_.resize.default_str());
}

DecodedImage Transform::decode(const SampleInfo& info) const {
  const int flags = opt_.grayscale_to_rgb ? cv::IMREAD_COLOR : cv::IMREAD_ANYCOLOR;
  cv::Mat raw = cv::imread(info.path, flags);
  if (raw.empty()) throw Error("cannot decode image " + info.path + " (missing, truncated or not an image)");
  DecodedImage d = from_image(raw, info.path);
  if (!info.mask_path.empty()) {
    cv::Mat m = cv::imread(info.mask_path, cv::IMREAD_GRAYSCALE);
    if (m.empty()) throw Error("cannot decode mask " + info.mask_path + " (of image " + info.path + ")");
    if (m.size() != d.image.size())
      throw Error("mask " + info.mask_path + " is " + std::to_string(m.cols) + "x" + std::to_string(m.rows) +
                  " but its image " + info.path + " is " + std::to_string(d.image.cols) + "x" +
                  std::to_string(d.image.rows));
    d.mask = m != 0;     // 0/255
    d.mask /= 255;       // 0/1
    d.has_mask = true;
  } else {
    d.mask = cv::Mat::zeros(d.image.size(), CV_8U);
  }
  return d;
}

DecodedImage Transform::from_image(const cv::Mat& image, const std::string& label) const {
  if (image.empty()) throw Error("image " + label + " is empty");
  const int c = image.channels();
  if (c != 1 && c != 3 && c != 4)
    throw Error("image " + label + " has " + std::to_string(c) + " channels; expected 1 (grey), 3 (BGR) or 4 (BGRA)");
  cv::Mat raw = image;
  if (raw.depth() != CV_8U) raw.convertTo(raw, CV_8U, raw.depth() == CV_16U ? 1.0 / 257.0 : 1.0);
  DecodedImage d;
  if (c == 3) cv::cvtColor(raw, d.image, cv::COLOR_BGR2RGB);
  else if (c == 4) cv::cvtColor(raw, d.image, cv::COLOR_BGRA2RGB);
  else if (opt_.grayscale_to_rgb) cv::cvtColor(raw, d.image, cv::COLOR_GRAY2RGB);
  else d.image = raw.clone();
  d.mask = cv::Mat::zeros(d.image.size(), CV_8U);
  return d;
}

ImageSize Transform::output_size(int h, int w) const {
  ImageSize s(h, w);
  if (!opt_.resize.empty()) s = opt_.resize;
  if (!opt_.center_crop.empty()) s = opt_.center_crop;
  return s;
}

void Transform::resize_crop(DecodedImage& d) const {
  if (!opt_.resize.empty()) {
    const cv::Size to(opt_.resize.width, opt_.resize.height);
    if (d.image.size() != to) {
      cv::Mat img, m;
      cv::resize(d.image, img, to, 0, 0, interp_);
      cv::resize(d.mask, m, to, 0, 0, cv::INTER_NEAREST);
      d.image = img;
      d.mask = m;
    }
  }
  if (!opt_.center_crop.empty()) {
    const int ch = opt_.center_crop.height, cw = opt_.center_crop.width;
    if (ch > d.image.rows || cw > d.image.cols)
      throw Error("center_crop " + opt_.center_crop.default_str() + " is larger than the image (" +
                  std::to_string(d.image.rows) + "x" + std::to_string(d.image.cols) + ")");
    // torchvision's CenterCrop rounds the offset: int(round((h - ch) / 2.0))
    const int y0 = static_cast<int>(std::lround((d.image.rows - ch) / 2.0));
    const int x0 = static_cast<int>(std::lround((d.image.cols - cw) / 2.0));
    const cv::Rect r(x0, y0, cw, ch);
    d.image = d.image(r).clone();
    d.mask = d.mask(r).clone();
  }
}

void Transform::augment(DecodedImage& d, std::mt19937_64& g) const {
  using namespace data_detail;
  // Every draw happens whether or not it is used, so one option never shifts another's draws.
  const bool hf = uniform01(g) < opt_.hflip;
  const bool vf = uniform01(g) < opt_.vflip;
  const int k90 = static_cast<int>(uniform_int(g, 0, 3));
  const double angle = uniform(g, -opt_.rotate_degrees, opt_.rotate_degrees);
  auto both = [&](auto&& op) {
    cv::Mat a, b;
    op(d.image, a, false);
    op(d.mask, b, true);
    d.image = a;
    d.mask = b;
  };
  if (hf) both([](const cv::Mat& in, cv::Mat& out, bool) { cv::flip(in, out, 1); });
  if (vf) both([](const cv::Mat& in, cv::Mat& out, bool) { cv::flip(in, out, 0); });
  if (opt_.rotate90 && k90 != 0) {
    const int code = k90 == 1 ? cv::ROTATE_90_COUNTERCLOCKWISE : k90 == 2 ? cv::ROTATE_180 : cv::ROTATE_90_CLOCKWISE;
    both([&](const cv::Mat& in, cv::Mat& out, bool) { cv::rotate(in, out, code); });
  }
  if (opt_.rotate_degrees > 0 && angle != 0) {
    const cv::Point2f c((d.image.cols - 1) / 2.f, (d.image.rows - 1) / 2.f);
    const cv::Mat M = cv::getRotationMatrix2D(c, angle, 1.0);
    // reflected borders in both image and mask keep a reflected defect labelled
    both([&](const cv::Mat& in, cv::Mat& out, bool is_mask) {
      cv::warpAffine(in, out, M, in.size(), is_mask ? cv::INTER_NEAREST : interp_, cv::BORDER_REFLECT_101);
    });
  }
}

Sample Transform::to_sample(const DecodedImage& d, const SampleInfo& info) const {
  Sample s;
  const int h = d.image.rows, w = d.image.cols, c = d.image.channels();
  // Convert and de-interleave straight into the tensor's planes (one pass, no extra copies).
  s.image = torch::empty({c, h, w}, torch::kFloat32);
  float* dst = s.image.data_ptr<float>();
  std::vector<cv::Mat> planes;
  for (int i = 0; i < c; ++i) planes.emplace_back(h, w, CV_32F, dst + static_cast<std::size_t>(i) * h * w);
  if (c == 1) {
    d.image.convertTo(planes[0], CV_32F, 1.0 / 255.0);
  } else {
    cv::Mat f;
    d.image.convertTo(f, CV_32F, 1.0 / 255.0);
    cv::split(f, planes);
  }
  s.mask = torch::empty({1, h, w}, torch::kFloat32);
  cv::Mat mask_plane(h, w, CV_32F, s.mask.data_ptr<float>());
  d.mask.convertTo(mask_plane, CV_32F);
  s.has_mask = d.has_mask;
  s.info = info;
  return s;
}

void Transform::normalize(Sample& s) const {
  if (mean_.empty()) return;
  const int64_t c = s.image.size(0);
  std::vector<float> m(c), sd(c);
  for (int64_t i = 0; i < c; ++i) {
    if (mean_.size() == static_cast<std::size_t>(c)) {
      m[i] = mean_[i];
      sd[i] = std_[i];
    } else {  // one grey channel with 3-channel statistics, or one statistic for all channels
      float sm = 0, ss = 0;
      for (std::size_t j = 0; j < mean_.size(); ++j) sm += mean_[j], ss += std_[j];
      m[i] = sm / mean_.size();
      sd[i] = ss / std_.size();
    }
  }
  auto mt = torch::from_blob(m.data(), {c, 1, 1}, torch::kFloat32);
  auto st = torch::from_blob(sd.data(), {c, 1, 1}, torch::kFloat32);
  s.image.sub_(mt).div_(st);
  for (auto& [name, t] : s.extras)
    if (name.rfind("image", 0) == 0 && t.defined() && t.dim() == 3 && t.size(0) == c) t.sub_(mt).div_(st);
}

Sample Transform::operator()(const SampleInfo& info, std::mt19937_64* rng) const {
  DecodedImage d = decode(info);
  resize_crop(d);
  if (rng) augment(d, *rng);
  Sample s = to_sample(d, info);
  normalize(s);
  return s;
}

}  // namespace adfw
