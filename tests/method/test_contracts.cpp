// Shape contracts: backbones declare their taps, "auto" input widths are settled from them when a
// method is built, given widths are checked then (naming the key path and both numbers), and input
// sizes a ViT cannot take are refused before fitting, or padded / resized when asked.
#include "adfw/backbone/dinov2.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/engine/experiment.hpp"
#include "adfw/train/networks/feature_heads.hpp"
#include "methods/padim/padim.hpp"
#include "methods/supersimplenet/supersimplenet.hpp"
#include "support.hpp"

using namespace adfw;

namespace {

template <class O>
O options(const std::string& text) {
  O o;
  read_options(o, toml::parse(text), "method");
  return o;
}

const char* kResnet18 = "[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\nblocks = [1, 1, 1, 1]\n";
const char* kDino = "[backbone]\ntype = 'dinov2'\nweights = 'random'\ndepth = 1\n";

/// The input width of a built part's first weight (dim 1 of a conv or linear weight).
int64_t first_in(Network& n) { return n.module()->parameters().front().size(1); }

}  // namespace

TEST_CASE("contracts: an 'auto' in_channels is written and described as \"auto\", numbers stay numbers",
          "[contracts]") {
  FeatureAdaptorOptions o;
  CHECK(o.in_channels.is_auto());
  CHECK(write_options(o)["in_channels"].value<std::string>() == std::optional<std::string>("auto"));
  CHECK(describe_options(o).front().default_value == "\"auto\"");
  read_options(o, toml::parse("in_channels = 24"), "n");
  CHECK(write_options(o)["in_channels"].value<int64_t>() == std::optional<int64_t>(24));
  read_options(o, toml::parse("in_channels = 'auto'"), "n");
  CHECK(o.in_channels.is_auto());
  CHECK_THROWS_WITH(read_options(o, toml::parse("in_channels = 'autom'"), "n"),
                    Catch::Contains("n.in_channels") && Catch::Contains("\"auto\""));
  CHECK_THROWS_WITH(read_options(o, toml::parse("in_channels = 0"), "n"), Catch::Contains("n.in_channels"));
  // On its own, without a method to settle it, an "auto" part cannot be built.
  CHECK_THROWS_WITH(FeatureAdaptor(FeatureAdaptorOptions{}), Catch::Contains("feature_adaptor.in_channels"));
}

TEST_CASE("contracts: supersimplenet settles its parts' widths from the backbone's declared taps", "[contracts]") {
  test::load_builtin_plugins();
  RunContext run;
  SECTION("resnet18 layer1 + layer2: 64 + 128") {
    SuperSimpleNet ssn(options<SuperSimpleNet::Options>(std::string(kResnet18) +
                                                         "layers = ['layer1', 'layer2']\n[segmentation]\nhidden = 8\n"));
    CHECK(ssn.feature_channels() == 192);
    ssn.build(run);
    CHECK(first_in(ssn.part("adaptor")) == 192);
    CHECK(first_in(ssn.part("segmentation")) == 192);
    CHECK(first_in(ssn.part("classification")) == 193);  // features + the map
  }
  SECTION("dinov2 ViT-S, one block: 384") {
    SuperSimpleNet ssn(options<SuperSimpleNet::Options>(std::string(kDino) + "[segmentation]\nhidden = 8\n"));
    CHECK(ssn.feature_channels() == 384);
    ssn.build(run);
    CHECK(first_in(ssn.part("adaptor")) == 384);
    CHECK(first_in(ssn.part("segmentation")) == 384);
  }
  SECTION("aggregation simplenet: embedding.target_dim") {
    SuperSimpleNet ssn(options<SuperSimpleNet::Options>(
        std::string("aggregation = 'simplenet'\nclassify = false\n[image_score]\ntype = 'max'\n[embedding]\n"
                    "layer_dim = 40\ntarget_dim = 32\n[segmentation]\ntype = 'simplenet_discriminator'\nhidden = 8\n") +
        kResnet18));
    CHECK(ssn.feature_channels() == 32);
    ssn.build(run);
    CHECK(first_in(ssn.part("adaptor")) == 32);
    CHECK(first_in(ssn.part("segmentation")) == 32);
  }
  SECTION("a given width that matches is kept") {
    SuperSimpleNet ssn(options<SuperSimpleNet::Options>(std::string(kResnet18) +
                                                         "layers = ['layer1', 'layer2']\n[adaptor]\nin_channels = 192\n"
                                                         "[segmentation]\nin_channels = 192\nhidden = 8\n"));
    ssn.build(run);
    CHECK(first_in(ssn.part("segmentation")) == 192);
  }
}

TEST_CASE("contracts: a given width that does not match is refused when the method is built", "[contracts]") {
  test::load_builtin_plugins();
  const std::string taps = std::string(kResnet18) + "layers = ['layer1', 'layer2']\n";
  const std::string e1 = test::error_of<ConfigError>(
      [&] { SuperSimpleNet bad(options<SuperSimpleNet::Options>(taps + "[adaptor]\nin_channels = 1536\n")); });
  CHECK_THAT(e1, Catch::Contains("method.adaptor.in_channels = 1536") && Catch::Contains("192") &&
                     Catch::Contains("layer1 (64) + layer2 (128)"));
  const std::string e2 = test::error_of<ConfigError>(
      [&] { SuperSimpleNet bad(options<SuperSimpleNet::Options>(taps + "[classification]\nin_channels = 768\n")); });
  CHECK_THAT(e2, Catch::Contains("method.classification.in_channels = 768") && Catch::Contains("192"));
  // A backbone tap without a spatial grid cannot feed the aggregation.
  const std::string e3 = test::error_of<ConfigError>(
      [&] { SuperSimpleNet bad(options<SuperSimpleNet::Options>(std::string(kResnet18) + "layers = ['layer2', 'pool']\n")); });
  CHECK_THAT(e3, Catch::Contains("method.backbone.layers") && Catch::Contains("'pool'"));
  // PaDiM: a channel subset larger than the taps' total (64 + 128 + 256 = 448).
  const std::string e4 = test::error_of<ConfigError>([&] {
    PaDiM bad(options<PaDiM::Options>("dims = 550\n" + std::string(kResnet18) + "layers = ['layer1', 'layer2', 'layer3']\n"));
  });
  CHECK_THAT(e4, Catch::Contains("method.dims = 550") && Catch::Contains("448"));
}

TEST_CASE("contracts: ViT input sizes are checked against the config's key before fitting", "[contracts]") {
  test::load_builtin_plugins();
  ExperimentOptions e;
  read_options(e, toml::parse("[method]\ntype = 'patchcore'\n" + std::string("[method.backbone]\ntype = 'dinov2'\n") +
                              "weights = 'random'\ndepth = 1\n[input]\nresize = 256\n"),
               "");
  auto m = e.method.make();
  const std::string err = test::error_of<ConfigError>([&] { check_input_size(e, *m); });
  CHECK_THAT(err, Catch::Contains("input.resize = 256") && Catch::Contains("252 and 266") &&
                      Catch::Contains("method.backbone.fit_input"));
  e.input.center_crop = ImageSize(224);  // the crop is what reaches the backbone: 16 x 14
  CHECK_NOTHROW(check_input_size(e, *m));
  e.input.center_crop = ImageSize(200, 224);
  CHECK_THAT(test::error_of<ConfigError>([&] { check_input_size(e, *m); }),
             Catch::Contains("input.center_crop = [200, 224]") && Catch::Contains("196 and 210"));
  // fit_input "pad" / "resize" take any size.
  read_options(e, toml::parse("[method]\ntype = 'patchcore'\n[method.backbone]\ntype = 'dinov2'\nweights = 'random'\n"
                              "depth = 1\nfit_input = 'pad'\n"),
               "");
  auto padded = e.method.make();
  CHECK_NOTHROW(check_input_size(e, *padded));
  // Backbones without a size rule take any size.
  read_options(e, toml::parse("[method]\ntype = 'patchcore'\n[method.backbone]\ntype = 'resnet'\narch = 'resnet18'\n"
                              "weights = 'random'\n"),
               "");
  auto resnet = e.method.make();
  CHECK_NOTHROW(check_input_size(e, *resnet));
}

TEST_CASE("contracts: DINOv2 fit_input pads or resizes to the next multiple of 14", "[contracts]") {
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({1, 3, 30, 40});
  DinoV2Options o;
  o.weights = "random";
  o.depth = 1;
  DinoV2Backbone strict(o);
  // "error": the ViT refuses the size at forward time too (no config key to name there).
  CHECK_THROWS_AS(strict.forward(x), Error);
  const torch::Tensor want_pad =
      strict.forward(torch::nn::functional::pad(x, torch::nn::functional::PadFuncOptions({0, 2, 0, 12}))).at("blocks.0");
  const torch::Tensor resized = torch::nn::functional::interpolate(
      x, torch::nn::functional::InterpolateFuncOptions()
             .size(std::vector<int64_t>{42, 42})
             .mode(torch::kBilinear)
             .align_corners(false));
  const torch::Tensor want_resize = strict.forward(resized).at("blocks.0");

  o.fit_input = "pad";
  DinoV2Backbone pad(o);
  const torch::Tensor got_pad = pad.forward(x).at("blocks.0");
  CHECK(got_pad.sizes() == torch::IntArrayRef({1, 384, 3, 3}));
  CHECK(torch::equal(got_pad, want_pad));
  CHECK(pad.grid("blocks.0", 30, 40).stride == 14);

  o.fit_input = "resize";
  DinoV2Backbone resize(o);
  const torch::Tensor got_resize = resize.forward(x).at("blocks.0");
  CHECK(torch::equal(got_resize, want_resize));
  // Resized 30 -> 42: three cells over 30 pixels, centred on 4.5, 14.5, 24.5.
  const GridGeometry g = resize.grid("blocks.0", 30, 40);
  CHECK(g.stride == Approx(10.0));
  CHECK(g.origin_y == Approx(4.5));
  // A size that already fits is passed through unchanged.
  const torch::Tensor ok = torch::randn({1, 3, 28, 14});
  CHECK(torch::equal(resize.forward(ok).at("blocks.0"), strict.forward(ok).at("blocks.0")));
}
