#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/core/safetensors.hpp"
#include "adfw/metric/eval_maps.hpp"
#include "adfw/metric/evaluator.hpp"
#include "adfw/metric/metric.hpp"
#include "adfw/metric/reducers.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

nlohmann::json expected_case_a(const fs::path& dir) {
  std::ifstream in(dir / "case_a_expected.json");
  nlohmann::json j;
  in >> j;
  return j;
}

adfw::EvalInput case_a_input(const fs::path& dir) {
  const auto f = adfw::safetensors::File::open(dir / "case_a.safetensors");
  adfw::EvalInput in;
  auto maps = f.to_float("anomaly_maps");
  in.maps = torch::from_blob(maps.data(), {48, 96, 112}, torch::kFloat).clone();
  const auto& mv = f.at("masks");
  in.masks = torch::from_blob(const_cast<unsigned char*>(mv.data), {48, 1, 96, 112}, torch::kByte).clone();
  auto labels = f.to_int64("labels");
  in.labels = torch::from_blob(labels.data(), {48}, torch::kLong).clone();
  return in;
}

void check_against_fixture(const nlohmann::json& got, const nlohmann::json& e, const std::string& aupro_key) {
  for (const char* k : {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max"}) {
    INFO(k);
    CHECK(got.at(k).get<double>() == Approx(e.at(k).get<double>()).margin(1e-6).epsilon(0));
  }
  CHECK(got.at("aupro").get<double>() == Approx(e.at(aupro_key).get<double>()).margin(2e-3).epsilon(0));
}

void write_npy_f32(const fs::path& file, const float* data, int h, int w) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(h) + ", " +
                       std::to_string(w) + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(file, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(sizeof(float) * h * w));
}

}  // namespace

TEST_CASE("evaluator reproduces case_a and writes its reports", "[metric]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/metrics");
  const auto e = expected_case_a(dir);
  adfw::EvalInput in = case_a_input(dir);
  for (int i = 0; i < 48; ++i) {
    in.defect_types.push_back(in.labels[i].item<int64_t>() ? (i % 2 ? "crack" : "scratch") : "good");
    in.paths.push_back("/data/test/" + in.defect_types.back() + "/" + std::to_string(i) + ".png");
  }
  adfw::EvalOptions opt;
  opt.fpr_limit = 0.05;
  const auto r = adfw::evaluate(in, opt);
  check_against_fixture(r.values, e, "aupro_0.05");
  CHECK(r.values.at("aupro_fpr_limit") == 0.05);
  CHECK(r.per_defect_auroc.size() == 2);
  CHECK(r.images == 48);

  const fs::path out = adfw::test::temp_dir("eval_reports");
  adfw::write_metrics_json(out / "metrics.json", r, {{"split", "test"}, {"checkpoint", "none"}, {"threshold", "f1_max"}});
  std::ifstream mj(out / "metrics.json");
  nlohmann::json j;
  mj >> j;
  CHECK(j["protocol"]["split"] == "test");
  CHECK(j["metrics"]["image_auroc"].get<double>() == Approx(e["image_auroc"].get<double>()).margin(1e-6));
  CHECK(j["per_defect_type"].contains("crack"));

  adfw::write_per_image_csv(out / "per_image.csv", in, r);
  std::ifstream csv(out / "per_image.csv");
  std::string line;
  std::getline(csv, line);
  CHECK(line == "path,defect_type,label,score");
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  CHECK(rows == 48);

  const auto files = adfw::write_overlays(out / "overlays", in, r, {6});
  REQUIRE(files.size() == 6);
  const cv::Mat png = cv::imread(files[0].string());
  CHECK(png.cols == 4 * 112);
  CHECK(png.rows == 96);
}

TEST_CASE("per-defect-type image AUROC compares each type with all normal images", "[metric]") {
  adfw::EvalInput in;
  in.labels = torch::tensor({0, 0, 1, 1, 1}, torch::kLong);
  in.image_scores = torch::tensor({0.1f, 0.2f, 0.3f, 0.15f, 0.05f});
  in.defect_types = {"good", "good", "a", "b", "b"};
  adfw::EvalOptions opt;
  opt.metrics = {"image_auroc"};
  const auto r = adfw::evaluate(in, opt);
  // a: 0.3 beats both normals -> 1. b: 0.15 beats one of two, 0.05 none -> 1/4.
  CHECK(r.per_defect_auroc.at("a") == 1.0);
  CHECK(r.per_defect_auroc.at("b") == 0.25);
  // Overall: pairs won 2 + 1 + 0 = 3 of 6.
  CHECK(r.values.at("image_auroc").get<double>() == 0.5);
}

TEST_CASE("per-defect-type pixel metrics pool each type's pixels with all normal images", "[metric]") {
  // Three 1x4 maps: one normal image and one image of each defect type.
  adfw::EvalInput in;
  in.maps = torch::tensor({0.1f, 0.2f, 0.3f, 0.4f,      // good
                           0.9f, 0.5f, 0.05f, 0.05f,    // a, defect pixel 0
                           0.15f, 0.6f, 0.7f, 0.0f})    // b, defect pixels 0 and 1
                .view({3, 1, 4});
  in.masks = torch::tensor({0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0}, torch::kByte).view({3, 1, 4});
  in.labels = torch::tensor({0, 1, 1}, torch::kLong);
  in.defect_types = {"good", "a", "b"};
  adfw::EvalOptions opt;
  opt.metrics = {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"};
  const auto r = adfw::evaluate(in, opt);
  // Pooled: 9 normal pixels; 0.9 outranks 9, 0.15 outranks 4, 0.6 outranks 8 -> 21 / 27.
  CHECK(r.values.at("pixel_auroc").get<double>() == Approx(21.0 / 27.0));
  REQUIRE(r.per_defect_pixel.size() == 2);
  // a: its one defect pixel (0.9) outranks all 7 normal pixels of good + a.
  const auto& a = r.per_defect_pixel.at("a");
  CHECK(a.binary.positives == 1);
  CHECK(a.binary.negatives == 7);
  CHECK(a.binary.auroc == Approx(1.0));
  CHECK(a.binary.ap == Approx(1.0));
  CHECK(a.aupro.at(0.3) == Approx(1.0));
  // b: normals {0.1, 0.2, 0.3, 0.4, 0.7, 0.0}; 0.15 outranks 2, 0.6 outranks 5 -> 7 / 12.
  // AP: ranks 0.7 (n), 0.6 (p: precision 1/2), ..., 0.15 (p: precision 2/6) -> (1/2 + 1/3) / 2.
  const auto& b = r.per_defect_pixel.at("b");
  CHECK(b.binary.positives == 2);
  CHECK(b.binary.auroc == Approx(7.0 / 12.0));
  CHECK(b.binary.ap == Approx(5.0 / 12.0));

  const auto j = r.to_json();
  CHECK(j["per_defect_type"]["b"]["pixel_auroc"].get<double>() == Approx(7.0 / 12.0));
  CHECK(j["per_defect_type"]["b"]["defect_pixels"] == 2);
  CHECK(j["per_defect_type"]["a"].contains("aupro"));
  CHECK(j["per_defect_type"]["a"]["image_auroc"].get<double>() == 1.0);
  // Median of the normal pixels of each image type: good {0.1, 0.2, 0.3, 0.4} -> 0.3 (upper median),
  // a {0.5, 0.05, 0.05} -> 0.05, b {0.7, 0.0} -> 0.7.
  REQUIRE(r.normal_pixel_median.size() == 3);
  CHECK(r.normal_pixel_median.at("good") == Approx(0.3));
  CHECK(r.normal_pixel_median.at("a") == Approx(0.05));
  CHECK(r.normal_pixel_median.at("b") == Approx(0.7));
  CHECK(j["per_defect_type"]["good"]["normal_pixel_median"].get<double>() == Approx(0.3));
  CHECK_FALSE(j["per_defect_type"]["good"].contains("pixel_auroc"));

  opt.metrics = {"image_auroc"};
  CHECK(adfw::evaluate(in, opt).per_defect_pixel.empty());
  CHECK(adfw::evaluate(in, opt).normal_pixel_median.empty());
}

TEST_CASE("evaluator rejects inconsistent inputs", "[metric]") {
  adfw::EvalInput in;
  in.maps = torch::rand({2, 4, 4});
  in.masks = torch::zeros({2, 4, 5}, torch::kByte);
  in.labels = torch::tensor({0, 1}, torch::kLong);
  CHECK_THROWS_WITH(adfw::evaluate(in), Contains("do not match anomaly maps"));
  in.masks = torch::zeros({2, 4, 4});
  in.masks[1][0][0] = 0.5;
  CHECK_THROWS_WITH(adfw::evaluate(in), Contains("masks must be 0/1"));
  in.masks[1][0][0] = 1;
  in.maps[0][1][1] = NAN;
  CHECK_THROWS_WITH(adfw::evaluate(in), Contains("NaN"));
  in.maps[0][1][1] = 0;
  in.labels = torch::tensor({0, 1, 1}, torch::kLong);
  CHECK_THROWS_WITH(adfw::evaluate(in), Contains("3 labels"));
  in.labels = torch::tensor({0, 1}, torch::kLong);
  adfw::EvalOptions opt;
  opt.metrics = {"pixel_aucroc"};
  CHECK_THROWS_AS(adfw::evaluate(in, opt), adfw::ConfigError);
  opt.metrics = {"image_auroc", "pixel_auroc", "aupro"};
  const auto r = adfw::evaluate(in, opt);  // image scores default to the max of each map
  CHECK(r.values.contains("pixel_auroc"));
  CHECK(r.image_scores[0] == in.maps[0].max().item<float>());
}

TEST_CASE("image-score reducers", "[metric]") {
  using namespace adfw::metric;
  const auto ramp = torch::arange(1, 101, torch::kFloat).view({1, 1, 10, 10});
  CHECK(MaxReducer().reduce(ramp).item<float>() == 100.f);
  TopKMeanOptions q;
  q.fraction = 0.05;  // 5 of 100 values: mean of 96..100
  CHECK(TopKMeanReducer(q).reduce(ramp).item<float>() == Approx(98.0));
  q.fraction = 0.001;  // fewer than one value -> at least one
  CHECK(TopKMeanReducer(q).reduce(ramp.view({1, 10, 10})).item<float>() == 100.f);
  // 21 x 21 mean with zero padding counted: a 5 x 5 map of ones peaks at 25 / 441.
  const auto ones = torch::ones({2, 1, 5, 5});
  const auto s = AvgPoolMaxReducer().reduce(ones);
  CHECK(s.size(0) == 2);
  CHECK(s[0].item<float>() == Approx(25.0 / 441));
  AvgPoolMaxOptions k3;
  k3.kernel = 3;
  auto spike = torch::zeros({1, 1, 5, 5});
  spike[0][0][2][2] = 9;
  CHECK(AvgPoolMaxReducer(k3).reduce(spike).item<float>() == Approx(1.0));
  CHECK_THROWS_WITH(MethodScoreReducer().reduce(ones), Contains("method's own image scores"));
  CHECK_THROWS_AS(MaxReducer().reduce(torch::ones({2, 3, 4, 4})), adfw::Error);
}

TEST_CASE("map post-processing", "[metric]") {
  using namespace adfw::metric;
  const auto x = torch::tensor({0.f, 1.f, 2.f, 3.f}).view({1, 1, 2, 2});
  const auto up = UpsamplePostprocess().apply(x, {4, 4});
  REQUIRE(up.sizes() == torch::IntArrayRef({1, 1, 4, 4}));
  // align_corners=false: source coordinate (i + 0.5) / 2 - 0.5, clamped at the border.
  CHECK(up[0][0][0][0].item<float>() == Approx(0.0));
  CHECK(up[0][0][0][1].item<float>() == Approx(0.25));
  CHECK(up[0][0][0][2].item<float>() == Approx(0.75));
  CHECK(up[0][0][1][1].item<float>() == Approx(2 * 0.25 + 0.25));  // value 2 r + c at r = c = 0.25
  CHECK(up[0][0][3][3].item<float>() == Approx(3.0));

  GaussianPostprocess g;
  CHECK(g.kernel_size() == 25);
  const auto flat = torch::full({1, 1, 9, 7}, 2.5f);
  CHECK(torch::allclose(g.apply(flat, {9, 7}), flat, 1e-5, 1e-6));
  auto impulse = torch::zeros({1, 1, 41, 41});
  impulse[0][0][20][20] = 1;
  const auto blurred = g.apply(impulse, {41, 41});
  double sum1d = 0;
  for (int d = -12; d <= 12; ++d) sum1d += std::exp(-d * d / 32.0);
  CHECK(blurred[0][0][20][20].item<float>() == Approx(1.0 / (sum1d * sum1d)).epsilon(1e-5));
  CHECK(blurred[0][0][20][23].item<float>() == Approx(std::exp(-9 / 32.0) / (sum1d * sum1d)).epsilon(1e-5));
  CHECK(blurred.sum().item<float>() == Approx(1.0).epsilon(1e-5));
  GaussianOptions go;
  go.kernel_size = 4;
  CHECK_THROWS_AS(GaussianPostprocess(go), adfw::ConfigError);

  auto spike = torch::zeros({1, 1, 5, 5});
  spike[0][0][2][2] = 9;
  const auto mean = MeanFilterPostprocess().apply(spike, {5, 5});
  CHECK(mean[0][0][1][1].item<float>() == Approx(1.0));
  CHECK(mean[0][0][0][0].item<float>() == Approx(0.0));
  // Mirrored border: a corner spike is seen by its own and three mirrored copies... on a 3x3 window
  // at the corner, the window (-1..1) maps to rows/cols {0,0,1}: weight 4 of 9 on the spike.
  auto corner = torch::zeros({1, 1, 5, 5});
  corner[0][0][0][0] = 9;
  CHECK(MeanFilterPostprocess().apply(corner, {5, 5})[0][0][0][0].item<float>() == Approx(4.0));
}

TEST_CASE("registered metric, image_score and postprocess families", "[metric]") {
  adfw::test::load_builtin_plugins();
  auto& metrics = adfw::Registry<adfw::Metric>::instance();
  for (const auto& n : adfw::metric::builtin_metric_names()) CHECK(metrics.contains(n));
  for (const char* n : {"max", "avgpool_max", "topk_mean", "method"})
    CHECK(adfw::Registry<adfw::ImageScoreReducer>::instance().contains(n));
  for (const char* n : {"upsample", "log1p", "gaussian", "mean_filter"})
    CHECK(adfw::Registry<adfw::MapPostprocess>::instance().contains(n));
  toml::table bad;
  bad.insert("fpr_limit", 1.5);
  CHECK_THROWS_AS(metrics.make("aupro", bad), adfw::ConfigError);
  toml::table k;
  k.insert("kernel", 7);
  auto r = adfw::Registry<adfw::ImageScoreReducer>::instance().make("avgpool_max", k);
  CHECK(r->reduce(torch::ones({1, 1, 5, 5})).item<float>() == Approx(25.0 / 49));

  ADFW_REQUIRE_SHARED(dir, "fixtures/metrics");
  const auto e = expected_case_a(dir);
  const auto in = case_a_input(dir);
  toml::table lim;
  lim.insert("fpr_limit", 1.0);
  auto aupro = metrics.make("aupro", lim);
  const auto maps = in.maps.contiguous();
  const auto masks = in.masks.contiguous();
  adfw::EvalData d;
  d.maps = maps.data_ptr<float>();
  d.masks = masks.data_ptr<uint8_t>();
  d.n = 48;
  d.h = 96;
  d.w = 112;
  CHECK(adfw::compute_metric(*aupro, d) == Approx(e["aupro_1.0"].get<double>()).margin(2e-3).epsilon(0));
}

TEST_CASE("eval-maps reads a safetensors file and a folder of maps", "[metric]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/metrics");
  const auto e = expected_case_a(dir);
  adfw::metric::EvalMapsOptions o;
  o.input = dir / "case_a.safetensors";
  check_against_fixture(adfw::metric::eval_maps(o), e, "aupro_0.3");
  o.fpr_limit = 1.0;
  check_against_fixture(adfw::metric::eval_maps(o), e, "aupro_1.0");

  // The same maps as .npy / float .tiff files, masks as 0/255 PNGs with MVTec's _mask suffix.
  const auto f = adfw::safetensors::File::open(dir / "case_a.safetensors");
  const auto maps = f.to_float("anomaly_maps");
  const auto& mv = f.at("masks");
  const auto labels = f.to_int64("labels");
  const fs::path root = adfw::test::temp_dir("eval_maps_folder");
  bool labels_follow_masks = true;
  for (int i = 0; i < 48; ++i) {
    const std::string type = labels[i] ? "defect" : "good";
    fs::create_directories(root / "maps" / type);
    fs::create_directories(root / "gt" / type);
    char stem[16];
    std::snprintf(stem, sizeof stem, "%03d", i);
    const float* m = maps.data() + static_cast<std::size_t>(i) * 96 * 112;
    if (i % 2) write_npy_f32(root / "maps" / type / (std::string(stem) + ".npy"), m, 96, 112);
    else cv::imwrite((root / "maps" / type / (std::string(stem) + ".tiff")).string(),
                     cv::Mat(96, 112, CV_32F, const_cast<float*>(m)));
    cv::Mat g(96, 112, CV_8U, const_cast<unsigned char*>(mv.data) + static_cast<std::size_t>(i) * 96 * 112);
    const bool empty = cv::countNonZero(g) == 0;
    labels_follow_masks &= (empty == (labels[i] == 0));
    if (!empty) cv::imwrite((root / "gt" / type / (std::string(stem) + "_mask.png")).string(), g * 255);
  }
  REQUIRE(labels_follow_masks);
  adfw::metric::EvalMapsOptions fo;
  fo.input = root / "maps";
  fo.masks = root / "gt";
  const auto got = adfw::metric::eval_maps(fo);
  check_against_fixture(got, e, "aupro_0.3");
  CHECK(got["images"] == 48);

  fo.masks.clear();
  CHECK_THROWS_AS(adfw::metric::eval_maps(fo), adfw::ConfigError);
  write_npy_f32(root / "maps" / "good" / "zzz.npy", maps.data(), 8, 8);
  fo.masks = root / "gt";
  CHECK_THROWS_WITH(adfw::metric::eval_maps(fo), Contains("all maps must share a size"));
}

TEST_CASE("adfw eval-maps prints the metrics as JSON", "[metric]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/metrics");
  const auto e = expected_case_a(dir);
  const fs::path out = adfw::test::temp_dir("eval_maps_cli") / "out.json";
  const std::string cmd = adfw::test::cli_path().string() + " eval-maps '" + (dir / "case_a.safetensors").string() +
                          "' --fpr-limit 0.05 > '" + out.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  nlohmann::json j;
  in >> j;
  check_against_fixture(j, e, "aupro_0.05");
  CHECK(j["aupro_fpr_limit"] == 0.05);
  const std::string bad = adfw::test::cli_path().string() + " eval-maps '" + (dir / "case_a.safetensors").string() +
                          "' --metrics pixel_aurok > /dev/null 2>&1";
  CHECK(WEXITSTATUS(std::system(bad.c_str())) == 2);
}
