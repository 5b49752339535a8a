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

nlohmann::json losses_json(const std::vector<LossTerm>& terms) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& t : terms)
    j.push_back({{"type", t.type()}, {"weight", t.weight()}, {"prediction", t.prediction()}, {"target", t.target()}});
  return j;
}

void require_losses(const std::vector<LossTerm>& terms, const std::string& method) {
  if (terms.empty()) throw ConfigError("method.losses: " + method + " needs at least one loss term");
}

TrainedMethod::TrainedMethod(std::string name, std::string seed_scope)
    : name_(std::move(name)), seed_scope_(seed_scope.empty() ? name_ : std::move(seed_scope)) {}

void TrainedMethod::build(const RunContext& ctx) {
  parts_.clear();
  build_parts(ctx);
}

void TrainedMethod::seed_part(const RunContext& ctx, const std::string& part) const {
  torch::manual_seed(derive_seed(ctx.seeds.init(), seed_scope_ + "/" + part));
}

void TrainedMethod::add_part(const std::string& part, std::shared_ptr<torch::nn::Module> module,
                             const torch::Device& device, PartRole role) {
  if (!module) throw Error(name_ + ": part '" + part + "' has no module");
  for (const auto& p : parts_)
    if (p.name == part) throw Error(name_ + ": part '" + part + "' made twice");
  module->to(device);
  parts_.push_back({part, std::move(module), std::move(role)});
}

std::unique_ptr<Network> TrainedMethod::make_part(const RunContext& ctx, const std::string& part,
                                                  const Slot<Network>& slot, PartRole role) {
  return make_part(ctx, part, [&slot] { return slot.make(); }, std::move(role));
}

TrainSpec TrainedMethod::training_spec() const {
  TrainSpec spec;
  for (const auto& p : parts_) {
    if (!p.role.trained) continue;
    const std::string& n = p.role.train_name.empty() ? p.name : p.role.train_name;
    spec.modules.push_back({n, p.module});
    spec.groups.push_back({n, p.module->parameters()});
  }
  return spec;
}

std::shared_ptr<torch::nn::Module> TrainedMethod::part_module(const std::string& part) const {
  std::string names;
  for (const auto& p : parts_) {
    if (p.name == part) return p.module;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  throw Error(name_ + ": no part '" + part + "' (" + (parts_.empty() ? "call build() first" : "parts: " + names) +
              ")");
}

void TrainedMethod::require_built(const std::string& what) const {
  if (parts_.empty()) throw Error(name_ + ": " + what + " before fit()");
}

void TrainedMethod::eval_parts() {
  for (auto& p : parts_) p.module->eval();
}

void TrainedMethod::fit(FitContext& ctx) {
  if (const auto* terms = loss_terms()) require_losses(*terms, name_);
  build(ctx.run);
  TrainSpec spec = training_spec();
  spec.score = [this, &ctx](const Batch& b) { return predict(b, ctx.run).scores; };
  configure_training(spec, ctx);
  if (std::optional<FitContext> data = training_data(ctx)) trained_ = train(*data, trainer_options(), spec);
  else trained_ = train(ctx, trainer_options(), spec);
  after_training(ctx);
}

nlohmann::json TrainedMethod::summary() const {
  nlohmann::json j = trained_.to_json();
  j["method"] = name_;
  if (const auto* terms = loss_terms()) j["losses"] = losses_json(*terms);
  describe(j);
  return j;
}

StateDict TrainedMethod::state() const {
  if (parts_.empty() || !has_extra_state()) throw Error(name_ + ": no fitted state yet (fit() or load_state() first)");
  StateLayout l;
  for (const auto& p : parts_) l.module(p.name, *p.module);
  StateDict s = l.save();
  for (auto& [k, v] : save_extra_state()) s[k] = v;
  return s;
}

void TrainedMethod::load_state(const StateDict& state, const RunContext& ctx, const std::string& source) {
  build(ctx);
  StateDict extra;
  StateLayout l;
  for (const auto& p : parts_) l.module(p.name, *p.module);
  const std::vector<std::string> keys = extra_state_keys();
  for (const auto& k : keys) extra[k] = torch::Tensor();
  for (auto& [k, v] : extra) l.tensor(k, v);
  l.load(state, source, ctx.device);
  eval_parts();
  if (!keys.empty()) load_extra_state(extra, source);
}

}  // namespace adfw
