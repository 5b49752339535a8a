// Result tables against hand-computed means and sample stds, missing cells, references,
// bold bests and the four output formats (LaTeX checked for balance and escaping).
#include <fstream>
#include <regex>

#include "adfw/core/error.hpp"
#include "adfw/engine/report.hpp"
#include "adfw/engine/table.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;
using namespace adfw::table;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

const char* kReference = R"("reference": {"source": "Paper X, Table 1", "mean": {"image_auroc": 0.80},
  "categories": {"bottle": {"image_auroc": 0.95}}, "reproduces": {"paper": "Paper X", "table": "Table 1"}})";

/// A finished run folder as the engine writes it.
void fake_run(const fs::path& root, const std::string& id, const std::string& category, const std::string& ratio,
              int seed, double auroc, const std::string& state = "done", bool with_pixel = false) {
  const fs::path d = root / "exp" / id;
  write(d / "config.toml", "name = \"exp\"\nseed = " + std::to_string(seed) + "\n[data]\ncategory = \"" + category +
                               "\"\n[method.coreset]\nratio = " + ratio + "\n");
  write(d / "status.json", "{\"state\": \"" + state + "\"}");
  if (state != "done") return;
  std::string metrics = "\"image_auroc\": " + std::to_string(auroc);
  if (with_pixel) metrics += ", \"pixel_auroc\": 0.97";
  write(d / "metrics.json", "{\"metrics\": {" + metrics + "}, \"timing\": {\"fit_seconds\": " +
                                std::to_string(10 + seed) + "}, " + kReference + "}");
}

/// bottle x {0.1, 0.01} x seeds {0, 1, 2}, cable x {0.1} x seeds (cable x 0.01 all failed).
fs::path fixture() {
  const fs::path root = adfw::test::temp_dir("table_fixture");
  fake_run(root, "b1s0", "bottle", "0.1", 0, 0.90);
  fake_run(root, "b1s1", "bottle", "0.1", 1, 0.92);
  fake_run(root, "b1s2", "bottle", "0.1", 2, 0.94);
  fake_run(root, "b2s0", "bottle", "0.01", 0, 0.80);
  fake_run(root, "b2s1", "bottle", "0.01", 1, 0.84);
  fake_run(root, "b2s2", "bottle", "0.01", 2, 0.0, "failed");
  fake_run(root, "c1s0", "cable", "0.1", 0, 0.70);
  fake_run(root, "c1s1", "cable", "0.1", 1, 0.71);
  fake_run(root, "c1s2", "cable", "0.1", 2, 0.72);
  fake_run(root, "c2s0", "cable", "0.01", 0, 0.0, "failed");
  // A retired attempt and a heatmap folder are not runs.
  write(root / "exp" / ".attempts" / "c2s0.1" / "status.json", "{\"state\": \"done\"}");
  write(root / "exp" / "b1s0" / "maps" / "x.png", "");
  return root;
}

TableOptions options() {
  TableOptions o;
  o.rows = "data.category";
  o.cols = "method.coreset.ratio";
  o.metrics = {"image_auroc"};
  return o;
}

}  // namespace

TEST_CASE("table: mean and sample std per cell, missing cells, mean row over seeds", "[table]") {
  const RunSet set = load_runs(fixture());
  REQUIRE(set.runs.size() == 10);
  const Table t = build_table(set, options());
  REQUIRE(t.rows.size() == 2);
  REQUIRE(t.columns == std::vector<std::string>{"0.1", "0.01"});
  CHECK(t.rows[0].label == "bottle");
  const Cell& b1 = t.rows[0].cells[0][0];
  CHECK(b1.n == 3);
  CHECK(b1.mean == Approx(0.92));
  CHECK(b1.std == Approx(0.02));  // deviations -0.02, 0, 0.02: sqrt(0.0008 / 2)
  const Cell& b2 = t.rows[0].cells[0][1];
  CHECK(b2.n == 2);
  CHECK(b2.mean == Approx(0.82));
  CHECK(b2.std == Approx(std::sqrt(0.0008)));  // deviations -0.02, 0.02 over n - 1 = 1
  CHECK(t.rows[1].cells[0][0].std == Approx(0.01));
  CHECK_FALSE(t.rows[1].cells[0][1].present());
  CHECK(t.common_n == 3);
  CHECK(t.runs_used == 8);
  CHECK(t.runs_missing == 2);
  // Mean row: (0.92 + 0.71) / 2; per-seed means 0.80, 0.815, 0.83 -> sample std 0.015.
  REQUIRE(t.mean);
  CHECK(t.mean->cells[0][0].mean == Approx(0.815));
  CHECK(t.mean->cells[0][0].std == Approx(0.015));
  CHECK(t.mean->cells[0][0].n == 3);
  CHECK_FALSE(t.mean->cells[0][1].present());  // cable x 0.01 is missing: no mean over a partial column
  // Bests and references.
  CHECK(t.rows[0].best[0] == std::vector<bool>{true, false});
  CHECK(t.rows[1].best[0] == std::vector<bool>{true, false});
  CHECK(*t.rows[0].reference[0] == Approx(0.95));
  CHECK_FALSE(t.rows[1].reference[0]);
  CHECK(*t.mean->reference[0] == Approx(0.80));
  CHECK(t.reference_source == "Paper X, Table 1");
  CHECK(t.caption == "Reproduces Table 1 of Paper X.");
}

TEST_CASE("table: runs whose weights were chosen on the test set are flagged", "[table]") {
  const fs::path root = fixture();
  CHECK(build_table(load_runs(root), options()).notes.size() == 1);  // only the missing-runs note
  write(root / "exp" / "b1s1" / "metrics.json",
        "{\"metrics\": {\"image_auroc\": 0.99}, \"protocol\": {\"selected_on_test\": true}}");
  const Table t = build_table(load_runs(root), options());
  bool flagged = false;
  for (const auto& n : t.notes) flagged |= n.find("1 of 8 run(s) chose their weights on the test set") != std::string::npos;
  CHECK(flagged);
}

TEST_CASE("table: markdown shows percentages, bold bests, n, reference and difference", "[table]") {
  const RunSet set = load_runs(fixture());
  const TableOptions o = options();
  const std::string md = render(build_table(set, o), o, "md");
  CHECK_THAT(md, Catch::Contains("**Reproduces Table 1 of Paper X.**"));
  CHECK_THAT(md, Catch::Contains("| category | ratio=0.1 | ratio=0.01 | image_auroc ref | image_auroc Δ best |"));
  CHECK_THAT(md, Catch::Contains("| bottle | **92.0 ± 2.0** | 82.0 ± 2.8 (n=2) | 95.0 | -3.0 |"));
  CHECK_THAT(md, Catch::Contains("| cable | **71.0 ± 1.0** | — | — | — |"));
  CHECK_THAT(md, Catch::Contains("| **Mean** | **81.5 ± 1.5** | — | 80.0 | +1.5 |"));
  CHECK_THAT(md, Catch::Contains("n=3 runs (seeds) per cell"));
  CHECK_THAT(md, Catch::Contains("ref: Paper X, Table 1"));
  // Missing is never zero.
  CHECK_THAT(md, !Catch::Contains("0.0 ±") && !Catch::Contains("| 0.0 |"));
}

TEST_CASE("table: raw values, filters, other metrics and formats", "[table]") {
  const RunSet set = load_runs(fixture());
  TableOptions o = options();
  o.percent = false;
  o.where = {"method.coreset.ratio=0.1"};
  o.cols = "";
  o.metrics = {"image_auroc", "timing.fit_seconds", "pixel_auroc"};
  o.reference = false;
  const Table t = build_table(set, o);
  REQUIRE(t.columns.size() == 1);
  CHECK(t.rows[0].cells[1][0].mean == Approx(11.0));  // fit seconds 10, 11, 12
  CHECK_FALSE(t.higher_better[1]);
  CHECK_FALSE(t.rows[0].cells[2][0].present());  // no pixel metric in these runs
  const std::string csv = render(t, o, "csv");
  CHECK_THAT(csv, Catch::StartsWith("category,image_auroc,timing.fit_seconds,pixel_auroc\n"));
  CHECK_THAT(csv, Catch::Contains("bottle,0.920 ± 0.020,11.000 ± 1.000,—\n"));
  CHECK_THAT(csv, Catch::Contains("Mean,0.815 ± 0.015,"));

  const auto j = nlohmann::json::parse(render(t, o, "json"));
  CHECK(j["rows"][0]["cells"]["image_auroc"][""]["mean"].get<double>() == Approx(0.92));
  CHECK(j["rows"][0]["cells"]["image_auroc"][""]["n"] == 3);
  CHECK(j["rows"][0]["cells"]["pixel_auroc"][""].is_null());
  CHECK(j["mean"]["cells"]["image_auroc"][""]["std"].get<double>() == Approx(0.015));

  // Without a filter on the ratio and without it as columns, cells would mix the two ratios:
  // the table says so.
  o.where.clear();
  RunSet with_axes = set;
  with_axes.axis_keys = {"data.category", "method.coreset.ratio", "seed"};
  const Table mixed = build_table(with_axes, o);
  REQUIRE_FALSE(mixed.notes.empty());
  CHECK_THAT(mixed.notes[0], Catch::Contains("average over method.coreset.ratio"));

  CHECK_THROWS_AS(render(t, o, "html"), ConfigError);
  o.where = {"data.category=screw"};
  CHECK_THROWS_WITH(build_table(set, o), Catch::Contains("no runs found"));
}

TEST_CASE("table: LaTeX is booktabs, balanced and escaped", "[table]") {
  const fs::path root = adfw::test::temp_dir("table_latex");
  fake_run(root, "a0", "metal_nut", "0.1", 0, 0.5);
  fake_run(root, "a1", "metal_nut", "0.01", 0, 0.6);
  fake_run(root, "b0", "A&B 50% #1 {x} ~y^z \\\\w $", "0.1", 0, 0.7);  // C++ "\\\\" = TOML "\\" = one backslash
  TableOptions o = options();
  o.metrics = {"image_auroc", "pixel_auroc"};
  const std::string tex = render(build_table(load_runs(root), o), o, "latex");
  INFO(tex);
  CHECK_THAT(tex, Catch::Contains("metal\\_nut"));
  CHECK_THAT(tex, Catch::Contains("A\\&B 50\\% \\#1 \\{x\\} \\textasciitilde{}y\\textasciicircum{}z \\textbackslash{}w \\$"));
  CHECK_THAT(tex, Catch::Contains("\\toprule") && Catch::Contains("\\midrule") && Catch::Contains("\\bottomrule"));
  // image_auroc: two ratios + ref + difference; pixel_auroc has no reference numbers: two ratios.
  CHECK_THAT(tex, Catch::Contains("\\multicolumn{4}{c}{image\\_auroc}") && Catch::Contains("\\cmidrule(lr){2-5}"));
  CHECK_THAT(tex, Catch::Contains("\\multicolumn{2}{c}{pixel\\_auroc}") && Catch::Contains("\\cmidrule(lr){6-7}"));
  CHECK_THAT(tex, Catch::Contains("$-20.0$"));
  CHECK_THAT(tex, Catch::Contains("\\textbf{60.0}") && Catch::Contains("---"));
  CHECK_THAT(tex, Catch::Contains("\\caption{Reproduces Table 1 of Paper X.}"));

  // Balanced braces (ignoring escaped ones) and \begin/\end pairs properly nested.
  int depth = 0;
  for (std::size_t i = 0; i < tex.size(); ++i) {
    if (tex[i] == '\\' && i + 1 < tex.size() && (tex[i + 1] == '{' || tex[i + 1] == '}' || tex[i + 1] == '\\')) {
      ++i;
      continue;
    }
    if (tex[i] == '%' && (i == 0 || tex[i - 1] != '\\')) {  // comment to end of line
      while (i < tex.size() && tex[i] != '\n') ++i;
      continue;
    }
    if (tex[i] == '{') ++depth;
    if (tex[i] == '}') --depth;
    REQUIRE(depth >= 0);
  }
  CHECK(depth == 0);
  std::vector<std::string> stack;
  const std::regex env(R"(\\(begin|end)\{([a-z]+)\})");
  for (auto it = std::sregex_iterator(tex.begin(), tex.end(), env); it != std::sregex_iterator(); ++it) {
    if ((*it)[1] == "begin") {
      stack.push_back((*it)[2]);
    } else {
      REQUIRE_FALSE(stack.empty());
      CHECK(stack.back() == (*it)[2]);
      stack.pop_back();
    }
  }
  CHECK(stack.empty());
  // Every body row has as many cells as the column spec: 1 + (2 ratios + ref + Δ) + 2 ratios = 7.
  const std::regex spec(R"(\\begin\{tabular\}\{(l[r]+)\})");
  std::smatch m;
  REQUIRE(std::regex_search(tex, m, spec));
  const std::size_t cols = m[1].str().size();
  CHECK(cols == 7);
  std::istringstream lines(tex);
  int body_rows = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.size() < 3 || line.compare(line.size() - 2, 2, "\\\\") != 0 || line.find("multicolumn") != std::string::npos)
      continue;
    std::size_t amps = 0;
    for (std::size_t i = 0; i < line.size(); ++i)
      if (line[i] == '&' && (i == 0 || line[i - 1] != '\\')) ++amps;
    CHECK(amps == cols - 1);
    ++body_rows;
  }
  CHECK(body_rows == 4);  // header, two rows, mean
}

namespace {

/// A finished run of a supervision table: N pixel-labelled anomalies as the engine records it.
void supervision_run(const fs::path& root, const std::string& id, const std::string& method, const std::string& n,
                     const std::string& supervision, double auroc, const std::string& state = "done") {
  const fs::path d = root / "sup" / id;
  write(d / "config.toml", "name = \"sup\"\nseed = 0\n[method]\ntype = \"" + method + "\"\n");
  write(d / "status.json", "{\"state\": \"" + state + "\"}");
  if (state != "done") return;
  write(d / "metrics.json", "{\"metrics\": {\"image_auroc\": " + std::to_string(auroc) +
                                "}, \"protocol\": {\"n_pixel_labelled\": " + n + ", \"supervision\": \"" +
                                supervision + "\"}}");
}

}  // namespace

TEST_CASE("table: rows and columns from the runs' protocol, numbers in ascending order", "[table]") {
  const fs::path root = adfw::test::temp_dir("table_supervision");
  // Folder order (sorted by name) puts N = 196 first and "unsupervised" in the middle.
  supervision_run(root, "a_seg196", "segdec", "196", "fully supervised", 0.90);
  supervision_run(root, "b_ssn_unsup", "supersimplenet", "\"unsupervised\"", "unsupervised", 0.70);
  supervision_run(root, "c_seg0", "segdec", "0", "weakly supervised", 0.60);
  supervision_run(root, "d_seg49", "segdec", "49", "mixed supervision", 0.80);
  supervision_run(root, "e_ssn49", "supersimplenet", "49", "mixed supervision", 0.75);
  supervision_run(root, "f_ssn0", "supersimplenet", "0", "weakly supervised", 0.0, "running");
  const RunSet set = load_runs(root);
  TableOptions o;
  o.rows = "protocol.n_pixel_labelled";
  o.cols = "method.type";
  o.metrics = {"image_auroc"};
  const Table t = build_table(set, o);
  std::vector<std::string> rows;
  for (const auto& r : t.rows) rows.push_back(r.label);
  CHECK(rows == std::vector<std::string>{"0", "49", "196", "unsupervised"});
  CHECK(t.columns == std::vector<std::string>{"segdec", "supersimplenet"});
  CHECK(t.rows[0].cells[0][0].mean == Approx(0.60));
  CHECK_FALSE(t.rows[0].cells[0][1].present());  // its run has no results yet: missing, not a row
  CHECK(t.rows[1].cells[0][1].mean == Approx(0.75));
  CHECK(t.rows[3].cells[0][1].mean == Approx(0.70));
  CHECK(t.runs_used == 5);
  CHECK(t.runs_missing == 1);

  // Several keys joined by ',' label a cell with both values.
  o.rows = "method.type,protocol.supervision";
  o.cols = "";
  const Table joined = build_table(set, o);
  std::vector<std::string> labels;
  for (const auto& r : joined.rows) labels.push_back(r.label);
  CHECK(labels == std::vector<std::string>{"segdec · fully supervised", "supersimplenet · unsupervised",
                                           "segdec · weakly supervised", "segdec · mixed supervision",
                                           "supersimplenet · mixed supervision"});
  // A protocol field the runs do not record is "(unset)", as an unset config key is.
  o.rows = "protocol.no_such_field";
  CHECK(build_table(set, o).rows.front().label == "(unset)");

  // The sweep page plots each metric against the numeric rows, one line per column, and draws
  // the row that is not a number as a dashed level.
  o.rows = "protocol.n_pixel_labelled";
  o.cols = "method.type";
  const std::string html = adfw::report::sweep_report_html(set, o, root);
  CHECK(html.find("id=\"against\"") != std::string::npos);
  CHECK(html.find("\"id\":\"against-0\"") != std::string::npos);
  CHECK(html.find("supersimplenet (unsupervised)") != std::string::npos);
  CHECK(html.find("\"x\":196") != std::string::npos);
}
