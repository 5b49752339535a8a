#include "adfw/metric/reducers.hpp"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/stages.hpp"

namespace adfw {
namespace metric {
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

// k x k mean with zero padding counted (avg_pool2d's count_include_pad): scipy convolve2d "same"
// with ones(k, k) / k^2 and zero fill, and DRAEM's avg_pool2d(map, k, 1, k // 2).
torch::Tensor zero_padded_mean(const torch::Tensor& x, int64_t k) {
  return torch::avg_pool2d(x, {k, k}, {1, 1}, {k / 2, k / 2}, /*ceil_mode=*/false, /*count_include_pad=*/true);
}

}  // namespace

torch::Tensor MaxReducer::reduce(const torch::Tensor& maps) const {
  const auto x = as_n1hw(maps, "image_score max");
  return std::get<0>(x.flatten(1).max(1));
}

torch::Tensor AvgPoolMaxReducer::pooled(const torch::Tensor& maps) const {
  const auto x = as_n1hw(maps, "image_score avgpool_max");
  // test_DRAEM.py: F.avg_pool2d(map, 21, stride=1, padding=21 // 2), count_include_pad left at True.
  return zero_padded_mean(x, options.kernel);
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

torch::Tensor UpsamplePostprocess::apply(const torch::Tensor& maps, const MapContext& ctx) const {
  const auto x = as_n1hw(maps, "postprocess upsample");
  const auto& hw = ctx.input_hw;
  if (options.align) {
    if (!ctx.grid)
      throw ConfigError("postprocess upsample: align = true needs the map's grid geometry, which only the methods on "
                        "a backbone's patch grid give (patchcore, padim, anomalydino); set align = false");
    return upsample_on_grid(x, hw[0], hw[1], *ctx.grid);
  }
  if (x.size(2) == hw[0] && x.size(3) == hw[1]) return x;
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{hw[0], hw[1]})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

torch::Tensor Log1pPostprocess::apply(const torch::Tensor& maps, const MapContext&) const {
  const auto x = as_n1hw(maps, "postprocess log1p");
  if (x.numel() > 0 && x.min().item<double>() < 0)
    throw Error("postprocess log1p needs scores >= 0; this method's map has negative values (leave log1p out of "
                "method.postprocess)");
  return torch::log1p(x);
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

torch::Tensor GaussianPostprocess::apply(const torch::Tensor& maps, const MapContext&) const {
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
  if (options.border != "symmetric" && options.border != "reflect" && options.border != "zeros")
    throw ConfigError("mean_filter: border \"" + options.border + "\" is not \"symmetric\", \"reflect\" or \"zeros\"");
}

torch::Tensor MeanFilterPostprocess::apply(const torch::Tensor& maps, const MapContext&) const {
  const auto x = as_n1hw(maps, "postprocess mean_filter");
  if (options.border == "zeros") return zero_padded_mean(x, options.kernel);
  return separable(x, std::vector<float>(static_cast<std::size_t>(options.kernel), 1.f / options.kernel),
                   options.border == "symmetric");
}

}  // namespace metric

torch::Tensor upsample_on_grid(const torch::Tensor& maps, int64_t height, int64_t width, const GridGeometry& grid) {
  namespace F = torch::nn::functional;
  if (maps.dim() != 4) throw Error("upsample_on_grid: expected maps (N,C,h,w), got sizes " + c10::str(maps.sizes()));
  const int64_t n = maps.size(0), h = maps.size(2), w = maps.size(3);
  // Output pixel j lies at cell coordinate u = (j - origin) / stride; grid_sample (align_corners
  // false) reads cell u at the normalised position (2u + 1) / cells - 1.
  const auto axis = [&](int64_t size, double origin, int64_t cells) {
    torch::Tensor j = torch::arange(size, torch::TensorOptions().dtype(torch::kFloat64));
    return ((j - origin) / grid.stride * 2.0 + 1.0) / static_cast<double>(cells) - 1.0;
  };
  torch::Tensor ys = axis(height, grid.origin_y, h).to(torch::kFloat32);
  torch::Tensor xs = axis(width, grid.origin_x, w).to(torch::kFloat32);
  // grid_sample wants (N, H, W, 2) holding (x, y).
  torch::Tensor g = torch::stack({xs.view({1, width}).expand({height, width}), ys.view({height, 1}).expand({height, width})}, 2);
  g = g.unsqueeze(0).expand({n, height, width, 2}).to(maps.device());
  return F::grid_sample(maps.to(torch::kFloat32), g,
                        F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));
}

PostprocessChain upsample_gaussian_chain(double sigma, int kernel_size, const std::string& border) {
  std::ostringstream g;
  g << std::setprecision(17) << "type = 'gaussian'\nsigma = " << sigma << "\nkernel_size = " << kernel_size
    << "\nborder = '" << border << "'\n";
  return PostprocessChain({"type = 'upsample'\n", g.str()});
}

namespace {
// "{type = 'gaussian', sigma = 4.0}" for a part's TOML text.
std::string inline_table(const std::string& text) {
  std::ostringstream os;
  os << toml::toml_formatter(toml::parse(text), toml::toml_formatter::default_flags &
                                                    ~toml::format_flags::indentation);
  std::string body = os.str(), out;
  for (char c : body) out += c == '\n' ? std::string(", ") : std::string(1, c);
  while (out.size() >= 2 && out.compare(out.size() - 2, 2, ", ") == 0) out.resize(out.size() - 2);
  return "{" + out + "}";
}
}  // namespace

const std::vector<Slot<MapPostprocess>>& PostprocessChain::parts() const {
  if (!read_) {
    parts_.clear();
    for (std::size_t i = 0; i < defaults_.size(); ++i) {
      Slot<MapPostprocess> s;
      s.read_toml(toml::parse(defaults_[i]), "postprocess[" + std::to_string(i) + "]");
      parts_.push_back(std::move(s));
    }
    read_ = true;
  }
  return parts_;
}

void PostprocessChain::read_toml(const toml::node& n, const std::string& path) {
  FieldIO<std::vector<Slot<MapPostprocess>>>::read(n, parts_, path);
  defaults_.clear();
  read_ = true;
}

toml::array PostprocessChain::to_toml() const { return FieldIO<std::vector<Slot<MapPostprocess>>>::write(parts()); }

std::string PostprocessChain::default_str() const {
  std::string s = "[";
  for (std::size_t i = 0; i < defaults_.size(); ++i) s += (i ? ", " : "") + inline_table(defaults_[i]);
  return s + "]";
}

const Slot<ImageScoreReducer>& ImageScoreSlot::slot() const {
  if (!read_) {
    slot_.read_toml(toml::parse(default_), "image_score");
    read_ = true;
  }
  return slot_;
}

void ImageScoreSlot::read_toml(const toml::node& n, const std::string& path) {
  if (!n.is_table()) throw config_error(pos_of(n), path, "expected a table with a 'type' key, got " + describe_node(n));
  toml::table merged = toml::parse(default_);
  const std::string default_type = merged.get_as<std::string>("type")->get();
  // Read the config's own table first: its errors then carry its file:line:col (copied nodes do not).
  Slot<ImageScoreReducer> check(default_type);
  check.read_toml(n, path);
  if (check.type() != default_type) {
    slot_ = check;
  } else {
    toml::table own = *n.as_table();
    for (auto&& [k, v] : own) merged.insert_or_assign(k, std::move(v));
    slot_ = Slot<ImageScoreReducer>();
    slot_.read_toml(merged, path);
  }
  read_ = true;
}

std::string ImageScoreSlot::default_str() const { return inline_table(default_); }

const char* smoothing_retired() {
  return "the map post-processing is now method.postprocess, an ordered list of registered parts (adfw list; "
         "adfw describe postprocess gaussian). Write e.g.\n  [[method.postprocess]]\n  type = \"upsample\"\n"
         "  [[method.postprocess]]\n  type = \"gaussian\"\n  sigma = 4.0\n  kernel_size = 33\n"
         "(smoothing.sigma = 0: leave the gaussian part out; space = \"log\": a \"log1p\" part first; align: "
         "upsample's align; postprocess = [] for none)";
}

MapScoring::MapScoring(const PostprocessChain& chain, const Slot<ImageScoreReducer>& image_score,
                       const std::string& method, bool own_scores)
    : MapScoring(chain.parts(), image_score, method, own_scores) {}

MapScoring::MapScoring(const std::vector<Slot<MapPostprocess>>& chain, const Slot<ImageScoreReducer>& image_score,
                       const std::string& method, bool own_scores)
    : method_(method) {
  for (const auto& part : chain) chain_.push_back(part.make());
  reducer_ = image_score.make();
  if (reducer_->uses_method_scores() && !own_scores)
    throw ConfigError("method.image_score: " + method + " has no image-level output in this configuration; choose "
                      "a map reducer such as \"max\", \"avgpool_max\" or \"topk_mean\"");
}

torch::Tensor MapScoring::postprocess(const torch::Tensor& raw, const MapContext& ctx) const {
  ScopedStage stage("postprocess");  // test-time stage times (core/stages.hpp)
  torch::Tensor m = raw.to(torch::kFloat32);
  for (const auto& part : chain_) m = part->apply(m, ctx);
  return m;
}

torch::Tensor MapScoring::scores(const torch::Tensor& raw, const torch::Tensor& final, const torch::Tensor& own) const {
  if (!reducer_) throw Error(method_ + ": scoring used before the method was built");
  if (reducer_->uses_method_scores()) {
    if (!own.defined()) throw Error(method_ + ": image_score \"method\" but the method gave no image scores");
    return own;
  }
  ScopedStage stage("image_score");
  return reducer_->reduce(reducer_->reads_raw_map() ? raw : final);
}

}  // namespace adfw
