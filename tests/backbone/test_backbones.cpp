// Parity of the native backbones with the reference PyTorch outputs in ../shared/fixtures
// (torchvision 0.14 ResNets, the official DINOv2 hub code, the MobileNet v1 reference of
// ../shared/weights/README.md). Tolerance per the fixtures' README (atol = rtol = 1e-4, 1e-3 for
// the deepest outputs): |a-b| <= tol * s + tol * |b|, where the absolute part is scaled by
// s = max(1, mean |b|). The fixtures' randomised BatchNorm statistics let ResNet activations grow
// to ~1e3 (mean ~1e2 at layer4), where float32 summation-order differences alone reach 1e-3; the
// known bugs (wrong padding, eps, layout) are orders of magnitude larger.
#include <sstream>

#include "adfw/backbone/dinov2.hpp"
#include "adfw/backbone/mobilenet.hpp"
#include "adfw/backbone/resnet.hpp"
#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "support.hpp"

namespace {

using adfw::StateDict;

const torch::Tensor& ref(const StateDict& io, const std::string& name) {
  const auto it = io.find(name);
  if (it == io.end()) FAIL("fixture tensor missing: " << name);
  return it->second;
}

void check_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what, double tol) {
  INFO(what);
  REQUIRE(got.sizes() == want.sizes());
  const torch::Tensor g = got.to(torch::kFloat32).contiguous(), w = want.to(torch::kFloat32);
  const double scale = std::max(1.0, w.abs().mean().item<double>());
  const torch::Tensor excess = (g - w).abs() - (tol * scale + tol * w.abs());
  const double max_abs = (g - w).abs().max().item<double>();
  INFO("max abs error " << max_abs << ", worst excess over tolerance " << excess.max().item<double>());
  CHECK(torch::isfinite(g).all().item<bool>());
  CHECK(excess.max().item<double>() <= 0.0);
}

}  // namespace

TEST_CASE("ResNet family reproduces torchvision outputs from .pth and .safetensors", "[backbone]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/resnet");
  struct Case {
    std::string arch, file, io;
    std::vector<int64_t> blocks;
  };
  const std::vector<Case> cases = {{"wide_resnet50_2", "wide_resnet50_2_1111.pth", "wide_resnet50_2_1111_io.safetensors", {1, 1, 1, 1}},
                                   {"resnet18", "resnet18.pth", "resnet18_io.safetensors", {}}};
  for (const auto& c : cases) {
    const StateDict io = adfw::load_state_dict(dir / c.io);
    // The same weights re-saved as safetensors by our writer must load to the same outputs.
    const auto st_copy = adfw::test::temp_dir("resnet") / (c.arch + ".safetensors");
    adfw::save_state_dict(adfw::load_state_dict(dir / c.file), st_copy);
    // Both forwards of a frozen backbone: BN folded into oneDNN convolutions ("fused", the
    // default) and torchvision's module-by-module one ("eager").
    for (const auto& [weights, inference] : {std::pair{(dir / c.file).string(), std::string("fused")},
                                             std::pair{(dir / c.file).string(), std::string("eager")},
                                             std::pair{st_copy.string(), std::string("fused")}}) {
      adfw::ResNetOptions o;
      o.arch = c.arch;
      o.weights = weights;
      o.blocks = c.blocks;
      o.inference = inference;
      o.layers = {"layer1", "layer2", "layer3", "layer4", "logits"};
      adfw::ResNetBackbone net(o);
      CHECK(net.normalization().name == "imagenet");
      CHECK_FALSE(net.module().is_training());
      for (const auto& p : net.module().parameters()) CHECK_FALSE(p.requires_grad());
      for (const std::string prefix : {"", "nonsquare."}) {
        const auto out = net.forward(ref(io, prefix.empty() ? "input" : "input_nonsquare"));
        REQUIRE(out.size() == 5);
        for (const std::string tap : {"layer1", "layer2", "layer3", "layer4", "logits"}) {
          const double tol = (tap == "layer4" || tap == "logits") ? 1e-3 : 1e-4;
          check_close(out.at(tap), ref(io, prefix + tap), c.arch + " " + inference + " " + weights + " " + prefix + tap, tol);
          if (tap != "logits") CHECK(out.at(tap).size(1) == net.channels(tap));
        }
        CHECK(out.at("layer3").size(2) * net.stride("layer3") == ref(io, prefix.empty() ? "input" : "input_nonsquare").size(2));
      }
    }
  }
}

TEST_CASE("ResNet runs only as deep as the selected taps and honours trainable", "[backbone]") {
  adfw::ResNetOptions o;
  o.arch = "resnet18";
  o.weights = "random";
  o.layers = {"layer2"};
  adfw::ResNetBackbone frozen(o);
  const auto out = frozen.forward(torch::randn({2, 3, 64, 80}));
  REQUIRE(out.size() == 1);
  CHECK(out.at("layer2").sizes() == torch::IntArrayRef({2, 128, 8, 10}));
  CHECK_FALSE(out.at("layer2").requires_grad());
  o.trainable = true;
  adfw::ResNetBackbone tuned(o);
  CHECK(tuned.module().is_training());
  const auto g = tuned.forward(torch::randn({2, 3, 64, 64}));
  CHECK(g.at("layer2").requires_grad());
  o.layers = {"layer9"};
  CHECK_THROWS_AS(adfw::ResNetBackbone(o), adfw::ConfigError);
}

TEST_CASE("fused ResNet inference equals the eager forward at every tap", "[backbone]") {
  // Random weights with non-trivial BN statistics, so that folding BN into the convolutions is
  // actually exercised (torchvision's init leaves BN the identity).
  for (const std::string arch : {"resnet18", "wide_resnet50_2"}) {
    adfw::ResNetOptions o;
    o.arch = arch;
    o.weights = "random";
    o.blocks = {1, 2, 1, 1};
    o.layers = {"stem", "layer1", "layer2", "layer3", "layer4", "pool", "logits"};
    o.inference = "eager";
    adfw::ResNetBackbone eager(o);
    {
      torch::NoGradGuard no_grad;
      torch::manual_seed(5);
      for (auto& b : eager.module().named_buffers()) {
        if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.2, 0.2);
        if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
      }
      for (auto& p : eager.module().named_parameters()) {
        if (p.value().dim() == 1 && p.key().find("bn") != std::string::npos) p.value().uniform_(0.5, 1.5);
        if (p.value().dim() == 1 && p.key().find("downsample.1") != std::string::npos) p.value().uniform_(0.5, 1.5);
      }
    }
    o.inference = "fused";
    adfw::ResNetBackbone fused(o);
    adfw::StateDict w;
    for (const auto& p : eager.module().named_parameters()) w[p.key()] = p.value();
    for (const auto& b : eager.module().named_buffers()) w[b.key()] = b.value();
    {
      torch::NoGradGuard no_grad;
      for (auto& p : fused.module().named_parameters()) p.value().copy_(w.at(p.key()));
      for (auto& b : fused.module().named_buffers()) b.value().copy_(w.at(b.key()));
    }
    const torch::Tensor x = torch::randn({2, 3, 72, 88});
    const auto a = fused.forward(x), b = eager.forward(x);
    REQUIRE(a.size() == 7);
    for (const auto& [tap, want] : b) {
      INFO(arch << " " << tap);
      REQUIRE(a.at(tap).sizes() == want.sizes());
      CHECK(a.at(tap).is_contiguous());
      CHECK_FALSE(a.at(tap).is_mkldnn());
      check_close(a.at(tap), want, arch + " fused " + tap, 1e-4);
    }
  }
}

TEST_CASE("DINOv2 reproduces the hub model (plain and register variants)", "[backbone]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/dinov2");
  struct Case {
    std::string arch, weights, io;
  };
  const std::vector<Case> cases = {
      {"dinov2_vits14", "dinov2_vits14_depth2.pth", "dinov2_vits14_depth2_io.safetensors"},
      {"dinov2_vits14", "dinov2_vits14_depth2.safetensors", "dinov2_vits14_depth2_io.safetensors"},
      {"dinov2_vits14_reg", "dinov2_vits14_reg4_depth2.pth", "dinov2_vits14_reg4_depth2_io.safetensors"}};
  for (const auto& c : cases) {
    const StateDict io = adfw::load_state_dict(dir / c.io);
    adfw::DinoV2Options o;
    o.arch = c.arch;
    o.depth = 2;
    o.weights = (dir / c.weights).string();
    o.layers = {"blocks.0", "blocks.1"};
    o.class_token = true;
    adfw::DinoV2Backbone bb(o);
    auto& vit = bb.net();
    const bool reg = vit->config().num_register_tokens > 0;
    const std::vector<std::pair<std::string, std::string>> inputs = {
        {"input", "out."}, {"input_nonsquare", "out_nonsquare."}, {"input_native", "out_native."}};
    for (const auto& [in, pre] : inputs) {
      const std::string label = c.weights + " " + pre;
      const torch::Tensor x = ref(io, in);
      torch::NoGradGuard no_grad;
      const auto f = vit->forward_features(x);
      check_close(f.x_norm_clstoken, ref(io, pre + "x_norm_clstoken"), label + "x_norm_clstoken", 1e-3);
      check_close(f.x_norm_patchtokens, ref(io, pre + "x_norm_patchtokens"), label + "x_norm_patchtokens", 1e-3);
      if (reg) check_close(f.x_norm_regtokens, ref(io, pre + "x_norm_regtokens"), label + "x_norm_regtokens", 1e-3);
      if (in == "input_native") continue;  // the fixture stores only the final tokens at 518
      check_close(f.x_prenorm, ref(io, pre + "x_prenorm"), label + "x_prenorm", 1e-3);
      const auto inter = vit->get_intermediate_layers(x, vit->last_blocks(2), true, true);
      REQUIRE(inter.size() == 2);
      check_close(inter[0].patches, ref(io, pre + "intermediate_norm_reshape.0"), label + "norm_reshape.0", 1e-4);
      check_close(inter[1].patches, ref(io, pre + "intermediate_norm_reshape.1"), label + "norm_reshape.1", 1e-3);
      const auto raw = vit->get_intermediate_layers(x, {0}, false, false);
      check_close(raw.at(0).patches, ref(io, pre + "intermediate_block0_raw"), label + "block0_raw", 1e-4);
      // The Backbone interface returns the same maps and class tokens.
      const auto taps = bb.forward(x);
      REQUIRE(taps.size() == 4);
      check_close(taps.at("blocks.0"), ref(io, pre + "intermediate_norm_reshape.0"), label + "tap blocks.0", 1e-4);
      check_close(taps.at("blocks.1"), ref(io, pre + "intermediate_norm_reshape.1"), label + "tap blocks.1", 1e-3);
      check_close(taps.at("blocks.1.cls"), ref(io, pre + "x_norm_clstoken"), label + "tap blocks.1.cls", 1e-3);
    }
  }
}

TEST_CASE("DINOv2 rejects inputs that are not multiples of the patch size", "[backbone]") {
  adfw::DinoV2Options o;
  o.weights = "random";
  o.depth = 1;
  adfw::DinoV2Backbone bb(o);
  CHECK(bb.normalization().name == "imagenet");
  CHECK(bb.selected_taps() == std::vector<std::string>{"blocks.0"});
  CHECK_THROWS_WITH(bb.forward(torch::zeros({1, 3, 224, 230})), Catch::Contains("multiple of the patch size 14"));
  const auto out = bb.forward(torch::randn({2, 3, 28, 42}));
  CHECK(out.at("blocks.0").sizes() == torch::IntArrayRef({2, 384, 2, 3}));
}

TEST_CASE("MobileNet v1 reproduces the reference with TF SAME padding", "[backbone]") {
  ADFW_REQUIRE_SHARED(weights, "weights/mobilenet_v1_1.0_224_imagenet.safetensors");
  ADFW_REQUIRE_SHARED(io_path, "fixtures/mobilenet_v1/io.safetensors");
  CHECK(adfw::tf_same_padding(224, 3, 2) == std::pair<int64_t, int64_t>{0, 1});
  CHECK(adfw::tf_same_padding(57, 3, 2) == std::pair<int64_t, int64_t>{1, 1});
  CHECK(adfw::tf_same_padding(45, 3, 1) == std::pair<int64_t, int64_t>{1, 1});
  const StateDict io = adfw::load_state_dict(io_path);
  adfw::MobileNetV1Options o;
  o.weights = weights.string();
  o.layers = adfw::MobileNetV1Impl::tap_names();
  adfw::MobileNetV1Backbone net(o);
  const auto norm = net.normalization();
  CHECK(norm.apply(torch::full({1, 3, 1, 1}, 255.0)).allclose(torch::ones({1, 3, 1, 1})));
  CHECK(norm.apply(torch::zeros({1, 3, 1, 1})).allclose(-torch::ones({1, 3, 1, 1})));
  int compared = 0;
  for (const std::string in : {"input", "input_image", "input_nonsquare", "input_odd"}) {
    const auto out = net.forward(ref(io, in));
    for (const auto& tap : net.taps()) {
      const auto it = io.find(in + "." + tap);
      if (it == io.end()) continue;
      check_close(out.at(tap), it->second, in + "." + tap, 1e-4);
      CHECK(out.at(tap).size(1) == net.channels(tap));
      ++compared;
    }
  }
  CHECK(compared == 32);  // every stored output
  CHECK(net.stride("block11") == 32);
}

TEST_CASE("backbones are registered and built from TOML options", "[backbone]") {
  adfw::test::load_builtin_plugins();
  auto& reg = adfw::Registry<adfw::Backbone>::instance();
  for (const char* name : {"resnet", "dinov2", "mobilenet_v1"}) CHECK(reg.contains(name));
  const auto t = toml::parse("arch = \"resnet18\"\nweights = \"random\"\nlayers = [\"layer1\"]");
  const auto bb = reg.make("resnet", t, "backbone");
  CHECK(bb->selected_taps() == std::vector<std::string>{"layer1"});
  CHECK(bb->channels("layer1") == 64);
  CHECK_THROWS_AS(reg.make("resnet", toml::parse("arch = \"resnet19\""), "backbone"), adfw::ConfigError);
}

TEST_CASE("weights = \"\" finds the official file name in $TORCH_HOME/hub/checkpoints", "[backbone]") {
  const auto home = adfw::test::temp_dir("torchhome");
  ::setenv("TORCH_HOME", home.c_str(), 1);
  adfw::ResNetOptions o;
  o.arch = "resnet18";
  CHECK_THROWS_WITH(adfw::ResNetBackbone(o), Catch::Contains("resnet18-f37072fd.pth"));
  adfw::ResNetOptions r = o;
  r.weights = "random";
  adfw::ResNetBackbone random(r);
  std::filesystem::create_directories(home / "hub" / "checkpoints");
  adfw::save_checkpoint(random.module(), home / "hub" / "checkpoints" / "resnet18-f37072fd.pth");
  adfw::ResNetBackbone found(o);
  CHECK(found.weights_path() == home / "hub" / "checkpoints" / "resnet18-f37072fd.pth");
  const torch::Tensor x = torch::randn({1, 3, 64, 64});
  CHECK(found.forward(x).at("layer3").equal(random.forward(x).at("layer3")));
  ::unsetenv("TORCH_HOME");
}

namespace {

/// Rows and columns of the input that reach output cell (i, j) of `tap`: the support of the
/// gradient when every conv weight is positive and every activation stays inside ReLU6's linear
/// range, so no path is cut. Its centre is where the cell sits on the input.
std::pair<double, double> receptive_field_centre(adfw::MobileNetV1Backbone& net, const std::string& tap, int64_t h,
                                                 int64_t w, int64_t i, int64_t j) {
  {
    torch::NoGradGuard ng;
    for (auto& p : net.module().named_parameters()) {
      if (p.value().dim() == 4) p.value().fill_(1.0 / static_cast<double>(p.value()[0].numel()));
      else if (p.key().find("weight") != std::string::npos) p.value().fill_(1.0);
      else p.value().zero_();
    }
    for (auto& b : net.module().named_buffers()) {
      if (b.key().find("running_var") != std::string::npos) b.value().fill_(1.0);
      else if (b.key().find("running_mean") != std::string::npos) b.value().zero_();
    }
  }
  net.module().eval();
  torch::Tensor x = torch::ones({1, 3, h, w}).requires_grad_(true);
  torch::Tensor out = net.forward(x).at(tap);
  REQUIRE(i < out.size(2));
  REQUIRE(j < out.size(3));
  out.index({0, torch::indexing::Slice(), i, j}).sum().backward();
  const torch::Tensor g = x.grad()[0].abs().sum(0);  // (h, w)
  const torch::Tensor rows = torch::nonzero(g.sum(1) > 0).flatten(), cols = torch::nonzero(g.sum(0) > 0).flatten();
  const int64_t r0 = rows.min().item<int64_t>(), r1 = rows.max().item<int64_t>();
  const int64_t c0 = cols.min().item<int64_t>(), c1 = cols.max().item<int64_t>();
  // The field must lie inside the image, or padding would have clipped one side of it.
  REQUIRE(r0 > 0);
  REQUIRE(c0 > 0);
  REQUIRE(r1 < h - 1);
  REQUIRE(c1 < w - 1);
  REQUIRE(r1 - r0 + 1 == rows.numel());  // contiguous
  return {(r0 + r1) / 2.0, (c0 + c1) / 2.0};
}

}  // namespace

TEST_CASE("MobileNet grid geometry matches the receptive field centres (TF same padding)", "[backbone]") {
  adfw::MobileNetV1Options o;
  o.weights = "random";
  o.trainable = true;  // autograd through the backbone; eval mode is set above
  for (const std::string tap : {"stem", "block1", "block3", "block5", "block11"}) {
    o.layers = {tap};
    adfw::MobileNetV1Backbone net(o);
    // Even sizes down every stage (TF pads bottom/right: cells sit at the end of their block),
    // and odd ones (symmetric padding at that stage).
    for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{640, 384}, {609, 423}}) {
      const adfw::GridGeometry g = net.grid(tap, h, w);
      CHECK(g.stride == net.stride(tap));
      const int64_t i = (h / net.stride(tap)) / 2, j = (w / net.stride(tap)) / 2;
      const auto [cy, cx] = receptive_field_centre(net, tap, h, w, i, j);
      INFO(tap << " at " << h << "x" << w << ": cell (" << i << ", " << j << ")");
      CHECK(g.origin_y + i * g.stride == Approx(cy));
      CHECK(g.origin_x + j * g.stride == Approx(cx));
    }
  }
  // Plain bilinear upsampling would put cell 0 of a stride-16 grid on pixel 7.5; with 224 px
  // (even down to 14) TF padding puts it on pixel 15.
  o.layers = {"block5"};
  adfw::MobileNetV1Backbone net(o);
  CHECK(net.grid("block5", 224, 224).origin_y == 15.0);
  CHECK(adfw::GridGeometry::centred(16).origin_x == 7.5);
}
