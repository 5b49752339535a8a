// Data sets: where images and masks are on disk and what is known about them. A data set
// only lists files (SampleInfo); decoding happens in the Loader (loader.hpp).
//
// Built-in readers (registered in plugins/data):
//   mvtec     MVTec AD layout <root>/<category>/{train/good, test/<defect>, ground_truth/<defect>};
//             also MPDD, BTAD (ok/ko folders, .bmp/.png masks) and ../shared/datasets/magnetic_tile
//   visa      VisA through its split CSV (split_csv/1cls.csv)
//   ksdd2     KolektorSDD2 (train/, test/ with <id>.png and <id>_GT.png), mixed-supervision options
//   manifest  a CSV listing (path,label,split,mask,defect_type,supervision[,category])
//   demo      a generated data set in the MVTec layout (demo.hpp)
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adfw/core/csv.hpp"
#include "adfw/core/options.hpp"
#include "adfw/data/sample.hpp"

namespace adfw {

class Dataset {
 public:
  static constexpr const char* family = "dataset";
  virtual ~Dataset() = default;
  /// Samples of one split, listed from disk and sorted deterministically. Throws adfw::Error
  /// naming the file or folder when something is off. Train and test must not be empty; a
  /// layout without a validation split returns an empty list for Split::val.
  virtual std::vector<SampleInfo> samples(Split split) const = 0;
  /// One line for logs.
  virtual std::string describe() const = 0;
  virtual std::vector<std::string> categories() const { return {}; }
};

/// Image extensions recognised by default (compared case-insensitively).
std::vector<std::string> default_image_extensions();

// --------------------------------------------------------------------------------------------
// mvtec: MVTec AD / MPDD / BTAD / magnetic_tile
// --------------------------------------------------------------------------------------------
struct MVTecOptions {
  std::string root;
  std::string category;
  std::vector<std::string> extensions = default_image_extensions();
  std::vector<std::string> good_names = {"good", "ok"};
  std::vector<std::string> mask_suffixes = {"_mask", ""};
  bool require_masks = true;

  template <class V>
  void fields(V& v) {
    v("root", root,
      "data set folder: either one category (holding train/ and test/) or a folder of categories");
    v("category", category,
      "category sub-folder of root to read; \"\" = root itself when it holds train/, else every "
      "sub-folder that holds train/ (default \"\")");
    v("extensions", extensions, "image file extensions to list, case-insensitive (default png, jpg, jpeg, bmp, tif, tiff)");
    v("good_names", good_names, "folder names of defect-free images (default [\"good\", \"ok\"]: MVTec, BTAD)");
    v("mask_suffixes", mask_suffixes,
      "ground_truth/<defect>/<stem><suffix>.<ext> names tried for a test image's mask, in order "
      "(default [\"_mask\", \"\"]: MVTec/MPDD, then BTAD)");
    v("require_masks", require_masks,
      "true: a defective test image without a mask is an error; false: it becomes image-label-only "
      "(default true)");
  }
};

class MVTecDataset : public Dataset {
 public:
  using Options = MVTecOptions;
  explicit MVTecDataset(const Options& o);
  std::vector<SampleInfo> samples(Split split) const override;
  std::string describe() const override;
  std::vector<std::string> categories() const override;

 private:
  std::vector<std::filesystem::path> category_dirs() const;
  Options opt_;
};

// --------------------------------------------------------------------------------------------
// visa
// --------------------------------------------------------------------------------------------
struct VisaOptions {
  std::string root;
  std::string split_csv = "split_csv/1cls.csv";
  std::string category;

  template <class V>
  void fields(V& v) {
    v("root", root, "VisA root folder (holding split_csv/ and one folder per object)");
    v("split_csv", split_csv,
      "split file relative to root, columns object,split,label,image,mask (default split_csv/1cls.csv)");
    v("category", category, "object to read (candle, pcb1, ...); \"\" = every object (default \"\")");
  }
};

class VisaDataset : public Dataset {
 public:
  using Options = VisaOptions;
  explicit VisaDataset(const Options& o);
  std::vector<SampleInfo> samples(Split split) const override;
  std::string describe() const override;
  std::vector<std::string> categories() const override;

 private:
  Options opt_;
};

// --------------------------------------------------------------------------------------------
// ksdd2
// --------------------------------------------------------------------------------------------
struct Ksdd2Options {
  std::string root;
  int n_pixel_labelled = -1;
  int n_image_labelled = 0;
  uint64_t seed = 0;

  template <class V>
  void fields(V& v) {
    v("root", root, "KolektorSDD2 root folder (holding train/ and test/)");
    v("n_pixel_labelled", n_pixel_labelled,
      "anomalous training images that keep their pixel masks (N of the mixed-supervision papers); "
      "-1 = all of them, n_image_labelled is then ignored (default -1)",
      Check::at_least(-1));
    v("n_image_labelled", n_image_labelled,
      "further anomalous training images that keep only the image label; the remaining anomalous "
      "training images are dropped (default 0)",
      Check::at_least(0));
    v("seed", seed, "which anomalous training images are chosen (deterministic permutation; default 0)");
  }
};

class Ksdd2Dataset : public Dataset {
 public:
  using Options = Ksdd2Options;
  explicit Ksdd2Dataset(const Options& o);
  std::vector<SampleInfo> samples(Split split) const override;
  std::string describe() const override;

 private:
  Options opt_;
};

// --------------------------------------------------------------------------------------------
// manifest
// --------------------------------------------------------------------------------------------
struct ManifestOptions {
  std::string path;
  std::string category;

  template <class V>
  void fields(V& v) {
    v("path", path,
      "CSV file with header path,label,split,mask,defect_type,supervision[,category]; relative paths "
      "are resolved against the CSV's folder");
    v("category", category, "keep only rows of this category; \"\" = all rows (default \"\")");
  }
};

class ManifestDataset : public Dataset {
 public:
  using Options = ManifestOptions;
  explicit ManifestDataset(const Options& o);
  std::vector<SampleInfo> samples(Split split) const override;
  std::string describe() const override;
  std::vector<std::string> categories() const override;

 private:
  std::vector<SampleInfo> read_all() const;
  Options opt_;
};

/// The manifest columns, in the order write_manifest writes them.
std::vector<std::string> manifest_columns();
/// Writes every split of `samples` as a manifest CSV, atomically (temp file + rename). Paths are
/// written relative to the manifest's folder. Each of `comments` becomes a "# ..." line before the
/// header (e.g. the protocol of `adfw data split`); readers skip such lines.
void write_manifest(const std::filesystem::path& out, const std::vector<SampleInfo>& samples,
                    const std::vector<std::string>& comments = {});
/// The "# ..." lines before a manifest's header, without the "# ".
std::vector<std::string> manifest_comments(const std::filesystem::path& file);

/// A supervised split made from a labelled data set (`adfw data split`).
struct SupervisedSplitOptions {
  double anomalous_train = 0.5;  ///< fraction of each defect type's anomalous test images moved to training
  int pixel_labelled = -1;       ///< moved images that keep their masks (-1 = all)
  int image_labelled = -1;       ///< further moved images that keep only the label (-1 = all the rest)
  uint64_t seed = 0;
};
struct SupervisedSplit {
  std::vector<SampleInfo> samples;  ///< every split: the old training images, the moved ones, the new test set
  std::string protocol;             ///< one line saying what was done (commas avoided: a CSV comment)
  /// Per defect type: anomalous test images before the split and how many moved to training.
  std::map<std::string, std::pair<int, int>> per_type;
  int pixel_labelled = 0, image_labelled = 0, dropped = 0;
  int official_test = 0, test = 0;
};
/// Moves round(anomalous_train * n) of each defect type's n anomalous test images (at most n - 1, so
/// every type stays in the test set) into training, chosen by a seeded permutation of the type's
/// paths. The moved images are ordered round-robin over the types (each type in its permuted
/// order); the first pixel_labelled keep their masks, the next image_labelled keep only the label
/// and the rest are dropped, so the test set is the same for every N of one seed. Normal images
/// and anomalous training images already there keep their split. Throws ConfigError naming the
/// option for impossible counts and Error for a pixel-labelled image without a mask.
SupervisedSplit make_supervised_split(const std::vector<SampleInfo>& all, const SupervisedSplitOptions& o);


// --------------------------------------------------------------------------------------------
// Opening data sets without a config
// --------------------------------------------------------------------------------------------

/// Guesses the layout of a folder (or .csv file): "visa" (split_csv/1cls.csv), "ksdd2"
/// (train/ and test/ holding *_GT.png), "mvtec" (train/ with class folders, or category folders),
/// "manifest" (a .csv file). Throws Error saying what was looked for when nothing fits.
std::string detect_format(const std::filesystem::path& root);

/// Opens `root` as `format` ("" = detect_format) with default options.
std::unique_ptr<Dataset> open_dataset(const std::filesystem::path& root, const std::string& format = "");

/// Every split of a data set, train then test then val.
std::vector<SampleInfo> all_samples(const Dataset& d);

}  // namespace adfw
