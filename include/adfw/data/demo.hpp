// The demo data set: small procedurally generated images in the MVTec AD layout, used by the
// quickstart and the tests. Textures (stripes, grid, granite) and objects (disc, nut), each with
// three defect kinds drawn with OpenCV primitives (scratch, hole, stain, missing part) and exact
// masks. Normal images vary (phase, offset, rotation, brightness, noise) so a model cannot
// memorise one picture. The defects deliberately share no code with the training-time anomaly
// synthesizers (synth/), so detecting them is a real test.
//
// Generated on first use into a cache folder, atomically (a temporary folder renamed into place),
// so an interrupted generation is never used.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "adfw/data/dataset.hpp"

namespace adfw {

/// Bumped whenever the rendering changes, so cached copies of an older rendering are not reused.
inline constexpr const char* kDemoVersion = "v1";

struct DemoOptions {
  std::string cache_dir;
  uint64_t seed = 0;
  std::vector<std::string> categories;
  int image_size = 128;
  int n_train = 40;
  int n_test_good = 20;
  int n_test_defect = 21;

  template <class V>
  void fields(V& v) {
    v("cache_dir", cache_dir,
      "where the generated images live; \"\" = $ADFW_CACHE/demo, else ~/.cache/adfw/demo; a "
      "sub-folder <version>-<seed>[-<size and counts>] is used (default \"\")");
    v("seed", seed, "generation seed; the same seed gives the same images (default 0)");
    v("categories", categories,
      "categories to read (stripes, grid, granite, disc, nut); empty = all of them (default [])");
    v("image_size", image_size, "side of the square images in pixels (default 128)", Check::range(32, 2048));
    v("n_train", n_train, "defect-free training images per category (default 40)", Check::at_least(1));
    v("n_test_good", n_test_good, "defect-free test images per category (default 20)", Check::at_least(1));
    v("n_test_defect", n_test_defect,
      "defective test images per category, spread evenly over its three defect kinds (default 21)",
      Check::at_least(1));
  }
};

/// Every demo category, textures first.
std::vector<std::string> demo_categories();
/// The defect kinds of one category (folder names under test/ and ground_truth/).
std::vector<std::string> demo_defect_kinds(const std::string& category);

/// One rendered image: the clean rendering, the same with the defect drawn in, and the defect's
/// mask (CV_8U, 0/255; all zero for a normal image). Images are CV_8UC3, BGR (as written to disk).
struct DemoRendering {
  cv::Mat clean;
  cv::Mat image;
  cv::Mat mask;
};

/// Renders image `index` of `category`. `stream` separates the sets ("train/good", "test/good",
/// "test/<kind>"); `defect` is "" for a normal image or one of demo_defect_kinds(category).
DemoRendering render_demo_image(const std::string& category, const std::string& stream, int index, int size,
                                uint64_t seed, const std::string& defect);

/// The folder the demo images for `o` live in (not created).
std::filesystem::path demo_folder(const DemoOptions& o);
/// Generates the demo images if they are not there yet; returns demo_folder(o).
std::filesystem::path ensure_demo_data(const DemoOptions& o);

class DemoDataset : public Dataset {
 public:
  using Options = DemoOptions;
  explicit DemoDataset(const Options& o);
  std::vector<SampleInfo> samples(Split split) const override;
  std::string describe() const override;
  std::vector<std::string> categories() const override;

 private:
  Options opt_;
  std::filesystem::path folder_;
};

}  // namespace adfw
