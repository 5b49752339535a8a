// Transforms against hand-made images, and the loader's determinism and error handling.
#include <opencv2/imgcodecs.hpp>

#include "adfw/data/dataset.hpp"
#include "adfw/data/loader.hpp"
#include "adfw/data/transforms.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;

namespace {

/// A 6x8 image whose pixel (y, x) holds 10*y + x in every channel, except the masked pixels
/// (an asymmetric L shape) which are 255 in the red channel.
SampleInfo hand_made(const fs::path& dir) {
  cv::Mat img(6, 8, CV_8UC3), mask = cv::Mat::zeros(6, 8, CV_8U);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 8; ++x) img.at<cv::Vec3b>(y, x) = cv::Vec3b(10 * y + x, 10 * y + x, 10 * y + x);
  for (cv::Point p : {cv::Point(1, 1), cv::Point(2, 1), cv::Point(3, 1), cv::Point(1, 2)}) {
    mask.at<uchar>(p) = 200;  // any nonzero value counts as defect
    img.at<cv::Vec3b>(p)[2] = 255;  // BGR on disk: red
  }
  REQUIRE(cv::imwrite((dir / "img.png").string(), img));
  REQUIRE(cv::imwrite((dir / "mask.png").string(), mask));
  SampleInfo s;
  s.path = (dir / "img.png").string();
  s.mask_path = (dir / "mask.png").string();
  s.label = 1;
  s.defect_type = "mark";
  s.supervision = Supervision::pixel_mask;
  return s;
}

/// Pixel values as integers (0..255) of channel c.
torch::Tensor channel255(const Sample& s, int c) { return (s.image[c] * 255).round().to(torch::kInt64); }

std::vector<SampleInfo> grey_images(const fs::path& dir, int n) {
  std::vector<SampleInfo> v;
  for (int i = 0; i < n; ++i) {
    cv::Mat img(10, 12, CV_8UC3);
    for (int y = 0; y < 10; ++y)
      for (int x = 0; x < 12; ++x) img.at<cv::Vec3b>(y, x) = cv::Vec3b((i * 7 + x) % 256, (y * 13) % 256, i);
    cv::Mat mask = cv::Mat::zeros(10, 12, CV_8U);
    mask.at<uchar>(i % 10, (2 * i) % 12) = 255;
    const fs::path p = dir / ("img" + std::to_string(i) + ".png");
    const fs::path m = dir / ("mask" + std::to_string(i) + ".png");
    REQUIRE(cv::imwrite(p.string(), img));
    REQUIRE(cv::imwrite(m.string(), mask));
    SampleInfo s;
    s.path = p.string();
    s.mask_path = m.string();
    s.label = 1;
    v.push_back(s);
  }
  return v;
}

}  // namespace

TEST_CASE("transforms: RGB order, 0..1 scale and normalisations", "[data]") {
  const fs::path dir = test::temp_dir("tf_norm");
  cv::Mat blue(2, 3, CV_8UC3, cv::Scalar(255, 0, 0));  // BGR
  REQUIRE(cv::imwrite((dir / "b.png").string(), blue));
  SampleInfo s;
  s.path = (dir / "b.png").string();
  TransformOptions o;
  o.normalize = "none";
  Sample x = Transform(o)(s);
  REQUIRE(x.image.sizes() == torch::IntArrayRef({3, 2, 3}));
  CHECK(x.image[0].max().item<float>() == 0.f);
  CHECK(x.image[2].min().item<float>() == 1.f);
  CHECK(!x.has_mask);
  CHECK(x.mask.sum().item<float>() == 0.f);
  o.normalize = "imagenet";
  x = Transform(o)(s);
  CHECK(x.image[0][0][0].item<float>() == Approx((0 - 0.485) / 0.229));
  CHECK(x.image[2][0][0].item<float>() == Approx((1 - 0.406) / 0.225));
  o.normalize = "mobilenet";
  x = Transform(o)(s);
  CHECK(x.image[0][0][0].item<float>() == Approx(-1));  // 0/127.5 - 1
  CHECK(x.image[2][0][0].item<float>() == Approx(1));   // 255/127.5 - 1
  o.normalize = "custom";
  o.mean = {0.5, 0.5, 0.5};
  o.std = {0.25, 0.25, 0.25};
  x = Transform(o)(s);
  CHECK(x.image[2][0][0].item<float>() == Approx(2));
  // grey image to three channels
  cv::Mat grey(2, 2, CV_8U, cv::Scalar(51));
  REQUIRE(cv::imwrite((dir / "g.png").string(), grey));
  s.path = (dir / "g.png").string();
  o.normalize = "none";
  x = Transform(o)(s);
  REQUIRE(x.image.size(0) == 3);
  CHECK(x.image.min().item<float>() == Approx(0.2));
  CHECK(x.image.max().item<float>() == Approx(0.2));
  o.grayscale_to_rgb = false;
  CHECK(Transform(o)(s).image.size(0) == 1);
}

TEST_CASE("transforms: resize, crop and flips move the mask with the image", "[data]") {
  const fs::path dir = test::temp_dir("tf_geo");
  const SampleInfo info = hand_made(dir);
  TransformOptions o;
  o.normalize = "none";
  o.interpolation = "nearest";
  // plain decode: mask is exactly the L shape, 0/1
  Sample x = Transform(o)(info);
  CHECK(x.has_mask);
  CHECK(x.mask.sum().item<float>() == 4);
  CHECK(x.mask[0][1][1].item<float>() == 1);
  CHECK(x.mask[0][1][3].item<float>() == 1);
  CHECK(x.mask[0][2][1].item<float>() == 1);
  CHECK(channel255(x, 1)[4][5].item<int64_t>() == 45);

  SECTION("horizontal flip, by hand") {
    o.hflip = 1;
    std::mt19937_64 g(1);
    Sample f = Transform(o)(info, &g);
    for (int y = 0; y < 6; ++y)
      for (int xx = 0; xx < 8; ++xx) {
        CHECK(channel255(f, 1)[y][xx].item<int64_t>() == 10 * y + (7 - xx));
        CHECK(f.mask[0][y][xx].item<float>() == x.mask[0][y][7 - xx].item<float>());
      }
  }
  SECTION("vertical flip, by hand") {
    o.vflip = 1;
    std::mt19937_64 g(1);
    Sample f = Transform(o)(info, &g);
    for (int y = 0; y < 6; ++y)
      for (int xx = 0; xx < 8; ++xx) {
        CHECK(channel255(f, 1)[y][xx].item<int64_t>() == 10 * (5 - y) + xx);
        CHECK(f.mask[0][y][xx].item<float>() == x.mask[0][5 - y][xx].item<float>());
      }
  }
  SECTION("random rotations: mask pixels are exactly the red marked pixels") {
    o.rotate90 = true;
    o.hflip = 0.5;
    o.vflip = 0.5;
    std::set<std::vector<int64_t>> shapes;
    for (uint64_t seed = 0; seed < 24; ++seed) {
      std::mt19937_64 g(seed);
      Sample f = Transform(o)(info, &g);
      shapes.insert(f.image.sizes().vec());
      const auto red = channel255(f, 0) == 255;
      CHECK(torch::equal(red, f.mask[0] == 1));
      CHECK(f.mask.sum().item<float>() == 4);
      // mask values stay exactly 0/1
      CHECK(((f.mask == 0) | (f.mask == 1)).all().item<bool>());
    }
    CHECK(shapes.size() == 2);  // 6x8 and 8x6 both occur
  }
  SECTION("arbitrary-angle rotation keeps mask and image aligned") {
    o.rotate_degrees = 30;
    for (uint64_t seed = 0; seed < 10; ++seed) {
      std::mt19937_64 g(seed);
      Sample f = Transform(o)(info, &g);
      CHECK(torch::equal(channel255(f, 0) == 255, f.mask[0] == 1));
    }
  }
  SECTION("resize and centre crop") {
    o.resize = ImageSize(12, 16);
    o.center_crop = ImageSize(4, 6);
    Sample f = Transform(o)(info);
    REQUIRE(f.image.sizes() == torch::IntArrayRef({3, 4, 6}));
    // nearest 2x upsampling then crop at offset (4, 5): pixel (y, x) <- source (y+4)/2, (x+5)/2
    for (int y = 0; y < 4; ++y)
      for (int xx = 0; xx < 6; ++xx) CHECK(channel255(f, 1)[y][xx].item<int64_t>() == 10 * ((y + 4) / 2) + (xx + 5) / 2);
    CHECK(torch::equal(channel255(f, 0) == 255, f.mask[0] == 1));
    // bilinear image resizing never makes the mask fractional
    o.interpolation = "bilinear";
    o.resize = ImageSize(9, 13);
    o.center_crop = {};
    Sample b = Transform(o)(info);
    CHECK(((b.mask == 0) | (b.mask == 1)).all().item<bool>());
    CHECK(b.mask.sum().item<float>() > 0);
  }
}

TEST_CASE("ImageSize reads an integer or [height, width] from TOML", "[data]") {
  TransformOptions o;
  read_options(o, toml::parse("resize = 256\ncenter_crop = [224, 200]\nhflip = 0.5\n"), "transforms");
  CHECK(o.resize == ImageSize(256, 256));
  CHECK(o.center_crop == ImageSize(224, 200));
  CHECK(o.hflip == 0.5);
  CHECK_THROWS_AS(read_options(o, toml::parse("resize = \"big\"\n"), "transforms"), ConfigError);
  CHECK_THROWS_AS(read_options(o, toml::parse("interpolation = \"cubic\"\n"), "transforms"), ConfigError);
  const toml::table w = write_options(o);
  CHECK(w["resize"].as_array()->size() == 2);
}

TEST_CASE("loader: same seed gives the same batches for any number of workers", "[data]") {
  const fs::path dir = test::temp_dir("loader_det");
  const auto samples = grey_images(dir, 13);
  TransformOptions t;
  t.hflip = 0.5;
  t.rotate90 = true;
  t.resize = ImageSize(8, 8);
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = true;
  o.augment = true;
  o.seed = 42;
  SampleHook hook = [](Sample& s, std::mt19937_64& g) { s.image.add_(static_cast<float>(g() % 1000) / 1e4f); };
  auto run = [&](int workers, int64_t epoch, uint64_t seed, bool cache) {
    LoaderOptions lo = o;
    lo.num_workers = workers;
    lo.seed = seed;
    lo.cache = cache;
    Loader l(samples, t, lo, hook);
    std::vector<Batch> out;
    for (int64_t e = 0; e <= epoch; ++e) {  // run earlier epochs too, so the cache is warm
      out.clear();
      l.start_epoch(e);
      while (auto b = l.next()) out.push_back(std::move(*b));
    }
    return out;
  };
  const auto ref = run(0, 1, 42, false);
  REQUIRE(ref.size() == 4);
  CHECK(ref.back().size() == 1);
  for (int workers : {1, 2, 3}) {
    for (bool cache : {false, true}) {
      const auto got = run(workers, 1, 42, cache);
      REQUIRE(got.size() == ref.size());
      for (std::size_t i = 0; i < ref.size(); ++i) {
        CHECK(torch::equal(got[i].images, ref[i].images));
        CHECK(torch::equal(got[i].masks, ref[i].masks));
        for (int64_t j = 0; j < ref[i].size(); ++j) CHECK(got[i].info[j].path == ref[i].info[j].path);
      }
    }
  }
  // every sample exactly once per epoch; masks are 0/1
  std::multiset<std::string> seen;
  for (const auto& b : ref) {
    for (const auto& s : b.info) seen.insert(s.path);
    CHECK(((b.masks == 0) | (b.masks == 1)).all().item<bool>());
    CHECK(b.has_mask.all().item<bool>());
    CHECK(b.labels.sum().item<int64_t>() == b.size());
  }
  CHECK(seen.size() == 13);
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 13);
  // another epoch or seed shuffles differently
  const auto e0 = run(2, 0, 42, false);
  const auto s7 = run(2, 1, 7, false);
  auto order = [](const std::vector<Batch>& v) {
    std::vector<std::string> o;
    for (const auto& b : v)
      for (const auto& s : b.info) o.push_back(s.path);
    return o;
  };
  CHECK(order(e0) != order(ref));
  CHECK(order(s7) != order(ref));
}

TEST_CASE("loader: drop_last, unshuffled order and errors from workers", "[data]") {
  const fs::path dir = test::temp_dir("loader_err");
  auto samples = grey_images(dir, 10);
  LoaderOptions o;
  o.batch_size = 4;
  o.drop_last = true;
  Loader l(samples, {}, o);
  CHECK(l.num_batches() == 2);
  l.start_epoch(0);
  int n = 0;
  std::size_t k = 0;
  while (auto b = l.next()) {
    ++n;
    for (const auto& s : b->info) CHECK(s.path == samples[k++].path);
  }
  CHECK(n == 2);

  // a broken file in the 3rd batch: the first two arrive, then the error names the file
  std::ofstream(dir / "broken.png") << "garbage";
  samples[9].path = (dir / "broken.png").string();
  o.drop_last = false;
  o.num_workers = 2;
  Loader bad(samples, {}, o);
  bad.start_epoch(0);
  CHECK(bad.next().has_value());
  CHECK(bad.next().has_value());
  try {
    bad.next();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("broken.png") != std::string::npos);
  }
  // images of different sizes without a resize: the error names both files
  cv::imwrite((dir / "small.png").string(), cv::Mat(4, 4, CV_8UC3, cv::Scalar::all(0)));
  samples[9].path = (dir / "small.png").string();
  samples[9].mask_path.clear();
  Loader mixed(samples, {}, o);
  mixed.start_epoch(0);
  mixed.next();
  mixed.next();
  try {
    mixed.next();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("small.png") != std::string::npos);
  }
  // destroying a loader in the middle of an epoch stops its workers cleanly
  {
    Loader early(samples, TransformOptions{ImageSize(8, 8)}, o);
    early.start_epoch(0);
    CHECK(early.next().has_value());
  }
}
