#include "adfw/metric/reducers.hpp"

#include <cmath>

#include "adfw/core/error.hpp"

namespace adfw::metric {
namespace {

// (N,1,H,W) float view of (N,H,W) or (N,1,H,W) maps.
torch::Tensor as_n1hw(const torch::Tensor& maps, const char* who) {
  if (maps.dim() == 3) return maps.unsqueeze(1).to(torch::kFloat);
  if (maps.dim() == 4 && maps.size(1) == 1) return maps.to(torch::kFloat);
  std::string s;
  for (int64_t i = 0; i < maps.dim(); ++i) s += (i ? ", " : "") + std::to_string(maps.size(i));
  throw Error(std::string(who) + ": expected maps of shape (N,1,H,W) or (N,H,W), got (" + s + ")");
}

// Index of position j in [-r, n + r) after mirroring at the borders: with the edge sample
// repeated (d c b a | a b c d; scipy.ndimage "reflect") or not (d c b | a b c d; torch "reflect").
torch::Tensor mirror_index(int64_t n, int64_t r, bool repeat_edge, const torch::Device& device) {
  std::vector<int64_t> idx;
  idx.reserve(static_cast<std::size_t>(n + 2 * r));
  const int64_t period = repeat_edge ? 2 * n : 2 * n - 2;
  for (int64_t j = -r; j < n + r; ++j) {
    if (period == 0) {  // a single sample
      idx.push_back(0);
      continue;
    }
    int64_t m = j % period;
    if (m < 0) m += period;
    idx.push_back(m < n ? m : period - 1 - m + (repeat_edge ? 0 : 1));
  }
  return torch::tensor(idx, torch::kLong).to(device);
}

// Separable filtering of (N,1,H,W) with a 1-D kernel along both axes, mirrored borders.
torch::Tensor separable(const torch::Tensor& x, const std::vector<float>& k1d, bool repeat_edge = true) {
  const auto k = static_cast<int64_t>(k1d.size());
  const int64_t r = k / 2;
  const auto kt = torch::tensor(k1d, torch::kFloat).to(x.device());
  torch::Tensor y = x.index_select(2, mirror_index(x.size(2), r, repeat_edge, x.device()));
  y = torch::conv2d(y, kt.view({1, 1, k, 1}));
  y = y.index_select(3, mirror_index(x.size(3), r, repeat_edge, x.device()));
  return torch::conv2d(y, kt.view({1, 1, 1, k}));
}

}  // namespace

torch::Tensor MaxReducer::reduce(const torch::Tensor& maps) const {
  const auto x = as_n1hw(maps, "image_score max");
  return std::get<0>(x.flatten(1).max(1));
}

torch::Tensor AvgPoolMaxReducer::pooled(const torch::Tensor& maps) const {
  const auto x = as_n1hw(maps, "image_score avgpool_max");
  const int64_t k = options.kernel;
  // test_DRAEM.py: F.avg_pool2d(map, 21, stride=1, padding=21 // 2), count_include_pad left at True.
  return torch::avg_pool2d(x, {k, k}, {1, 1}, {k / 2, k / 2}, /*ceil_mode=*/false, /*count_include_pad=*/true);
}

torch::Tensor AvgPoolMaxReducer::reduce(const torch::Tensor& maps) const {
  return std::get<0>(pooled(maps).flatten(1).max(1));
}

torch::Tensor TopKMeanReducer::reduce(const torch::Tensor& maps) const {
  const auto x = as_n1hw(maps, "image_score topk_mean").flatten(1);
  const int64_t count = std::max<int64_t>(1, static_cast<int64_t>(std::floor(options.fraction * x.size(1))));
  return std::get<0>(x.topk(count, 1)).mean(1);
}

torch::Tensor MethodScoreReducer::reduce(const torch::Tensor&) const {
  throw Error("image_score 'method' takes the method's own image scores; this method produced none. "
              "Choose a reducer such as max, avgpool_max or topk_mean");
}

torch::Tensor UpsamplePostprocess::apply(const torch::Tensor& maps, std::array<int64_t, 2> hw) const {
  const auto x = as_n1hw(maps, "postprocess upsample");
  if (x.size(2) == hw[0] && x.size(3) == hw[1]) return x;
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{hw[0], hw[1]})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

GaussianPostprocess::GaussianPostprocess(const Options& o) : options(o) {
  if (!(options.sigma > 0)) throw ConfigError("gaussian: sigma must be > 0");
  if (options.kernel_size != 0 && options.kernel_size % 2 == 0)
    throw ConfigError("gaussian: kernel_size " + std::to_string(options.kernel_size) + " must be odd (or 0 = auto)");
  if (options.border != "symmetric" && options.border != "reflect")
    throw ConfigError("gaussian: border \"" + options.border + "\" is not \"symmetric\" or \"reflect\"");
}

int GaussianPostprocess::kernel_size() const {
  return options.kernel_size ? options.kernel_size : 2 * static_cast<int>(std::ceil(3 * options.sigma)) + 1;
}

torch::Tensor GaussianPostprocess::apply(const torch::Tensor& maps, std::array<int64_t, 2>) const {
  const auto x = as_n1hw(maps, "postprocess gaussian");
  const int k = kernel_size();
  std::vector<float> w(static_cast<std::size_t>(k));
  double sum = 0;
  for (int i = 0; i < k; ++i) {
    const double d = i - k / 2;
    sum += w[static_cast<std::size_t>(i)] = static_cast<float>(std::exp(-0.5 * d * d / (options.sigma * options.sigma)));
  }
  for (auto& v : w) v = static_cast<float>(v / sum);
  return separable(x, w, options.border == "symmetric");
}

MeanFilterPostprocess::MeanFilterPostprocess(const Options& o) : options(o) {
  if (options.kernel < 1 || options.kernel % 2 == 0)
    throw ConfigError("mean_filter: kernel " + std::to_string(options.kernel) + " must be odd and >= 1");
}

torch::Tensor MeanFilterPostprocess::apply(const torch::Tensor& maps, std::array<int64_t, 2>) const {
  const auto x = as_n1hw(maps, "postprocess mean_filter");
  return separable(x, std::vector<float>(static_cast<std::size_t>(options.kernel), 1.f / options.kernel));
}

}  // namespace adfw::metric
