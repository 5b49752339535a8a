// The trainer: schedules against closed forms, updates against hand-computed SGD steps, exact
// resume from a checkpoint, checkpoint selection on held-out images, and the non-finite stop.
#include <cmath>
#include <fstream>
#include <sstream>

#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/data/demo.hpp"
#include "adfw/train/trainer.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;

TEST_CASE("scheduler: factors follow the closed forms", "[trainer]") {
  SchedulerOptions s;
  s.kind = "multistep";
  s.milestones = {0.8, 0.9};
  s.gamma = 0.2;
  // 10 epochs: milestones at floor(8.0) = 8 and floor(9.0) = 9, as int(0.8 * epochs) in DRAEM.
  CHECK(s.factor(0, 10) == Approx(1.0));
  CHECK(s.factor(7, 10) == Approx(1.0));
  CHECK(s.factor(8, 10) == Approx(0.2));
  CHECK(s.factor(9, 10) == Approx(0.04));
  s.kind = "step";
  s.step_every = 3;
  s.gamma = 0.5;
  CHECK(s.factor(2, 10) == Approx(1.0));
  CHECK(s.factor(3, 10) == Approx(0.5));
  CHECK(s.factor(7, 10) == Approx(0.25));
  s.kind = "cosine";
  s.final_factor = 0.4;
  CHECK(s.factor(0, 10) == Approx(1.0));
  CHECK(s.factor(5, 10) == Approx(0.7));  // 0.4 + 0.6 * (1 + cos(pi/2)) / 2
  CHECK(s.factor(10, 10) == Approx(0.4));
  CHECK(s.factor(2, 10) == Approx(0.4 + 0.6 * 0.5 * (1 + std::cos(M_PI * 0.2))));
  s.kind = "constant";
  s.warmup = 4;
  s.warmup_start = 0.2;
  CHECK(s.factor(0, 10) == Approx(0.2));
  CHECK(s.factor(2, 10) == Approx(0.6));
  CHECK(s.factor(4, 10) == Approx(1.0));
}

TEST_CASE("effective_length: the experiment's limits cap epochs and steps", "[trainer]") {
  TrainerOptions o;
  o.epochs = 700;
  LimitsOptions l;
  CHECK(effective_length(o, l) == std::pair<int64_t, int64_t>{700, 0});
  l.epochs = 2;
  l.steps = 5;
  CHECK(effective_length(o, l) == std::pair<int64_t, int64_t>{2, 5});
  o.steps = 3;
  CHECK(effective_length(o, l) == std::pair<int64_t, int64_t>{2, 3});
}

namespace {

struct Toy {
  // Two scalar parameters in two groups; loss = mean((a - m)^2) + mean((b + m)^2) with m the
  // mean pixel of each image, plus hook noise and step noise so exact resume is tested with
  // every source of randomness in play.
  std::shared_ptr<torch::nn::Module> module = std::make_shared<torch::nn::Module>();
  torch::Tensor a, b;
  bool noisy = false;
  Toy(double a0, double b0) {
    a = module->register_parameter("a", torch::full({1}, a0, torch::kFloat64));
    b = module->register_parameter("b", torch::full({1}, b0, torch::kFloat64));
  }
  TrainSpec spec() {
    TrainSpec s;
    s.modules = {{"toy", module}};
    s.groups = {{"a", {a}}, {"b", {b}}};
    s.step = [this](const Batch& batch, std::mt19937_64& rng, int64_t) {
      torch::Tensor m = batch.images.to(torch::kFloat64).mean({1, 2, 3});
      if (noisy) m = m + std::uniform_real_distribution<double>(0, 0.1)(rng) + 0.01 * torch::randn_like(m);
      torch::Tensor la = (a - m).pow(2).mean();
      torch::Tensor lb = (b + m).pow(2).mean();
      LossValues v;
      v.total = la + lb;
      v.terms = {{"l2:a", la.item<double>()}, {"l2:b", lb.item<double>()}};
      return v;
    };
    if (noisy)
      s.hook = [](Sample& smp, std::mt19937_64& rng) {
        smp.image = smp.image + std::uniform_real_distribution<float>(0, 0.05f)(rng);
      };
    return s;
  }
};

struct ToySetup {
  std::vector<SampleInfo> train;
  TransformOptions transforms;
  ToySetup() {
    DemoOptions d;
    d.cache_dir = test::temp_dir("trainer_demo").string();
    d.categories = {"grid"};
    d.image_size = 32;
    d.n_train = 6;
    d.n_test_good = 2;
    d.n_test_defect = 2;
    ensure_demo_data(d);
    train = DemoDataset(d).samples(Split::train);
    transforms.normalize = "none";
  }
};

RunContext run_ctx(const fs::path& dir, bool resume = false) {
  RunContext r;
  r.dir = dir;
  r.seeds.experiment = 7;
  r.loader_workers = 1;
  r.resume = resume;
  return r;
}

double mean_pixel(const std::vector<SampleInfo>& samples, const TransformOptions& t) {
  Transform tr(t);
  double sum = 0;
  for (const auto& s : samples) sum += tr(s).image.to(torch::kFloat64).mean().item<double>();
  return sum / samples.size();
}

}  // namespace

TEST_CASE("trainer: one SGD step per group matches the hand-computed update", "[trainer]") {
  ToySetup data;
  Toy toy(0.3, -0.1);
  TrainerOptions o;
  o.epochs = 1;
  o.batch_size = 6;  // the whole training set in one batch
  o.shuffle = false;
  o.augment = false;
  o.optimizer.kind = "sgd";
  o.optimizer.lr = 0.1;
  o.groups = {ParamGroupOptions{"b", 0.5, -1}};
  RunContext run = run_ctx("");
  FitContext ctx{run, data.train, {}, {}, data.transforms};
  TrainSpec spec = toy.spec();
  TrainSummary s = train(ctx, o, spec);
  CHECK(s.steps == 1);
  // d/da mean((a - m_i)^2) = 2 (a - mean m); same for b with +.
  const double m = mean_pixel(data.train, data.transforms);
  CHECK(toy.a.item<double>() == Approx(0.3 - 0.1 * 2 * (0.3 - m)).epsilon(1e-6));
  CHECK(toy.b.item<double>() == Approx(-0.1 - 0.5 * 2 * (-0.1 + m)).epsilon(1e-6));

  o.groups = {ParamGroupOptions{"c", 0.5, -1}};
  TrainSpec spec2 = toy.spec();
  CHECK_THROWS_WITH(train(ctx, o, spec2), Catch::Contains("unknown parameter group 'c'"));
}

TEST_CASE("trainer: epochs = 0 keeps the initial weights (the untrained baseline)", "[trainer]") {
  ToySetup data;
  Toy toy(0.3, -0.1);
  TrainerOptions o;
  o.epochs = 0;
  o.optimizer.kind = "sgd";
  o.optimizer.lr = 0.1;
  RunContext run = run_ctx("");
  FitContext ctx{run, data.train, {}, {}, data.transforms};
  TrainSpec spec = toy.spec();
  TrainSummary s = train(ctx, o, spec);
  CHECK(s.steps == 0);
  CHECK(toy.a.item<double>() == 0.3);
  CHECK(toy.b.item<double>() == -0.1);
  CHECK_THAT(s.selection, Catch::Contains("initial weights"));
}

TEST_CASE("trainer: multistep lr is logged per step in train_log.csv", "[trainer]") {
  ToySetup data;
  Toy toy(0.0, 0.0);
  TrainerOptions o;
  o.epochs = 5;
  o.batch_size = 3;  // 2 steps per epoch
  o.optimizer.kind = "sgd";
  o.optimizer.lr = 0.01;
  o.scheduler.kind = "multistep";
  o.scheduler.milestones = {0.6};
  o.scheduler.gamma = 0.1;
  const fs::path dir = test::temp_dir("trainer_log");
  RunContext run = run_ctx(dir);
  FitContext ctx{run, data.train, {}, {}, data.transforms};
  TrainSpec spec = toy.spec();
  train(ctx, o, spec);
  std::istringstream in(read_file(dir / "train_log.csv"));
  std::string line;
  std::getline(in, line);
  CHECK(line == "step,epoch,lr,loss,l2:a,l2:b");
  int rows = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    for (std::string c; std::getline(ls, c, ',');) f.push_back(c);
    REQUIRE(f.size() == 6);
    const int epoch = std::stoi(f[1]);
    // Milestone at floor(0.6 * 5) = epoch index 3 = the 4th epoch.
    CHECK(std::stod(f[2]) == Approx(epoch >= 4 ? 0.001 : 0.01));
    ++rows;
  }
  CHECK(rows == 10);
  CHECK(fs::exists(dir / "checkpoint" / "state.json"));
}

TEST_CASE("trainer: a run stopped part-way and resumed ends exactly like an uninterrupted one", "[trainer]") {
  ToySetup data;
  TrainerOptions o;
  o.epochs = 4;
  o.batch_size = 2;  // 6 images: 3 steps per epoch, 12 in all
  o.optimizer.kind = "adam";
  o.optimizer.lr = 0.05;
  o.checkpoint_every = 1;

  const fs::path full = test::temp_dir("trainer_full");
  Toy a(0.5, 0.5);
  a.noisy = true;
  {
    RunContext run = run_ctx(full);
    FitContext ctx{run, data.train, {}, {}, data.transforms};
    TrainSpec spec = a.spec();
    train(ctx, o, spec);
  }

  // The same run "killed" after 5 steps (mid-epoch): stop there, then resume with a fresh model
  // (what a new process has) from the checkpoint.
  const fs::path part = test::temp_dir("trainer_part");
  {
    Toy b(0.5, 0.5);
    b.noisy = true;
    RunContext run = run_ctx(part);
    run.limits.steps = 5;
    FitContext ctx{run, data.train, {}, {}, data.transforms};
    TrainSpec spec = b.spec();
    TrainSummary s = train(ctx, o, spec);
    CHECK(s.steps == 5);
    CHECK(b.a.item<double>() != a.a.item<double>());
  }
  Toy c(9.0, 9.0);  // different init: everything must come from the checkpoint
  c.noisy = true;
  {
    RunContext run = run_ctx(part, true);
    FitContext ctx{run, data.train, {}, {}, data.transforms};
    TrainSpec spec = c.spec();
    TrainSummary s = train(ctx, o, spec);
    CHECK(s.resumed_from_step == 5);
    CHECK(s.steps == 12);
  }
  CHECK(c.a.item<double>() == a.a.item<double>());
  CHECK(c.b.item<double>() == a.b.item<double>());
  CHECK(read_file(part / "train_log.csv") == read_file(full / "train_log.csv"));
}

TEST_CASE("trainer: selection = val keeps the weights of the lowest held-out loss", "[trainer]") {
  ToySetup data;
  Toy toy(2.0, -2.0);
  TrainerOptions o;
  o.epochs = 6;
  o.batch_size = 2;
  o.optimizer.kind = "sgd";
  // Converges for the first half (lr 0.3), then overshoots and diverges (lr 1.2: each step
  // multiplies the error by -1.4), so the best held-out epoch is neither the first nor the last.
  o.optimizer.lr = 0.3;
  o.scheduler.kind = "multistep";
  o.scheduler.milestones = {0.5};
  o.scheduler.gamma = 4.0;
  o.selection = "val";
  o.val_fraction = 0.34;
  RunContext run = run_ctx(test::temp_dir("trainer_val"));
  FitContext ctx{run, data.train, {}, {}, data.transforms};
  TrainSpec spec = toy.spec();
  // Validation calls the step with step = -1; a round starts when one follows a training step.
  struct Round {
    double sum = 0, n = 0, a = 0, b = 0;
  };
  std::vector<Round> rounds;
  bool in_validation = false;
  auto inner = spec.step;
  spec.step = [&](const Batch& batch, std::mt19937_64& rng, int64_t step) {
    if (step < 0 && !in_validation) rounds.push_back({0, 0, toy.a.item<double>(), toy.b.item<double>()});
    in_validation = step < 0;
    LossValues v = inner(batch, rng, step);
    if (step < 0) rounds.back().sum += v.total.item<double>() * batch.size(), rounds.back().n += batch.size();
    return v;
  };
  TrainSummary s = train(ctx, o, spec);
  REQUIRE(rounds.size() == 6);
  std::size_t best = 0;
  for (std::size_t i = 1; i < rounds.size(); ++i)
    if (rounds[i].sum / rounds[i].n < rounds[best].sum / rounds[best].n) best = i;
  // The set-up only tests selection if the best held-out epoch is neither the first nor the last.
  REQUIRE(best != 0);
  REQUIRE(best != rounds.size() - 1);
  CHECK(s.selection.find("validation") != std::string::npos);
  CHECK(s.selected_epoch == static_cast<int64_t>(best));
  CHECK(toy.a.item<double>() == rounds[best].a);
  CHECK(toy.b.item<double>() == rounds[best].b);
  CHECK(fs::exists(run.dir / "checkpoint" / "best.safetensors"));
}

TEST_CASE("trainer: a non-finite loss stops the run naming the step and the term", "[trainer]") {
  ToySetup data;
  Toy toy(0.0, 0.0);
  TrainerOptions o;
  o.epochs = 3;
  o.batch_size = 2;
  TrainSpec spec = toy.spec();
  spec.step = [&](const Batch&, std::mt19937_64&, int64_t step) {
    LossValues v;
    v.total = toy.a.sum() * 0 + (step == 2 ? std::nan("") : 1.0);
    v.terms = {{"focal:segmentation", step == 2 ? std::nan("") : 1.0}};
    return v;
  };
  RunContext run = run_ctx("");
  FitContext ctx{run, data.train, {}, {}, data.transforms};
  CHECK_THROWS_WITH(train(ctx, o, spec),
                    Catch::Contains("step 3") && Catch::Contains("focal:segmentation") && Catch::Contains("nan"));
}

namespace {

// Two stages over the toy: the first trains `a` (Adam), the second `b` (SGD), each stage's loss
// reading both parameters, so stage 2's result depends on how stage 1 ended. `crash_at` throws
// inside the step with that global index (0-based over both stages), as a killed process would
// stop: after the last checkpoint.
struct StagedToy {
  Toy toy;
  int64_t calls = 0;
  int64_t crash_at = -1;
  explicit StagedToy(double init) : toy(init, init) { toy.noisy = true; }
  std::vector<TrainStage> stages() {
    std::vector<TrainStage> st(2);
    for (int i = 0; i < 2; ++i) {
      st[i].name = i == 0 ? "first" : "second";
      st[i].options.epochs = i == 0 ? 2 : 3;
      st[i].options.batch_size = 2;
      st[i].options.checkpoint_every = 1;
      st[i].options.optimizer.kind = i == 0 ? "adam" : "sgd";
      st[i].options.optimizer.lr = 0.05;
      st[i].spec = toy.spec();
      st[i].spec.groups = {i == 0 ? ParamGroup{"a", {toy.a}} : ParamGroup{"b", {toy.b}}};
      auto inner = st[i].spec.step;
      st[i].spec.step = [this, inner](const Batch& b, std::mt19937_64& rng, int64_t step) {
        if (calls++ == crash_at) throw Error("simulated crash");
        return inner(b, rng, step);
      };
    }
    return st;
  }
};

}  // namespace

TEST_CASE("trainer stages: a two-stage run resumed within and across stages ends like an uninterrupted one",
          "[trainer]") {
  ToySetup data;
  // 6 images, batch 2: 3 steps per epoch; stage 1 has 6 steps, stage 2 9.
  const fs::path full = test::temp_dir("stages_full");
  StagedToy a(0.5);
  {
    RunContext run = run_ctx(full);
    FitContext ctx{run, data.train, {}, {}, data.transforms};
    auto st = a.stages();
    const std::vector<TrainSummary> s = train_stages(ctx, st);
    REQUIRE(s.size() == 2);
    CHECK(s[0].steps == 6);
    CHECK(s[1].steps == 9);
  }
  CHECK(fs::exists(full / "checkpoint" / "first" / "state.json"));
  CHECK(fs::exists(full / "checkpoint" / "second" / "state.json"));
  CHECK(fs::exists(full / "train_log_first.csv"));
  CHECK(fs::exists(full / "train_log_second.csv"));
  CHECK_FALSE(fs::exists(full / "train_log.csv"));

  // Crashes mid-stage 1 (global step 4), at the start of stage 2 (step 6) and mid-stage 2 (step 10);
  // each is resumed by a fresh process (a fresh model) from the run folder.
  for (const int64_t crash : {4, 6, 10}) {
    DYNAMIC_SECTION("crash at step " << crash) {
      const fs::path part = test::temp_dir("stages_part");
      {
        StagedToy b(0.5);
        b.crash_at = crash;
        RunContext run = run_ctx(part);
        FitContext ctx{run, data.train, {}, {}, data.transforms};
        auto st = b.stages();
        CHECK_THROWS_WITH(train_stages(ctx, st), Catch::Contains("simulated crash"));
      }
      StagedToy c(9.0);  // different init: everything must come from the checkpoints
      {
        RunContext run = run_ctx(part, true);
        FitContext ctx{run, data.train, {}, {}, data.transforms};
        auto st = c.stages();
        const std::vector<TrainSummary> s = train_stages(ctx, st);
        CHECK(s[1].steps == 9);
        if (crash > 6) CHECK(s[1].resumed_from_step == crash - 6);
      }
      CHECK(c.toy.a.item<double>() == a.toy.a.item<double>());
      CHECK(c.toy.b.item<double>() == a.toy.b.item<double>());
      CHECK(read_file(part / "train_log_first.csv") == read_file(full / "train_log_first.csv"));
      CHECK(read_file(part / "train_log_second.csv") == read_file(full / "train_log_second.csv"));
    }
  }
}

TEST_CASE("trainer stages: stage names must be distinct words", "[trainer]") {
  ToySetup data;
  RunContext run = run_ctx(test::temp_dir("stages_names"));
  FitContext ctx{run, data.train, {}, {}, data.transforms};
  StagedToy a(0.5);
  auto st = a.stages();
  st[1].name = "first";
  CHECK_THROWS_WITH(train_stages(ctx, st), Catch::Contains("two stages are named 'first'"));
  st[1].name = "a/b";
  CHECK_THROWS_WITH(train_stages(ctx, st), Catch::Contains("non-empty word"));
}

TEST_CASE("trainer: on_epoch sees every epoch before its steps, also after a resume", "[trainer]") {
  ToySetup data;
  TrainerOptions o;
  o.epochs = 3;
  o.batch_size = 2;  // 3 steps per epoch
  o.optimizer.kind = "sgd";
  o.optimizer.lr = 0.1;
  const fs::path dir = test::temp_dir("trainer_on_epoch");
  std::vector<std::pair<int64_t, int64_t>> seen;  // (epoch reported, step at which it was reported)
  int64_t steps = 0;
  auto run_with = [&](const RunContext& run, const LimitsOptions& limits) {
    RunContext r = run;
    r.limits = limits;
    FitContext ctx{r, data.train, {}, {}, data.transforms};
    Toy toy(0.3, -0.1);
    TrainSpec spec = toy.spec();
    auto inner = spec.step;
    spec.step = [&](const Batch& b, std::mt19937_64& rng, int64_t step) {
      ++steps;
      return inner(b, rng, step);
    };
    spec.on_epoch = [&](int64_t epoch) { seen.push_back({epoch, steps}); };
    return train(ctx, o, spec);
  };
  LimitsOptions first;
  first.steps = 4;  // stops inside the second epoch
  run_with(run_ctx(dir), first);
  CHECK(seen == std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {1, 3}});
  seen.clear();
  steps = 0;
  run_with(run_ctx(dir, /*resume=*/true), LimitsOptions{});
  // The resumed run re-enters epoch 1 at its second batch, then runs epoch 2.
  CHECK(seen == std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {2, 2}});
}
