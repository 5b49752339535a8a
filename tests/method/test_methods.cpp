// Every registered method, built from TOML through its registry entry, fits on tiny data and
// predicts maps of the input's size with finite values; on a trivially separable set (a smooth
// grey surface; anomalies are a saturated square) every anomalous image scores above every
// normal one and its map is higher inside the square than outside. Its fitted state, saved and
// loaded into a fresh instance, gives the same maps bit for bit.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/data/loader.hpp"
#include "adfw/method/method.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;

namespace {

/// A smooth grey surface with mild low-frequency variation (what a normal image looks like).
cv::Mat surface(int side, std::mt19937& rng) {
  cv::Mat noise(side / 4, side / 4, CV_32F);
  cv::randn(noise, 0.0, 10.0);
  cv::Mat up;
  cv::resize(noise, up, {side, side}, 0, 0, cv::INTER_CUBIC);
  up += 120.0 + static_cast<double>(rng() % 8);
  cv::Mat u8, bgr;
  up.convertTo(u8, CV_8U);
  cv::cvtColor(u8, bgr, cv::COLOR_GRAY2BGR);
  return bgr;
}

struct TinySet {
  std::vector<SampleInfo> train, test;
};

/// 16 normal training images (plus `labelled` anomalous ones with pixel masks, for supervised
/// regimes); 4 normal and 4 anomalous test images with masks.
TinySet make_tiny_set(const fs::path& root, int side, int labelled = 0) {
  std::mt19937 rng(11);
  TinySet s;
  auto write = [](const fs::path& p, const cv::Mat& m) {
    fs::create_directories(p.parent_path());
    REQUIRE(cv::imwrite(p.string(), m));
  };
  for (int i = 0; i < 16; ++i) {
    const fs::path p = root / "train" / (std::to_string(i) + ".png");
    write(p, surface(side, rng));
    s.train.push_back({p.string(), "", 0, "good", Split::train, Supervision::normal, "tiny"});
  }
  for (int i = 0; i < 8 + labelled; ++i) {
    cv::Mat img = surface(side, rng);
    const bool train = i >= 8;
    const fs::path p = root / (train ? "train_defect" : "test") / (std::to_string(i) + ".png");
    if (i < 4) {
      write(p, img);
      s.test.push_back({p.string(), "", 0, "good", Split::test, Supervision::normal, "tiny"});
      continue;
    }
    const int a = side / 4;
    const cv::Rect r(static_cast<int>(rng() % (side - a)), static_cast<int>(rng() % (side - a)), a, a);
    cv::rectangle(img, r, cv::Scalar(250, 250, 250), cv::FILLED);
    cv::Mat mask = cv::Mat::zeros(side, side, CV_8U);
    cv::rectangle(mask, r, cv::Scalar(255), cv::FILLED);
    const fs::path m = root / "mask" / (std::to_string(i) + ".png");
    write(p, img);
    write(m, mask);
    (train ? s.train : s.test)
        .push_back({p.string(), m.string(), 1, "square", train ? Split::train : Split::test, Supervision::pixel_mask,
                    "tiny"});
  }
  return s;
}

struct MethodHolder {
  Slot<Method> method;
  template <class V>
  void fields(V& v) {
    v("method", method, "the method under test");
  }
};

struct Case {
  std::string name;
  int side;
  std::string toml;   ///< the [method] table
  int labelled = 0;   ///< anomalous training images with pixel masks (supervised regimes)
};

const std::vector<Case>& cases() {
  // Small widths and few steps so every case runs in seconds; random backbone weights (no
  // downloads on a test machine).
  static const std::vector<Case> c = {
      {"patchcore", 64,
       "type = 'patchcore'\n[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\n"
       "layers = ['layer1', 'layer2']\n[coreset]\nratio = 0.25\n"},
      {"padim", 64,
       "type = 'padim'\n[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\n"
       "layers = ['layer1', 'layer2']\n"},
      {"anomalydino", 56,
       "type = 'anomalydino'\nshots = 4\n[backbone]\ntype = 'dinov2'\narch = 'dinov2_vits14'\nweights = 'random'\n"
       "depth = 1\nnorm = true\nreshape = true\n"},
      {"draem", 64,
       "type = 'draem'\n[reconstructive]\ntype = 'draem_reconstructive'\nbase_width = 8\n"
       "[discriminative]\ntype = 'draem_discriminative'\nbase_width = 8\n[synthesizer]\ntype = 'perlin_self'\n"
       "[trainer]\nepochs = 20\nbatch_size = 4\n[trainer.optimizer]\nkind = 'adam'\nlr = 1e-3\n"
       "[image_score]\ntype = 'avgpool_max'\nkernel = 5\n"},
      {"riad", 32,
       "type = 'riad'\n[network]\ntype = 'riad_unet'\nbase_width = 8\n[trainer]\nepochs = 20\nbatch_size = 4\n"
       "[trainer.optimizer]\nkind = 'adam'\nlr = 1e-3\n"},
      // SuperSimpleNet in its supervised regime (train.py's supervised settings: labelled anomalies
      // with masks, no stop-gradient, no overlap of synthetic and real anomalies). Unsupervised, at
      // this budget its classification head does not yet rank the squares first; SimpleNet below
      // covers the unsupervised feature-noise path.
      {"supersimplenet", 64,
       "type = 'supersimplenet'\nstop_grad = false\n[backbone]\ntype = 'mobilenet_v1'\nweights = '@MOBILENET@'\n"
       "layers = ['block4', 'block10']\n[adaptor]\ntype = 'feature_adaptor'\n"
       "[segmentation]\ntype = 'ssn_segmentation_head'\nhidden = 64\n"
       "[classification]\ntype = 'ssn_classification_head'\n"
       "[noise]\ntype = 'supersimplenet'\nnoise_std = 0.25\nbad = true\noverlap = false\n"
       "[trainer]\nepochs = 10\nbatch_size = 8\n[trainer.optimizer]\nkind = 'adamw'\nlr = 1e-3\n",
       4},
      {"simplenet", 64,
       "type = 'supersimplenet'\nupscale = false\nclassify = false\naggregation = 'simplenet'\n"
       "[embedding]\nlayer_dim = 768\ntarget_dim = 768\n[backbone]\ntype = 'mobilenet_v1'\n"
       "weights = '@MOBILENET@'\nlayers = ['block4', 'block10']\n[adaptor]\ntype = 'feature_adaptor'\n"
       "[noise]\ntype = 'simplenet'\nnoise_std = 0.25\n[segmentation]\n"
       "type = 'simplenet_discriminator'\n[[losses]]\ntype = 'truncated_l1'\nmargin = 0.5\nprediction = 'segmentation'\n"
       "target = 'mask'\n[image_score]\ntype = 'max'\nmap = 'raw'\n"
       "[trainer]\nepochs = 10\nbatch_size = 8\n[trainer.optimizer]\nkind = 'adamw'\nlr = 1e-3\n"},
      {"transfusion", 32,
       "type = 'transfusion'\n[network]\ntype = 'diffusion_unet'\nbase = 32\nmultipliers = [1, 2]\n"
       "attention_levels = [1]\nres_blocks = 1\n[synthesizer]\ntype = 'transparency'\nfolder = ''\n"
       "texture_probability = 0.0\n[trainer]\nepochs = 50\nbatch_size = 4\n[trainer.optimizer]\nkind = 'adamw'\n"
       "lr = 1e-3\n"},
      // EfficientAD needs 256 px (its autoencoder's fixed sizes); narrow networks, a random teacher.
      {"efficientad", 256,
       "type = 'efficientad'\nout_channels = 16\npdn_width = 8\nae_width = 4\nteacher_weights = 'random'\n"
       "[trainer]\nsteps = 150\n[trainer.optimizer]\nlr = 1e-3\n"},
  };
  return c;
}

/// Builds method `name` from its TOML, fits it on the tiny training set and checks the
/// predictions on the tiny test set.
void fit_predict_separates(const std::string& name) {
  test::load_builtin_plugins();
  const auto it = std::find_if(cases().begin(), cases().end(), [&](const Case& c) { return c.name == name; });
  REQUIRE(it != cases().end());
  const Case& c = *it;
  std::string text = c.toml;
  if (const auto at = text.find("@MOBILENET@"); at != std::string::npos) {
    // Feature-noise methods learn a boundary around the normal features: they need features in
    // which the square is far from the surface, as ImageNet ones are (random ones are not).
    ADFW_REQUIRE_SHARED(weights, "weights/mobilenet_v1_1.0_224_imagenet.safetensors");
    text.replace(at, std::string("@MOBILENET@").size(), weights.string());
  }
  const TinySet data = make_tiny_set(test::temp_dir("methods_" + c.name), c.side, c.labelled);
  MethodHolder h;
  toml::table root;
  root.insert("method", toml::parse(text));
  read_options(h, root, "");
  std::unique_ptr<Method> m = h.method.make();

  TransformOptions t;
  t.resize = c.side;
  t.normalize = m->normalization().empty() ? "none" : m->normalization();
  RunContext run;
  run.seeds.experiment = 3;
  run.loader_workers = 0;
  FitContext fit{run, data.train, {}, {}, t};
  m->fit(fit);

  LoaderOptions lo;
  lo.batch_size = 8;
  lo.num_workers = 0;
  Loader loader(data.test, t, lo);
  auto batch = loader.next();
  REQUIRE(batch);
  const Prediction p = m->predict(*batch, run);
  REQUIRE(p.maps.sizes() == torch::IntArrayRef({8, 1, c.side, c.side}));
  REQUIRE(p.scores.sizes() == torch::IntArrayRef({8}));
  CHECK(torch::isfinite(p.maps).all().item<bool>());
  CHECK(torch::isfinite(p.scores).all().item<bool>());

  const auto s = p.scores.accessor<float, 1>();
  const float max_normal = std::max({s[0], s[1], s[2], s[3]});
  const float min_anomalous = std::min({s[4], s[5], s[6], s[7]});
  INFO(c.name << ": image scores (4 normal, then 4 anomalous) " << p.scores.reshape({1, -1}));
  CHECK(min_anomalous > max_normal);
  for (int i = 4; i < 8; ++i) {
    const torch::Tensor mask = batch->masks[i][0] > 0.5;
    const torch::Tensor map = p.maps[i][0];
    const double inside = map.masked_select(mask).mean().item<double>();
    const double outside = map.masked_select(~mask).mean().item<double>();
    INFO(c.name << ": image " << i << " mean map inside the square " << inside << ", outside " << outside);
    CHECK(inside > outside);
  }

  // The fitted state, through a model file, into a fresh instance of the same configuration: the
  // same maps and scores, bit for bit, without fitting.
  const fs::path file = test::temp_dir("methods_state_" + c.name) / "model.safetensors";
  save_state_dict(m->state(), file);
  std::unique_ptr<Method> loaded = h.method.make();
  loaded->load_state(load_state_dict(file), run, file.string());
  const Prediction q = loaded->predict(*batch, run);
  CHECK(torch::equal(q.maps, p.maps));
  CHECK(torch::equal(q.scores, p.scores));

  // Strict: a state with an entry missing and one too many is refused, naming both and the file.
  StateDict broken = load_state_dict(file);
  const std::string dropped = broken.begin()->first;
  broken.erase(broken.begin());
  broken["not_a_part.weight"] = torch::zeros({1});
  std::unique_ptr<Method> refused = h.method.make();
  try {
    refused->load_state(broken, run, "broken.safetensors");
    FAIL("load_state accepted a state with a missing and an unexpected entry");
  } catch (const Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("broken.safetensors") != std::string::npos);
    CHECK(what.find(dropped) != std::string::npos);
    CHECK(what.find("not_a_part.weight") != std::string::npos);
  }
}

}  // namespace

TEST_CASE("patchcore: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("patchcore"); }
TEST_CASE("padim: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("padim"); }
TEST_CASE("anomalydino: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("anomalydino"); }
TEST_CASE("draem: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("draem"); }
TEST_CASE("riad: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("riad"); }
TEST_CASE("supersimplenet: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("supersimplenet"); }
TEST_CASE("simplenet: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("simplenet"); }
TEST_CASE("transfusion: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("transfusion"); }
TEST_CASE("efficientad: fit + predict on tiny data separates a white square", "[method-level]") { fit_predict_separates("efficientad"); }
