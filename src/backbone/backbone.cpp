// Shared backbone plumbing: normalisation, weight-file lookup, freezing, tap selection.
#include "adfw/backbone/backbone.hpp"

#include <algorithm>
#include <cstdlib>

#include "adfw/core/error.hpp"
#include "adfw/core/options.hpp"

namespace adfw {

Normalization Normalization::imagenet() {
  return {"imagenet", 1.0 / 255, {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}};
}

Normalization Normalization::mobilenet() { return {"mobilenet", 1.0 / 127.5, {1.0, 1.0, 1.0}, {1.0, 1.0, 1.0}}; }

torch::Tensor Normalization::apply(const torch::Tensor& rgb255) const {
  const int64_t cdim = rgb255.dim() == 4 ? 1 : 0;
  if ((rgb255.dim() != 4 && rgb255.dim() != 3) || rgb255.size(cdim) != 3)
    throw Error("normalisation '" + name + "' expects an RGB tensor (N,3,H,W) or (3,H,W), got sizes " +
                c10::str(rgb255.sizes()));
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(rgb255.device());
  std::vector<int64_t> shape(rgb255.dim(), 1);
  shape[cdim] = 3;
  const torch::Tensor mean = torch::tensor(std::vector<float>(this->mean.begin(), this->mean.end()), opts).view(shape);
  const torch::Tensor sd = torch::tensor(std::vector<float>(this->std.begin(), this->std.end()), opts).view(shape);
  return (rgb255.to(torch::kFloat32) * scale - mean) / sd;
}

GridGeometry GridGeometry::centred(int64_t stride) {
  const double o = (static_cast<double>(stride) - 1.0) / 2.0;
  return {o, o, static_cast<double>(stride)};
}

GridGeometry Backbone::grid(const std::string& tap, int64_t, int64_t) const {
  const int64_t s = stride(tap);
  if (s <= 0) throw ConfigError("backbone tap '" + tap + "' has no spatial grid");
  return GridGeometry::centred(s);
}

namespace backbone {

std::filesystem::path hub_checkpoint_dir() {
  std::filesystem::path torch_home;
  if (const char* th = std::getenv("TORCH_HOME"); th && *th) {
    torch_home = th;
  } else if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    torch_home = std::filesystem::path(xdg) / "torch";
  } else {
    const char* home = std::getenv("HOME");
    torch_home = std::filesystem::path(home ? home : ".") / ".cache" / "torch";
  }
  return torch_home / "hub" / "checkpoints";
}

std::filesystem::path resolve_weights(const std::string& weights, const std::string& arch,
                                      const std::vector<std::string>& official_names) {
  if (weights == "random") return {};
  std::error_code ec;
  if (!weights.empty()) {
    if (!std::filesystem::is_regular_file(weights, ec))
      throw ConfigError("weights: checkpoint file '" + weights + "' not found (give a .pth or .safetensors "
                        "path, \"\" to use the official file in " + hub_checkpoint_dir().string() +
                        ", or \"random\")");
    return weights;
  }
  const auto dir = hub_checkpoint_dir();
  for (const auto& n : official_names)
    if (std::filesystem::is_regular_file(dir / n, ec)) return dir / n;
  std::vector<std::filesystem::path> hashed;
  if (std::filesystem::is_directory(dir, ec)) {
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string f = e.path().filename().string();
      if (f.rfind(arch + "-", 0) == 0 && e.path().extension() == ".pth") hashed.push_back(e.path());
    }
  }
  if (!hashed.empty()) {
    std::sort(hashed.begin(), hashed.end());
    return hashed.front();
  }
  std::string names;
  for (const auto& n : official_names) names += (names.empty() ? "" : ", ") + n;
  throw ConfigError("weights: no checkpoint for '" + arch + "' in " + dir.string() + " (looked for " + names +
                    " and " + arch + "-*.pth; set TORCH_HOME, copy the file there, give weights = \"<path>\", "
                    "or weights = \"random\")");
}

void set_trainable(torch::nn::Module& module, bool trainable) {
  for (auto& p : module.parameters(true)) p.set_requires_grad(trainable);
  module.train(trainable);
}

std::vector<std::string> select_taps(const std::vector<std::string>& requested,
                                     const std::vector<std::string>& available,
                                     const std::vector<std::string>& fallback, const std::string& option) {
  const auto& want = requested.empty() ? fallback : requested;
  for (const auto& t : want)
    if (std::find(available.begin(), available.end(), t) == available.end())
      throw ConfigError(option + ": unknown tap '" + t + "'." + suggest_from(t, available));
  std::vector<std::string> out;
  for (const auto& a : available)
    if (std::find(want.begin(), want.end(), a) != want.end()) out.push_back(a);
  return out;
}

void check_input(const torch::Tensor& x, const std::string& who, int64_t min_size) {
  if (!x.defined() || x.dim() != 4 || x.size(1) != 3)
    throw Error(who + ": expected an input of shape (N, 3, H, W), got " +
                (x.defined() ? c10::str(x.sizes()) : std::string("an undefined tensor")));
  if (!x.is_floating_point()) throw Error(who + ": expected a floating-point input, got " + std::string(c10::toString(x.scalar_type())));
  if (x.size(2) < min_size || x.size(3) < min_size)
    throw Error(who + ": input " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                " is smaller than " + std::to_string(min_size) + " pixels");
}

std::pair<int64_t, int64_t> nearest_multiples(int64_t side, int64_t multiple) {
  const int64_t down = std::max<int64_t>(multiple, side / multiple * multiple);
  const int64_t up = std::max<int64_t>(multiple, (side + multiple - 1) / multiple * multiple);
  return {down, up};
}

void check_input_size(const Backbone& b, int64_t height, int64_t width, const std::string& key,
                      const std::string& backbone_path) {
  const InputSizeRule r = b.input_rule();
  if (r.multiple <= 1 || r.fit != "error") return;
  for (const int64_t side : {height, width}) {
    if (side % r.multiple == 0 && side > 0) continue;
    const auto [down, up] = nearest_multiples(side, r.multiple);
    const std::string value = height == width ? std::to_string(height)
                                              : "[" + std::to_string(height) + ", " + std::to_string(width) + "]";
    std::string msg = key + " = " + value + ": the backbone takes sides that are multiples of " +
                      std::to_string(r.multiple) + " (its patch size); the nearest valid sizes are " +
                      std::to_string(down) + " and " + std::to_string(up);
    if (!r.option.empty())
      msg += ", or set " + join_key(backbone_path, r.option) + " = \"pad\" or \"resize\" to bring the input to " +
             "the next valid size";
    throw ConfigError(msg);
  }
}

int64_t spatial_channels(const Backbone& b, const std::vector<std::string>& taps, const std::string& layers_key,
                         std::string* source) {
  if (taps.empty()) throw ConfigError(layers_key + ": choose at least one spatial tap");
  int64_t total = 0;
  std::string names;
  for (const auto& t : taps) {
    const TapInfo info = b.tap_info(t);
    if (!info.spatial())
      throw ConfigError(layers_key + ": tap '" + t + "' has no spatial grid; choose feature-map taps");
    total += info.channels;
    names += (names.empty() ? "" : " + ") + t + " (" + std::to_string(info.channels) + ")";
  }
  if (source) *source = "the backbone taps " + names + " give";
  return total;
}

}  // namespace backbone
}  // namespace adfw
