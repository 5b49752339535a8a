// DSR's parts against closed forms: the EMA vector quantiser (nearest code, straight-through
// gradient, commitment loss, EMA update), the latent anomaly generator (changes only inside the
// mask, only to codes outside the skipped nearest 5%), and strict loading of checkpoints with the
// reference's key names.
#include <algorithm>
#include <set>
#include <vector>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/options.hpp"
#include "adfw/synth/latent_anomaly.hpp"
#include "methods/dsr/dsr.hpp"
#include "support.hpp"

using namespace adfw;

namespace {

// A 4-code, 2-d codebook and a 1 x 2 x 2 x 3 input whose nearest codes are known.
struct VqCase {
  VectorQuantizerEMA q{4, 2, 0.25, 0.9};
  torch::Tensor codebook = torch::tensor({{0.0f, 0.0f}, {1.0f, 0.0f}, {0.0f, 2.0f}, {-1.0f, -1.0f}});
  // Six features (h = 2, w = 3) as (N,D,h,w).
  std::vector<std::array<float, 2>> z{{0.1f, 0.2f}, {0.9f, -0.1f}, {0.2f, 1.7f}, {-0.8f, -0.6f}, {0.7f, 0.1f}, {0.05f, 1.2f}};
  std::vector<int64_t> nearest{0, 1, 2, 3, 1, 2};
  VqCase() {
    torch::NoGradGuard ng;
    q->_embedding->weight.copy_(codebook);
    q->_ema_w.copy_(codebook * 3.0);
    q->_ema_cluster_size.copy_(torch::tensor({3.0f, 3.0f, 3.0f, 3.0f}));
  }
  torch::Tensor input() const {
    torch::Tensor t = torch::empty({1, 2, 2, 3});
    for (int64_t p = 0; p < 6; ++p)
      for (int64_t d = 0; d < 2; ++d) t[0][d][p / 3][p % 3] = z[p][d];
    return t;
  }
};

}  // namespace

TEST_CASE("dsr vq: nearest codes, straight-through gradient and commitment loss match closed forms", "[dsr]") {
  VqCase c;
  c.q->eval();
  torch::Tensor x = c.input().set_requires_grad(true);
  VqOutput o = c.q->forward(x);
  for (int64_t p = 0; p < 6; ++p) CHECK(o.indices[0][p / 3][p % 3].item<int64_t>() == c.nearest[p]);
  // The values are the codes (z + (e - z) rounds to e within an ulp of the larger magnitude).
  double sq = 0;
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t d = 0; d < 2; ++d) {
      const float e = c.codebook[c.nearest[p]][d].item<float>();
      CHECK(o.quantized[0][d][p / 3][p % 3].item<float>() == Approx(e).margin(1e-6));
      sq += (e - c.z[p][d]) * (e - c.z[p][d]);
    }
  CHECK(o.loss.item<double>() == Approx(0.25 * sq / 12).epsilon(1e-6));
  // Straight-through: d(sum w * quantized)/dx = w exactly.
  const torch::Tensor w = torch::arange(12, torch::kFloat32).view({1, 2, 2, 3}) - 5.0;
  (o.quantized * w).sum().backward();
  CHECK(torch::equal(x.grad(), w));
  // Commitment: d loss / dz = 0.25 * 2 (z - e) / numel.
  x.grad().zero_();
  c.q->forward(x).loss.backward();
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t d = 0; d < 2; ++d) {
      const double e = c.codebook[c.nearest[p]][d].item<float>();
      CHECK(x.grad()[0][d][p / 3][p % 3].item<double>() == Approx(0.5 * (c.z[p][d] - e) / 12).margin(1e-7));
    }
  // Usage 2, 2, 1, 1 of 6 -> perplexity exp(-sum p log p).
  const double pp = std::exp(-(2 * (1.0 / 3) * std::log(1.0 / 3 + 1e-10) + 2 * (1.0 / 6) * std::log(1.0 / 6 + 1e-10)));
  CHECK(o.perplexity.item<double>() == Approx(pp).epsilon(1e-6));
  // No gradient reaches the codebook, and eval mode leaves it alone.
  CHECK_FALSE(c.q->_embedding->weight.grad().defined());
  CHECK(torch::equal(c.q->_embedding->weight, c.codebook));
}

TEST_CASE("dsr vq: a train-mode forward updates the codebook by EMA with Laplace smoothing", "[dsr]") {
  VqCase c;
  c.q->train();
  const VqOutput o = c.q->forward(c.input());
  // The returned values still use the old codebook.
  CHECK(o.quantized[0][0][0][1].item<float>() == Approx(1.0f).margin(1e-6));
  const double decay = 0.9, eps = 1e-5;
  std::vector<double> counts(4, 0.0), size(4), sum_z(8, 0.0);
  for (int64_t p = 0; p < 6; ++p) {
    counts[c.nearest[p]] += 1;
    for (int d = 0; d < 2; ++d) sum_z[c.nearest[p] * 2 + d] += c.z[p][d];
  }
  double n = 0;
  for (int k = 0; k < 4; ++k) n += size[k] = 3.0 * decay + (1 - decay) * counts[k];
  for (int k = 0; k < 4; ++k) {
    const double smoothed = (size[k] + eps) / (n + 4 * eps) * n;
    CHECK(c.q->_ema_cluster_size[k].item<double>() == Approx(smoothed).epsilon(1e-6));
    for (int d = 0; d < 2; ++d) {
      const double w = 3.0 * c.codebook[k][d].item<float>() * decay + (1 - decay) * sum_z[k * 2 + d];
      CHECK(c.q->_ema_w[k][d].item<double>() == Approx(w).margin(1e-6));
      CHECK(c.q->_embedding->weight[k][d].item<double>() == Approx(w / smoothed).margin(1e-6));
    }
  }
}

TEST_CASE("dsr latent anomalies: codes change only inside the mask, never to the skipped nearest 5%", "[dsr]") {
  DsrLatentAnomaly::Options o;
  DsrLatentAnomaly gen(o);
  // Candidate counts: topk = max(1, min(int(s K) + 1, K - 1)), minus int(0.05 K).
  CHECK(DsrLatentAnomaly::nearest_kept(0.4f, 64) == 26);
  CHECK(DsrLatentAnomaly::nearest_kept(1.0f, 64) == 63);
  CHECK(DsrLatentAnomaly::nearest_kept(0.0f, 64) == 1);
  CHECK(gen.skipped(64) == 3);
  CHECK(gen.skipped(4096) == 204);
  CHECK(gen.candidates(0.4f, 64) == 23);
  CHECK_THROWS_AS(gen.candidates(0.01f, 64), Error);

  torch::manual_seed(3);
  const int64_t n = 3, dim = 4, h = 8, w = 8, k = 40;
  const torch::Tensor features = torch::randn({n, dim, h, w});
  const torch::Tensor codebook = torch::randn({k, dim});
  const torch::Tensor quantized = torch::randn({n, dim, h, w});
  // A 32 x 32 mask: a 12 x 20 rectangle, i.e. not aligned to the 4-pixel blocks of the grid.
  torch::Tensor mask = torch::zeros({n, 1, 32, 32});
  mask.slice(2, 5, 17).slice(3, 2, 22).fill_(1.0);
  mask[2].zero_();  // an empty mask changes nothing
  std::mt19937_64 rng(11);
  const LatentAnomalyDraws draws = gen.draw(n, h * w, k, rng);
  const LatentAnomalyResult r = gen.apply(features, quantized, codebook, mask, draws);

  // The mask at feature resolution: block (i, j) is inside when any of its 4 x 4 pixels is.
  int64_t inside_total = 0;
  for (int64_t b = 0; b < n; ++b) {
    const float s = draws.strength[b].item<float>();
    CHECK(s >= 0.2f);
    CHECK(s < 1.0f);
    const int64_t kept = DsrLatentAnomaly::nearest_kept(s, k), skip = gen.skipped(k);
    CHECK(r.candidates[b].item<int64_t>() == kept - skip);
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        const bool inside = b < 2 && i * 4 + 3 >= 5 && i * 4 < 17 && j * 4 + 3 >= 2 && j * 4 < 22;
        const int64_t code = r.codes[b][i][j].item<int64_t>();
        const torch::Tensor got = r.features[b].select(1, i).select(1, j);
        if (!inside) {
          CHECK(code == -1);
          CHECK(torch::equal(got, quantized[b].select(1, i).select(1, j)));
          continue;
        }
        ++inside_total;
        REQUIRE(code >= 0);
        CHECK(torch::equal(got, codebook[code]));
        // The code's distance rank among all K codes (by brute force): past the skipped nearest,
        // within the kept ones.
        const torch::Tensor z = features[b].select(1, i).select(1, j);
        const torch::Tensor d = (codebook - z).pow(2).sum(1);
        const int64_t rank = (d < d[code]).sum().item<int64_t>();
        CHECK(rank >= skip);
        CHECK(rank < kept);
      }
  }
  CHECK(inside_total == 2 * 4 * 6);  // rows 1..4, columns 0..5 of the 8 x 8 grid
  // The same draws give the same result.
  CHECK(torch::equal(gen.apply(features, quantized, codebook, mask, draws).features, r.features));
}

TEST_CASE("dsr latent anomalies: level choices follow the option", "[dsr]") {
  for (const std::string levels : {"both", "hi", "lo"}) {
    DsrLatentAnomaly::Options o;
    o.levels = levels;
    std::mt19937_64 rng(1);
    const LatentLevels l = DsrLatentAnomaly(o).draw_levels(16, rng);
    CHECK(l.use_both.sum().item<double>() == (levels == "both" ? 16 : 0));
    if (levels != "both") CHECK(l.use_lo.sum().item<double>() == (levels == "lo" ? 16 : 0));
  }
  DsrLatentAnomaly::Options o;
  std::mt19937_64 rng(2);
  const LatentLevels l = DsrLatentAnomaly(o).draw_levels(400, rng);
  CHECK(l.use_both.mean().item<double>() == Approx(0.5).margin(0.1));
  CHECK(l.use_lo.mean().item<double>() == Approx(0.5).margin(0.1));
}

TEST_CASE("dsr checkpoints: the reference's key names load strictly, errors name the missing keys", "[dsr]") {
  // Key names of discrete_model.py / dsr_model.py state_dicts.
  DiscreteLatentModelOptions vo;
  vo.num_hiddens = 8, vo.num_residual_hiddens = 4, vo.num_embeddings = 16, vo.embedding_dim = 4;
  DiscreteLatentModel vq(vo);
  const StateDict vs = state_dict_of(*vq);
  for (const char* key : {"_encoder_b._conv_1.weight", "_encoder_b._conv_3.bias",
                          "_encoder_t._residual_stack._layers.1._block.3.weight", "_pre_vq_conv_bot.weight",
                          "_pre_vq_conv_top.bias", "_vq_vae_top._embedding.weight", "_vq_vae_top._ema_cluster_size",
                          "_vq_vae_bot._ema_w", "_decoder_b._conv_trans_2.bias", "upsample_t.weight"})
    CHECK(vs.count(key) == 1);
  CHECK(vs.count("_encoder_t._conv_3.weight") == 0);  // EncoderTop has two convs
  SubspaceRestrictionModule sub(4);
  const StateDict ss = state_dict_of(*sub);
  CHECK(ss.count("unet.encoder.block3.3.weight") == 1);
  CHECK(ss.count("unet.decoder.fin_out.0.bias") == 1);
  DsrUnetModule det(6, 2);
  CHECK(state_dict_of(*det).count("unet.decoder.db1.0.weight") == 1);
  ImageReconstructionNetwork rec(8, 8, 2, 4, 8);
  CHECK(state_dict_of(*rec).count("_residual_stack._layers.0._block.1.weight") == 1);

  const auto dir = test::temp_dir("dsr_ckpt");
  StateDict cut = ss;
  cut.erase("unet.decoder.fin_out.0.bias");
  cut.erase("unet.encoder.block1.0.weight");
  save_state_dict(cut, dir / "subspace_restriction_hi_bottle.safetensors");
  SubspaceRestrictionModule other(4);
  try {
    load_checkpoint(*other, dir / "subspace_restriction_hi_bottle.safetensors");
    FAIL("a checkpoint with missing keys loaded");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("unet.decoder.fin_out.0.bias") != std::string::npos);
    CHECK(msg.find("unet.encoder.block1.0.weight") != std::string::npos);
    CHECK(msg.find("subspace_restriction_hi_bottle.safetensors") != std::string::npos);
  }
  // Nothing was copied on failure; a complete one loads and reproduces the weights.
  save_state_dict(ss, dir / "full.safetensors");
  load_checkpoint(*other, dir / "full.safetensors");
  CHECK(torch::equal(state_dict_of(*other).at("unet.decoder.fin_out.0.weight"), ss.at("unet.decoder.fin_out.0.weight")));

  // The method: vq_checkpoint is loaded strictly too, and combined state dicts name their module.
  test::load_builtin_plugins();
  save_state_dict(vs, dir / "vq.safetensors");
  const std::string text =
      "unet_base_width = 2\nimage_recon_bottleneck = 4\n[vq]\nnum_hiddens = 8\nnum_residual_hiddens = 4\n"
      "num_embeddings = 16\nembedding_dim = 4\n";
  Dsr::Options o;
  read_options(o, toml::parse("vq_checkpoint = '" + (dir / "vq.safetensors").string() + "'\n" + text), "method");
  Dsr dsr(o);
  dsr.build(RunContext{});
  CHECK(torch::equal(state_dict_of(*dsr.module("vq")).at("_vq_vae_bot._ema_w"), vs.at("_vq_vae_bot._ema_w")));
  StateDict vq_cut = vs;
  vq_cut.erase("_vq_vae_top._embedding.weight");
  save_state_dict(vq_cut, dir / "vq_cut.safetensors");
  Dsr::Options bad;
  read_options(bad, toml::parse("vq_checkpoint = '" + (dir / "vq_cut.safetensors").string() + "'\n" + text), "method");
  CHECK_THROWS_WITH(Dsr(bad).build(RunContext{}), Catch::Contains("_vq_vae_top._embedding.weight"));
  StateDict stray;
  stray["sub_res_hi.unet.decoder.fin_out.0.bias"] = ss.at("unet.decoder.fin_out.0.bias");
  stray["decoder_seg.weight"] = torch::zeros({1});
  CHECK_THROWS_WITH(dsr.load(stray, "mixed.safetensors"), Catch::Contains("decoder_seg.weight"));
  StateDict partial;
  partial["sub_res_hi.unet.decoder.fin_out.0.bias"] = ss.at("unet.decoder.fin_out.0.bias");
  CHECK_THROWS_WITH(dsr.load(partial, "partial.safetensors"), Catch::Contains("unet.encoder.block1.0.weight"));
  Dsr::Options missing;
  read_options(missing, toml::parse(text), "method");
  CHECK_THROWS_WITH(Dsr(missing).build(RunContext{}), Catch::Contains("vq_checkpoint"));
  Dsr::Options some;
  read_options(some, toml::parse("vq_checkpoint = 'random'\n" + text + "[checkpoints]\nsub_res_hi = 'x.pckl'\n"), "method");
  CHECK_THROWS_AS(Dsr(some), ConfigError);
}

TEST_CASE("dsr state: saved and loaded into a fresh instance, the same maps bit for bit", "[dsr]") {
  test::load_builtin_plugins();
  const std::string text =
      "vq_checkpoint = 'random'\nunet_base_width = 2\nimage_recon_bottleneck = 4\n[vq]\nnum_hiddens = 8\n"
      "num_residual_hiddens = 4\nnum_embeddings = 16\nembedding_dim = 4\n";
  Dsr::Options o;
  read_options(o, toml::parse(text), "method");
  RunContext a;
  a.seeds.experiment = 1;
  Dsr fitted(o);
  fitted.build(a);
  // Different init seeds: only the loaded state can make the second instance agree.
  RunContext b;
  b.seeds.experiment = 2;
  const auto file = test::temp_dir("dsr_state") / "model.safetensors";
  save_state_dict(fitted.state(), file);
  Dsr loaded(o);
  loaded.load_state(load_state_dict(file), b, file.string());
  Batch batch;
  torch::manual_seed(5);
  batch.images = torch::rand({2, 3, 32, 32});
  batch.info.resize(2);
  const Prediction p = fitted.predict(batch, a), q = loaded.predict(batch, b);
  CHECK(torch::equal(p.maps, q.maps));
  CHECK(torch::equal(p.scores, q.scores));
  StateDict cut = load_state_dict(file);
  const auto gone = cut.lower_bound("upsample.");
  REQUIRE(gone != cut.end());
  const std::string key = gone->first;
  cut.erase(gone);
  Dsr refused(o);
  CHECK_THROWS_WITH(refused.load_state(cut, b, "cut.safetensors"),
                    Catch::Contains(key) && Catch::Contains("cut.safetensors"));
}

TEST_CASE("dsr_crop: test_dsr.py crop_image margins", "[dsr]") {
  const torch::Tensor x = torch::arange(2 * 64 * 64, torch::kFloat32).view({2, 1, 64, 64});
  const torch::Tensor c = dsr_crop(x, 56);
  CHECK(c.sizes() == torch::IntArrayRef({2, 1, 56, 56}));
  CHECK(c[0][0][0][0].item<float>() == x[0][0][4][4].item<float>());
  CHECK(dsr_crop(x, 64).sizes() == x.sizes());
}
