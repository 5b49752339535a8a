#include "adfw/method/features.hpp"

#include "adfw/core/error.hpp"
#include "adfw/core/progress.hpp"

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

std::unique_ptr<Backbone> make_frozen(const Slot<Backbone>& slot, const RunContext* ctx) {
  auto b = slot.make();
  if (ctx) b->module().to(ctx->device);
  return b;
}

Prediction score_grid_maps(const Backbone& b, const MapScoring& scoring, const torch::Tensor& raw, const Batch& batch) {
  const int64_t H = batch.images.size(2), W = batch.images.size(3);
  const GridGeometry grid = b.grid(b.selected_taps().front(), H, W);
  torch::Tensor maps = scoring.postprocess(raw, {{H, W}, &grid});
  return {maps, scoring.scores(raw, maps)};
}

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

}  // namespace adfw
