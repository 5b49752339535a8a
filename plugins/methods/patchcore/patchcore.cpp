#include "methods/patchcore/patchcore.hpp"

#include <chrono>

#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/stages.hpp"

namespace adfw {

namespace {
/// The pruned kNN backend's counters for metrics.json (null for the other backends).
nlohmann::json knn_pruning_json(const MemoryBank& bank) {
  const KnnPruningStats st = bank.pruning();
  if (st.dims == 0) return nullptr;
  const int64_t all = st.queries + st.fallback_queries;
  return {{"dims", st.dims},
          {"variance_kept", st.variance_kept},
          {"queries", all},
          {"rows_measured_per_query", all > 0 ? double(st.exact) / double(all) : 0.0},
          {"queries_searched_in_full", st.fallback_queries}};
}
}  // namespace

PatchCore::PatchCore(const Options& o)
    : opt_(o),
      backbone_(make_frozen(o.backbone)),
      scoring_(o.postprocess, o.image_score.slot(), "patchcore", false),
      bank_(o.knn) {
  backbone::spatial_channels(*backbone_, backbone_->selected_taps(), "method.backbone.layers");
}

std::string PatchCore::normalization() const { return backbone_->normalization().name; }

torch::Tensor PatchCore::embed(const torch::Tensor& images, const RunContext& ctx) {
  torch::NoGradGuard ng;
  auto maps = backbone_->forward(images.to(ctx.device));
  for (auto& [k, v] : maps) v = v.to(torch::kCPU);
  return aggregate_patches(maps, backbone_->selected_taps(), opt_.aggregation);
}

void PatchCore::fit(FitContext& ctx) {
  backbone_->module().to(ctx.run.device);
  LoaderOptions lo;
  lo.batch_size = opt_.batch_size;
  auto loader = ctx.loader(ctx.train, lo);
  // Every training patch, written batch by batch into one tensor sized from the first batch: a
  // list of batches concatenated at the end would hold the whole bank twice at that moment.
  torch::Tensor all;
  int64_t filled = 0;
  const auto layers = backbone_->selected_taps();
  for_each_feature_batch(*backbone_, *loader, ctx.run, "features", [&](const auto& maps, const Batch&) {
    const torch::Tensor e = aggregate_patches(maps, layers, opt_.aggregation);
    const torch::Tensor rows = e.reshape({-1, e.size(-1)});
    if (!all.defined())
      all = torch::empty({static_cast<int64_t>(ctx.train.size()) * (rows.size(0) / e.size(0)), rows.size(1)},
                         rows.options());
    if (filled + rows.size(0) > all.size(0))
      throw Error("patchcore: the training images gave more patches than their count and the first batch's grid "
                  "predict (images of different sizes?)");
    all.slice(0, filled, filled + rows.size(0)).copy_(rows);
    filled += rows.size(0);
  });
  if (filled == 0) throw Error("patchcore: the training split is empty");
  if (filled < all.size(0)) all = all.slice(0, 0, filled);
  train_patches_ = all.size(0);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> idx;
  {
    ScopedStage stage("coreset");
    idx = select_coreset(all, opt_.coreset, ctx.run.seeds.sampling());
  }
  coreset_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  torch::Tensor index = torch::tensor(idx, torch::kInt64);
  {
    ScopedStage stage("knn_index");
    bank_.set(all.index_select(0, index));
  }
  log_info("patchcore: memory bank " + std::to_string(bank_.size()) + " of " + std::to_string(train_patches_) +
           " patches (" + opt_.coreset.kind + ", ratio " + std::to_string(opt_.coreset.ratio) + ", " +
           std::to_string(coreset_seconds_) + " s), kNN backend " + bank_.backend_in_use());
}

Prediction PatchCore::predict(const Batch& batch, const RunContext& ctx) {
  torch::Tensor e = embed(batch.images, ctx);  // (N, h, w, D)
  const int64_t n = e.size(0), h = e.size(1), w = e.size(2);
  torch::Tensor patch = bank_.score(e.reshape({-1, e.size(3)})).reshape({n, 1, h, w});
  return score_grid_maps(*backbone_, scoring_, patch, batch);
}

nlohmann::json PatchCore::summary() const {
  return {{"method", "patchcore"},
          {"memory_bank", bank_.size()},
          {"training_patches", train_patches_},
          {"feature_dim", bank_.dim()},
          {"coreset_seconds", coreset_seconds_},
          {"knn_backend", bank_.backend_in_use()},
          {"knn_pruning", knn_pruning_json(bank_)},
          {"checkpoint", "training-free (memory bank of all training images)"}};
}

StateDict PatchCore::state() const { return {{"memory_bank", bank_.features()}}; }

void PatchCore::load_state(const StateDict& state, const RunContext& ctx, const std::string& source) {
  torch::Tensor bank;
  StateLayout().tensor("memory_bank", bank).load(state, source);
  backbone_->module().to(ctx.device);
  bank_.restore(bank);
  train_patches_ = 0;
}

}  // namespace adfw
