#include "adfw/method/training_free.hpp"

#include <chrono>
#include <random>

#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/progress.hpp"
#include "adfw/metric/reducers.hpp"

namespace F = torch::nn::functional;

namespace adfw {

void for_each_feature_batch(Backbone& backbone, Loader& loader, const RunContext& ctx, const std::string& label,
                            const std::function<void(const std::map<std::string, torch::Tensor>&, const Batch&)>& fn) {
  torch::NoGradGuard ng;
  Progress bar(label, loader.num_samples(), "img");
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    auto maps = backbone.forward(batch->images.to(ctx.device));
    for (auto& [k, v] : maps) v = v.to(torch::kCPU);
    fn(maps, *batch);
    bar.step(batch->size());
  }
}

namespace {

std::unique_ptr<Backbone> make_frozen(const Slot<Backbone>& slot, const RunContext* ctx = nullptr) {
  auto b = slot.make();
  if (ctx) b->module().to(ctx->device);
  return b;
}

/// The final maps and image scores of raw maps on the grid of the backbone's first tap.
Prediction score_grid_maps(const Backbone& b, const MapScoring& scoring, const torch::Tensor& raw, const Batch& batch) {
  const int64_t H = batch.images.size(2), W = batch.images.size(3);
  const GridGeometry grid = b.grid(b.selected_taps().front(), H, W);
  torch::Tensor maps = scoring.postprocess(raw, {{H, W}, &grid});
  return {maps, scoring.scores(raw, maps)};
}

}  // namespace

torch::Tensor concat_taps(const std::map<std::string, torch::Tensor>& maps, const std::vector<std::string>& taps,
                          int64_t height, int64_t width, TapResize mode) {
  if (taps.empty()) throw ConfigError("method.backbone.layers: choose at least one spatial tap");
  std::vector<torch::Tensor> parts;
  for (const auto& t : taps) {
    auto it = maps.find(t);
    if (it == maps.end()) throw Error("the backbone returned no feature map '" + t + "'");
    torch::Tensor x = it->second;
    if (x.dim() != 4) throw ConfigError("method.backbone.layers: tap '" + t + "' is not a spatial feature map");
    if (x.size(2) != height || x.size(3) != width) {
      auto o = F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width});
      x = mode == TapResize::nearest
              ? F::interpolate(x, o.mode(torch::kNearest))
              : F::interpolate(x, o.mode(torch::kBilinear).align_corners(mode == TapResize::bilinear_aligned));
    }
    parts.push_back(x);
  }
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 1);
}

// ---------------------------------------------------------------------------------------------
// PatchCore
// ---------------------------------------------------------------------------------------------
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
  std::vector<int64_t> idx = select_coreset(all, opt_.coreset, ctx.run.seeds.sampling());
  coreset_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  torch::Tensor index = torch::tensor(idx, torch::kInt64);
  bank_.set(all.index_select(0, index));
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

// ---------------------------------------------------------------------------------------------
// PaDiM
// ---------------------------------------------------------------------------------------------
PaDiM::PaDiM(const Options& o)
    : opt_(o),
      backbone_(make_frozen(o.backbone)),
      scoring_(o.postprocess, o.image_score, "padim", false),
      gaussian_(o.gaussian) {
  // The embedding's width is declared by the taps: a channel subset larger than it is refused here,
  // not at the first batch.
  std::string source;
  const int64_t total = backbone::spatial_channels(*backbone_, backbone_->selected_taps(), "method.backbone.layers",
                                                   &source);
  if (opt_.dims > total)
    throw ConfigError("method.dims = " + std::to_string(opt_.dims) + " exceeds the embedding's channels: " + source +
                      " " + std::to_string(total));
}

std::string PaDiM::normalization() const { return backbone_->normalization().name; }

torch::Tensor PaDiM::embed(const torch::Tensor& images, const RunContext& ctx) {
  torch::NoGradGuard ng;
  return embed_maps(backbone_->forward(images.to(ctx.device)), ctx);
}

torch::Tensor PaDiM::embed_maps(const std::map<std::string, torch::Tensor>& maps, const RunContext& ctx) {
  const auto taps = backbone_->selected_taps();
  const torch::Tensor& first = maps.at(taps[0]);
  // The reference's embedding_concat repeats each deeper position over its s x s block: nearest upsampling.
  torch::Tensor e =
      concat_taps(maps, taps, first.size(2), first.size(3), TapResize::nearest).to(torch::kCPU, torch::kFloat32);
  if (!channels_.defined()) {
    const int64_t total = e.size(1);
    if (opt_.dims > total)
      throw ConfigError("method.dims = " + std::to_string(opt_.dims) + " exceeds the " + std::to_string(total) +
                        " channels of the chosen taps");
    if (opt_.dims == 0 || opt_.dims == total) {
      channels_ = torch::arange(total);
    } else {
      // Reference: torch.manual_seed(1024); idx = randperm(t_d)[:d]; ours draws from the sampling stream.
      auto gen = at::make_generator<at::CPUGeneratorImpl>(ctx.seeds.sampling());
      channels_ = std::get<0>(torch::randperm(total, gen).slice(0, 0, opt_.dims).sort());
    }
  }
  return e.index_select(1, channels_);
}

void PaDiM::fit(FitContext& ctx) {
  backbone_->module().to(ctx.run.device);
  LoaderOptions lo;
  lo.batch_size = opt_.batch_size;
  auto loader = ctx.loader(ctx.train, lo);
  for_each_feature_batch(*backbone_, *loader, ctx.run, "features",
                         [&](const auto& maps, const Batch&) { gaussian_.accumulate(embed_maps(maps, ctx.run)); });
  gaussian_.finalize();
  log_info("padim: Gaussians over " + std::to_string(gaussian_.mean().size(0)) + " positions, " +
           std::to_string(gaussian_.mean().size(1)) + " dims, from " + std::to_string(gaussian_.count()) + " images");
}

Prediction PaDiM::predict(const Batch& batch, const RunContext& ctx) {
  torch::Tensor d = gaussian_.distance(embed(batch.images, ctx)).unsqueeze(1);  // (N,1,h,w)
  return score_grid_maps(*backbone_, scoring_, d, batch);
}

nlohmann::json PaDiM::summary() const {
  return {{"method", "padim"},
          {"positions", gaussian_.mean().defined() ? gaussian_.mean().size(0) : 0},
          {"dims", gaussian_.mean().defined() ? gaussian_.mean().size(1) : 0},
          {"training_images", gaussian_.count()},
          {"checkpoint", "training-free (Gaussians of all training images)"}};
}

StateDict PaDiM::state() const {
  return {{"gaussian.mean", gaussian_.mean()},
          {"gaussian.inv_chol", gaussian_.inv_chol()},
          {"gaussian.geometry", gaussian_.geometry()},
          {"channels", channels_}};
}

void PaDiM::load_state(const StateDict& state, const RunContext& ctx, const std::string& source) {
  torch::Tensor mean, inv_chol, geometry, channels;
  StateLayout()
      .tensor("gaussian.mean", mean)
      .tensor("gaussian.inv_chol", inv_chol)
      .tensor("gaussian.geometry", geometry)
      .tensor("channels", channels)
      .load(state, source);
  backbone_->module().to(ctx.device);
  gaussian_.restore(mean, inv_chol, geometry, source);
  channels_ = channels.to(torch::kInt64);
}

// ---------------------------------------------------------------------------------------------
// AnomalyDINO
// ---------------------------------------------------------------------------------------------
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
