// Every registered component of every family is built through its registry entry and run on a
// tiny input. The recipes below say how, per family and name; a component registered without a
// recipe fails the test, so a new part is tested by being registered (and given its recipe here).
#include <fstream>
#include <functional>
#include <map>
#include <random>

#include <opencv2/imgcodecs.hpp>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/data/dataset.hpp"
#include "adfw/metric/metric.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/method/method.hpp"
#include "adfw/synth/feature_noise.hpp"
#include "adfw/synth/latent_anomaly.hpp"
#include "adfw/synth/synthesizer.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/network.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;

namespace {

bool finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

void write_png(const fs::path& p, const cv::Mat& m) {
  fs::create_directories(p.parent_path());
  REQUIRE(cv::imwrite(p.string(), m));
}

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s;
}

/// A side x side image: grey noise, with a white square when `square`.
cv::Mat image(int side, bool square, std::mt19937& rng) {
  cv::Mat m(side, side, CV_8UC3);
  cv::randu(m, cv::Scalar::all(90 + rng() % 20), cv::Scalar::all(150));
  if (square) m(cv::Rect(side / 4, side / 4, side / 4, side / 4)).setTo(cv::Scalar::all(250));
  return m;
}

cv::Mat mask(int side, bool square) {
  cv::Mat m = cv::Mat::zeros(side, side, CV_8U);
  if (square) m(cv::Rect(side / 4, side / 4, side / 4, side / 4)).setTo(255);
  return m;
}

/// Tiny on-disk material shared by the recipes: an image folder and a 4 + 4 sample split.
struct Material {
  fs::path root;
  std::vector<SampleInfo> train, test;
  std::map<int, std::pair<std::vector<SampleInfo>, std::vector<SampleInfo>>> by_side;

  static Material& get() {
    static Material m = make();
    return m;
  }
  static Material make() {
    Material m;
    m.root = test::temp_dir("registry");
    return m;
  }
  /// 4 normal training images, 2 normal and 2 anomalous (with masks) test images of `side` px.
  const std::pair<std::vector<SampleInfo>, std::vector<SampleInfo>>& split(int side) {
    auto it = by_side.find(side);
    if (it != by_side.end()) return it->second;
    std::mt19937 rng(side);
    const fs::path dir = root / ("split" + std::to_string(side));
    std::vector<SampleInfo> tr, te;
    for (int i = 0; i < 4; ++i) {
      const fs::path p = dir / "train" / (std::to_string(i) + ".png");
      write_png(p, image(side, false, rng));
      tr.push_back({p.string(), "", 0, "good", Split::train, Supervision::normal, "tiny"});
    }
    for (int i = 0; i < 4; ++i) {
      const bool bad = i >= 2;
      const fs::path p = dir / "test" / (std::to_string(i) + ".png");
      const fs::path mp = dir / "mask" / (std::to_string(i) + ".png");
      write_png(p, image(side, bad, rng));
      write_png(mp, mask(side, bad));
      te.push_back({p.string(), mp.string(), bad ? 1 : 0, bad ? "square" : "good", Split::test,
                    bad ? Supervision::pixel_mask : Supervision::normal, "tiny"});
    }
    return by_side.emplace(side, std::make_pair(tr, te)).first->second;
  }
  fs::path folder(int side) {
    split(side);
    return root / ("split" + std::to_string(side)) / "train";
  }
};

template <class I>
std::unique_ptr<I> make(const std::string& name, const std::string& toml_text = "") {
  return Registry<I>::instance().make(name, toml::parse(toml_text), name);
}

using Recipe = std::function<void(const std::string& name)>;
using FamilyRecipes = std::map<std::string, Recipe>;

// ---------------------------------------------------------------------------------------------
// backbone: every tap's declared channels and stride (TapInfo) match what forward gives.

Recipe backbone_recipe(const std::string& toml_text) {
  return [toml_text](const std::string& name) {
    auto b = make<Backbone>(name, toml_text);
    const int64_t side = 56;  // a multiple of 14 (ViT patches)
    const auto out = b->forward(b->normalization().apply(torch::rand({1, 3, side, side}) * 255));
    for (const auto& tap : b->selected_taps()) {
      INFO(name << " tap " << tap);
      REQUIRE(out.count(tap));
      const torch::Tensor& t = out.at(tap);
      const TapInfo info = b->tap_info(tap);
      CHECK(finite(t));
      CHECK(t.size(1) == info.channels);
      if (info.spatial()) {
        REQUIRE(t.dim() == 4);
        CHECK(t.size(2) == (side + info.stride - 1) / info.stride);
        CHECK(t.size(3) == (side + info.stride - 1) / info.stride);
      }
    }
  };
}

FamilyRecipes backbones() {
  return {
      {"resnet", backbone_recipe("arch = 'resnet18'\nweights = 'random'\nblocks = [1, 1, 1, 1]\n"
                                 "layers = ['stem', 'layer1', 'layer2', 'layer3', 'layer4']")},
      {"dinov2", backbone_recipe("weights = 'random'\ndepth = 2\nlayers = ['blocks.0', 'blocks.1']")},
      {"mobilenet_v1", backbone_recipe("weights = 'random'\nlayers = ['stem', 'block0', 'block5', 'block11']")},
  };
}

// ---------------------------------------------------------------------------------------------
// dataset: a tiny layout of each kind lists non-empty train and test splits of existing files.

Recipe dataset_recipe(std::function<std::string()> setup) {
  return [setup](const std::string& name) {
    auto d = make<Dataset>(name, setup());
    const auto train = d->samples(Split::train);
    const auto test = d->samples(Split::test);
    CHECK(!train.empty());
    CHECK(!test.empty());
    for (const auto* split : {&train, &test})
      for (const auto& s : *split) CHECK(fs::exists(s.path));
    CHECK(!d->describe().empty());
  };
}

FamilyRecipes datasets() {
  auto& m = Material::get();
  return {
      {"demo", dataset_recipe([&m] {
         return "cache_dir = '" + (m.root / "demo").string() +
                "'\ncategories = ['grid']\nimage_size = 32\nn_train = 2\nn_test_good = 1\nn_test_defect = 1";
       })},
      {"mvtec", dataset_recipe([&m] {
         const fs::path r = m.root / "mvtec" / "tile";
         std::mt19937 rng(1);
         write_png(r / "train" / "good" / "000.png", image(16, false, rng));
         write_png(r / "test" / "good" / "000.png", image(16, false, rng));
         write_png(r / "test" / "crack" / "000.png", image(16, true, rng));
         write_png(r / "ground_truth" / "crack" / "000_mask.png", mask(16, true));
         return "root = '" + (m.root / "mvtec").string() + "'\ncategory = 'tile'";
       })},
      {"ksdd2", dataset_recipe([&m] {
         const fs::path r = m.root / "ksdd2";
         std::mt19937 rng(2);
         for (const char* split : {"train", "test"})
           for (int i = 0; i < 2; ++i) {
             const std::string id = std::to_string((split[1] == 'r' ? 10000 : 20000) + i);
             write_png(r / split / (id + ".png"), image(16, i == 1, rng));
             write_png(r / split / (id + "_GT.png"), mask(16, i == 1));
           }
         return "root = '" + r.string() + "'";
       })},
      {"visa", dataset_recipe([&m] {
         const fs::path r = m.root / "visa";
         std::mt19937 rng(3);
         write_png(r / "candle" / "Data" / "Images" / "Normal" / "0000.JPG", image(16, false, rng));
         write_png(r / "candle" / "Data" / "Images" / "Normal" / "0001.JPG", image(16, false, rng));
         write_png(r / "candle" / "Data" / "Images" / "Anomaly" / "000.JPG", image(16, true, rng));
         write_png(r / "candle" / "Data" / "Masks" / "Anomaly" / "000.png", mask(16, true));
         write_text(r / "split_csv" / "1cls.csv",
                    "object,split,label,image,mask\n"
                    "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
                    "candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n"
                    "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n");
         return "root = '" + r.string() + "'";
       })},
      {"manifest", dataset_recipe([&m] {
         const fs::path r = m.root / "manifest";
         std::mt19937 rng(4);
         write_png(r / "a.png", image(16, false, rng));
         write_png(r / "b.png", image(16, true, rng));
         write_png(r / "b_mask.png", mask(16, true));
         write_text(r / "list.csv", "path,label,split,mask\na.png,0,train,\nb.png,1,test,b_mask.png\n");
         return "path = '" + (r / "list.csv").string() + "'";
       })},
  };
}

// ---------------------------------------------------------------------------------------------
// feature_noise, latent_anomaly, synthesizer: shapes and finite values on tiny tensors.

Recipe feature_noise_recipe() {
  return [](const std::string& name) {
    auto n = make<FeatureNoise>(name);
    const torch::Tensor f = torch::randn({2, 8, 6, 6});
    std::mt19937_64 rng(1);
    const FeatureNoiseResult r = n->apply(f, rng);
    REQUIRE(r.features.dim() == 4);
    CHECK(r.features.size(1) == 8);
    CHECK(r.features.size(0) % 2 == 0);
    CHECK(r.mask.size(0) == r.features.size(0));
    CHECK(r.labels.size(0) == r.features.size(0));
    CHECK(finite(r.features));
  };
}

Recipe latent_anomaly_recipe() {
  return [](const std::string& name) {
    auto a = make<LatentAnomaly>(name);
    const int64_t n = 2, d = 4, h = 4, w = 4, k = 16;
    std::mt19937_64 rng(2);
    const LatentAnomalyDraws draws = a->draw(n, h * w, k, rng);
    const torch::Tensor features = torch::randn({n, d, h, w});
    const torch::Tensor codebook = torch::randn({k, d});
    const torch::Tensor m = torch::zeros({n, 1, 8, 8});
    m.slice(2, 0, 4).fill_(1);
    const LatentAnomalyResult r = a->apply(features, features, codebook, m, draws);
    CHECK(r.features.sizes() == features.sizes());
    CHECK(r.mask.sizes() == torch::IntArrayRef({n, 1, h, w}));
    CHECK(finite(r.features));
    const LatentLevels lv = a->draw_levels(n, rng);
    CHECK(lv.use_both.size(0) == n);
  };
}

Recipe synthesizer_recipe(const std::string& toml_text = "") {
  return [toml_text](const std::string& name) {
    std::string text = toml_text;
    if (const auto at = text.find("@FOLDER@"); at != std::string::npos)
      text.replace(at, 8, Material::get().folder(32).string());
    auto s = make<Synthesizer>(name, text);
    std::mt19937_64 rng(3);
    const torch::Tensor img = torch::rand({3, 32, 32});
    const SynthResult r = s->apply(img, rng);
    CHECK(r.image.sizes() == img.sizes());
    CHECK(r.mask.size(-1) == 32);
    CHECK(r.mask.size(-2) == 32);
    CHECK(finite(r.image));
  };
}

// ---------------------------------------------------------------------------------------------
// image_score, postprocess, loss, metric.

Recipe image_score_recipe() {
  return [](const std::string& name) {
    auto r = make<ImageScoreReducer>(name);
    if (r->uses_method_scores()) return;  // "method": the method's own scores, nothing to reduce
    const torch::Tensor s = r->reduce(torch::rand({2, 1, 24, 24}));
    CHECK(s.sizes() == torch::IntArrayRef({2}));
    CHECK(finite(s));
  };
}

Recipe postprocess_recipe() {
  return [](const std::string& name) {
    auto p = make<MapPostprocess>(name);
    const torch::Tensor maps = torch::rand({2, 1, 8, 8});
    const torch::Tensor out = p->apply(maps, {32, 32});
    REQUIRE(out.dim() == 4);
    CHECK(out.size(0) == 2);
    CHECK(out.size(1) == 1);
    CHECK(finite(out));
  };
}

Recipe loss_recipe(std::vector<int64_t> shape, bool probabilities = false) {
  return [shape, probabilities](const std::string& name) {
    auto l = make<Loss>(name);
    torch::manual_seed(4);
    torch::Tensor p = torch::rand(shape);
    if (!probabilities) p = p * 4 - 2;
    const torch::Tensor t = (torch::rand(shape) > 0.5).to(torch::kFloat32);
    const torch::Tensor v = l->forward(p, t);
    CHECK(v.numel() == 1);
    CHECK(finite(v));
    CHECK(v.item<double>() >= 0);
  };
}

Recipe metric_recipe() {
  return [](const std::string& name) {
    auto m = make<Metric>(name);
    const int64_t n = 4, h = 8, w = 8;
    std::vector<float> maps(n * h * w, 0.1f), scores = {0.1f, 0.2f, 0.8f, 0.9f};
    std::vector<uint8_t> masks(n * h * w, 0);
    std::vector<int64_t> labels = {0, 0, 1, 1};
    for (int64_t i = 2; i < n; ++i)
      for (int64_t y = 2; y < 5; ++y)
        for (int64_t x = 2; x < 5; ++x) {
          masks[(i * h + y) * w + x] = 1;
          maps[(i * h + y) * w + x] = 0.9f;
        }
    EvalData d{maps.data(), masks.data(), n, h, w, scores.data(), labels.data(), 1};
    const double v = compute_metric(*m, d);
    // A perfectly separated set: every metric is 1 (F1, AP, AUROC, normalised AUPRO).
    CHECK(v == Approx(1.0));
  };
}

// ---------------------------------------------------------------------------------------------
// network: tiny widths, one forward pass.

Recipe network_recipe(const std::string& toml_text, std::vector<int64_t> in, std::vector<int64_t> out,
                      std::function<torch::Tensor()> condition = {}) {
  return [=](const std::string& name) {
    torch::manual_seed(5);
    auto n = make<Network>(name, toml_text);
    n->module()->eval();
    torch::NoGradGuard ng;
    const torch::Tensor y = n->forward(torch::rand(in), condition ? condition() : torch::Tensor());
    CHECK(y.sizes() == torch::IntArrayRef(out));
    CHECK(finite(y));
  };
}

FamilyRecipes networks() {
  return {
      {"draem_reconstructive", network_recipe("base_width = 4", {1, 3, 32, 32}, {1, 3, 32, 32})},
      {"draem_discriminative", network_recipe("base_width = 4", {1, 6, 32, 32}, {1, 2, 32, 32})},
      {"riad_unet", network_recipe("base_width = 4", {1, 3, 32, 32}, {1, 3, 32, 32})},
      {"feature_adaptor", network_recipe("in_channels = 8", {2, 8, 4, 4}, {2, 8, 4, 4})},
      {"ssn_segmentation_head", network_recipe("in_channels = 8\nhidden = 8", {2, 8, 4, 4}, {2, 1, 4, 4})},
      {"ssn_classification_head", network_recipe("in_channels = 8\nhidden = 8", {2, 8, 4, 4}, {2},
                                                 [] { return torch::rand({2, 1, 4, 4}); })},
      {"simplenet_discriminator", network_recipe("in_channels = 8\nhidden = 8", {2, 8, 4, 4}, {2, 1, 4, 4})},
      {"diffusion_unet",
       network_recipe("base = 32\nmultipliers = [1, 2]\nattention_levels = [1]\nres_blocks = 1", {1, 4, 16, 16},
                      {1, 7, 16, 16}, [] { return torch::tensor({3}); })},
  };
}

// ---------------------------------------------------------------------------------------------
// method: fit on 4 tiny images (1 epoch, at most 2 steps), maps of the input size, finite values.

struct MethodHolder {
  Slot<Method> method;
  template <class V>
  void fields(V& v) {
    v("method", method, "the method under test");
  }
};

Recipe method_recipe(int side, const std::string& toml_text) {
  return [side, toml_text](const std::string& name) {
    auto& m = Material::get();
    const auto& [train, test] = m.split(side);
    std::string text = "type = '" + name + "'\n" + toml_text;
    if (const auto at = text.find("@FOLDER@"); at != std::string::npos)
      text.replace(at, 8, m.folder(side).string());
    MethodHolder h;
    toml::table root;
    root.insert("method", toml::parse(text));
    read_options(h, root, "");
    std::unique_ptr<Method> method = h.method.make();
    TransformOptions t;
    t.resize = side;
    t.normalize = method->normalization().empty() ? "none" : method->normalization();
    RunContext run;
    run.seeds.experiment = 1;
    run.loader_workers = 0;
    run.limits.epochs = 1;
    run.limits.steps = 2;
    FitContext fit{run, train, {}, {}, t};
    method->fit(fit);
    LoaderOptions lo;
    lo.batch_size = 4;
    lo.num_workers = 0;
    Loader loader(test, t, lo);
    auto batch = loader.next();
    REQUIRE(batch);
    const Prediction p = method->predict(*batch, run);
    CHECK(p.maps.sizes() == torch::IntArrayRef({4, 1, side, side}));
    CHECK(p.scores.sizes() == torch::IntArrayRef({4}));
    CHECK(finite(p.maps));
    CHECK(finite(p.scores));
  };
}

const char* kResnet = "[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\nblocks = [1, 1, 1, 1]\n"
                      "layers = ['layer1', 'layer2']\n";

FamilyRecipes methods() {
  const std::string resnet = kResnet;
  return {
      {"anomalydino", method_recipe(28, "shots = 2\n[backbone]\ntype = 'dinov2'\nweights = 'random'\ndepth = 1\n")},
      {"draem", method_recipe(32, "[reconstructive]\nbase_width = 4\n[discriminative]\nbase_width = 4\n"
                                  "[synthesizer]\ntype = 'perlin_self'\n[trainer]\nbatch_size = 2\n")},
      {"dsr", method_recipe(32, "vq_checkpoint = 'random'\nunet_base_width = 2\nimage_recon_bottleneck = 4\n"
                                "[vq]\nnum_hiddens = 8\nnum_residual_hiddens = 4\nnum_embeddings = 16\n"
                                "embedding_dim = 4\n[trainer]\nbatch_size = 2\n[upsampling_trainer]\nbatch_size = 2\n")},
      {"dsr_vq_pretrain", method_recipe(32, "folders = ['@FOLDER@']\n[vq]\nnum_hiddens = 8\nnum_residual_hiddens = 4\n"
                                            "num_embeddings = 16\nembedding_dim = 4\n[trainer]\nbatch_size = 2\n")},
      {"efficientad", method_recipe(256, "out_channels = 4\npdn_width = 4\nae_width = 2\nteacher_weights = 'random'\n"
                                         "[trainer]\nsteps = 2\n")},
      {"efficientad_teacher",
       // The backbone's first tap at extractor_size must have the PDN's output grid (64 / 4 = 128 / 8).
       method_recipe(32, "folders = ['@FOLDER@']\nout_channels = 4\npdn_width = 4\nextractor_size = 128\n"
                         "pdn_size = 64\nnormalization_images = 4\n[backbone]\ntype = 'resnet'\narch = 'resnet18'\n"
                         "weights = 'random'\nblocks = [1, 1, 1, 1]\nlayers = ['layer2', 'layer3']\n"
                         "[trainer]\nbatch_size = 2\n")},
      {"padim", method_recipe(32, "dims = 16\n" + resnet)},
      {"patchcore", method_recipe(32, resnet + "[coreset]\nratio = 0.5\n")},
      {"riad", method_recipe(32, "[network]\nbase_width = 4\n[trainer]\nbatch_size = 2\n")},
      {"segdec", method_recipe(32, "[network]\nwidths = [2, 4, 8]\n[trainer]\nbatch_size = 2\n")},
      {"supersimplenet",
       method_recipe(32, resnet + "[segmentation]\nhidden = 8\n[classification]\nhidden = 4\n[trainer]\nbatch_size = 2\n")},
      {"transfusion", method_recipe(32, "[network]\nbase = 32\nmultipliers = [1, 2]\nattention_levels = [1]\n"
                                        "res_blocks = 1\n[synthesizer]\ntype = 'transparency'\nfolder = ''\n"
                                        "texture_probability = 0.0\n[trainer]\nbatch_size = 2\n")},
  };
}

std::map<std::string, FamilyRecipes> recipes() {
  const Recipe noise = feature_noise_recipe();
  const Recipe score = image_score_recipe();
  const Recipe post = postprocess_recipe();
  const Recipe metric = metric_recipe();
  return {
      {"backbone", backbones()},
      {"dataset", datasets()},
      {"feature_noise", {{"simplenet", noise}, {"supersimplenet", noise}}},
      {"image_score", {{"avgpool_max", score}, {"max", score}, {"method", score}, {"topk_mean", score}}},
      {"latent_anomaly", {{"dsr", latent_anomaly_recipe()}}},
      {"loss",
       {{"bce", loss_recipe({2, 1, 8, 8})},
        {"focal", loss_recipe({2, 1, 8, 8})},
        {"hard_feature", loss_recipe({2, 4, 8, 8})},
        {"l1", loss_recipe({2, 3, 8, 8})},
        {"l2", loss_recipe({2, 3, 8, 8})},
        {"msgms", loss_recipe({2, 3, 32, 32}, true)},
        {"smooth_l1", loss_recipe({2, 3, 8, 8})},
        {"ssim", loss_recipe({2, 3, 32, 32}, true)},
        {"truncated_l1", loss_recipe({2, 1, 8, 8})}}},
      {"method", methods()},
      {"metric",
       {{"aupro", metric},
        {"image_ap", metric},
        {"image_auroc", metric},
        {"image_f1_max", metric},
        {"pixel_ap", metric},
        {"pixel_auroc", metric},
        {"pixel_f1_max", metric}}},
      {"network", networks()},
      {"postprocess", {{"gaussian", post}, {"log1p", post}, {"mean_filter", post}, {"upsample", post}}},
      {"synthesizer",
       {{"cutpaste", synthesizer_recipe()},
        {"perlin_color", synthesizer_recipe()},
        {"perlin_noise", synthesizer_recipe()},
        {"perlin_self", synthesizer_recipe()},
        {"perlin_texture", synthesizer_recipe("folder = '@FOLDER@'")},
        {"transparency", synthesizer_recipe("folder = '@FOLDER@'")}}},
  };
}

/// Families that other tests of this binary fill with stand-ins (tests/core/test_config.cpp).
bool test_only(const std::string& family) { return family == "test_widget"; }

/// Runs the recipe of every registered component of `family` (every family when empty).
void run_family(const std::string& only) {
  test::load_builtin_plugins();
  torch::set_num_threads(1);
  const auto all = recipes();
  int ran = 0;
  for (RegistryBase* reg : all_registries()) {
    const std::string family = reg->family();
    if ((!only.empty() && family != only) || test_only(family)) continue;
    const auto fam = all.find(family);
    if (fam == all.end()) {
      FAIL_CHECK("family '" << family << "' has no recipes in tests/core/test_registry.cpp: add one per component");
      continue;
    }
    for (const auto& name : reg->names()) {
      const auto r = fam->second.find(name);
      if (r == fam->second.end()) {
        FAIL_CHECK(family << " '" << name << "' is registered but has no recipe in tests/core/test_registry.cpp");
        continue;
      }
      INFO(family << " '" << name << "'");
      try {
        r->second(name);
      } catch (const std::exception& e) {
        FAIL_CHECK(family << " '" << name << "' failed: " << e.what());
      }
      ++ran;
    }
  }
  CHECK(ran > 0);
}

}  // namespace

TEST_CASE("registry: every backbone builds and its taps' declared channels and strides match", "[registry]") {
  run_family("backbone");
}
TEST_CASE("registry: every dataset lists a tiny layout", "[registry]") { run_family("dataset"); }
TEST_CASE("registry: every network runs a tiny input", "[registry]") { run_family("network"); }
TEST_CASE("registry: every method fits and predicts on tiny images", "[registry]") { run_family("method"); }
TEST_CASE("registry: every component of the other families runs a tiny input", "[registry]") {
  test::load_builtin_plugins();
  for (RegistryBase* reg : all_registries()) {
    const std::string f = reg->family();
    if (f == "backbone" || f == "dataset" || f == "network" || f == "method" || test_only(f)) continue;
    INFO("family " << f);
    run_family(f);
  }
}

TEST_CASE("registry: the recipes name exactly the registered components", "[registry]") {
  // The recipes table covers exactly the registered names of each family it knows; a family
  // present in the registry and absent here, or the reverse, shows up as a mismatch.
  test::load_builtin_plugins();
  const auto all = recipes();
  for (RegistryBase* reg : all_registries()) {
    if (test_only(reg->family())) continue;
    const auto fam = all.find(reg->family());
    INFO("family " << reg->family());
    REQUIRE(fam != all.end());
    std::vector<std::string> have;
    for (const auto& [n, r] : fam->second) have.push_back(n);
    CHECK(have == reg->names());
  }
}
