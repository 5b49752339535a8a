// The network family: shapes at realistic sizes, registry construction, parameter counts against
// counts derived by hand from the reference architectures, gradient flow, input checks and
// seeded determinism.
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <set>

#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/train/networks/diffusion_unet.hpp"
#include "adfw/train/networks/draem_unets.hpp"
#include "adfw/train/networks/feature_heads.hpp"
#include "adfw/train/networks/riad_unet.hpp"
#include "support.hpp"

namespace {

int64_t count_parameters(adfw::Network& net) {
  int64_t n = 0;
  for (const auto& p : net.module()->parameters()) n += p.numel();
  return n;
}

std::vector<int64_t> sizes(const torch::Tensor& t) { return t.sizes().vec(); }

/// Eval-mode forward without autograd, as inference runs.
torch::Tensor infer(adfw::Network& net, const torch::Tensor& x, const torch::Tensor& c = {}) {
  torch::NoGradGuard no_grad;
  net.module()->eval();
  return net.forward(x, c);
}

/// One backward pass of a random projection of the output; every parameter must receive a finite
/// gradient, and every weight (dim > 1) a non-zero one.
void require_gradients_everywhere(adfw::Network& net, const torch::Tensor& x, const torch::Tensor& c = {}) {
  net.module()->train();
  const torch::Tensor out = net.forward(x, c);
  (out * torch::randn_like(out)).sum().backward();
  for (const auto& item : net.module()->named_parameters()) {
    INFO("parameter " << item.key());
    const torch::Tensor& g = item.value().grad();
    REQUIRE(g.defined());
    REQUIRE(torch::isfinite(g).all().item<bool>());
    if (item.value().dim() > 1) REQUIRE(g.abs().sum().item<double>() > 0);
  }
}

// Hand counts of the DRAEM architectures (paper Fig. 2 / model_unet.py): 3x3 convs with bias,
// BatchNorm with weight and bias.
int64_t conv3x3(int64_t in, int64_t out) { return 9 * in * out + out; }
int64_t batchnorm(int64_t c) { return 2 * c; }
int64_t double_block(int64_t in, int64_t mid, int64_t out) {
  return conv3x3(in, mid) + batchnorm(mid) + conv3x3(mid, out) + batchnorm(out);
}
int64_t up_block(int64_t in, int64_t out) { return conv3x3(in, out) + batchnorm(out); }
int64_t draem_encoder(int64_t in, int64_t w, int blocks) {
  const int64_t widths[] = {w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w};
  int64_t n = 0, prev = in;
  for (int i = 0; i < blocks; ++i) {
    n += double_block(prev, widths[i], widths[i]);
    prev = widths[i];
  }
  return n;
}
int64_t draem_reconstructive_count(int64_t in, int64_t out, int64_t w) {
  return draem_encoder(in, w, 5) + up_block(8 * w, 8 * w) + double_block(8 * w, 8 * w, 4 * w) +
         up_block(4 * w, 4 * w) + double_block(4 * w, 4 * w, 2 * w) + up_block(2 * w, 2 * w) +
         double_block(2 * w, 2 * w, w) + up_block(w, w) + double_block(w, w, w) + conv3x3(w, out);
}
int64_t draem_discriminative_count(int64_t in, int64_t out, int64_t w) {
  return draem_encoder(in, w, 6) + up_block(8 * w, 8 * w) + double_block(16 * w, 8 * w, 8 * w) +
         up_block(8 * w, 4 * w) + double_block(12 * w, 4 * w, 4 * w) + up_block(4 * w, 2 * w) +
         double_block(6 * w, 2 * w, 2 * w) + up_block(2 * w, w) + double_block(3 * w, w, w) + up_block(w, w) +
         double_block(2 * w, w, w) + conv3x3(w, out);
}

std::unique_ptr<adfw::Network> make(const std::string& name, const toml::table& t = {}) {
  adfw::test::load_builtin_plugins();
  return adfw::Registry<adfw::Network>::instance().make(name, t);
}

}  // namespace

TEST_CASE("networks: output shapes of the image networks at 256x256", "[network]") {
  torch::manual_seed(0);
  const torch::Tensor image = torch::rand({2, 3, 256, 256});

  SECTION("draem_reconstructive") {
    adfw::DraemReconstructive net({});
    CHECK(sizes(infer(net, image)) == std::vector<int64_t>{2, 3, 256, 256});
  }
  SECTION("draem_discriminative") {
    adfw::DraemDiscriminative net({});
    CHECK(sizes(infer(net, torch::cat({image, image}, 1))) == std::vector<int64_t>{2, 2, 256, 256});
  }
  SECTION("riad_unet, output in the tanh range") {
    adfw::RiadUNet net({});
    const torch::Tensor y = infer(net, image);
    CHECK(sizes(y) == std::vector<int64_t>{2, 3, 256, 256});
    CHECK(y.abs().max().item<double>() <= 1.0);
  }
  SECTION("diffusion_unet: (N,4,H,W) + timesteps -> (N,7,H,W)") {
    adfw::DiffusionUNet net({});
    const torch::Tensor x = torch::cat({image, torch::zeros({2, 1, 256, 256})}, 1);
    const torch::Tensor y = infer(net, x, torch::tensor({3, 17}, torch::kLong));
    CHECK(sizes(y) == std::vector<int64_t>{2, 7, 256, 256});
    CHECK(net.image_channels() == 3);
    CHECK(torch::isfinite(y).all().item<bool>());
  }
}

TEST_CASE("networks: output shapes of the feature heads on (2,1536,32,32)", "[network]") {
  torch::manual_seed(0);
  const torch::Tensor features = torch::randn({2, 1536, 32, 32});

  SECTION("feature_adaptor, maps and patch rows agree") {
    adfw::FeatureAdaptorOptions o;
    o.in_channels = 1536;
    adfw::FeatureAdaptor net(o);
    const torch::Tensor y = infer(net, features);
    CHECK(sizes(y) == std::vector<int64_t>{2, 1536, 32, 32});
    const torch::Tensor rows = features.permute({0, 2, 3, 1}).reshape({-1, 1536});
    const torch::Tensor yr = infer(net, rows);
    CHECK(sizes(yr) == std::vector<int64_t>{2048, 1536});
    CHECK(torch::allclose(yr, y.permute({0, 2, 3, 1}).reshape({-1, 1536}), 1e-4, 1e-4));
  }
  SECTION("ssn_segmentation_head") {
    adfw::SsnSegmentationHeadOptions o;
    o.in_channels = 1536;
    adfw::SsnSegmentationHead net(o);
    CHECK(sizes(infer(net, features)) == std::vector<int64_t>{2, 1, 32, 32});
  }
  SECTION("ssn_classification_head") {
    adfw::SsnClassificationHeadOptions o;
    o.in_channels = 1536;
    adfw::SsnClassificationHead net(o);
    CHECK(sizes(infer(net, features, torch::randn({2, 1, 32, 32}))) == std::vector<int64_t>{2});
    CHECK_THROWS_AS(infer(net, features), adfw::Error);
    CHECK_THROWS_AS(infer(net, features, torch::randn({2, 1, 16, 16})), adfw::Error);
  }
  SECTION("simplenet_discriminator, maps and patch rows agree") {
    adfw::SimpleNetDiscriminatorOptions o;
    o.in_channels = 1536;
    adfw::SimpleNetDiscriminator net(o);
    const torch::Tensor y = infer(net, features);
    CHECK(sizes(y) == std::vector<int64_t>{2, 1, 32, 32});
    const torch::Tensor yr = infer(net, features.permute({0, 2, 3, 1}).reshape({-1, 1536}));
    CHECK(sizes(yr) == std::vector<int64_t>{2048, 1});
    CHECK(torch::allclose(yr.view({2, 32, 32}), y.view({2, 32, 32}), 1e-4, 1e-4));
  }
}

TEST_CASE("networks: every name builds through the registry with TOML options", "[network]") {
  torch::manual_seed(0);
  const auto& reg = adfw::Registry<adfw::Network>::instance();
  adfw::test::load_builtin_plugins();
  for (const char* name : {"draem_reconstructive", "draem_discriminative", "riad_unet", "feature_adaptor",
                           "ssn_segmentation_head", "ssn_classification_head", "simplenet_discriminator",
                           "diffusion_unet"}) {
    INFO(name);
    CHECK(reg.contains(name));
  }
  const torch::Tensor image = torch::rand({1, 3, 32, 32});

  auto recon = make("draem_reconstructive", toml::table{{"base_width", 8}});
  CHECK(sizes(infer(*recon, image)) == std::vector<int64_t>{1, 3, 32, 32});
  auto disc = make("draem_discriminative", toml::table{{"base_width", 8}, {"out_channels", 1}});
  CHECK(sizes(infer(*disc, torch::rand({1, 6, 32, 32}))) == std::vector<int64_t>{1, 1, 32, 32});
  auto riad = make("riad_unet", toml::table{{"base_width", 8}, {"up_mode", "bilinear"}, {"output_activation", "none"}});
  CHECK(sizes(infer(*riad, image)) == std::vector<int64_t>{1, 3, 32, 32});
  auto adaptor = make("feature_adaptor", toml::table{{"in_channels", 24}, {"bias", false}});
  CHECK(adaptor->module()->parameters().size() == 1);
  auto seg = make("ssn_segmentation_head", toml::table{{"in_channels", 24}, {"hidden", 16}});
  CHECK(sizes(infer(*seg, torch::randn({2, 24, 4, 4}))) == std::vector<int64_t>{2, 1, 4, 4});
  auto cls = make("ssn_classification_head", toml::table{{"in_channels", 24}, {"hidden", 16}, {"kernel_size", 3}});
  CHECK(sizes(infer(*cls, torch::randn({2, 24, 4, 4}), torch::randn({2, 1, 4, 4}))) == std::vector<int64_t>{2});
  auto dsc = make("simplenet_discriminator", toml::table{{"in_channels", 24}, {"layers", 3}, {"hidden", 0}});
  // hidden = 0: the reference's shrinking rule, 24 -> 16 -> 10.
  CHECK(count_parameters(*dsc) == (24 * 16 + 16 + 2 * 16) + (16 * 10 + 10 + 2 * 10) + 10);
  auto diff = make("diffusion_unet", toml::table{{"base", 32}, {"multipliers", toml::array{1, 2}},
                                                 {"attention_levels", toml::array{1}}, {"res_blocks", 1}});
  CHECK(sizes(infer(*diff, torch::rand({1, 4, 16, 16}), torch::tensor({5}))) == std::vector<int64_t>{1, 7, 16, 16});

  SECTION("option errors") {
    CHECK_THROWS_AS(make("feature_adaptor"), adfw::ConfigError);  // in_channels "auto" needs a method to settle it
    CHECK_THROWS_AS(make("draem_reconstructive", toml::table{{"base_widht", 8}}), adfw::ConfigError);
    CHECK_THROWS_AS(make("riad_unet", toml::table{{"up_mode", "nearest"}}), adfw::ConfigError);
    CHECK_THROWS_AS(make("diffusion_unet", toml::table{{"out_channels", 6}}), adfw::ConfigError);
    CHECK_THROWS_AS(make("diffusion_unet", toml::table{{"groups", 48}}), adfw::ConfigError);
    CHECK_THROWS_AS(make("diffusion_unet", toml::table{{"attention_levels", toml::array{4}}}), adfw::ConfigError);
    CHECK_THROWS_AS(make("ssn_classification_head", toml::table{{"in_channels", 8}, {"kernel_size", 4}}),
                    adfw::ConfigError);
  }
}

TEST_CASE("networks: DRAEM parameter counts match the architecture", "[network]") {
  adfw::DraemReconstructive recon({});
  adfw::DraemDiscriminative disc({});
  CHECK(count_parameters(recon) == draem_reconstructive_count(3, 3, 128));
  CHECK(count_parameters(disc) == draem_discriminative_count(6, 2, 64));
  // The published size of the two sub-networks together is 97.4 M parameters.
  CHECK(std::llround((count_parameters(recon) + count_parameters(disc)) / 1e5) == 974);

  adfw::DraemReconstructiveOptions ro;
  ro.base_width = 16;
  ro.in_channels = 1;
  ro.out_channels = 1;
  adfw::DraemReconstructive small(ro);
  CHECK(count_parameters(small) == draem_reconstructive_count(1, 1, 16));
}

TEST_CASE("networks: feature-head parameter counts match the references", "[network]") {
  const int64_t c = 1536;
  adfw::SsnSegmentationHeadOptions so;
  so.in_channels = c;
  adfw::SsnSegmentationHead seg(so);
  // 1x1 conv with bias, BatchNorm, 1x1 conv without bias.
  CHECK(count_parameters(seg) == (c * 1024 + 1024) + 2 * 1024 + 1024);
  adfw::SsnClassificationHeadOptions co;
  co.in_channels = c;
  adfw::SsnClassificationHead cls(co);
  // 5x5 conv (C+1 -> 128) with bias, BatchNorm(128), Linear(258 -> 1).
  CHECK(count_parameters(cls) == (25 * (c + 1) * 128 + 128) + 2 * 128 + (258 + 1));
  adfw::SimpleNetDiscriminatorOptions dso;
  dso.in_channels = c;
  adfw::SimpleNetDiscriminator dsc(dso);
  // Linear(C -> 1024) + BatchNorm1d(1024), Linear(1024 -> 1) without bias.
  CHECK(count_parameters(dsc) == (c * 1024 + 1024) + 2 * 1024 + 1024);
  adfw::FeatureAdaptorOptions ao;
  ao.in_channels = c;
  adfw::FeatureAdaptor adaptor(ao);
  CHECK(count_parameters(adaptor) == c * c + c);
}

TEST_CASE("networks: DRAEM initialisation follows weights_init", "[network]") {
  torch::manual_seed(3);
  adfw::DraemReconstructive net({});
  for (const auto& item : net.module()->named_parameters()) {
    const torch::Tensor& p = item.value();
    INFO(item.key());
    if (p.dim() == 4 && p.numel() > 100000) {  // large conv: sample std is tight around 0.02
      CHECK(p.std().item<double>() == Approx(0.02).margin(0.0005));
      CHECK(std::abs(p.mean().item<double>()) < 0.001);
    }
  }
  for (const auto& m : net.module()->modules()) {
    if (auto* b = m->as<torch::nn::BatchNorm2dImpl>()) {
      CHECK(b->bias.abs().max().item<double>() == 0.0);
      CHECK(std::abs(b->weight.mean().item<double>() - 1.0) < 0.02);
      CHECK(b->weight.std().item<double>() > 0.005);
    }
  }
}

TEST_CASE("networks: a backward pass reaches every parameter", "[network]") {
  torch::manual_seed(1);
  const torch::Tensor image = torch::rand({2, 3, 32, 32});
  SECTION("draem_reconstructive") {
    adfw::DraemReconstructiveOptions o;
    o.base_width = 8;
    adfw::DraemReconstructive net(o);
    require_gradients_everywhere(net, image);
  }
  SECTION("draem_discriminative") {
    adfw::DraemDiscriminativeOptions o;
    o.base_width = 8;
    adfw::DraemDiscriminative net(o);
    require_gradients_everywhere(net, torch::rand({2, 6, 32, 32}));
  }
  SECTION("riad_unet, both up-sampling modes") {
    for (const char* mode : {"transpose", "bilinear"}) {
      adfw::RiadUNetOptions o;
      o.base_width = 8;
      o.up_mode = mode;
      adfw::RiadUNet net(o);
      require_gradients_everywhere(net, image);
    }
  }
  SECTION("feature heads") {
    const torch::Tensor f = torch::randn({2, 24, 6, 6});
    adfw::FeatureAdaptorOptions a;
    a.in_channels = 24;
    adfw::FeatureAdaptor adaptor(a);
    require_gradients_everywhere(adaptor, f);
    adfw::SsnSegmentationHeadOptions s;
    s.in_channels = 24;
    s.hidden = 32;
    adfw::SsnSegmentationHead seg(s);
    require_gradients_everywhere(seg, f);
    adfw::SsnClassificationHeadOptions c;
    c.in_channels = 24;
    c.hidden = 16;
    adfw::SsnClassificationHead cls(c);
    require_gradients_everywhere(cls, f, torch::randn({2, 1, 6, 6}));
    adfw::SimpleNetDiscriminatorOptions d;
    d.in_channels = 24;
    d.hidden = 32;
    adfw::SimpleNetDiscriminator dsc(d);
    require_gradients_everywhere(dsc, f);
  }
  SECTION("diffusion_unet") {
    adfw::DiffusionUNetOptions o;
    o.base = 32;
    o.dropout = 0.1;
    adfw::DiffusionUNet net(o);
    require_gradients_everywhere(net, torch::rand({2, 4, 32, 32}), torch::tensor({1, 19}));
  }
}

TEST_CASE("networks: bad input sizes are errors that name the size", "[network]") {
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const adfw::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  adfw::DraemReconstructiveOptions ro;
  ro.base_width = 4;
  adfw::DraemReconstructive recon(ro);
  CHECK_THAT(message([&] { infer(recon, torch::rand({1, 3, 250, 250})); }), Catch::Contains("250x250"));
  CHECK_THAT(message([&] { infer(recon, torch::rand({1, 1, 32, 32})); }), Catch::Contains("1x1x32x32"));
  adfw::DraemDiscriminativeOptions dop;
  dop.base_width = 4;
  adfw::DraemDiscriminative disc(dop);
  CHECK_THAT(message([&] { infer(disc, torch::rand({1, 6, 48, 64})); }), Catch::Contains("48x64"));
  adfw::RiadUNetOptions rio;
  rio.base_width = 4;
  adfw::RiadUNet riad(rio);
  CHECK_THAT(message([&] { infer(riad, torch::rand({1, 3, 40, 40})); }), Catch::Contains("40x40"));
  adfw::DiffusionUNetOptions dfo;
  dfo.base = 32;
  dfo.multipliers = {1, 1};
  dfo.attention_levels = {1};
  adfw::DiffusionUNet diff(dfo);
  CHECK_THAT(message([&] { infer(diff, torch::rand({1, 4, 15, 16}), torch::tensor({1})); }),
             Catch::Contains("15x16"));
  CHECK_THAT(message([&] { infer(diff, torch::rand({2, 4, 16, 16}), torch::tensor({1})); }),
             Catch::Contains("timesteps"));
}

TEST_CASE("networks: the same seed gives the same initial weights", "[network]") {
  auto params_of = [](adfw::Network& net) {
    std::vector<torch::Tensor> out;
    for (const auto& p : net.module()->parameters()) out.push_back(p.detach().clone());
    return out;
  };
  auto build_all = [&](uint64_t seed) {
    torch::manual_seed(seed);
    std::vector<torch::Tensor> all;
    adfw::DraemReconstructiveOptions r;
    r.base_width = 4;
    adfw::DraemReconstructive a(r);
    adfw::DiffusionUNetOptions d;
    d.base = 32;
    d.multipliers = {1, 2};
    d.attention_levels = {1};
    adfw::DiffusionUNet b(d);
    adfw::SimpleNetDiscriminatorOptions s;
    s.in_channels = 8;
    s.hidden = 8;
    adfw::SimpleNetDiscriminator c(s);
    for (auto* net : std::initializer_list<adfw::Network*>{&a, &b, &c})
      for (auto& p : params_of(*net)) all.push_back(p);
    return all;
  };
  const auto first = build_all(11), second = build_all(11), other = build_all(12);
  REQUIRE(first.size() == second.size());
  bool any_differs = false;
  for (size_t i = 0; i < first.size(); ++i) {
    CHECK(torch::equal(first[i], second[i]));
    if (first[i].numel() > 1 && !torch::equal(first[i], other[i])) any_differs = true;
  }
  CHECK(any_differs);
}

TEST_CASE("networks: the diffusion U-Net is conditioned on the timestep", "[network]") {
  torch::manual_seed(5);
  adfw::DiffusionUNetOptions o;
  o.base = 32;
  o.multipliers = {1, 2};
  o.attention_levels = {1};
  adfw::DiffusionUNet net(o);
  const torch::Tensor x = torch::rand({2, 4, 16, 16});
  const torch::Tensor a = infer(net, x, torch::tensor({4, 4}, torch::kLong));
  const torch::Tensor b = infer(net, x, torch::tensor({4.0f, 4.0f}));
  const torch::Tensor c = infer(net, x, torch::tensor({4, 9}, torch::kLong));
  CHECK(torch::equal(a, b));                                   // int64 and float timesteps agree
  CHECK(torch::allclose(a[0], c[0], 1e-5, 1e-5));              // samples are independent in eval mode
  CHECK_FALSE(torch::allclose(a[1], c[1], 1e-6, 1e-6));        // another timestep, another output
}

TEST_CASE("networks: parameter names follow the reference state_dict keys", "[network]") {
  auto names_of = [](adfw::Network& net) {
    std::set<std::string> out;
    for (const auto& item : net.module()->named_parameters()) out.insert(item.key());
    for (const auto& item : net.module()->named_buffers()) out.insert(item.key());
    return out;
  };
  adfw::DraemReconstructiveOptions ro;
  ro.base_width = 4;
  adfw::DraemReconstructive recon(ro);
  adfw::DraemDiscriminativeOptions dop;
  dop.base_width = 4;
  adfw::DraemDiscriminative disc(dop);
  adfw::DiffusionUNetOptions dfo;
  dfo.base = 32;
  adfw::DiffusionUNet diff(dfo);
  adfw::RiadUNetOptions rio;
  rio.base_width = 4;
  adfw::RiadUNet riad(rio);
  // Keys as VitjanZ/DRAEM model_unet.py, MaticFuc/ECCV_TransFusion model/UNet.py and RIAD unet.py name them.
  const std::vector<std::pair<adfw::Network*, std::vector<std::string>>> expected = {
      {&recon, {"encoder.block1.0.weight", "encoder.block5.4.running_var", "decoder.up1.1.weight",
                "decoder.db4.3.bias", "decoder.fin_out.0.weight"}},
      {&disc, {"encoder_segment.block6.3.weight", "decoder_segment.up_b.1.weight", "decoder_segment.db_b.0.weight",
               "decoder_segment.db4.4.running_mean", "decoder_segment.fin_out.0.bias"}},
      {&diff, {"image_proj.weight", "time_emb.linear_1.weight", "down.0.res.norm1.weight", "down.2.conv.weight",
               "down.3.res.shortcut.weight", "down.6.res.time_emb.weight", "down.6.attn.projection.weight",
               "middle.attn.output.bias", "middle.res2.conv2.weight", "up.3.conv.weight", "norm.weight",
               "final.weight", "final_mean.weight", "final_seg.norm.running_mean", "final_seg.conv.weight"}},
      {&riad, {"down1.conv1.weight", "down5.bn2.running_var", "up1.upconv.weight", "up4.conv2.bias",
               "conv_final.0.weight"}},
  };
  for (const auto& [net, keys] : expected) {
    const auto names = names_of(*net);
    for (const auto& k : keys) {
      INFO(k);
      CHECK(names.count(k) == 1);
    }
  }
}
