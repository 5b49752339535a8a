// adfw predict: a fitted run scores new images (anomaly maps, overlays, predictions.csv/json).
#include <glob.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <set>

#include <boost/program_options.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/progress.hpp"
#include "adfw/core/safetensors.hpp"
#include "adfw/engine/predictor.hpp"
#include "adfw/engine/run_folder.hpp"
#include "adfw/metric/curves.hpp"
#include "adfw/metric/overlay.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

const std::set<std::string> kImageExtensions = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"};

bool is_image(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return kImageExtensions.count(e) > 0;
}

/// Files named by one argument: an image file, a folder (searched recursively), or a glob.
std::vector<fs::path> expand(const std::string& arg) {
  std::vector<fs::path> out;
  if (fs::is_directory(arg)) {
    for (const auto& e : fs::recursive_directory_iterator(arg))
      if (e.is_regular_file() && is_image(e.path())) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    if (out.empty()) throw adfw::ConfigError("predict: folder " + arg + " holds no images (png, jpg, bmp, tif)");
    return out;
  }
  if (arg.find_first_of("*?[") != std::string::npos) {
    glob_t g{};
    const int rc = ::glob(arg.c_str(), 0, nullptr, &g);
    for (std::size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    if (out.empty()) throw adfw::ConfigError("predict: the pattern " + arg + " matches no file");
    return out;
  }
  // A plain path is kept even when it is missing: it is reported as a failed image, not a usage error.
  out.emplace_back(arg);
  return out;
}

/// Output names: the file's stem, made unique with its parent folders' names where stems repeat.
std::vector<std::string> output_names(const std::vector<fs::path>& files) {
  std::map<std::string, int> count;
  for (const auto& f : files) ++count[f.stem().string()];
  std::vector<std::string> names;
  std::set<std::string> taken;
  for (const auto& f : files) {
    std::string n = f.stem().string();
    if (count[n] > 1 && f.has_parent_path()) n = f.parent_path().filename().string() + "_" + n;
    std::string unique = n;
    for (int k = 1; taken.count(unique); ++k) unique = n + "_" + std::to_string(k);
    taken.insert(unique);
    names.push_back(unique);
  }
  return names;
}

/// Labelled validation images: a folder in MVTec's test layout (good/ normal, any other subfolder
/// anomalous).
std::vector<std::pair<fs::path, int64_t>> validation_set(const std::string& folder) {
  if (!fs::is_directory(folder)) throw adfw::ConfigError("predict: --threshold-val " + folder + " is not a folder");
  std::vector<std::pair<fs::path, int64_t>> out;
  for (const auto& sub : fs::directory_iterator(folder)) {
    if (!sub.is_directory()) continue;
    const int64_t label = sub.path().filename() == "good" ? 0 : 1;
    for (const auto& e : fs::recursive_directory_iterator(sub.path()))
      if (e.is_regular_file() && is_image(e.path())) out.emplace_back(e.path(), label);
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct Scale {
  double value = 0;  ///< map value drawn at full scale
  std::string rule;
};

void write_outputs(const fs::path& out, const std::string& name, const cv::Mat& image, const adfw::PredictResult& r,
                   const Scale& scale, double threshold) {
  const cv::Mat& map = r.map;
  double lo = 0, hi = 0;
  cv::minMaxLoc(map, &lo, &hi);
  const double full = scale.value > 0 ? scale.value : std::max(hi, 1e-12);
  cv::Mat unit;
  map.convertTo(unit, CV_32F, 1.0 / full);
  unit = cv::max(cv::min(unit, 1.0), 0.0);
  cv::Mat png16;
  unit.convertTo(png16, CV_16U, 65535.0);
  if (!cv::imwrite((out / "maps" / (name + ".png")).string(), png16) ||
      !cv::imwrite((out / "maps" / (name + ".tiff")).string(), map))
    throw adfw::Error("cannot write the maps of " + name + " into " + (out / "maps").string());
  // Overlay: the image | the map as a heat colour blended over it, with the decision's contour.
  cv::Mat bgr;
  if (image.channels() == 1) cv::cvtColor(image, bgr, cv::COLOR_GRAY2BGR);
  else if (image.channels() == 4) cv::cvtColor(image, bgr, cv::COLOR_BGRA2BGR);
  else bgr = image.clone();
  if (bgr.depth() != CV_8U) bgr.convertTo(bgr, CV_8U, bgr.depth() == CV_16U ? 1.0 / 257.0 : 1.0);
  cv::Mat blend = adfw::heat_blend(bgr, map, 0.0, full);
  if (std::isfinite(threshold)) {
    cv::Mat above = map >= threshold;
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(above, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    cv::drawContours(blend, contours, -1, cv::Scalar(255, 255, 255), std::max(1, bgr.cols / 256));
  }
  cv::Mat row;
  cv::hconcat(std::vector<cv::Mat>{bgr, blend}, row);
  if (!cv::imwrite((out / "overlays" / (name + ".png")).string(), row))
    throw adfw::Error("cannot write the overlay of " + name + " into " + (out / "overlays").string());
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

int predict_command(const std::vector<std::string>& args) {
  std::string run, out_dir, threshold_val;
  std::vector<std::string> inputs;
  double threshold = NAN;
  bool threshold_test = false, save_maps = false;
  int batch = 8, threads = 0;
  std::string device;
  const std::string usage = "adfw predict <run-folder> <image | folder | glob>... --out DIR [options]";
  po::options_description desc("options");
  desc.add_options()("out,o", po::value(&out_dir), "output folder (required)")(
      "threshold", po::value(&threshold), "image-score threshold: score >= threshold is anomalous")(
      "threshold-val", po::value(&threshold_val),
      "choose the threshold that maximises F1 on a labelled folder in MVTec test layout (good/ = normal, "
      "other subfolders anomalous)")(
      "threshold-test", po::bool_switch(&threshold_test),
      "use the run's F1-max threshold, which was chosen on its test set (the outputs say so)")(
      "save-maps", po::bool_switch(&save_maps),
      "also write every map at the model's input resolution to maps.safetensors, in the layout of a run's "
      "eval.save_maps file (anomaly_maps, image_scores; image paths in its metadata; no ground truth). Held "
      "in memory until the end")(
      "batch", po::value(&batch)->default_value(8), "images per forward pass")(
      "threads", po::value(&threads)->default_value(0), "intra-op threads (0 = all cores)")(
      "device", po::value(&device), "cpu, cuda or auto (default: the run's setting)");
  po::options_description hidden;
  hidden.add_options()("run", po::value(&run))("inputs", po::value(&inputs)->multitoken());
  po::positional_options_description pos;
  pos.add("run", 1).add("inputs", -1);
  const po::variables_map vm = adfw::cli::parse_command(
      args, desc, pos, usage, hidden,
      "Scores images with a run's fitted model (its model.safetensors): for every image an anomaly map as a\n"
      "16-bit PNG and a float32 TIFF (maps/), an overlay (overlays/), and predictions.csv / predictions.json\n"
      "with the image score and, given a threshold, the decision.");
  if (vm.count("help")) return 0;
  if (run.empty() || inputs.empty()) throw adfw::ConfigError("predict: give a run folder and images (see --help)");
  if (out_dir.empty()) throw adfw::ConfigError("predict: --out DIR is required");
  if (batch < 1) throw adfw::ConfigError("predict: --batch must be at least 1, got " + std::to_string(batch));
  const int chosen = (vm.count("threshold") ? 1 : 0) + (threshold_val.empty() ? 0 : 1) + (threshold_test ? 1 : 0);
  if (chosen > 1) throw adfw::ConfigError("predict: choose one of --threshold, --threshold-val, --threshold-test");

  std::vector<fs::path> files;
  for (const auto& a : inputs) {
    auto f = expand(a);
    files.insert(files.end(), f.begin(), f.end());
  }
  adfw::PredictorOptions po_;
  po_.threads = threads;
  po_.device = device;
  adfw::Predictor predictor(run, po_);

  std::string threshold_source = "none (no decisions; give --threshold, --threshold-val or --threshold-test)";
  bool chosen_on_test = false;
  if (vm.count("threshold")) {
    threshold_source = "given on the command line";
  } else if (threshold_test) {
    const auto& m = predictor.metrics();
    if (m.is_null() || !m.contains("metrics") || !m.at("metrics").contains("image_f1_threshold"))
      throw adfw::Error("predict: " + run + "/metrics.json has no metrics.image_f1_threshold (did the run finish "
                        "testing, with image_f1_max among its metrics?)");
    threshold = m.at("metrics").at("image_f1_threshold").get<double>();
    threshold_source = "the run's image F1-max threshold, chosen on its test set";
    chosen_on_test = true;
  } else if (!threshold_val.empty()) {
    const auto val = validation_set(threshold_val);
    std::vector<float> scores;
    std::vector<int64_t> labels;
    for (const auto& [path, label] : val) {
      cv::Mat img = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
      if (img.empty()) throw adfw::Error("predict: cannot read validation image " + path.string());
      scores.push_back(predictor(img).score);
      labels.push_back(label);
    }
    adfw::metric::BinaryRequest req;
    req.auroc = req.ap = false;
    threshold = adfw::metric::binary_metrics(scores, labels, req, "validation image scores").f1_threshold;
    threshold_source = "F1-max on " + std::to_string(val.size()) + " validation images in " + threshold_val;
  }
  Scale scale;
  if (std::isfinite(threshold) && threshold > 0) {
    scale = {2 * threshold, "map / (2 * threshold): the threshold is drawn at half scale"};
  } else {
    scale = {0, "map / its own maximum, per image (no positive threshold to anchor a common scale)"};
  }

  const fs::path out(out_dir);
  fs::create_directories(out / "maps");
  fs::create_directories(out / "overlays");
  const std::vector<std::string> names = output_names(files);
  nlohmann::json records = nlohmann::json::array();
  std::ostringstream csv;
  csv << "path,name,score,anomalous,error\n";
  int64_t failed = 0, done = 0;
  // --save-maps: the model-resolution maps, kept in input order.
  std::vector<float> saved_maps, saved_scores;
  std::vector<std::string> saved_paths;
  int map_h = 0, map_w = 0;
  adfw::Progress bar("predict", static_cast<int64_t>(files.size()), "img");
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t start = 0; start < files.size(); start += static_cast<std::size_t>(batch)) {
    const std::size_t end = std::min(files.size(), start + static_cast<std::size_t>(batch));
    std::vector<cv::Mat> images;
    std::vector<std::size_t> index;
    auto fail = [&](std::size_t i, const std::string& why) {
      ++failed;
      adfw::log_warn("predict: " + files[i].string() + ": " + why);
      records.push_back({{"path", files[i].string()}, {"name", names[i]}, {"error", why}});
      csv << csv_field(files[i].string()) << "," << csv_field(names[i]) << ",,," << csv_field(why) << "\n";
    };
    for (std::size_t i = start; i < end; ++i) {
      cv::Mat img = cv::imread(files[i].string(), cv::IMREAD_UNCHANGED);
      if (img.empty()) {
        fail(i, "cannot read the image (missing, truncated or not an image)");
        continue;
      }
      if (img.channels() != 1 && img.channels() != 3 && img.channels() != 4) {
        fail(i, "has " + std::to_string(img.channels()) + " channels; expected 1, 3 or 4");
        continue;
      }
      images.push_back(img);
      index.push_back(i);
    }
    std::vector<adfw::PredictResult> results;
    try {
      results = predictor(images);
    } catch (const std::exception& e) {
      // One image the method cannot take (e.g. a size it refuses) must not stop the others: retry singly.
      results.clear();
      std::vector<std::size_t> kept;
      std::vector<cv::Mat> kept_images;
      for (std::size_t k = 0; k < images.size(); ++k) {
        try {
          results.push_back(predictor(images[k]));
          kept.push_back(index[k]);
          kept_images.push_back(images[k]);
        } catch (const std::exception& e1) {
          fail(index[k], e1.what());
        }
      }
      index = kept;
      images = kept_images;
    }
    for (std::size_t k = 0; k < results.size(); ++k) {
      const std::size_t i = index[k];
      const auto& r = results[k];
      const bool decided = std::isfinite(threshold);
      const bool anomalous = decided && r.score >= threshold;
      try {
        write_outputs(out, names[i], images[k], r, scale, threshold);
      } catch (const std::exception& e) {
        fail(i, e.what());
        continue;
      }
      if (save_maps) {
        const cv::Mat& mm = r.model_map;
        if (saved_paths.empty()) {
          map_h = mm.rows;
          map_w = mm.cols;
        } else if (mm.rows != map_h || mm.cols != map_w) {
          throw adfw::Error("predict: --save-maps needs maps of one size; " + files[i].string() + " gives " +
                            std::to_string(mm.cols) + "x" + std::to_string(mm.rows) + ", earlier images " +
                            std::to_string(map_w) + "x" + std::to_string(map_h) +
                            " (the run's input pipeline has no resize)");
        }
        for (int y = 0; y < mm.rows; ++y) saved_maps.insert(saved_maps.end(), mm.ptr<float>(y), mm.ptr<float>(y) + mm.cols);
        saved_scores.push_back(r.score);
        saved_paths.push_back(files[i].string());
      }
      nlohmann::json rec = {{"path", files[i].string()}, {"name", names[i]}, {"score", r.score}};
      if (decided) rec["anomalous"] = anomalous;
      records.push_back(rec);
      std::ostringstream score;
      score << std::setprecision(9) << r.score;
      csv << csv_field(files[i].string()) << "," << csv_field(names[i]) << "," << score.str() << ","
          << (decided ? (anomalous ? "1" : "0") : "") << ",\n";
      ++done;
    }
    bar.step(static_cast<int64_t>(end - start));
  }
  bar.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json summary = {{"run_folder", run},
                            {"method", predictor.method()},
                            {"threshold", std::isfinite(threshold) ? nlohmann::json(threshold) : nlohmann::json()},
                            {"threshold_source", threshold_source},
                            {"threshold_chosen_on_test_set", chosen_on_test},
                            {"png_scale", scale.rule},
                            {"images", done},
                            {"failed", failed},
                            {"seconds", seconds},
                            {"images_per_second", seconds > 0 ? done / seconds : 0.0},
                            {"predictions", records}};
  if (save_maps && !saved_paths.empty()) {
    namespace st = adfw::safetensors;
    const auto n = static_cast<int64_t>(saved_paths.size());
    std::vector<st::TensorData> t;
    t.push_back(st::make_tensor("anomaly_maps", {n, map_h, map_w}, saved_maps.data(), saved_maps.size()));
    t.push_back(st::make_tensor("image_scores", {n}, saved_scores.data(), saved_scores.size()));
    st::write(out / "maps.safetensors", t,
              {{"paths", nlohmann::json(saved_paths).dump()}, {"run_folder", run}, {"producer", "adfw predict"}});
  }
  adfw::write_file_atomic(out / "predictions.csv", csv.str());
  adfw::write_json(out / "predictions.json", summary);
  std::ostringstream msg;
  msg << "predict: " << done << " image(s) in " << std::fixed << std::setprecision(1) << seconds << " s ("
      << std::setprecision(2) << (seconds > 0 ? done / seconds : 0.0) << " images/s)";
  if (failed) msg << ", " << failed << " failed (see predictions.csv)";
  if (chosen_on_test) msg << "; threshold chosen on the run's test set";
  adfw::log_info(msg.str());
  return failed ? 1 : 0;
}

}  // namespace

ADFW_COMMAND("predict", "score images with a fitted run: maps, overlays, predictions.csv/json", predict_command);
