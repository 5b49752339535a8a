// Readers of the on-disk layouts declared in dataset.hpp.
#include "adfw/data/dataset.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "adfw/core/error.hpp"
#include "adfw/data/demo.hpp"
#include "random.hpp"

namespace fs = std::filesystem;

namespace adfw {

std::vector<std::string> default_image_extensions() { return {"png", "jpg", "jpeg", "bmp", "tif", "tiff"}; }

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool has_extension(const fs::path& p, const std::vector<std::string>& exts) {
  std::string e = lower(p.extension().string());
  if (!e.empty() && e[0] == '.') e.erase(0, 1);
  for (const auto& x : exts) {
    std::string want = lower(x);
    if (!want.empty() && want[0] == '.') want.erase(0, 1);
    if (e == want) return true;
  }
  return false;
}

/// Image files directly in `dir`, sorted by name.
std::vector<fs::path> list_images(const fs::path& dir, const std::vector<std::string>& exts) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file() && has_extension(it->path(), exts)) out.push_back(it->path());
  if (ec) throw Error("cannot list folder " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> list_dirs(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory()) out.push_back(it->path());
  if (ec) throw Error("cannot list folder " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

void require_dir(const fs::path& dir, const std::string& what) {
  if (!fs::is_directory(dir))
    throw Error(what + " folder not found: " + dir.string() +
                (fs::exists(dir) ? " (it is not a folder)" : "") + ". Check the data set root.");
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

// ============================================================================================
// mvtec
// ============================================================================================

MVTecDataset::MVTecDataset(const Options& o) : opt_(o) {
  if (opt_.root.empty()) throw ConfigError("mvtec data set: 'root' is required (the data set folder)");
  if (opt_.extensions.empty()) throw ConfigError("mvtec data set: 'extensions' must not be empty");
}

std::vector<fs::path> MVTecDataset::category_dirs() const {
  const fs::path root(opt_.root);
  require_dir(root, "data set root");
  if (!opt_.category.empty()) {
    const fs::path dir = root / opt_.category;
    if (!fs::is_directory(dir)) {
      std::vector<std::string> known;
      for (const auto& d : list_dirs(root)) known.push_back(d.filename().string());
      throw Error("category folder not found: " + dir.string() + "." + suggest_from(opt_.category, known));
    }
    return {dir};
  }
  if (fs::is_directory(root / "train") || fs::is_directory(root / "test")) return {root};
  std::vector<fs::path> out;
  for (const auto& d : list_dirs(root))
    if (fs::is_directory(d / "train") || fs::is_directory(d / "test")) out.push_back(d);
  if (out.empty())
    throw Error("no MVTec-style category under " + root.string() +
                ": expected " + (root / "train").string() + " or <category>/train/ folders");
  return out;
}

std::vector<std::string> MVTecDataset::categories() const {
  std::vector<std::string> out;
  for (const auto& d : category_dirs()) out.push_back(d.filename().string());
  return out;
}

std::string MVTecDataset::describe() const {
  return "mvtec layout at " + opt_.root + (opt_.category.empty() ? "" : " (category " + opt_.category + ")");
}

std::vector<SampleInfo> MVTecDataset::samples(Split split) const {
  std::vector<SampleInfo> out;
  if (split == Split::val) return out;  // the layout has no validation split
  const std::string split_name = to_string(split);
  for (const fs::path& cat : category_dirs()) {
    const std::string category = cat.filename().string();
    const fs::path split_dir = cat / split_name;
    require_dir(split_dir, split_name);
    std::size_t found = 0;
    std::set<std::string> used_masks;
    for (const fs::path& cls_dir : list_dirs(split_dir)) {
      const std::string cls = cls_dir.filename().string();
      const bool good = contains(opt_.good_names, cls);
      for (const fs::path& img : list_images(cls_dir, opt_.extensions)) {
        SampleInfo s;
        s.path = img.string();
        s.split = split;
        s.category = category;
        s.defect_type = good ? "good" : cls;
        s.label = good ? 0 : 1;
        s.supervision = Supervision::normal;
        if (!good) {
          const fs::path gt_dir = cat / "ground_truth" / cls;
          const std::string stem = img.stem().string();
          for (const auto& suffix : opt_.mask_suffixes) {
            for (const auto& ext : {std::string("png"), std::string("bmp"), std::string("tif"), std::string("tiff"),
                                    std::string("jpg")}) {
              const fs::path m = gt_dir / (stem + suffix + "." + ext);
              if (fs::is_regular_file(m)) {
                s.mask_path = m.string();
                break;
              }
            }
            if (!s.mask_path.empty()) break;
          }
          if (s.mask_path.empty() && opt_.require_masks)
            throw Error("no mask for defective image " + img.string() + ": expected " +
                        (gt_dir / (stem + (opt_.mask_suffixes.empty() ? "" : opt_.mask_suffixes[0]) + ".png"))
                            .string() +
                        " (set require_masks = false to use it with its image label only)");
          s.supervision = s.mask_path.empty() ? Supervision::image_label : Supervision::pixel_mask;
          if (!s.mask_path.empty()) used_masks.insert(fs::path(s.mask_path).lexically_normal().string());
        }
        out.push_back(std::move(s));
        ++found;
      }
    }
    if (found == 0)
      throw Error("empty " + split_name + " split: no images with extension " +
                  [&] {
                    std::string e;
                    for (const auto& x : opt_.extensions) e += (e.empty() ? "" : "/") + x;
                    return e;
                  }() +
                  " in the class folders of " + split_dir.string());
    // A mask whose image is missing means the data set was copied incompletely.
    if (split == Split::test && fs::is_directory(cat / "ground_truth")) {
      for (const fs::path& gt_dir : list_dirs(cat / "ground_truth")) {
        for (const fs::path& m : list_images(gt_dir, {"png", "bmp", "tif", "tiff", "jpg"})) {
          if (!used_masks.count(m.lexically_normal().string()))
            throw Error("mask without image: " + m.string() + " (no image in " +
                        (split_dir / gt_dir.filename()).string() + " matches it)");
        }
      }
    }
  }
  return out;
}


namespace {

/// Column index by header name; -1 when absent.
std::map<std::string, int> header_index(const std::vector<std::string>& header) {
  std::map<std::string, int> idx;
  for (std::size_t i = 0; i < header.size(); ++i) {
    std::string h = header[i];
    // tolerate a UTF-8 byte-order mark and surrounding spaces
    if (i == 0 && h.size() >= 3 && static_cast<unsigned char>(h[0]) == 0xEF) h.erase(0, 3);
    while (!h.empty() && std::isspace(static_cast<unsigned char>(h.back()))) h.pop_back();
    while (!h.empty() && std::isspace(static_cast<unsigned char>(h.front()))) h.erase(0, 1);
    idx[lower(h)] = static_cast<int>(i);
  }
  return idx;
}

std::string cell(const std::vector<std::string>& row, const std::map<std::string, int>& idx, const std::string& col) {
  auto it = idx.find(col);
  if (it == idx.end() || it->second >= static_cast<int>(row.size())) return {};
  return row[it->second];
}

fs::path resolve(const fs::path& base, const std::string& p) {
  const fs::path path(p);
  return (path.is_absolute() ? path : base / path).lexically_normal();
}

}  // namespace

// ============================================================================================
// visa
// ============================================================================================

VisaDataset::VisaDataset(const Options& o) : opt_(o) {
  if (opt_.root.empty()) throw ConfigError("visa data set: 'root' is required (the VisA folder)");
}

std::string VisaDataset::describe() const {
  return "VisA at " + opt_.root + " via " + opt_.split_csv +
         (opt_.category.empty() ? "" : " (object " + opt_.category + ")");
}

namespace {
struct VisaRow {
  std::string object, split, label, image, mask;
  std::size_t line = 0;
};

std::vector<VisaRow> read_visa_csv(const fs::path& csv_file) {
  if (!fs::is_regular_file(csv_file))
    throw Error("VisA split file not found: " + csv_file.string() +
                " (expected split_csv/1cls.csv under the data set root)");
  const auto rows = csv::read(csv_file);
  if (rows.empty()) throw Error("VisA split file is empty: " + csv_file.string());
  const auto idx = header_index(rows[0]);
  for (const char* col : {"object", "split", "label", "image"})
    if (!idx.count(col))
      throw Error(csv_file.string() + ":1: missing column '" + col + "' (expected object,split,label,image,mask)");
  std::vector<VisaRow> out;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    VisaRow v{cell(rows[r], idx, "object"), cell(rows[r], idx, "split"), cell(rows[r], idx, "label"),
              cell(rows[r], idx, "image"),  cell(rows[r], idx, "mask"),  r + 1};
    out.push_back(std::move(v));
  }
  return out;
}
}  // namespace

std::vector<std::string> VisaDataset::categories() const {
  std::set<std::string> cats;
  for (const auto& r : read_visa_csv(fs::path(opt_.root) / opt_.split_csv)) cats.insert(r.object);
  return {cats.begin(), cats.end()};
}

std::vector<SampleInfo> VisaDataset::samples(Split split) const {
  const fs::path root(opt_.root);
  require_dir(root, "VisA root");
  const fs::path csv_file = root / opt_.split_csv;
  std::vector<SampleInfo> out;
  std::set<std::string> objects;
  for (const VisaRow& r : read_visa_csv(csv_file)) {
    objects.insert(r.object);
    if (!opt_.category.empty() && r.object != opt_.category) continue;
    const std::string where = csv_file.string() + ":" + std::to_string(r.line) + ": ";
    Split s;
    try {
      s = split_from_string(lower(r.split));
    } catch (const ConfigError& e) {
      throw Error(where + e.what());
    }
    if (s != split) continue;
    const std::string label = lower(r.label);
    SampleInfo info;
    if (label == "normal" || label == "0" || label == "good") {
      info.label = 0;
      info.defect_type = "good";
    } else if (label == "anomaly" || label == "1" || label == "anomalous") {
      info.label = 1;
      info.defect_type = "anomaly";
    } else {
      throw Error(where + "label '" + r.label + "' is neither 'normal' nor 'anomaly'");
    }
    info.path = resolve(root, r.image).string();
    if (!fs::is_regular_file(info.path)) throw Error(where + "image not found: " + info.path);
    if (!r.mask.empty()) {
      info.mask_path = resolve(root, r.mask).string();
      if (!fs::is_regular_file(info.mask_path)) throw Error(where + "mask not found: " + info.mask_path);
      if (info.label == 0) throw Error(where + "normal image " + info.path + " has a mask " + info.mask_path);
    }
    info.supervision = info.label == 0 ? Supervision::normal
                                       : (info.mask_path.empty() ? Supervision::image_label : Supervision::pixel_mask);
    info.split = split;
    info.category = r.object;
    out.push_back(std::move(info));
  }
  if (!opt_.category.empty() && !objects.count(opt_.category))
    throw Error("object '" + opt_.category + "' does not appear in " + csv_file.string() + "." +
                suggest_from(opt_.category, {objects.begin(), objects.end()}));
  if (out.empty() && split != Split::val)
    throw Error(std::string("empty ") + to_string(split) + " split: no rows" +
                (opt_.category.empty() ? "" : " of object " + opt_.category) + " in " + csv_file.string());
  std::sort(out.begin(), out.end(), [](const SampleInfo& a, const SampleInfo& b) {
    return std::tie(a.category, a.path) < std::tie(b.category, b.path);
  });
  return out;
}

// ============================================================================================
// ksdd2
// ============================================================================================

Ksdd2Dataset::Ksdd2Dataset(const Options& o) : opt_(o) {
  if (opt_.root.empty()) throw ConfigError("ksdd2 data set: 'root' is required (the KolektorSDD2 folder)");
}

std::string Ksdd2Dataset::describe() const {
  std::string s = "KolektorSDD2 at " + opt_.root;
  if (opt_.n_pixel_labelled >= 0)
    s += " (N=" + std::to_string(opt_.n_pixel_labelled) + " pixel-labelled, M=" +
         std::to_string(opt_.n_image_labelled) + " image-labelled anomalous training images, seed " +
         std::to_string(opt_.seed) + ")";
  return s;
}

std::vector<SampleInfo> Ksdd2Dataset::samples(Split split) const {
  std::vector<SampleInfo> out;
  if (split == Split::val) return out;
  const std::string split_name = to_string(split);
  const fs::path dir = fs::path(opt_.root) / split_name;
  require_dir(dir, "KolektorSDD2 " + split_name);
  std::set<std::string> gt_files;
  std::vector<fs::path> images;
  for (const fs::path& p : list_images(dir, {"png"})) {
    const std::string stem = p.stem().string();
    if (stem.size() > 3 && stem.compare(stem.size() - 3, 3, "_GT") == 0) gt_files.insert(p.filename().string());
    else images.push_back(p);
  }
  for (const fs::path& img : images) {
    const fs::path gt = dir / (img.stem().string() + "_GT.png");
    if (!gt_files.erase(gt.filename().string()))
      throw Error("no ground-truth mask for " + img.string() + ": expected " + gt.string());
    // KolektorSDD2 has no label file: an image is defective when its mask has a positive pixel.
    const cv::Mat m = cv::imread(gt.string(), cv::IMREAD_GRAYSCALE);
    if (m.empty()) throw Error("cannot read mask " + gt.string() + " (missing or not an image)");
    SampleInfo s;
    s.path = img.string();
    s.split = split;
    s.label = cv::countNonZero(m) > 0 ? 1 : 0;
    s.defect_type = s.label ? "defect" : "good";
    s.mask_path = s.label ? gt.string() : "";
    s.supervision = s.label ? Supervision::pixel_mask : Supervision::normal;
    out.push_back(std::move(s));
  }
  if (!gt_files.empty())
    throw Error("mask without image: " + (dir / *gt_files.begin()).string() + " (no " +
                gt_files.begin()->substr(0, gt_files.begin()->size() - 7) + ".png next to it)");
  if (out.empty()) throw Error("empty " + split_name + " split: no <id>.png images in " + dir.string());

  if (split == Split::train && opt_.n_pixel_labelled >= 0) {
    std::vector<std::size_t> anomalous;
    for (std::size_t i = 0; i < out.size(); ++i)
      if (out[i].label == 1) anomalous.push_back(i);
    const std::size_t n = static_cast<std::size_t>(opt_.n_pixel_labelled);
    const std::size_t m = static_cast<std::size_t>(opt_.n_image_labelled);
    if (n + m > anomalous.size())
      throw ConfigError("ksdd2: n_pixel_labelled + n_image_labelled = " + std::to_string(n + m) + " but " +
                        dir.string() + " holds only " + std::to_string(anomalous.size()) +
                        " anomalous training images");
    std::mt19937_64 g(data_detail::mix_seed(opt_.seed, "ksdd2/supervision"));
    data_detail::stable_shuffle(anomalous, g);
    std::vector<char> drop(out.size(), 0);
    for (std::size_t k = 0; k < anomalous.size(); ++k) {
      SampleInfo& s = out[anomalous[k]];
      if (k < n) continue;  // keeps its mask
      if (k < n + m) {
        s.mask_path.clear();
        s.supervision = Supervision::image_label;
      } else {
        drop[anomalous[k]] = 1;
      }
    }
    std::vector<SampleInfo> kept;
    for (std::size_t i = 0; i < out.size(); ++i)
      if (!drop[i]) kept.push_back(std::move(out[i]));
    out = std::move(kept);
  }
  return out;
}

// ============================================================================================
// manifest
// ============================================================================================

std::vector<std::string> manifest_columns() {
  return {"path", "label", "split", "mask", "defect_type", "supervision", "category"};
}

ManifestDataset::ManifestDataset(const Options& o) : opt_(o) {
  if (opt_.path.empty()) throw ConfigError("manifest data set: 'path' is required (the CSV file)");
}

std::string ManifestDataset::describe() const {
  std::string d = "manifest " + opt_.path + (opt_.category.empty() ? "" : " (category " + opt_.category + ")");
  if (fs::is_regular_file(opt_.path))
    for (const auto& c : manifest_comments(opt_.path)) d += "; " + c;
  return d;
}

std::vector<std::string> manifest_comments(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error("cannot open CSV file " + file.string());
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line) && line.rfind('#', 0) == 0) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::size_t b = 1;
    while (b < line.size() && line[b] == ' ') ++b;
    out.push_back(line.substr(b));
  }
  return out;
}

SupervisedSplit make_supervised_split(const std::vector<SampleInfo>& all, const SupervisedSplitOptions& o) {
  if (!(o.anomalous_train >= 0.0 && o.anomalous_train < 1.0))
    throw ConfigError("--anomalous-train: " + std::to_string(o.anomalous_train) +
                      " is not a fraction in [0, 1) (the test set must keep anomalies)");
  if (o.pixel_labelled < -1) throw ConfigError("--pixel-labelled: must be -1 (all) or a count >= 0");
  if (o.image_labelled < -1) throw ConfigError("--image-labelled: must be -1 (all the rest) or a count >= 0");
  SupervisedSplit r;
  // Anomalous test images per defect type, each type in path order (independent of listing order).
  std::map<std::string, std::vector<std::size_t>> types;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].split != Split::test) continue;
    ++r.official_test;
    if (all[i].label != 0) types[all[i].defect_type].push_back(i);
  }
  if (types.empty()) throw Error("data split: the test set has no anomalous images to move into training");
  std::vector<std::vector<std::size_t>> moved_by_type;
  for (auto& [type, idx] : types) {
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return all[a].path < all[b].path; });
    std::mt19937_64 g(data_detail::mix_seed(o.seed, "data_split/" + type));
    data_detail::stable_shuffle(idx, g);
    const int n = static_cast<int>(idx.size());
    const int k = std::min<int>(static_cast<int>(std::llround(o.anomalous_train * n)), n - 1);
    r.per_type[type] = {n, k};
    moved_by_type.emplace_back(idx.begin(), idx.begin() + k);
  }
  std::vector<std::size_t> moved;  // round-robin over the types
  for (std::size_t round = 0;; ++round) {
    bool any = false;
    for (const auto& m : moved_by_type)
      if (round < m.size()) {
        moved.push_back(m[round]);
        any = true;
      }
    if (!any) break;
  }
  const int total = static_cast<int>(moved.size());
  const int n_pix = o.pixel_labelled < 0 ? total : o.pixel_labelled;
  if (n_pix > total)
    throw ConfigError("--pixel-labelled: " + std::to_string(n_pix) + " but only " + std::to_string(total) +
                      " anomalous images move into training (raise --anomalous-train)");
  const int rest = total - n_pix;
  const int n_img = o.image_labelled < 0 ? rest : o.image_labelled;
  if (n_img > rest)
    throw ConfigError("--image-labelled: " + std::to_string(n_img) + " but only " + std::to_string(rest) +
                      " moved anomalous images are left after the pixel-labelled ones");
  std::vector<int> role(all.size(), 0);  // 0 unchanged, 1 pixel, 2 image, 3 dropped
  for (int j = 0; j < total; ++j) role[moved[j]] = j < n_pix ? 1 : j < n_pix + n_img ? 2 : 3;
  for (std::size_t i = 0; i < all.size(); ++i) {
    SampleInfo s = all[i];
    if (role[i] == 3) {
      ++r.dropped;
      continue;
    }
    if (role[i] == 1) {
      if (s.mask_path.empty())
        throw Error("data split: " + s.path + " is to keep its pixel mask but has none (lower --pixel-labelled)");
      s.split = Split::train;
      s.supervision = Supervision::pixel_mask;
      ++r.pixel_labelled;
    } else if (role[i] == 2) {
      s.split = Split::train;
      s.supervision = Supervision::image_label;
      s.mask_path.clear();
      ++r.image_labelled;
    }
    if (s.split == Split::test) ++r.test;
    r.samples.push_back(std::move(s));
  }
  std::ostringstream p;
  p << "protocol: adfw data split seed " << o.seed << "; " << o.anomalous_train
    << " of each defect type's anomalous test images moved to training (";
  bool first = true;
  for (const auto& [type, nk] : r.per_type) {
    std::string t = type;
    std::replace(t.begin(), t.end(), ',', ' ');
    p << (first ? "" : " ") << t << " " << nk.second << "/" << nk.first;
    first = false;
  }
  p << "); " << r.pixel_labelled << " pixel-labelled; " << r.image_labelled << " image-labelled; " << r.dropped
    << " dropped; test set " << r.test << " of the official " << r.official_test
    << " images (smaller than the official test set: not comparable with full-test-set results)";
  r.protocol = p.str();
  return r;
}

std::vector<SampleInfo> ManifestDataset::read_all() const {
  const fs::path file(opt_.path);
  if (!fs::is_regular_file(file)) throw Error("manifest file not found: " + file.string());
  const auto rows = csv::read(file);
  // Leading "# ..." lines (the protocol of `adfw data split`) are not rows.
  std::size_t first = 0;
  while (first < rows.size() && !rows[first].empty() && rows[first][0].rfind('#', 0) == 0) ++first;
  if (first >= rows.size()) throw Error("manifest is empty (no header): " + file.string());
  const auto idx = header_index(rows[first]);
  for (const char* col : {"path", "label", "split"})
    if (!idx.count(col))
      throw Error(file.string() + ":1: missing column '" + col +
                  "' (expected header path,label,split,mask,defect_type,supervision)");
  const fs::path base = fs::absolute(file).parent_path();
  std::vector<SampleInfo> out;
  for (std::size_t r = first + 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    const std::string where = file.string() + ":" + std::to_string(r + 1) + ": ";
    SampleInfo s;
    const std::string path = cell(row, idx, "path");
    if (path.empty()) throw Error(where + "empty path");
    s.path = resolve(base, path).string();
    if (!fs::is_regular_file(s.path)) throw Error(where + "image not found: " + s.path);
    const std::string label = lower(cell(row, idx, "label"));
    if (label == "0" || label == "normal" || label == "good") s.label = 0;
    else if (label == "1" || label == "anomaly" || label == "anomalous" || label == "defect") s.label = 1;
    else throw Error(where + "label '" + label + "' is not 0/1 (or normal/anomaly)");
    try {
      s.split = split_from_string(lower(cell(row, idx, "split")));
    } catch (const ConfigError& e) {
      throw Error(where + e.what());
    }
    const std::string mask = cell(row, idx, "mask");
    if (!mask.empty()) {
      s.mask_path = resolve(base, mask).string();
      if (!fs::is_regular_file(s.mask_path)) throw Error(where + "mask not found: " + s.mask_path);
    }
    s.defect_type = cell(row, idx, "defect_type");
    if (s.defect_type.empty()) s.defect_type = s.label ? "anomaly" : "good";
    s.category = cell(row, idx, "category");
    const std::string sup = cell(row, idx, "supervision");
    if (sup.empty()) {
      s.supervision = s.label == 0 ? Supervision::normal
                                   : (s.mask_path.empty() ? Supervision::image_label : Supervision::pixel_mask);
    } else {
      try {
        s.supervision = supervision_from_string(lower(sup));
      } catch (const ConfigError& e) {
        throw Error(where + e.what());
      }
      if (s.supervision == Supervision::pixel_mask && s.mask_path.empty())
        throw Error(where + "supervision is pixel_mask but no mask is given for " + s.path);
      if ((s.supervision == Supervision::normal) != (s.label == 0))
        throw Error(where + "supervision '" + sup + "' contradicts label " + std::to_string(s.label));
      if (s.supervision == Supervision::image_label) s.mask_path.clear();
    }
    if (!opt_.category.empty() && s.category != opt_.category) continue;
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> ManifestDataset::categories() const {
  std::set<std::string> c;
  for (const auto& s : read_all())
    if (!s.category.empty()) c.insert(s.category);
  return {c.begin(), c.end()};
}

std::vector<SampleInfo> ManifestDataset::samples(Split split) const {
  std::vector<SampleInfo> out;
  for (auto& s : read_all())
    if (s.split == split) out.push_back(std::move(s));
  if (out.empty() && split != Split::val)
    throw Error(std::string("empty ") + to_string(split) + " split: no rows with split=" + to_string(split) +
                (opt_.category.empty() ? "" : " and category=" + opt_.category) + " in " + opt_.path);
  // Manifest order is the user's; keep it (stable) so a hand-written order is respected.
  return out;
}

void write_manifest(const fs::path& out, const std::vector<SampleInfo>& samples,
                    const std::vector<std::string>& comments) {
  const fs::path abs_out = fs::absolute(out).lexically_normal();
  const fs::path base = abs_out.parent_path();
  auto rel = [&](const std::string& p) -> std::string {
    if (p.empty()) return {};
    const fs::path r = fs::absolute(p).lexically_normal().lexically_relative(base);
    return r.empty() ? fs::absolute(p).string() : r.generic_string();
  };
  std::ostringstream os;
  for (const auto& c : comments) {
    if (c.find_first_of(",\"\n\r") != std::string::npos)
      throw Error("manifest comment line holds a comma, quote or line break: " + c);
    os << "# " << c << "\n";
  }
  const auto cols = manifest_columns();
  for (std::size_t i = 0; i < cols.size(); ++i) os << (i ? "," : "") << cols[i];
  os << "\n";
  for (const auto& s : samples) {
    os << csv::quote(rel(s.path)) << ',' << s.label << ',' << to_string(s.split) << ','
       << csv::quote(rel(s.mask_path)) << ',' << csv::quote(s.defect_type) << ',' << to_string(s.supervision)
       << ',' << csv::quote(s.category) << "\n";
  }
  std::error_code ec;
  if (!base.empty()) fs::create_directories(base, ec);
  const fs::path tmp = base / ("." + abs_out.filename().string() + ".tmp" + std::to_string(data_detail::fnv1a(os.str()) % 100000));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error("cannot write " + tmp.string() + " (is the folder writable?)");
    f << os.str();
    f.flush();
    if (!f) throw Error("cannot write " + tmp.string() + " (disk full?)");
  }
  fs::rename(tmp, abs_out, ec);
  if (ec) {
    fs::remove(tmp);
    throw Error("cannot move " + tmp.string() + " to " + abs_out.string() + ": " + ec.message());
  }
}

// ============================================================================================
// detection and helpers
// ============================================================================================

std::string detect_format(const fs::path& root) {
  if (fs::is_regular_file(root)) {
    if (lower(root.extension().string()) == ".csv") return "manifest";
    throw Error(root.string() + " is a file but not a .csv manifest");
  }
  if (!fs::is_directory(root)) throw Error("data set folder not found: " + root.string());
  if (fs::is_regular_file(root / "split_csv" / "1cls.csv")) return "visa";
  auto has_gt = [](const fs::path& d) {
    if (!fs::is_directory(d)) return false;
    for (const auto& e : fs::directory_iterator(d)) {
      const std::string n = e.path().filename().string();
      if (n.size() > 7 && n.compare(n.size() - 7, 7, "_GT.png") == 0) return true;
    }
    return false;
  };
  if (has_gt(root / "train") || has_gt(root / "test")) return "ksdd2";
  if (fs::is_directory(root / "train") || fs::is_directory(root / "test")) return "mvtec";
  for (const auto& d : list_dirs(root))
    if (fs::is_directory(d / "train")) return "mvtec";
  throw Error("cannot tell the layout of " + root.string() +
              ": looked for split_csv/1cls.csv (VisA), train/ with *_GT.png (KolektorSDD2), train/ or "
              "<category>/train/ (MVTec AD, MPDD, BTAD), or a .csv manifest");
}

std::unique_ptr<Dataset> open_dataset(const fs::path& root, const std::string& format) {
  const std::string f = format.empty() ? detect_format(root) : format;
  if (f == "mvtec" || f == "mpdd" || f == "btad") {
    MVTecOptions o;
    o.root = root.string();
    return std::make_unique<MVTecDataset>(o);
  }
  if (f == "visa") {
    VisaOptions o;
    o.root = root.string();
    return std::make_unique<VisaDataset>(o);
  }
  if (f == "ksdd2") {
    Ksdd2Options o;
    o.root = root.string();
    return std::make_unique<Ksdd2Dataset>(o);
  }
  if (f == "manifest") {
    ManifestOptions o;
    o.path = root.string();
    return std::make_unique<ManifestDataset>(o);
  }
  throw ConfigError("unknown data set format '" + f + "'." +
                    suggest_from(f, {"mvtec", "mpdd", "btad", "visa", "ksdd2", "manifest"}));
}

std::vector<SampleInfo> all_samples(const Dataset& d) {
  std::vector<SampleInfo> out;
  for (Split s : {Split::train, Split::test, Split::val}) {
    auto v = d.samples(s);
    out.insert(out.end(), std::make_move_iterator(v.begin()), std::make_move_iterator(v.end()));
  }
  return out;
}

}  // namespace adfw
