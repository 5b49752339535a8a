#include "adfw/method/trained.hpp"

#include "adfw/core/error.hpp"
#include "adfw/core/rng.hpp"

namespace adfw {

LossTerm loss_term(const std::string& toml_text) {
  toml::table t = toml::parse(toml_text);
  LossTerm term;
  term.read_toml(t, "losses");
  return term;
}

torch::Tensor pad_to_multiple(const torch::Tensor& x, int64_t multiple) {
  const int64_t h = x.size(-2), w = x.size(-1);
  const int64_t ph = (multiple - h % multiple) % multiple, pw = (multiple - w % multiple) % multiple;
  if (ph == 0 && pw == 0) return x;
  // Reflection needs the pad to be smaller than the side; fall back to replication otherwise.
  const bool reflect = ph < h && pw < w;
  auto o = torch::nn::functional::PadFuncOptions({0, pw, 0, ph});
  if (reflect) o.mode(torch::kReflect);
  else o.mode(torch::kReplicate);
  return torch::nn::functional::pad(x, o);
}

torch::Tensor crop_to(const torch::Tensor& x, int64_t height, int64_t width) {
  if (x.size(-2) == height && x.size(-1) == width) return x;
  return x.slice(-2, 0, height).slice(-1, 0, width);
}

torch::Tensor pixel_loss_weights(const Batch& batch) {
  const int64_t n = batch.size();
  auto w = torch::ones({n, 1, 1, 1}, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i)
    if (batch.info[static_cast<std::size_t>(i)].supervision == Supervision::image_label) w[i].fill_(0.0);
  return w;
}

std::vector<torch::Tensor> params_of(Network& n) { return n.module()->parameters(); }

// Seeds torch's generator for weight initialisation so a run's init depends only on its seed.
void seed_init(const RunContext& ctx, const std::string& part) { torch::manual_seed(derive_seed(ctx.seeds.init(), part)); }

nlohmann::json losses_json(const std::vector<LossTerm>& terms) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& t : terms)
    j.push_back({{"type", t.type()}, {"weight", t.weight()}, {"prediction", t.prediction()}, {"target", t.target()}});
  return j;
}

void require_losses(const std::vector<LossTerm>& terms, const std::string& method) {
  if (terms.empty()) throw ConfigError("method.losses: " + method + " needs at least one loss term");
}

}  // namespace adfw
