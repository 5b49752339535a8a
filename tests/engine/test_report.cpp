// report.html of a run folder, built from hand-written run files: every section the files allow,
// clear errors naming the file for missing or malformed inputs.
#include <string>

#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/engine/report.hpp"
#include "support.hpp"

namespace fs = std::filesystem;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

fs::path fake_run(const std::string& tag) {
  const fs::path dir = adfw::test::temp_dir(tag);
  adfw::write_file_atomic(dir / "metrics.json", R"({"metrics": {"image_auroc": 0.75, "pixel_auroc": 0.9},
    "per_defect_type": {"hole": {"image_auroc": 1.0, "pixel_auroc": 0.95}, "good": {"normal_pixel_median": 0.1}},
    "counts": {"images": 4, "anomalous_images": 2},
    "protocol": {"split": "test", "seed": 0}, "experiment": "demo<x>", "run_id": "r1",
    "reference": {"source": "a paper, Table 1", "categories": {"grid": {"image_auroc": 0.8}}}})");
  adfw::write_file_atomic(dir / "config.toml", "name = \"demo\"\n[data]\ncategories = [\"grid\"]\n");
  adfw::write_file_atomic(dir / "per_image.csv",
                          "path,defect_type,label,score\n\"a,1.png\",good,0,0.1\nb.png,good,0,0.7\n"
                          "c.png,hole,1,0.9\nd.png,hole,1,0.5\n");
  adfw::write_file_atomic(dir / "curves.json",
                          R"({"image": {"threshold": [0.9, 0.7, 0.5, 0.1], "fpr": [0, 0.5, 0.5, 1],
                              "tpr": [0.5, 0.5, 1, 1], "precision": [1, 0.5, 0.67, 0.5],
                              "positives": 2, "negatives": 2}, "fpr_limit": 0.3})");
  adfw::write_file_atomic(dir / "train_log.csv",
                          "step,epoch,lr,loss,l2\n1,1,0.1,2.0,1.0\n2,1,0.1,1.0,nan\n3,2,0.01,0.5,0.2\n");
  return dir;
}

}  // namespace

TEST_CASE("run report: sections, charts and escaping from the run's files", "[report]") {
  const fs::path dir = fake_run("report_ok");
  const std::string html = adfw::report::run_report_html(dir);
  CHECK(html.find("<title>demo&lt;x&gt; r1") != std::string::npos);  // escaped, never raw markup
  CHECK(html.find("75.0 %") != std::string::npos);
  CHECK(html.find("80.0 %") != std::string::npos);  // the reference of the run's category
  CHECK(html.find("-5.0") != std::string::npos);
  CHECK(count(html, "<canvas id=") == 5);  // image ROC + PR, defect types, loss, lr
  CHECK(html.find("id=\"image-roc\"") != std::string::npos);
  CHECK(html.find("id=\"train-lr-0\"") != std::string::npos);
  CHECK(html.find("No gallery/") != std::string::npos);
  CHECK(html.find("Chart.js v4") != std::string::npos);  // the library is inlined
  CHECK(html.find("<script src=") == std::string::npos);
  CHECK(html.find("\"a,1.png\"") == std::string::npos);  // the quoted CSV field was parsed, not shown raw

  adfw::report::RunReportOptions o;
  o.max_train_points = 2;
  CHECK(adfw::report::run_report_html(dir, o).find("mean over 2 steps per point") != std::string::npos);
  CHECK(adfw::report::write_run_report(dir) == dir / "report.html");
  CHECK(fs::file_size(dir / "report.html") > 100000);
}

TEST_CASE("run report: missing and malformed files are errors naming the file", "[report]") {
  const fs::path empty = adfw::test::temp_dir("report_empty");
  CHECK_THROWS_WITH(adfw::report::run_report_html(empty),
                    Catch::Contains((empty / "metrics.json").string()) && Catch::Contains("does not exist"));
  const fs::path dir = fake_run("report_bad");
  adfw::write_file_atomic(dir / "train_log.csv", "step,epoch,lr,loss\n1,1,0.1,abc\n");
  CHECK_THROWS_WITH(adfw::report::run_report_html(dir),
                    Catch::Contains("train_log.csv:2") && Catch::Contains("'abc' is not a number"));
  adfw::write_file_atomic(dir / "train_log.csv", "step,epoch,lr,loss\n1,1,0.1,1\n");
  adfw::write_file_atomic(dir / "curves.json", "{not json");
  CHECK_THROWS_WITH(adfw::report::run_report_html(dir), Catch::Contains("curves.json: invalid JSON"));
  adfw::write_file_atomic(dir / "curves.json", "{}");
  adfw::write_file_atomic(dir / "per_image.csv", "file,score\nx,1\n");
  CHECK_THROWS_WITH(adfw::report::run_report_html(dir),
                    Catch::Contains("per_image.csv") && Catch::Contains("path,defect_type,label,score"));
}
