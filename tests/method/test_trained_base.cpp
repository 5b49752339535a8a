// TrainedMethod, the base of the trained methods: seeded parts, the trainer's modules and groups,
// state() / load_state() with extra tensors, summary().

#include "adfw/core/error.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/method/trained.hpp"
#include "methods/riad/riad.hpp"
#include "support.hpp"

using namespace adfw;

namespace {

// Three linear parts: "a" (trained), "b" (trained, called "bee" by the trainer), "f" (frozen), and
// one extra tensor "stat" that exists once set.
class Toy : public TrainedMethod {
 public:
  Toy() : TrainedMethod("toy") {}
  Prediction predict(const Batch& batch, const RunContext&) override {
    require_built("predict()");
    eval_parts();
    return {torch::zeros({batch.size(), 1, 4, 4}), torch::zeros({batch.size()})};
  }
  torch::nn::Linear a{nullptr}, b{nullptr}, f{nullptr};
  torch::Tensor stat;
  using TrainedMethod::training_spec;
  using TrainedMethod::part_module;

 protected:
  void build_parts(const RunContext& ctx) override {
    a = make_part(ctx, "a", [] { return torch::nn::Linear(3, 2); });
    b = make_part(ctx, "b", [] { return torch::nn::Linear(2, 2); }, PartRole{true, "bee"});
    f = make_part(ctx, "f", [] { return torch::nn::Linear(2, 1); }, PartRole{false, ""});
  }
  void configure_training(TrainSpec&, FitContext&) override {}
  const TrainerOptions& trainer_options() const override { return trainer_; }
  const std::vector<LossTerm>* loss_terms() const override { return &losses_; }
  void describe(nlohmann::json& j) const override { j["toy"] = 1; }
  std::vector<std::string> extra_state_keys() const override { return {"stat"}; }
  bool has_extra_state() const override { return stat.defined(); }
  StateDict save_extra_state() const override { return {{"stat", stat}}; }
  void load_extra_state(const StateDict& extra, const std::string&) override { stat = extra.at("stat"); }

 private:
  TrainerOptions trainer_;
  std::vector<LossTerm> losses_{loss_term("type = 'l2'\nprediction = 'x'\ntarget = 'y'")};
};

RunContext run_with_seed(uint64_t seed) {
  RunContext ctx;
  ctx.seeds.experiment = seed;
  return ctx;
}

bool same_parameters(torch::nn::Module& x, torch::nn::Module& y) {
  const auto px = x.parameters(), py = y.parameters();
  if (px.size() != py.size()) return false;
  for (std::size_t i = 0; i < px.size(); ++i)
    if (!torch::equal(px[i], py[i])) return false;
  return true;
}

}  // namespace

TEST_CASE("trained base: each part is initialised from the init stream of \"<method>/<part>\"", "[method-trained]") {
  test::load_builtin_plugins();  // the loss registry (each ctest case is its own process)
  const RunContext ctx = run_with_seed(7);
  Toy toy;
  toy.build(ctx);
  torch::manual_seed(derive_seed(ctx.seeds.init(), "toy/a"));
  torch::nn::Linear a(3, 2);
  torch::manual_seed(derive_seed(ctx.seeds.init(), "toy/b"));
  torch::nn::Linear b(2, 2);
  CHECK(same_parameters(*toy.a, *a));
  CHECK(same_parameters(*toy.b, *b));
  // A built-in method keeps its historical stream names (its initial weights, hence its results).
  Riad riad(Riad::Options{});
  riad.build(ctx);
  torch::manual_seed(derive_seed(ctx.seeds.init(), "riad/network"));
  auto net = Riad::Options{}.network.make();
  CHECK(same_parameters(*riad.part("network").module(), *net->module()));
}

TEST_CASE("trained base: the trainer gets the trained parts in build order, under their trainer names", "[method-trained]") {
  test::load_builtin_plugins();  // the loss registry (each ctest case is its own process)
  Toy toy;
  toy.build(run_with_seed(1));
  const TrainSpec spec = toy.training_spec();
  REQUIRE(spec.modules.size() == 2);
  CHECK(spec.modules[0].first == "a");
  CHECK(spec.modules[0].second.get() == toy.a.ptr().get());
  CHECK(spec.modules[1].first == "bee");
  REQUIRE(spec.groups.size() == 2);
  CHECK(spec.groups[0].name == "a");
  CHECK(spec.groups[1].name == "bee");
  REQUIRE(spec.groups[1].params.size() == 2);
  CHECK(spec.groups[1].params[0].is_same(toy.b->weight));
  CHECK(spec.groups[1].params[1].is_same(toy.b->bias));
  CHECK(toy.part_module("f").get() == toy.f.ptr().get());
  CHECK_THROWS_WITH(toy.part_module("g"), Catch::Contains("no part 'g'") && Catch::Contains("parts: a, b, f"));
}

TEST_CASE("trained base: state() holds every part and the extra tensors, load_state() restores them", "[method-trained]") {
  test::load_builtin_plugins();  // the loss registry (each ctest case is its own process)
  Toy toy;
  CHECK_THROWS_WITH(toy.state(), Catch::Contains("toy: no fitted state yet"));
  const Batch empty;
  CHECK_THROWS_WITH(toy.predict(empty, RunContext{}), Catch::Contains("toy: predict() before fit()"));
  toy.build(run_with_seed(1));
  CHECK_THROWS_WITH(toy.state(), Catch::Contains("no fitted state yet"));  // no "stat" yet
  toy.stat = torch::tensor({1.5, 2.5}, torch::kFloat64);
  const StateDict s = toy.state();
  std::vector<std::string> keys;
  for (const auto& [k, v] : s) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"a.bias", "a.weight", "b.bias", "b.weight", "f.bias", "f.weight", "stat"});

  // Another seed gives other weights; loading the state gives these back, in eval mode.
  Toy other;
  other.load_state(s, run_with_seed(2), "toy.safetensors");
  CHECK(same_parameters(*other.a, *toy.a));
  CHECK(same_parameters(*other.b, *toy.b));
  CHECK(same_parameters(*other.f, *toy.f));
  CHECK(torch::equal(other.stat, toy.stat));
  CHECK_FALSE(other.a->is_training());
  CHECK_FALSE(other.f->is_training());

  StateDict bad = s;
  bad.erase("stat");
  bad["c.weight"] = torch::zeros({1});
  Toy third;
  CHECK_THROWS_WITH(third.load_state(bad, run_with_seed(1), "bad.safetensors"),
                    Catch::Contains("bad.safetensors") && Catch::Contains("stat") && Catch::Contains("c.weight"));
}

TEST_CASE("trained base: summary() names the method, its losses and its own facts", "[method-trained]") {
  test::load_builtin_plugins();  // the loss registry (each ctest case is its own process)
  Toy toy;
  const nlohmann::json j = toy.summary();
  CHECK(j.at("method") == "toy");
  REQUIRE(j.at("losses").size() == 1);
  CHECK(j.at("losses")[0].at("type") == "l2");
  CHECK(j.at("losses")[0].at("prediction") == "x");
  CHECK(j.at("toy") == 1);
}
