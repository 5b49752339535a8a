// The scoring slots every method shares: the `postprocess` chain (registered MapPostprocess parts,
// in order) and the `image_score` reducer. Each method's defaults are its reference's
// post-processing and image score; swapping the reducer changes the image score to the reducer's
// closed form on the method's map; retired keys say what to write instead.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/metric/reducers.hpp"
#include "methods/anomalydino/anomalydino.hpp"
#include "methods/draem/draem.hpp"
#include "methods/dsr/dsr.hpp"
#include "methods/efficientad/efficientad.hpp"
#include "methods/padim/padim.hpp"
#include "methods/patchcore/patchcore.hpp"
#include "methods/riad/riad.hpp"
#include "methods/segdec/segdec.hpp"
#include "methods/supersimplenet/supersimplenet.hpp"
#include "methods/transfusion/transfusion.hpp"
#include "support.hpp"

using namespace adfw;
using Catch::Contains;

namespace {

std::vector<std::string> types(const PostprocessChain& chain) {
  std::vector<std::string> t;
  for (const auto& s : chain.parts()) t.push_back(s.type());
  return t;
}

// upsample (plain), then gaussian(sigma, kernel_size, border).
void check_upsample_gaussian(const PostprocessChain& chain, double sigma, int kernel, const std::string& border) {
  REQUIRE(types(chain) == std::vector<std::string>{"upsample", "gaussian"});
  CHECK_FALSE(chain.parts()[0].options<metric::UpsampleOptions>().align);
  const auto& g = chain.parts()[1].options<metric::GaussianOptions>();
  CHECK(g.sigma == sigma);
  CHECK(g.kernel_size == kernel);
  CHECK(g.border == border);
}

}  // namespace

TEST_CASE("every method's default postprocess chain and image score are its reference's", "[method][scoring]") {
  test::load_builtin_plugins();
  // PatchCore (patchcore.py): bilinear upsampling, Gaussian sigma 4; image score = the largest patch
  // distance, before upsampling.
  PatchCore::Options pc;
  check_upsample_gaussian(pc.postprocess, 4.0, 0, "symmetric");
  CHECK(pc.image_score.slot().type() == "max");
  CHECK(pc.image_score.slot().options<metric::MaxOptions>().map == "raw");
  // PaDiM (main.py): the same chain; image score = the maximum of the final map.
  PaDiM::Options pd;
  check_upsample_gaussian(pd.postprocess, 4.0, 0, "symmetric");
  CHECK(pd.image_score.type() == "max");
  CHECK(pd.image_score.options<metric::MaxOptions>().map == "final");
  // AnomalyDINO (post_eval.py mean_top1p): the mean of the top 1% of the patch distances.
  AnomalyDINO::Options ad;
  check_upsample_gaussian(ad.postprocess, 4.0, 0, "symmetric");
  CHECK(ad.image_score.slot().type() == "topk_mean");
  CHECK(ad.image_score.slot().options<metric::TopKMeanOptions>().fraction == 0.01);
  CHECK(ad.image_score.slot().options<metric::TopKMeanOptions>().map == "raw");
  // DRAEM (test_DRAEM.py): the softmax map as it is; max of its 21 x 21 mean.
  Draem::Options dr;
  CHECK(dr.postprocess.parts().empty());
  CHECK(dr.image_score.type() == "avgpool_max");
  CHECK(dr.image_score.options<metric::AvgPoolMaxOptions>().kernel == 21);
  // RIAD (test.py): scipy gaussian_filter sigma 7, truncate 4 -> 57 taps, mirrored borders; max.
  Riad::Options ri;
  check_upsample_gaussian(ri.postprocess, 7.0, 57, "symmetric");
  CHECK(ri.image_score.type() == "max");
  // SuperSimpleNet (AnomalyMapGenerator): upsampling, torchvision GaussianBlur(25, sigma 4) with
  // torch's reflect padding; the classification head's score.
  SuperSimpleNet::Options ss;
  check_upsample_gaussian(ss.postprocess, 4.0, 0, "reflect");
  CHECK(ss.image_score.type() == "method");
  // TransFusion (Experiment.py): convolve2d(ones(7, 7) / 49, "same"), zero fill; max.
  TransFusion::Options tf;
  REQUIRE(types(tf.postprocess) == std::vector<std::string>{"mean_filter"});
  CHECK(tf.postprocess.parts()[0].options<metric::MeanFilterOptions>().kernel == 7);
  CHECK(tf.postprocess.parts()[0].options<metric::MeanFilterOptions>().border == "zeros");
  CHECK(tf.image_score.type() == "max");
  // DSR (test_dsr.py): the upsampling module's map as it is; the image score pools the anomaly
  // detection module's map (the raw map of its image_score slot), 21 x 21, and takes the max.
  Dsr::Options ds;
  CHECK(ds.postprocess.parts().empty());
  CHECK(ds.image_score.slot().type() == "avgpool_max");
  CHECK(ds.image_score.slot().options<metric::AvgPoolMaxOptions>().kernel == 21);
  CHECK(ds.image_score.slot().options<metric::AvgPoolMaxOptions>().map == "raw");
  CHECK(DsrVqPretrain::Options{}.postprocess.parts().empty());
  // EfficientAD (efficientad.py test()): the padded, upsampled map as it is; its max.
  EfficientAd::Options ea;
  CHECK(ea.postprocess.parts().empty());
  CHECK(ea.image_score.type() == "max");
  CHECK(EfficientAdTeacher::Options{}.image_score.type() == "max");
  // SegDecNet (end2end.py): the decision head's score; the resized segmentation map as it is.
  SegDec::Options sd;
  CHECK(sd.postprocess.parts().empty());
  CHECK(sd.image_score.type() == "method");
}

TEST_CASE("the feature methods' default chain is bilinear upsampling, then the Gaussian", "[method][scoring]") {
  test::load_builtin_plugins();
  const MapScoring s(PatchCore::Options{}.postprocess, Slot<ImageScoreReducer>("max"), "patchcore", false);
  // A constant map stays constant at the input size (the mirrored borders keep it so).
  const torch::Tensor c = torch::full({2, 1, 4, 5}, 1.5f);
  const torch::Tensor out = s.postprocess(c, {{32, 40}});
  REQUIRE(out.sizes() == torch::IntArrayRef({2, 1, 32, 40}));
  CHECK(out.allclose(torch::full({2, 1, 32, 40}, 1.5f), 1e-6, 1e-6));
  // On a 1-cell-wide spike: bilinear (align_corners false) to 4x, then the normalised 25-tap
  // Gaussian sigma 4 with mirrored borders, written out here. Row 0 of a (1,1,1,8) map upsampled to
  // (4, 32) is constant along y, so the Gaussian along y leaves it as it is.
  torch::Tensor spike = torch::zeros({1, 1, 1, 8});
  spike[0][0][0][3] = 1;
  const torch::Tensor sm = s.postprocess(spike, {{4, 32}});
  std::vector<double> up(32);
  for (int j = 0; j < 32; ++j) {
    const double u = std::clamp((j + 0.5) / 4 - 0.5, 0.0, 7.0);  // source coordinate
    const int i0 = static_cast<int>(std::floor(u));
    const double f = u - i0;
    const auto v = [](int i) { return i == 3 ? 1.0 : 0.0; };
    up[j] = (1 - f) * v(i0) + f * v(std::min(i0 + 1, 7));
  }
  std::vector<double> k(25);
  for (int d = -12; d <= 12; ++d) k[d + 12] = std::exp(-d * d / 32.0);
  const double ksum = std::accumulate(k.begin(), k.end(), 0.0);
  for (int x : {0, 5, 13, 14, 20, 31}) {
    double want = 0;
    for (int d = -12; d <= 12; ++d) {
      int j = x + d;  // scipy "reflect": d c b a | a b c d
      if (j < 0) j = -j - 1;
      if (j > 31) j = 63 - j;
      want += k[d + 12] / ksum * up[j];
    }
    CHECK(sm[0][0][2][x].item<double>() == Approx(want).margin(1e-6));
  }
}

TEST_CASE("mean_filter borders: zeros count in the mean (TransFusion), mirrored ones keep a constant", "[metric][scoring]") {
  using metric::MeanFilterOptions;
  using metric::MeanFilterPostprocess;
  const torch::Tensor ones = torch::ones({1, 1, 9, 9});
  MeanFilterOptions z;
  z.kernel = 7;
  z.border = "zeros";
  const torch::Tensor m = MeanFilterPostprocess(z).apply(ones, {{9, 9}});
  // A 7 x 7 window at a corner covers 4 x 4 pixels of the image, at an edge's middle 4 x 7.
  CHECK(m[0][0][0][0].item<double>() == Approx(16.0 / 49));
  CHECK(m[0][0][0][4].item<double>() == Approx(28.0 / 49));
  CHECK(m[0][0][4][4].item<double>() == Approx(1.0));
  for (const char* b : {"symmetric", "reflect"}) {
    MeanFilterOptions o;
    o.kernel = 7;
    o.border = b;
    CHECK(MeanFilterPostprocess(o).apply(ones, {{9, 9}}).allclose(ones, 1e-6, 1e-6));
  }
  // A corner spike of 9 under a 3 x 3 window: rows/cols {1, 0, 1} with torch's reflect (seen once),
  // {0, 0, 1} with the edge repeated (seen four times).
  torch::Tensor corner = torch::zeros({1, 1, 5, 5});
  corner[0][0][0][0] = 9;
  MeanFilterOptions r;
  r.border = "reflect";
  CHECK(MeanFilterPostprocess(r).apply(corner, {{5, 5}})[0][0][0][0].item<double>() == Approx(1.0));
  CHECK(MeanFilterPostprocess().apply(corner, {{5, 5}})[0][0][0][0].item<double>() == Approx(4.0));
  MeanFilterOptions even;
  even.kernel = 4;
  CHECK_THROWS_AS(MeanFilterPostprocess(even), ConfigError);
}

TEST_CASE("upsample align needs a grid, and log1p smooths log(1 + score) and refuses negative scores", "[metric][scoring]") {
  metric::UpsampleOptions a;
  a.align = true;
  const torch::Tensor m = torch::rand({1, 1, 4, 4});
  CHECK_THROWS_WITH(metric::UpsamplePostprocess(a).apply(m, {{16, 16}}), Contains("grid geometry"));
  const GridGeometry g{3.0, 1.0, 4.0};
  CHECK(metric::UpsamplePostprocess(a).apply(m, {{16, 16}, &g}).equal(upsample_on_grid(m, 16, 16, g)));
  const torch::Tensor c = torch::full({1, 1, 4, 4}, 3.0);
  CHECK(metric::Log1pPostprocess().apply(c, {{4, 4}}).allclose(torch::full({1, 1, 4, 4}, std::log1p(3.0)), 1e-6, 1e-6));
  CHECK_THROWS_WITH(metric::Log1pPostprocess().apply(-c, {{4, 4}}), Contains("needs scores >= 0"));
}

TEST_CASE("patchcore with a topk_mean image score: the mean of the top q of its patch distances", "[method][scoring]") {
  test::load_builtin_plugins();
  const auto make = [](const std::string& extra) {
    PatchCore::Options o;
    read_options(o,
                 toml::parse("[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\n"
                             "layers = ['layer1', 'layer2']\n" +
                             extra),
                 "method");
    torch::manual_seed(0);
    return std::make_unique<PatchCore>(o);
  };
  const auto reference = make("");
  const auto topk = make("[image_score]\ntype = 'topk_mean'\nfraction = 0.1\nmap = 'raw'\n");
  const RunContext ctx;
  torch::manual_seed(1);
  const torch::Tensor train = torch::rand({3, 3, 64, 64});
  Batch batch;
  batch.images = torch::rand({3, 3, 64, 64});
  const torch::Tensor e = reference->embed(train, ctx);
  const StateDict state{{"memory_bank", e.reshape({-1, e.size(3)}).contiguous()}};
  reference->load_state(state, ctx, "test");
  topk->load_state(state, ctx, "test");
  const Prediction a = reference->predict(batch, ctx);
  const Prediction b = topk->predict(batch, ctx);
  CHECK(a.maps.equal(b.maps));  // the reducer changes the image score only
  // The patch distances (layer1's 16 x 16 grid at 64 px), sorted.
  const torch::Tensor q = reference->embed(batch.images, ctx);
  const torch::Tensor d = reference->bank().score(q.reshape({-1, q.size(3)})).reshape({3, -1}).contiguous();
  REQUIRE(d.size(1) == 256);
  const int64_t count = 25;  // floor(0.1 * 256)
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<float> v(d[i].data_ptr<float>(), d[i].data_ptr<float>() + d.size(1));
    std::sort(v.begin(), v.end(), std::greater<float>());
    CHECK(a.scores[i].item<float>() == v[0]);
    const double mean = std::accumulate(v.begin(), v.begin() + count, 0.0) / count;
    CHECK(b.scores[i].item<double>() == Approx(mean).epsilon(1e-5));
  }
}

TEST_CASE("retired scoring keys say what to write instead", "[method][scoring]") {
  test::load_builtin_plugins();
  const auto error = [](auto options, const std::string& text) {
    return test::error_of<ConfigError>([&] { read_options(options, toml::parse(text), "method"); });
  };
  const std::string smoothing = error(PatchCore::Options{}, "[smoothing]\nsigma = 2.0\n");
  CHECK_THAT(smoothing, Contains("method.smoothing") && Contains("[[method.postprocess]]") &&
                            Contains("type = \"gaussian\""));
  CHECK_THAT(error(Draem::Options{}, "[smoothing]\nsigma = 0.0\n"), Contains("method.postprocess"));
  CHECK_THAT(error(TransFusion::Options{}, "mean_filter = 3\n"),
             Contains("method.mean_filter") && Contains("type = \"mean_filter\"") && Contains("border = \"zeros\""));
  CHECK_THAT(error(SuperSimpleNet::Options{}, "score_raw_map = true\n"), Contains("map = \"raw\""));
  CHECK_THAT(error(AnomalyDINO::Options{}, "top_fraction = 0.01\n"), Contains("type = \"topk_mean\""));
  // Resolved configs carry the chain, not the retired keys.
  const toml::table written = write_options(PatchCore::Options{});
  CHECK_FALSE(written.contains("smoothing"));
  REQUIRE(written.get_as<toml::array>("postprocess"));
  CHECK(written.get_as<toml::array>("postprocess")->size() == 2);
  // A chain read back from TOML replaces the default one, in order.
  PatchCore::Options o;
  read_options(o, toml::parse("[[postprocess]]\ntype = 'log1p'\n[[postprocess]]\ntype = 'upsample'\n"), "method");
  CHECK(types(o.postprocess) == std::vector<std::string>{"log1p", "upsample"});
}

TEST_CASE("a partial image_score table is laid over the method's default reducer", "[method][scoring]") {
  test::load_builtin_plugins();
  AnomalyDINO::Options o;
  read_options(o, toml::parse("[image_score]\nfraction = 0.05\n"), "method");
  CHECK(o.image_score.slot().type() == "topk_mean");
  CHECK(o.image_score.slot().options<metric::TopKMeanOptions>().fraction == 0.05);
  CHECK(o.image_score.slot().options<metric::TopKMeanOptions>().map == "raw");  // kept from the default
  // Another reducer starts from its own defaults.
  read_options(o, toml::parse("[image_score]\ntype = 'max'\n"), "method");
  CHECK(o.image_score.slot().type() == "max");
  CHECK(o.image_score.slot().options<metric::MaxOptions>().map == "final");
  CHECK_THAT(test::error_of<ConfigError>([&] { read_options(o, toml::parse("[image_score]\nfractoin = 0.1\n"), "method"); }),
             Contains("method.image_score.fractoin"));
  CHECK_THROWS_WITH(MapScoring(PostprocessChain(), Slot<ImageScoreReducer>("method"), "padim", false),
                    Contains("no image-level output"));
}
