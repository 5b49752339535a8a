// The generated demo data set: layout, determinism, variation and exact masks.
#include <fstream>
#include <iterator>

#include <opencv2/imgcodecs.hpp>

#include "adfw/data/demo.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;

namespace {
std::string bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  return n;
}
DemoOptions small(const fs::path& cache, uint64_t seed) {
  DemoOptions o;
  o.cache_dir = cache.string();
  o.seed = seed;
  o.image_size = 64;
  o.n_train = 6;
  o.n_test_good = 3;
  o.n_test_defect = 6;
  return o;
}
}  // namespace

TEST_CASE("demo: MVTec layout with the requested counts, generated atomically", "[data]") {
  const fs::path cache = test::temp_dir("demo_layout");
  const DemoOptions o = small(cache, 3);
  CHECK(!fs::exists(demo_folder(o)));
  const fs::path dir = ensure_demo_data(o);
  CHECK(dir == demo_folder(o));
  // nothing else (no temporary folder) is left next to it
  CHECK(count_files(cache) == 0);
  std::size_t folders = 0;
  for (const auto& e : fs::directory_iterator(cache)) folders += e.is_directory();
  CHECK(folders == 1);
  for (const auto& cat : demo_categories()) {
    CHECK(count_files(dir / cat / "train" / "good") == 6);
    CHECK(count_files(dir / cat / "test" / "good") == 3);
    std::size_t defects = 0;
    for (const auto& kind : demo_defect_kinds(cat)) {
      const std::size_t n = count_files(dir / cat / "test" / kind);
      CHECK(n == 2);
      CHECK(count_files(dir / cat / "ground_truth" / kind) == n);
      defects += n;
    }
    CHECK(defects == 6);
  }
  DemoDataset d(o);
  CHECK(d.samples(Split::train).size() == 5 * 6);
  const auto test = d.samples(Split::test);
  CHECK(test.size() == 5 * 9);
  for (const auto& s : test) {
    if (s.label == 0) continue;
    const cv::Mat img = cv::imread(s.path, cv::IMREAD_COLOR), m = cv::imread(s.mask_path, cv::IMREAD_UNCHANGED);
    REQUIRE(!img.empty());
    REQUIRE(m.type() == CV_8U);
    CHECK(m.size() == img.size());
    CHECK(img.size() == cv::Size(64, 64));
    // masks hold only 0 and 255; defects are visible but not trivially large
    CHECK(cv::countNonZero(m == 0) + cv::countNonZero(m == 255) == 64 * 64);
    const double frac = cv::countNonZero(m) / (64.0 * 64.0);
    INFO(s.mask_path << " covers " << frac);
    CHECK(frac > 0.001);
    CHECK(frac < 0.15);
  }
  // a second call reuses the folder (no regeneration: file times unchanged)
  const auto t0 = fs::last_write_time(dir / "disc" / "train" / "good" / "000.png");
  ensure_demo_data(o);
  CHECK(fs::last_write_time(dir / "disc" / "train" / "good" / "000.png") == t0);
  // categories can be restricted
  DemoOptions only = o;
  only.categories = {"nut"};
  CHECK(DemoDataset(only).samples(Split::train).size() == 6);
  only.categories = {"nutt"};
  CHECK_THROWS_AS(DemoDataset(only), ConfigError);
}

TEST_CASE("demo: deterministic by seed", "[data]") {
  const fs::path a = ensure_demo_data(small(test::temp_dir("demo_a"), 5));
  const fs::path b = ensure_demo_data(small(test::temp_dir("demo_b"), 5));
  const fs::path c = ensure_demo_data(small(test::temp_dir("demo_c"), 6));
  std::size_t files = 0, same_as_other_seed = 0;
  for (const auto& e : fs::recursive_directory_iterator(a)) {
    if (!e.is_regular_file() || e.path().extension() != ".png") continue;
    const fs::path rel = fs::relative(e.path(), a);
    CHECK(bytes(e.path()) == bytes(b / rel));
    same_as_other_seed += bytes(e.path()) == bytes(c / rel);
    ++files;
  }
  CHECK(files == 5 * (6 + 3 + 6 + 6));
  CHECK(same_as_other_seed == 0);
}

TEST_CASE("demo: normal images vary, defects change exactly the masked pixels", "[data]") {
  for (const auto& cat : demo_categories()) {
    // normal images are not copies of one picture
    std::vector<cv::Mat> normals;
    for (int i = 0; i < 6; ++i) normals.push_back(render_demo_image(cat, "train/good", i, 128, 0, "").image);
    for (int i = 0; i < 6; ++i)
      for (int j = i + 1; j < 6; ++j) {
        cv::Mat diff;
        cv::absdiff(normals[i], normals[j], diff);
        const cv::Scalar m = cv::mean(diff);
        INFO(cat << " images " << i << " and " << j);
        CHECK((m[0] + m[1] + m[2]) / 3 > 3.0);
      }
    for (const auto& kind : demo_defect_kinds(cat)) {
      for (int i = 0; i < 8; ++i) {
        const DemoRendering r = render_demo_image(cat, "test/" + kind, i, 128, 0, kind);
        INFO(cat << "/" << kind << " #" << i);
        cv::Mat diff;
        cv::absdiff(r.clean, r.image, diff);
        std::vector<cv::Mat> ch;
        cv::split(diff, ch);
        const cv::Mat changed = (ch[0] > 0) | (ch[1] > 0) | (ch[2] > 0);
        cv::Mat mismatch;
        cv::bitwise_xor(changed, r.mask, mismatch);
        CHECK(cv::countNonZero(mismatch) == 0);
        CHECK(cv::countNonZero(r.mask) > 0);
        // visible: the mean change inside the mask is large
        const cv::Scalar inside = cv::mean(diff, r.mask);
        CHECK((inside[0] + inside[1] + inside[2]) / 3 > 25.0);
        // the clean rendering is the normal appearance: same generator stream, no defect
        CHECK(cv::countNonZero(r.mask == 0) + cv::countNonZero(r.mask == 255) == 128 * 128);
      }
    }
  }
}
