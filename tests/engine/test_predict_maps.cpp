// adfw predict on a finished run reproduces the run's own test maps: the quickstart (PatchCore on
// the demo data) with eval.save_maps = true, then `adfw predict --save-maps` over the same test
// images; both maps.safetensors hold the maps at the model's resolution, compared image by image
// (matched by path) to 1e-6, in the batches the run used.
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "adfw/core/safetensors.hpp"
#include "support.hpp"

namespace fs = std::filesystem;

namespace {

std::string shell_quoted(const fs::path& p) { return "'" + p.string() + "'"; }

int shell(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("predict reproduces the quickstart run's maps.safetensors", "[predict][engine]") {
  const fs::path dir = adfw::test::temp_dir("predict_maps");
  const std::string adfw = shell_quoted(adfw::test::cli_path());
  const std::string cd = "cd " + shell_quoted(adfw::test::source_root()) + " && ";
  REQUIRE(shell(cd + adfw + " --quiet run experiments/quickstart.toml --threads 1 --set eval.save_maps=true --output " +
                shell_quoted(dir / "runs") + " --run-id q > " + shell_quoted(dir / "run.log") + " 2>&1") == 0);
  const fs::path run = dir / "runs" / "quickstart" / "q";
  const auto ran = adfw::safetensors::File::open(run / "maps.safetensors");
  const auto paths = nlohmann::json::parse(ran.metadata().at("paths")).get<std::vector<std::string>>();
  REQUIRE(paths.size() > 10);

  // The same images in the run's order and batches (eval.batch_size = 8): float32 sums over a batch
  // depend on its make-up, so other batches agree only to about 1e-5 relative (tests/scripts/predict.sh).
  std::string args;
  for (const auto& p : paths) args += " " + shell_quoted(p);
  REQUIRE(shell(cd + adfw + " --quiet predict " + shell_quoted(run) + args +
                " --threads 1 --batch 8 --save-maps --out " + shell_quoted(dir / "pred") + " > " +
                shell_quoted(dir / "predict.log") + " 2>&1") == 0);
  const auto pred = adfw::safetensors::File::open(dir / "pred" / "maps.safetensors");
  const auto pred_paths = nlohmann::json::parse(pred.metadata().at("paths")).get<std::vector<std::string>>();
  REQUIRE(pred_paths.size() == paths.size());
  REQUIRE(pred.at("anomaly_maps").shape == ran.at("anomaly_maps").shape);

  std::map<std::string, std::size_t> where;
  for (std::size_t i = 0; i < pred_paths.size(); ++i) where[pred_paths[i]] = i;
  const std::vector<float> a = ran.to_float("anomaly_maps"), b = pred.to_float("anomaly_maps");
  const std::vector<float> sa = ran.to_float("image_scores"), sb = pred.to_float("image_scores");
  const std::size_t hw = a.size() / paths.size();
  double worst = 0, worst_score = 0;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    INFO(paths[i]);
    REQUIRE(where.count(paths[i]) == 1);
    const std::size_t j = where[paths[i]];
    for (std::size_t k = 0; k < hw; ++k) worst = std::max(worst, std::abs(double(a[i * hw + k]) - b[j * hw + k]));
    worst_score = std::max(worst_score, std::abs(double(sa[i]) - sb[j]));
  }
  INFO("largest map difference " << worst << ", largest score difference " << worst_score);
  CHECK(worst <= 1e-6);
  CHECK(worst_score <= 1e-6);
}
