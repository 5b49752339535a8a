#include "methods/anomalydino/anomalydino.hpp"

#include <algorithm>
#include <random>

#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/progress.hpp"

namespace adfw {

AnomalyDINO::AnomalyDINO(const Options& o)
    : opt_(o),
      backbone_(make_frozen(o.backbone)),
      scoring_(o.postprocess, o.image_score.slot(), "anomalydino", false),
      bank_(o.knn) {
  if (backbone_->selected_taps().size() != 1)
    throw ConfigError("method.backbone.layers: AnomalyDINO uses exactly one tap (the paper: the last block)");
}

std::string AnomalyDINO::normalization() const { return backbone_->normalization().name; }

torch::Tensor AnomalyDINO::patch_features(const torch::Tensor& images, const RunContext& ctx) {
  torch::NoGradGuard ng;
  auto maps = backbone_->forward(images.to(ctx.device));
  torch::Tensor m = maps.at(backbone_->selected_taps()[0]).to(torch::kCPU, torch::kFloat32);
  if (m.dim() != 4) throw ConfigError("method.backbone.reshape must be true for AnomalyDINO (patch tokens as maps)");
  return m.permute({0, 2, 3, 1}).contiguous();  // (N, h, w, D)
}

void AnomalyDINO::fit(FitContext& ctx) {
  backbone_->module().to(ctx.run.device);
  std::vector<SampleInfo> refs = ctx.train;
  if (opt_.shots > 0 && static_cast<int64_t>(refs.size()) > opt_.shots) {
    std::mt19937_64 rng(ctx.run.seeds.sampling());
    std::shuffle(refs.begin(), refs.end(), rng);
    refs.resize(static_cast<std::size_t>(opt_.shots));
  }
  shots_used_ = static_cast<int64_t>(refs.size());
  LoaderOptions lo;
  lo.batch_size = opt_.batch_size;
  auto loader = ctx.loader(refs, lo);
  loader->start_epoch(0);
  std::vector<torch::Tensor> feats;
  Progress bar("references", loader->num_samples(), "img");
  while (auto batch = loader->next()) {
    std::vector<torch::Tensor> views = {batch->images};
    if (opt_.rotations)
      for (int k = 1; k < 4; ++k) views.push_back(torch::rot90(batch->images, k, {2, 3}));
    for (const auto& v : views) {
      torch::Tensor f = patch_features(v, ctx.run);
      feats.push_back(f.reshape({-1, f.size(3)}));
    }
    bar.step(batch->size());
  }
  bar.finish();
  if (feats.empty()) throw Error("anomalydino: no reference images");
  bank_.set(torch::cat(feats, 0));
  log_info("anomalydino: memory bank of " + std::to_string(bank_.size()) + " patches from " +
           std::to_string(shots_used_) + " reference images" + (opt_.rotations ? " (with rotations)" : ""));
}

Prediction AnomalyDINO::predict(const Batch& batch, const RunContext& ctx) {
  torch::Tensor f = patch_features(batch.images, ctx);
  const int64_t n = f.size(0), h = f.size(1), w = f.size(2);
  torch::Tensor d = bank_.score(f.reshape({-1, f.size(3)})).reshape({n, 1, h, w});
  return score_grid_maps(*backbone_, scoring_, d, batch);
}

StateDict AnomalyDINO::state() const { return {{"memory_bank", bank_.features()}}; }

void AnomalyDINO::load_state(const StateDict& state, const RunContext& ctx, const std::string& source) {
  torch::Tensor bank;
  StateLayout().tensor("memory_bank", bank).load(state, source);
  backbone_->module().to(ctx.device);
  bank_.restore(bank);
}

nlohmann::json AnomalyDINO::summary() const {
  return {{"method", "anomalydino"},
          {"memory_bank", bank_.size()},
          {"shots", shots_used_},
          {"rotations", opt_.rotations},
          {"checkpoint", "training-free (memory bank of the reference shots)"}};
}

}  // namespace adfw
