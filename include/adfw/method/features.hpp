// Shared steps of the methods that score a frozen backbone's feature maps (PatchCore, PaDiM,
// AnomalyDINO, SuperSimpleNet): running the backbone over a loader, bringing several taps to one
// grid, and turning raw maps on the first tap's grid into final maps and image scores.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/metric/reducers.hpp"

namespace adfw {

/// How concat_taps brings a tap to the common size.
enum class TapResize {
  nearest,          ///< repeat each deeper cell over its block (PaDiM's embedding_concat)
  bilinear,         ///< bilinear, align_corners false
  bilinear_aligned  ///< bilinear, align_corners true (SuperSimpleNet's upscaling, model/feature_extractor.py)
};

/// The backbone's `taps` from one forward pass, each resized to (height, width) unless it already
/// has that size, concatenated along channels in tap order (on the maps' device and dtype).
/// Throws ConfigError naming a tap that is not a spatial (N,C,h,w) map.
torch::Tensor concat_taps(const std::map<std::string, torch::Tensor>& maps, const std::vector<std::string>& taps,
                          int64_t height, int64_t width, TapResize mode);

/// Runs a backbone over every batch of a loader, handing the feature maps to `fn`.
void for_each_feature_batch(Backbone& backbone, Loader& loader, const RunContext& ctx, const std::string& label,
                            const std::function<void(const std::map<std::string, torch::Tensor>&, const Batch&)>& fn);

/// The backbone of a slot, moved to ctx->device when a context is given.
std::unique_ptr<Backbone> make_frozen(const Slot<Backbone>& slot, const RunContext* ctx = nullptr);

/// The final maps and image scores of raw maps (N,1,h,w) on the grid of the backbone's first tap.
Prediction score_grid_maps(const Backbone& b, const MapScoring& scoring, const torch::Tensor& raw, const Batch& batch);

}  // namespace adfw
