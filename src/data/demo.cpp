// The demo data set generator (see demo.hpp). Normal appearance is rendered analytically per
// pixel; defects are OpenCV primitives (lines, ellipses, polygons) drawn without anti-aliasing
// into both the image and the mask, so the mask is exactly the set of changed pixels.
#include "adfw/data/demo.hpp"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "random.hpp"

namespace fs = std::filesystem;
using adfw::data_detail::uniform;
using adfw::data_detail::uniform_int;

namespace adfw {

std::vector<std::string> demo_categories() { return {"stripes", "grid", "granite", "disc", "nut"}; }

namespace {

bool is_object(const std::string& c) { return c == "disc" || c == "nut"; }

constexpr double kPi = 3.14159265358979323846;

cv::Vec3f lerp(const cv::Vec3f& a, const cv::Vec3f& b, float t) { return a * (1.f - t) + b * t; }

/// Per-pixel sensor noise and global brightness jitter shared by every category.
void finish(cv::Mat& f, std::mt19937_64& g) {
  cv::RNG cvrng(g());
  cv::Mat noise(f.size(), CV_32FC3);
  cvrng.fill(noise, cv::RNG::NORMAL, cv::Scalar::all(0), cv::Scalar::all(3.0));
  f = f * uniform(g, 0.9, 1.1) + noise;
}

cv::Mat render_stripes(int s, std::mt19937_64& g) {
  const double theta = (30.0 + uniform(g, -8, 8)) * kPi / 180.0;
  const double period = uniform(g, 9, 13) * s / 128.0;
  const double phase = uniform(g, 0, 2 * kPi);
  const cv::Vec3f c1(40, 90, 160), c2(120, 175, 225);
  cv::Mat f(s, s, CV_32FC3);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      const double u = x * std::cos(theta) + y * std::sin(theta);
      f.at<cv::Vec3f>(y, x) = lerp(c1, c2, static_cast<float>(0.5 + 0.5 * std::sin(2 * kPi * u / period + phase)));
    }
  return f;
}

cv::Mat render_grid(int s, std::mt19937_64& g) {
  const double theta = uniform(g, -5, 5) * kPi / 180.0;
  const double pitch = uniform(g, 12, 16) * s / 128.0;
  const double ox = uniform(g, 0, pitch), oy = uniform(g, 0, pitch);
  const cv::Vec3f bg(70, 80, 90), thread(170, 190, 200);
  cv::Mat f(s, s, CV_32FC3);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      const double u = x * std::cos(theta) + y * std::sin(theta) + ox;
      const double v = -x * std::sin(theta) + y * std::cos(theta) + oy;
      // triangle profile around each thread centre line, width ~1/3 of the pitch
      auto profile = [&](double w) {
        const double d = std::abs(std::fmod(std::fmod(w, pitch) + pitch, pitch) - pitch / 2) / (pitch / 6);
        return std::max(0.0, 1.0 - d);
      };
      const double t = std::max(profile(u), 0.8 * profile(v));
      f.at<cv::Vec3f>(y, x) = lerp(bg, thread, static_cast<float>(t));
    }
  return f;
}

cv::Mat render_granite(int s, std::mt19937_64& g) {
  cv::RNG cvrng(g());
  cv::Mat coarse(std::max(4, s / 8), std::max(4, s / 8), CV_32F), fine(s, s, CV_32F);
  cvrng.fill(coarse, cv::RNG::NORMAL, 0, 1);
  cvrng.fill(fine, cv::RNG::NORMAL, 0, 1);
  cv::Mat up;
  cv::resize(coarse, up, cv::Size(s, s), 0, 0, cv::INTER_CUBIC);
  cv::GaussianBlur(fine, fine, cv::Size(0, 0), 1.0 * s / 128.0);
  cv::Mat t = 0.6 * up + 0.8 * fine;
  const cv::Vec3f a(60, 95, 80), b(150, 175, 165);
  cv::Mat f(s, s, CV_32FC3);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      const float v = 1.f / (1.f + std::exp(-1.5f * t.at<float>(y, x)));
      f.at<cv::Vec3f>(y, x) = lerp(a, b, v);
    }
  return f;
}

/// Object categories render a background and the object separately so "missing part" defects
/// can reveal the background; `footprint` marks object pixels.
struct ObjectLayers {
  cv::Mat background, full, footprint;
  cv::Point2d centre;
  double radius = 0;
};

cv::Mat plain_background(int s, std::mt19937_64& g, const cv::Vec3f& base) {
  cv::Mat f(s, s, CV_32FC3);
  const double gx = uniform(g, -15, 15), gy = uniform(g, -15, 15);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      const float d = static_cast<float>(gx * (x - s / 2.0) / s + gy * (y - s / 2.0) / s);
      f.at<cv::Vec3f>(y, x) = base + cv::Vec3f(d, d, d);
    }
  return f;
}

ObjectLayers render_disc(int s, std::mt19937_64& g) {
  ObjectLayers L;
  L.background = plain_background(s, g, cv::Vec3f(95, 95, 95));
  L.centre = cv::Point2d(s / 2.0 + uniform(g, -s / 16.0, s / 16.0), s / 2.0 + uniform(g, -s / 16.0, s / 16.0));
  L.radius = s * uniform(g, 0.29, 0.35);
  const cv::Vec3f colour(30 + uniform(g, -8, 8), 140 + uniform(g, -10, 10), 230);
  L.full = L.background.clone();
  L.footprint = cv::Mat::zeros(s, s, CV_8U);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      const double r = std::hypot(x - L.centre.x, y - L.centre.y) / L.radius;
      if (r <= 1.0) {
        L.full.at<cv::Vec3f>(y, x) = colour * static_cast<float>(1.0 - 0.3 * r * r);
        L.footprint.at<uchar>(y, x) = 1;
      }
    }
  // a printed mark at a random orientation, part of the normal appearance
  const double a = uniform(g, 0, 2 * kPi);
  const cv::Point p1(cvRound(L.centre.x + 0.15 * L.radius * std::cos(a)), cvRound(L.centre.y + 0.15 * L.radius * std::sin(a)));
  const cv::Point p2(cvRound(L.centre.x + 0.55 * L.radius * std::cos(a)), cvRound(L.centre.y + 0.55 * L.radius * std::sin(a)));
  cv::line(L.full, p1, p2, cv::Scalar(40, 60, 90), std::max(1, s / 64), cv::LINE_AA);
  return L;
}

ObjectLayers render_nut(int s, std::mt19937_64& g) {
  ObjectLayers L;
  L.background = plain_background(s, g, cv::Vec3f(175, 170, 165));
  L.centre = cv::Point2d(s / 2.0 + uniform(g, -s / 16.0, s / 16.0), s / 2.0 + uniform(g, -s / 16.0, s / 16.0));
  L.radius = s * uniform(g, 0.32, 0.37);
  const double rot = uniform(g, 0, kPi / 3);
  std::vector<cv::Point> hex;
  for (int k = 0; k < 6; ++k)
    hex.emplace_back(cvRound(L.centre.x + L.radius * std::cos(rot + k * kPi / 3)),
                     cvRound(L.centre.y + L.radius * std::sin(rot + k * kPi / 3)));
  L.footprint = cv::Mat::zeros(s, s, CV_8U);
  cv::fillConvexPoly(L.footprint, hex, cv::Scalar(1), cv::LINE_8);
  cv::circle(L.footprint, cv::Point(cvRound(L.centre.x), cvRound(L.centre.y)), cvRound(0.4 * L.radius), cv::Scalar(0),
             cv::FILLED, cv::LINE_8);
  const double light = uniform(g, 0, 2 * kPi);
  const float grey = static_cast<float>(uniform(g, 105, 125));
  L.full = L.background.clone();
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      if (!L.footprint.at<uchar>(y, x)) continue;
      const double d = ((x - L.centre.x) * std::cos(light) + (y - L.centre.y) * std::sin(light)) / L.radius;
      const float v = grey + static_cast<float>(25 * d);
      L.full.at<cv::Vec3f>(y, x) = cv::Vec3f(v, v + 3, v + 6);
    }
  cv::polylines(L.full, hex, true, cv::Scalar(60, 60, 65), std::max(1, s / 64), cv::LINE_AA);
  return L;
}

/// A random point where a defect may go: on the object, or anywhere away from the border.
cv::Point defect_site(int s, std::mt19937_64& g, const ObjectLayers* obj) {
  for (int tries = 0; tries < 1000; ++tries) {
    cv::Point p(static_cast<int>(uniform_int(g, s / 8, s - s / 8)), static_cast<int>(uniform_int(g, s / 8, s - s / 8)));
    if (!obj) return p;
    const double r = std::hypot(p.x - obj->centre.x, p.y - obj->centre.y);
    if (r < 0.75 * obj->radius && obj->footprint.at<uchar>(p)) return p;
  }
  return cv::Point(s / 2, s / 2);
}

/// Draws defect `kind` into `img` (CV_8UC3) and `mask` (CV_8U, 255 = defect).
void draw_defect(const std::string& kind, cv::Mat& img, cv::Mat& mask, std::mt19937_64& g, const ObjectLayers* obj,
                 const cv::Mat& background8) {
  const int s = img.rows;
  const double k = s / 128.0;
  cv::Mat region = cv::Mat::zeros(img.size(), CV_8U);
  const cv::Point c = defect_site(s, g, obj);
  cv::Mat target;  // what defect pixels become
  if (kind == "scratch") {
    std::vector<cv::Point> pts{c};
    double a = uniform(g, 0, 2 * kPi);
    const int segments = static_cast<int>(uniform_int(g, 2, 3));
    for (int i = 0; i < segments; ++i) {
      a += uniform(g, -0.5, 0.5);
      const double len = uniform(g, 8, 16) * k;
      const cv::Point q(cvRound(pts.back().x + len * std::cos(a)), cvRound(pts.back().y + len * std::sin(a)));
      pts.push_back(q);
    }
    cv::polylines(region, pts, false, cv::Scalar(255), std::max(2, cvRound(2 * k)), cv::LINE_8);
    // light or dark, whichever contrasts with the surface there
    const cv::Scalar local = cv::mean(img, region);
    const double mean = (local[0] + local[1] + local[2]) / 3;
    const double v = mean > 128 ? 25 : 235;
    target = cv::Mat(img.size(), CV_8UC3, cv::Scalar(v, v, v));
  } else if (kind == "hole") {
    const cv::Size axes(cvRound(uniform(g, 3, 7) * k), cvRound(uniform(g, 3, 7) * k));
    cv::ellipse(region, c, axes, uniform(g, 0, 180), 0, 360, cv::Scalar(255), cv::FILLED, cv::LINE_8);
    target = cv::Mat(img.size(), CV_8UC3, cv::Scalar(12, 10, 10));
  } else if (kind == "stain") {
    std::vector<cv::Point> blob;
    const int n = static_cast<int>(uniform_int(g, 6, 9));
    const double r0 = uniform(g, 6, 11) * k;
    for (int i = 0; i < n; ++i) {
      const double a = 2 * kPi * i / n;
      const double r = r0 * uniform(g, 0.6, 1.3);
      blob.emplace_back(cvRound(c.x + r * std::cos(a)), cvRound(c.y + r * std::sin(a)));
    }
    cv::fillPoly(region, std::vector<std::vector<cv::Point>>{blob}, cv::Scalar(255), cv::LINE_8);
    // a colour far from the surface's: blend half-way towards it
    const cv::Scalar local = cv::mean(img, region);
    const cv::Scalar stain(local[0] > 128 ? 20 : 235, local[1] > 128 ? 20 : 235, local[2] > 128 ? 60 : 200);
    cv::Mat solid(img.size(), CV_8UC3, stain);
    cv::addWeighted(img, 0.4, solid, 0.6, 0, target);
  } else if (kind == "missing") {
    if (!obj) throw Error("demo: defect 'missing' needs an object category");
    // a wedge cut from the rim towards the centre reveals the background
    const double a = uniform(g, 0, 2 * kPi), half = uniform(g, 0.2, 0.35);
    const double depth = obj->radius * uniform(g, 0.35, 0.5);
    std::vector<cv::Point> wedge;
    const cv::Point2d rim_dir(std::cos(a), std::sin(a));
    const cv::Point2d tip = obj->centre + rim_dir * (obj->radius - depth);
    wedge.emplace_back(cvRound(tip.x), cvRound(tip.y));
    for (double t : {-half, half})
      wedge.emplace_back(cvRound(obj->centre.x + 1.3 * obj->radius * std::cos(a + t)),
                         cvRound(obj->centre.y + 1.3 * obj->radius * std::sin(a + t)));
    cv::fillConvexPoly(region, wedge, cv::Scalar(255), cv::LINE_8);
    region.setTo(0, obj->footprint == 0);
    target = background8;
  } else {
    throw Error("demo: unknown defect kind '" + kind + "'");
  }
  // Only pixels that really change are defect pixels, so the mask is exact.
  cv::Mat diff;
  cv::absdiff(img, target, diff);
  std::vector<cv::Mat> ch;
  cv::split(diff, ch);
  cv::Mat changed = (ch[0] > 0) | (ch[1] > 0) | (ch[2] > 0);
  region &= changed;
  target.copyTo(img, region);
  mask = region;
}

std::string home_cache() {
  if (const char* c = std::getenv("ADFW_CACHE"); c && *c) return (fs::path(c) / "demo").string();
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "adfw" / "demo").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "adfw" / "demo").string();
  return (fs::temp_directory_path() / "adfw-demo").string();
}

}  // namespace

std::vector<std::string> demo_defect_kinds(const std::string& category) {
  if (is_object(category)) return {"missing", "scratch", "stain"};
  return {"hole", "scratch", "stain"};
}

DemoRendering render_demo_image(const std::string& category, const std::string& stream, int index, int size,
                                uint64_t seed, const std::string& defect) {
  std::mt19937_64 g(data_detail::mix_seed(seed, "demo/" + category + "/" + stream, static_cast<uint64_t>(index)));
  cv::Mat f;
  ObjectLayers obj;
  bool object = false;
  if (category == "stripes") f = render_stripes(size, g);
  else if (category == "grid") f = render_grid(size, g);
  else if (category == "granite") f = render_granite(size, g);
  else if (category == "disc") obj = render_disc(size, g), object = true;
  else if (category == "nut") obj = render_nut(size, g), object = true;
  else throw ConfigError("unknown demo category '" + category + "'." + suggest_from(category, demo_categories()));
  // one noise/brightness draw for both layers, so the revealed background matches the image
  const uint64_t finish_seed = g();
  auto finished = [&](cv::Mat m) {
    std::mt19937_64 fg(finish_seed);
    finish(m, fg);
    cv::Mat out;
    m.convertTo(out, CV_8UC3);
    return out;
  };
  DemoRendering r;
  r.clean = finished(object ? obj.full.clone() : f);
  r.image = r.clean.clone();
  r.mask = cv::Mat::zeros(size, size, CV_8U);
  if (!defect.empty()) {
    const auto kinds = demo_defect_kinds(category);
    if (std::find(kinds.begin(), kinds.end(), defect) == kinds.end())
      throw ConfigError("demo category '" + category + "' has no defect kind '" + defect + "'." +
                        suggest_from(defect, kinds));
    const cv::Mat bg8 = object ? finished(obj.background.clone()) : cv::Mat();
    draw_defect(defect, r.image, r.mask, g, object ? &obj : nullptr, bg8);
  }
  return r;
}

fs::path demo_folder(const DemoOptions& o) {
  const fs::path base = o.cache_dir.empty() ? fs::path(home_cache()) : fs::path(o.cache_dir);
  std::string name = std::string(kDemoVersion) + "-" + std::to_string(o.seed);
  const DemoOptions d;
  if (o.image_size != d.image_size || o.n_train != d.n_train || o.n_test_good != d.n_test_good ||
      o.n_test_defect != d.n_test_defect)
    name += "-" + std::to_string(o.image_size) + "px-" + std::to_string(o.n_train) + "-" +
            std::to_string(o.n_test_good) + "-" + std::to_string(o.n_test_defect);
  return base / name;
}

namespace {
void write_png(const fs::path& p, const cv::Mat& m) {
  if (!cv::imwrite(p.string(), m)) throw Error("cannot write " + p.string() + " (is the cache folder writable?)");
}

void generate_into(const fs::path& dir, const DemoOptions& o) {
  char name[32];
  for (const auto& cat : demo_categories()) {
    const fs::path c = dir / cat;
    fs::create_directories(c / "train" / "good");
    fs::create_directories(c / "test" / "good");
    for (int i = 0; i < o.n_train; ++i) {
      std::snprintf(name, sizeof name, "%03d.png", i);
      write_png(c / "train" / "good" / name, render_demo_image(cat, "train/good", i, o.image_size, o.seed, "").image);
    }
    for (int i = 0; i < o.n_test_good; ++i) {
      std::snprintf(name, sizeof name, "%03d.png", i);
      write_png(c / "test" / "good" / name, render_demo_image(cat, "test/good", i, o.image_size, o.seed, "").image);
    }
    const auto kinds = demo_defect_kinds(cat);
    for (std::size_t k = 0; k < kinds.size(); ++k) {
      const int n = o.n_test_defect / static_cast<int>(kinds.size()) +
                    (static_cast<int>(k) < o.n_test_defect % static_cast<int>(kinds.size()) ? 1 : 0);
      fs::create_directories(c / "test" / kinds[k]);
      fs::create_directories(c / "ground_truth" / kinds[k]);
      for (int i = 0; i < n; ++i) {
        DemoRendering r = render_demo_image(cat, "test/" + kinds[k], i, o.image_size, o.seed, kinds[k]);
        // a defect that happened to change no pixel would be an unlabelled normal image: redraw it
        for (int retry = 1; cv::countNonZero(r.mask) == 0 && retry < 100; ++retry)
          r = render_demo_image(cat, "test/" + kinds[k], i + 1000 * retry, o.image_size, o.seed, kinds[k]);
        std::snprintf(name, sizeof name, "%03d", i);
        write_png(c / "test" / kinds[k] / (std::string(name) + ".png"), r.image);
        write_png(c / "ground_truth" / kinds[k] / (std::string(name) + "_mask.png"), r.mask);
      }
    }
  }
  std::ofstream readme(dir / "README.txt");
  readme << "adfw demo data set " << kDemoVersion << ", seed " << o.seed << ", " << o.image_size << "x"
         << o.image_size << " px. Generated; safe to delete (it is regenerated on use).\n";
}
}  // namespace

fs::path ensure_demo_data(const DemoOptions& o) {
  const fs::path dir = demo_folder(o);
  if (fs::is_directory(dir)) return dir;
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  if (ec) throw Error("cannot create the demo cache folder " + dir.parent_path().string() + ": " + ec.message());
  const fs::path tmp = dir.parent_path() / ("." + dir.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                                           "-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000));
  fs::remove_all(tmp, ec);
  try {
    generate_into(tmp, o);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    // another process finished first: use its copy
    fs::remove_all(tmp);
    if (!fs::is_directory(dir)) throw Error("cannot move demo data into " + dir.string() + ": " + ec.message());
  }
  return dir;
}

DemoDataset::DemoDataset(const Options& o) : opt_(o) {
  for (const auto& c : opt_.categories) {
    const auto all = demo_categories();
    if (std::find(all.begin(), all.end(), c) == all.end())
      throw ConfigError("unknown demo category '" + c + "'." + suggest_from(c, all));
  }
}

std::vector<std::string> DemoDataset::categories() const {
  return opt_.categories.empty() ? demo_categories() : opt_.categories;
}

std::string DemoDataset::describe() const {
  std::string cats;
  for (const auto& c : categories()) cats += (cats.empty() ? "" : ",") + c;
  return "demo data (" + std::string(kDemoVersion) + ", seed " + std::to_string(opt_.seed) + ", " +
         std::to_string(opt_.image_size) + "px, " + cats + ") at " + demo_folder(opt_).string();
}

std::vector<SampleInfo> DemoDataset::samples(Split split) const {
  const fs::path dir = ensure_demo_data(opt_);
  std::vector<SampleInfo> out;
  for (const auto& c : categories()) {
    MVTecOptions m;
    m.root = dir.string();
    m.category = c;
    auto v = MVTecDataset(m).samples(split);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

}  // namespace adfw
