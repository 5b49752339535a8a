#include "adfw/synth/cutpaste.hpp"
#include "adfw/synth/perlin_blend.hpp"
#include "adfw/synth/transparency.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "adfw/synth/augment.hpp"

namespace fs = std::filesystem;

namespace adfw {

// ---------------------------------------------------------------------------------------------
// Conversions and shared helpers
// ---------------------------------------------------------------------------------------------

cv::Mat image_to_mat(const torch::Tensor& image) {
  if (!image.defined() || image.dim() != 3 || image.size(0) != 3)
    throw Error("synthesizer: expected a (3,H,W) image tensor" +
                (image.defined() ? ", got shape " + std::string(c10::str(image.sizes())) : std::string()));
  torch::Tensor hwc = image.detach().to(torch::kCPU, torch::kFloat32).permute({1, 2, 0}).contiguous();
  cv::Mat m(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_32FC3, hwc.data_ptr<float>());
  return m.clone();
}

torch::Tensor mat_to_image(const cv::Mat& image) {
  cv::Mat m = image.isContinuous() ? image : image.clone();
  return torch::from_blob(m.data, {m.rows, m.cols, 3}, torch::kFloat32).permute({2, 0, 1}).contiguous();
}

namespace {

cv::Mat to_u8(const cv::Mat& f) {
  cv::Mat u;
  f.convertTo(u, CV_8UC3, 255.0);
  return u;
}
cv::Mat to_f32(const cv::Mat& u) {
  cv::Mat f;
  u.convertTo(f, CV_32FC3, 1.0 / 255.0);
  return f;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

cv::Mat foreground_mat(const torch::Tensor& fg, int h, int w) {
  if (!fg.defined()) return {};
  cv::Mat m = tensor_to_mask(fg);
  if (m.rows != h || m.cols != w)
    throw Error("synthesizer: foreground mask is " + std::to_string(m.cols) + "x" + std::to_string(m.rows) +
                ", the image " + std::to_string(w) + "x" + std::to_string(h));
  return m;
}

SynthResult unchanged(const torch::Tensor& image, bool with_beta) {
  SynthResult r;
  r.image = image.detach().to(torch::kCPU, torch::kFloat32).clone();
  r.mask = torch::zeros({1, image.size(1), image.size(2)});
  r.label = 0;
  if (with_beta) r.beta = torch::ones({1, image.size(1), image.size(2)});
  return r;
}

// out = M ? (1-b)*A + b*I : I, per pixel; untouched pixels are copied bit for bit.
cv::Mat blend(const cv::Mat& img, const cv::Mat& src, const cv::Mat& mask, const cv::Mat& beta_in_mask) {
  cv::Mat out = img.clone();
  for (int y = 0; y < img.rows; ++y) {
    const float* m = mask.ptr<float>(y);
    const float* b = beta_in_mask.ptr<float>(y);
    const auto* i = img.ptr<cv::Vec3f>(y);
    const auto* a = src.ptr<cv::Vec3f>(y);
    auto* o = out.ptr<cv::Vec3f>(y);
    for (int x = 0; x < img.cols; ++x) {
      if (m[x] == 0.f) continue;
      for (int c = 0; c < 3; ++c) o[x][c] = (1.f - b[x]) * a[x][c] + b[x] * i[x][c];
    }
  }
  return out;
}

}  // namespace

cv::Mat shuffle_patches(const cv::Mat& image, int grid, std::mt19937_64& rng) {
  const int h = image.rows, w = image.cols;
  const int gh = (h + grid - 1) / grid * grid, gw = (w + grid - 1) / grid * grid;
  cv::Mat work = image;
  if (gh != h || gw != w) cv::resize(image, work, cv::Size(gw, gh), 0, 0, cv::INTER_LINEAR);
  const int ph = gh / grid, pw = gw / grid;
  std::vector<int> order(grid * grid);
  for (int i = 0; i < grid * grid; ++i) order[i] = i;
  for (int i = grid * grid - 1; i > 0; --i) std::swap(order[i], order[uniform_int(rng, 0, i + 1)]);
  cv::Mat out(work.size(), work.type());
  for (int i = 0; i < grid * grid; ++i) {
    const int s = order[i];
    work(cv::Rect((s % grid) * pw, (s / grid) * ph, pw, ph)).copyTo(out(cv::Rect((i % grid) * pw, (i / grid) * ph, pw, ph)));
  }
  if (gh != h || gw != w) cv::resize(out, out, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
  return out;
}

// ---------------------------------------------------------------------------------------------
// TextureLibrary
// ---------------------------------------------------------------------------------------------

TextureLibrary::TextureLibrary(const std::string& folder, const std::vector<std::string>& extensions, bool cache)
    : folder_(folder), cache_(cache) {
  if (folder.empty()) throw ConfigError("texture folder: no folder was given (set `folder`)");
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    throw ConfigError("texture folder '" + folder + "' does not exist or is not a folder");
  std::vector<std::string> exts;
  for (const auto& e : extensions) exts.push_back(lower(e));
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string ext = lower(it->path().extension().string());
    if (std::find(exts.begin(), exts.end(), ext) != exts.end()) files_.push_back(it->path().string());
  }
  if (ec) throw Error("texture folder '" + folder + "': cannot list it: " + ec.message());
  if (files_.empty())
    throw ConfigError("texture folder '" + folder + "' holds no image files (looked for extensions " +
                      [&] {
                        std::string s;
                        for (const auto& e : extensions) s += (s.empty() ? "" : ", ") + e;
                        return s;
                      }() +
                      ")");
  std::sort(files_.begin(), files_.end());
}

cv::Mat TextureLibrary::load(std::size_t index, int height, int width) const {
  const std::string& path = files_.at(index);
  cv::Mat rgb;
  if (cache_) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = decoded_.find(index);
    if (it != decoded_.end()) rgb = it->second;
  }
  if (rgb.empty()) {
    cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
    if (bgr.empty()) throw Error("texture '" + path + "' could not be decoded");
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    if (cache_) {
      std::lock_guard<std::mutex> lock(mutex_);
      decoded_.emplace(index, rgb);
    }
  }
  cv::Mat out;
  cv::resize(rgb, out, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Perlin blend family
// ---------------------------------------------------------------------------------------------

void BlendOptions::validate() const {
  if (beta_min > beta_max) throw ConfigError("beta_min must not exceed beta_max");
  perlin.validate();
}

PerlinBlendSynthesizer::PerlinBlendSynthesizer(const BlendOptions& options)
    : blend_(options), perlin_((options.validate(), options.perlin)) {}

SynthResult PerlinBlendSynthesizer::apply(const torch::Tensor& image, std::mt19937_64& rng,
                                          const torch::Tensor& foreground) const {
  cv::Mat img = image_to_mat(image);
  if (uniform01(rng) >= blend_.anomaly_probability) return unchanged(image, true);
  const cv::Mat mask = perlin_.mask(img.rows, img.cols, rng, foreground_mat(foreground, img.rows, img.cols));
  const float beta = static_cast<float>(uniform(rng, blend_.beta_min, blend_.beta_max));
  cv::Mat src = make_source(img, rng);
  const cv::Mat beta_map(img.rows, img.cols, CV_32F, cv::Scalar(beta));
  SynthResult r;
  r.image = mat_to_image(blend(img, src, mask, beta_map));
  r.mask = mask_to_tensor(mask);
  r.label = cv::countNonZero(mask) > 0 ? 1 : 0;
  cv::Mat beta_full = 1.f - mask * (1.f - beta);  // beta inside the mask, 1 outside
  r.beta = mask_to_tensor(beta_full);
  r.source = mat_to_image(src);
  return r;
}

torch::Tensor rotate_about_centre(const torch::Tensor& image, double degrees) {
  cv::Mat img = image_to_mat(image);
  const cv::Mat rot = cv::getRotationMatrix2D(cv::Point2f((img.cols - 1) * 0.5f, (img.rows - 1) * 0.5f), degrees, 1.0);
  cv::Mat turned;
  cv::warpAffine(img, turned, rot, img.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return mat_to_image(turned);
}

PerlinTextureSynthesizer::PerlinTextureSynthesizer(const Options& options)
    : PerlinBlendSynthesizer(options.blend),
      options_(options),
      library_(std::make_shared<TextureLibrary>(options.folder, options.extensions, options.cache_textures)) {}

SynthResult PerlinTextureSynthesizer::apply(const torch::Tensor& image, std::mt19937_64& rng,
                                            const torch::Tensor& foreground) const {
  // DRAEM data_loader.py transform_image: the normal image is rotated (with probability 0.3)
  // before augment_image adds the anomaly, and the rotated image is the training target.
  if (options_.rotate_probability <= 0 || uniform01(rng) >= options_.rotate_probability)
    return PerlinBlendSynthesizer::apply(image, rng, foreground);
  const double angle = uniform(rng, -options_.rotate_degrees, options_.rotate_degrees);
  const int rows = static_cast<int>(image.size(1)), cols = static_cast<int>(image.size(2));
  const cv::Mat rot = cv::getRotationMatrix2D(cv::Point2f((cols - 1) * 0.5f, (rows - 1) * 0.5f), angle, 1.0);
  torch::Tensor fg;
  if (foreground.defined()) {
    cv::Mat f = foreground_mat(foreground, rows, cols), ft;
    cv::warpAffine(f, ft, rot, f.size(), cv::INTER_NEAREST, cv::BORDER_CONSTANT, cv::Scalar(0));
    fg = mask_to_tensor(ft);
  }
  const torch::Tensor clean = rotate_about_centre(image, angle);
  SynthResult r = PerlinBlendSynthesizer::apply(clean, rng, fg);
  r.clean = clean;
  return r;
}

cv::Mat PerlinTextureSynthesizer::make_source(const cv::Mat& image, std::mt19937_64& rng) const {
  const auto idx = static_cast<std::size_t>(uniform_int(rng, 0, static_cast<int64_t>(library_->size())));
  cv::Mat tex = library_->load(idx, image.rows, image.cols);
  // DRAEM hands imgaug the cv2 (B,G,R) texture; the channel-wise ops do not care, the hue and
  // brightness ops do.
  const bool bgr = options_.channel_order == "bgr";
  if (bgr) cv::cvtColor(tex, tex, cv::COLOR_RGB2BGR);
  draem_augment(tex, rng, options_.n_ops);
  if (bgr) cv::cvtColor(tex, tex, cv::COLOR_BGR2RGB);
  return to_f32(tex);
}

cv::Mat SelfStructureSource::make(const Options& o, const cv::Mat& image, std::mt19937_64& rng) {
  cv::Mat u = to_u8(image);
  draem_augment(u, rng, o.n_ops);
  return to_f32(shuffle_patches(u, o.grid, rng));
}

void PerlinColorOptions::validate() const {
  if (color_min > color_max)
    throw ConfigError("color_min (" + std::to_string(color_min) + ") must not exceed color_max (" +
                      std::to_string(color_max) + ")");
}

cv::Mat SolidColorSource::make(const Options& o, const cv::Mat& image, std::mt19937_64& rng) {
  cv::Vec3f c;
  for (int i = 0; i < 3; ++i) c[i] = static_cast<float>(uniform(rng, o.color_min, o.color_max));
  return cv::Mat(image.size(), CV_32FC3, cv::Scalar(c[0], c[1], c[2]));
}

cv::Mat GaussianNoiseSource::make(const Options& o, const cv::Mat& image, std::mt19937_64& rng) {
  cv::Mat noise(image.size(), CV_32FC3);
  cv::RNG cvrng(rng());
  cvrng.fill(noise, cv::RNG::NORMAL, cv::Scalar::all(o.noise_mean), cv::Scalar::all(o.noise_std));
  cv::Mat src = image + noise;
  cv::min(cv::max(src, 0.0), 1.0, src);
  return src;
}

// ---------------------------------------------------------------------------------------------
// CutPaste
// ---------------------------------------------------------------------------------------------

void CutPasteOptions::validate() const {
  if (area_min > area_max) throw ConfigError("cutpaste: area_min must not exceed area_max");
  if (aspect_min > aspect_max) throw ConfigError("cutpaste: aspect_min must not exceed aspect_max");
  if (scar_width_min > scar_width_max) throw ConfigError("cutpaste: scar_width_min must not exceed scar_width_max");
  if (scar_length_min > scar_length_max)
    throw ConfigError("cutpaste: scar_length_min must not exceed scar_length_max");
}

CutPasteSynthesizer::CutPasteSynthesizer(const Options& options) : options_(options) { options_.validate(); }

namespace {

// torchvision ColorJitter-style brightness, contrast and saturation, in a random order.
void color_jitter(cv::Mat& patch, double j, std::mt19937_64& rng) {
  if (j <= 0) return;
  const double fb = uniform(rng, 1 - j, 1 + j), fc = uniform(rng, 1 - j, 1 + j), fs = uniform(rng, 1 - j, 1 + j);
  int order[3] = {0, 1, 2};
  for (int i = 2; i > 0; --i) std::swap(order[i], order[uniform_int(rng, 0, i + 1)]);
  for (int k : order) {
    cv::Mat gray;
    cv::cvtColor(patch, gray, cv::COLOR_RGB2GRAY);
    if (k == 0) {
      patch *= fb;
    } else if (k == 1) {
      const double mean = cv::mean(gray)[0];
      patch = patch * fc + cv::Scalar::all(mean * (1 - fc));
    } else {
      cv::Mat g3;
      cv::cvtColor(gray, g3, cv::COLOR_GRAY2RGB);
      patch = patch * fs + g3 * (1 - fs);
    }
    cv::min(cv::max(patch, 0.0), 1.0, patch);
  }
}

}  // namespace

SynthResult CutPasteSynthesizer::apply(const torch::Tensor& image, std::mt19937_64& rng,
                                       const torch::Tensor& foreground) const {
  cv::Mat img = image_to_mat(image);
  const int h = img.rows, w = img.cols;
  if (uniform01(rng) >= options_.anomaly_probability) return unchanged(image, false);
  bool scar = options_.variant == "scar";
  if (options_.variant == "random") scar = uniform01(rng) < 0.5;

  int pw, ph;
  double angle = 0;
  if (scar) {
    pw = static_cast<int>(std::lround(uniform(rng, options_.scar_width_min, options_.scar_width_max)));
    ph = static_cast<int>(std::lround(uniform(rng, options_.scar_length_min, options_.scar_length_max)));
    angle = uniform(rng, -options_.scar_rotation, options_.scar_rotation);
  } else {
    const double area = uniform(rng, options_.area_min, options_.area_max) * h * w;
    const double aspect = std::exp(uniform(rng, std::log(options_.aspect_min), std::log(options_.aspect_max)));
    pw = static_cast<int>(std::lround(std::sqrt(area * aspect)));
    ph = static_cast<int>(std::lround(std::sqrt(area / aspect)));
  }
  pw = std::clamp(pw, 1, w);
  ph = std::clamp(ph, 1, h);
  const int sx = static_cast<int>(uniform_int(rng, 0, w - pw + 1));
  const int sy = static_cast<int>(uniform_int(rng, 0, h - ph + 1));
  cv::Mat patch = img(cv::Rect(sx, sy, pw, ph)).clone();
  color_jitter(patch, options_.color_jitter, rng);
  cv::Mat alpha(ph, pw, CV_32F, cv::Scalar(1.f));
  if (scar && angle != 0.0) {
    // Rotate with the canvas grown to hold the whole strip (torchvision rotate(expand=True));
    // the strip's own footprint (nearest-neighbour) decides the mask.
    const cv::Point2f c((pw - 1) * 0.5f, (ph - 1) * 0.5f);
    cv::Mat rot = cv::getRotationMatrix2D(c, angle, 1.0);
    const cv::Rect2f box = cv::RotatedRect(c, cv::Size2f(pw, ph), static_cast<float>(angle)).boundingRect2f();
    const int bw = std::min(w, static_cast<int>(std::ceil(box.width))), bh = std::min(h, static_cast<int>(std::ceil(box.height)));
    rot.at<double>(0, 2) += bw * 0.5 - c.x;
    rot.at<double>(1, 2) += bh * 0.5 - c.y;
    cv::Mat p2, a2;
    cv::warpAffine(patch, p2, rot, cv::Size(bw, bh), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    cv::warpAffine(alpha, a2, rot, cv::Size(bw, bh), cv::INTER_NEAREST, cv::BORDER_CONSTANT, cv::Scalar(0));
    patch = p2;
    alpha = a2;
    pw = bw;
    ph = bh;
  }
  const int tx = static_cast<int>(uniform_int(rng, 0, w - pw + 1));
  const int ty = static_cast<int>(uniform_int(rng, 0, h - ph + 1));
  cv::Mat mask = cv::Mat::zeros(h, w, CV_32F);
  alpha.copyTo(mask(cv::Rect(tx, ty, pw, ph)));
  cv::threshold(mask, mask, 0.5, 1.0, cv::THRESH_BINARY);
  const cv::Mat fg = foreground_mat(foreground, h, w);
  if (!fg.empty()) {
    cv::Mat keep;
    cv::threshold(fg, keep, 0.0, 1.0, cv::THRESH_BINARY);
    mask = mask.mul(keep);
  }
  cv::Mat src = img.clone();
  patch.copyTo(src(cv::Rect(tx, ty, pw, ph)));
  const cv::Mat zero_beta = cv::Mat::zeros(h, w, CV_32F);
  SynthResult r;
  r.image = mat_to_image(blend(img, src, mask, zero_beta));
  r.mask = mask_to_tensor(mask);
  r.label = cv::countNonZero(mask) > 0 ? 1 : 0;
  r.source = mat_to_image(src);
  return r;
}

// ---------------------------------------------------------------------------------------------
// TransFusion transparency
// ---------------------------------------------------------------------------------------------

namespace {
PerlinOptions hint_options(PerlinOptions p) {
  p.threshold_mode = "transfusion";
  p.empty_probability = 0;
  return p;
}
}  // namespace

TransparencySynthesizer::TransparencySynthesizer(const Options& options)
    : options_(options), perlin_(options.perlin), hint_(hint_options(options.perlin)) {
  if (!options.folder.empty())
    library_ = std::make_shared<TextureLibrary>(options.folder, options.extensions, options.cache_textures);
  else if (options.texture_probability > 0)
    throw ConfigError("transparency: texture_probability is " + std::to_string(options.texture_probability) +
                      " but no texture `folder` was given (set folder, or texture_probability = 0)");
}

SynthResult TransparencySynthesizer::apply(const torch::Tensor& image, std::mt19937_64& rng,
                                           const torch::Tensor& foreground) const {
  cv::Mat img = image_to_mat(image);
  const int h = img.rows, w = img.cols;
  if (uniform01(rng) >= options_.anomaly_probability) {
    SynthResult r = unchanged(image, true);
    r.hint_mask = torch::zeros({1, h, w});
    return r;
  }
  const int t = static_cast<int>(uniform_int(rng, 1, options_.steps));
  const float b = static_cast<float>(t) / static_cast<float>(options_.steps - 1);
  const cv::Mat fg = foreground_mat(foreground, h, w);
  cv::Mat mask, hint;
  PerlinMaskGenerator::Draw d = perlin_.draw(h, w, rng, fg);
  mask = d.mask;
  if (d.forced_empty) {
    hint = mask.clone();
  } else {
    hint = hint_.binarise(d.noise, hint_.draw_threshold(d.noise, rng));
    if (!fg.empty()) {
      cv::Mat keep;
      cv::threshold(fg, keep, 0.0, 1.0, cv::THRESH_BINARY);
      hint = hint.mul(keep);
    }
  }
  if (t == options_.steps - 1) hint = cv::Mat::zeros(h, w, CV_32F);
  cv::Mat src;
  if (library_ && uniform01(rng) < options_.texture_probability) {
    cv::Mat tex = library_->load(static_cast<std::size_t>(uniform_int(rng, 0, static_cast<int64_t>(library_->size()))), h, w);
    draem_augment(tex, rng, options_.n_ops);
    src = to_f32(tex);
  } else {
    cv::Mat u = to_u8(img);
    draem_augment(u, rng, options_.n_ops);
    src = to_f32(shuffle_patches(u, options_.grid, rng));
  }
  const cv::Mat beta_map(h, w, CV_32F, cv::Scalar(1.f - b));
  SynthResult r;
  r.image = mat_to_image(blend(img, src, mask, beta_map));
  r.mask = mask_to_tensor(mask);
  r.label = cv::countNonZero(mask) > 0 ? 1 : 0;
  r.beta = mask_to_tensor(1.f - mask * b);
  r.source = mat_to_image(src);
  r.hint_mask = mask_to_tensor(hint);
  r.step = t;
  return r;
}

}  // namespace adfw
