#include "adfw/data/check.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <opencv2/imgcodecs.hpp>

#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"

namespace fs = std::filesystem;

namespace adfw {

namespace {

struct FileFacts {
  bool image_ok = false;
  cv::Size image_size;
  bool mask_ok = false;
  cv::Size mask_size;
  int mask_positive = 0;
};

FileFacts inspect(const SampleInfo& s) {
  FileFacts f;
  const cv::Mat img = cv::imread(s.path, cv::IMREAD_UNCHANGED);
  f.image_ok = !img.empty();
  f.image_size = img.size();
  if (!s.mask_path.empty()) {
    const cv::Mat m = cv::imread(s.mask_path, cv::IMREAD_GRAYSCALE);
    f.mask_ok = !m.empty();
    f.mask_size = m.size();
    if (f.mask_ok) f.mask_positive = cv::countNonZero(m);
  }
  return f;
}

std::string size_str(const cv::Size& s) { return std::to_string(s.width) + "x" + std::to_string(s.height); }

}  // namespace

DataCheckReport check_dataset(const Dataset& d, const DataCheckOptions& o) {
  DataCheckReport r;
  std::ostringstream os;
  os << "data set: " << d.describe() << "\n";
  const auto cats = d.categories();
  if (!cats.empty()) {
    os << "categories (" << cats.size() << "):";
    for (const auto& c : cats) os << " " << c;
    os << "\n";
  }
  std::vector<SampleInfo> all;
  for (Split split : {Split::train, Split::test, Split::val}) {
    std::vector<SampleInfo> v;
    try {
      v = d.samples(split);
    } catch (const std::exception& e) {
      r.problems.push_back(std::string(to_string(split)) + " split: " + e.what());
      os << to_string(split) << ": cannot be listed\n";
      continue;
    }
    if (v.empty()) {
      if (split != Split::val) os << to_string(split) << ": empty\n";
      continue;
    }
    std::map<std::string, std::array<int, 3>> per_type;  // images, with mask, image-label only
    for (const auto& s : v) {
      auto& c = per_type[s.defect_type];
      ++c[0];
      if (!s.mask_path.empty()) ++c[1];
      if (s.supervision == Supervision::image_label) ++c[2];
    }
    os << to_string(split) << ": " << v.size() << " images\n";
    for (const auto& [type, c] : per_type) {
      os << "  " << type << ": " << c[0];
      if (type != "good") os << " (" << c[1] << " with mask" << (c[2] ? ", " + std::to_string(c[2]) + " image-label only" : "") << ")";
      os << "\n";
    }
    for (const auto& s : v)
      if (split == Split::test && o.require_test_masks && s.label == 1 && s.mask_path.empty())
        r.problems.push_back("mask missing for defective test image " + s.path);
    all.insert(all.end(), v.begin(), v.end());
  }

  if (o.decode && !all.empty()) {
    std::vector<FileFacts> facts(all.size());
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      for (std::size_t i; (i = next++) < all.size();) facts[i] = inspect(all[i]);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < std::max(1, o.threads); ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();

    std::map<std::pair<int, int>, int> sizes;
    int empty_masks = 0, mismatched = 0, unreadable = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      const SampleInfo& s = all[i];
      const FileFacts& f = facts[i];
      if (!f.image_ok) {
        ++unreadable;
        r.problems.push_back("unreadable image " + s.path);
        continue;
      }
      ++sizes[{f.image_size.width, f.image_size.height}];
      if (s.mask_path.empty()) continue;
      if (!f.mask_ok) {
        ++unreadable;
        r.problems.push_back("unreadable mask " + s.mask_path);
      } else if (f.mask_size != f.image_size) {
        ++mismatched;
        r.problems.push_back("mask " + s.mask_path + " is " + size_str(f.mask_size) + " but its image " + s.path +
                             " is " + size_str(f.image_size));
      } else if (f.mask_positive == 0 && s.label == 1) {
        ++empty_masks;
        r.problems.push_back("empty mask (no positive pixel) " + s.mask_path + " for defective image " + s.path);
      }
    }
    os << "image sizes (WxH): ";
    if (sizes.size() <= 4) {
      bool first = true;
      for (const auto& [wh, n] : sizes) {
        os << (first ? "" : ", ") << wh.first << "x" << wh.second << " (" << n << ")";
        first = false;
      }
    } else {
      int wmin = 1 << 30, wmax = 0, hmin = 1 << 30, hmax = 0;
      for (const auto& [wh, n] : sizes) {
        wmin = std::min(wmin, wh.first), wmax = std::max(wmax, wh.first);
        hmin = std::min(hmin, wh.second), hmax = std::max(hmax, wh.second);
      }
      os << sizes.size() << " different, width " << wmin << ".." << wmax << ", height " << hmin << ".." << hmax;
    }
    os << "\n";
    os << "masks: " << empty_masks << " empty, " << mismatched << " size-mismatched; " << unreadable
       << " unreadable files\n";
  }
  if (r.problems.empty()) {
    os << "OK: no problems found\n";
  } else {
    os << r.problems.size() << " problem(s):\n";
    for (std::size_t i = 0; i < r.problems.size() && static_cast<int>(i) < o.max_listed; ++i)
      os << "  " << r.problems[i] << "\n";
    if (static_cast<int>(r.problems.size()) > o.max_listed)
      os << "  ... and " << r.problems.size() - o.max_listed << " more\n";
  }
  r.text = os.str();
  return r;
}

std::unique_ptr<Dataset> dataset_from_config(const toml::table& config, const std::string& file) {
  const toml::node* n = config.get("dataset");
  std::string path = "dataset";
  if (!n) {
    if (const toml::table* data = config["data"].as_table()) {
      n = data->get("dataset");
      path = "data.dataset";
    }
  }
  if (!n || !n->is_table())
    throw ConfigError(file + ": no data set: expected a [dataset] or [data.dataset] table with a 'type' key");
  const toml::table& t = *n->as_table();
  const toml::node* type = t.get("type");
  if (!type || !type->is_string())
    throw config_error(pos_of(*n), path, "missing key 'type' (which data set to use)." +
                                             suggest_from("", Registry<Dataset>::instance().names()));
  return Registry<Dataset>::instance().make(type->as_string()->get(), t, path);
}

std::unique_ptr<Dataset> open_for_tools(const fs::path& arg, const std::string& format) {
  const std::string ext = arg.extension().string();
  if (ext == ".toml") {
    toml::table t;
    try {
      t = toml::parse_file(arg.string());
    } catch (const toml::parse_error& e) {
      const auto& b = e.source().begin;
      throw ConfigError(arg.string() + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": " +
                        std::string(e.description()));
    }
    return dataset_from_config(t, arg.string());
  }
  const std::string f = format.empty() ? detect_format(arg) : format;
  if (f == "mvtec" || f == "mpdd" || f == "btad") {
    MVTecOptions o;
    o.root = arg.string();
    o.require_masks = false;
    return std::make_unique<MVTecDataset>(o);
  }
  return open_dataset(arg, f);
}

std::size_t convert_to_manifest(const Dataset& d, const fs::path& out) {
  const auto all = all_samples(d);
  write_manifest(out, all);
  return all.size();
}

}  // namespace adfw
