#include "methods/padim/padim.hpp"

#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"

namespace adfw {

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

}  // namespace adfw
