// DINOv2 ViT; see include/adfw/backbone/dinov2.hpp. Follows the hub code
// (dinov2/models/vision_transformer.py: prepare_tokens_with_masks, interpolate_pos_encoding,
// forward_features, get_intermediate_layers; dinov2/layers/{block,attention,mlp,swiglu_ffn,
// layer_scale,patch_embed}.py) operation by operation so float32 results agree.
#include "adfw/backbone/dinov2.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/stages.hpp"

namespace adfw {
namespace F = torch::nn::functional;

namespace {

class LayerScaleImpl : public torch::nn::Module {
 public:
  explicit LayerScaleImpl(int64_t dim) { gamma = register_parameter("gamma", torch::ones({dim})); }
  torch::Tensor forward(const torch::Tensor& x) { return x * gamma; }
  torch::Tensor gamma;
};
TORCH_MODULE(LayerScale);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads) : heads_(heads) {
    qkv_ = register_module("qkv", torch::nn::Linear(dim, dim * 3));
    proj_ = register_module("proj", torch::nn::Linear(dim, dim));
    scale_ = std::pow(static_cast<double>(dim / heads), -0.5);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
    const torch::Tensor qkv = qkv_(x).reshape({B, N, 3, heads_, C / heads_}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = qkv[0] * scale_, k = qkv[1], v = qkv[2];
    const torch::Tensor attn = torch::softmax(q.matmul(k.transpose(-2, -1)), -1);
    return proj_(attn.matmul(v).transpose(1, 2).reshape({B, N, C}));
  }

 private:
  int64_t heads_;
  double scale_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(Attention);

/// Mlp (fc1, GELU, fc2) or, for ViT-g, SwiGLUFFNFused (w12, SiLU-gate, w3).
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden, bool swiglu) : swiglu_(swiglu) {
    if (swiglu) {
      const int64_t h = (static_cast<int64_t>(hidden * 2 / 3) + 7) / 8 * 8;
      a_ = register_module("w12", torch::nn::Linear(dim, 2 * h));
      b_ = register_module("w3", torch::nn::Linear(h, dim));
    } else {
      a_ = register_module("fc1", torch::nn::Linear(dim, hidden));
      b_ = register_module("fc2", torch::nn::Linear(hidden, dim));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    if (!swiglu_) return b_(torch::gelu(a_(x)));
    const auto parts = a_(x).chunk(2, -1);
    return b_(torch::silu(parts[0]) * parts[1]);
  }

 private:
  bool swiglu_;
  torch::nn::Linear a_{nullptr}, b_{nullptr};
};
TORCH_MODULE(FeedForward);

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6));
}

}  // namespace

class DinoV2BlockImpl : public torch::nn::Module {
 public:
  explicit DinoV2BlockImpl(const DinoV2Config& c) {
    norm1_ = register_module("norm1", layer_norm(c.embed_dim));
    attn_ = register_module("attn", Attention(c.embed_dim, c.num_heads));
    ls1_ = register_module("ls1", LayerScale(c.embed_dim));
    norm2_ = register_module("norm2", layer_norm(c.embed_dim));
    mlp_ = register_module("mlp", FeedForward(c.embed_dim, static_cast<int64_t>(c.embed_dim * c.mlp_ratio), c.swiglu));
    ls2_ = register_module("ls2", LayerScale(c.embed_dim));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = x + ls1_(attn_(norm1_(x)));
    return x + ls2_(mlp_(norm2_(x)));
  }

 private:
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  Attention attn_{nullptr};
  FeedForward mlp_{nullptr};
  LayerScale ls1_{nullptr}, ls2_{nullptr};
};

DinoV2Config DinoV2Config::for_arch(const std::string& arch) {
  static const std::vector<std::string> known = {"dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14",
                                                 "dinov2_vits14_reg", "dinov2_vitb14_reg", "dinov2_vitl14_reg",
                                                 "dinov2_vitg14_reg"};
  if (std::find(known.begin(), known.end(), arch) == known.end())
    throw ConfigError("dinov2: unknown arch '" + arch + "'." + suggest_from(arch, known));
  DinoV2Config c;
  const std::string size = arch.substr(10, 1);  // "dinov2_vit" + s/b/l/g
  if (size == "s") c.embed_dim = 384, c.depth = 12, c.num_heads = 6;
  if (size == "b") c.embed_dim = 768, c.depth = 12, c.num_heads = 12;
  if (size == "l") c.embed_dim = 1024, c.depth = 24, c.num_heads = 16;
  if (size == "g") c.embed_dim = 1536, c.depth = 40, c.num_heads = 24, c.swiglu = true;
  if (arch.size() > 4 && arch.compare(arch.size() - 4, 4, "_reg") == 0) {
    c.num_register_tokens = 4;
    c.interpolate_antialias = true;
    c.interpolate_offset = 0.0;
  }
  return c;
}

DinoVisionTransformerImpl::DinoVisionTransformerImpl(const DinoV2Config& config) : config_(config) {
  if (config.depth < 1) throw ConfigError("dinov2: depth must be at least 1");
  const int64_t D = config.embed_dim;
  const int64_t M = config.img_size / config.patch_size;
  cls_token_ = register_parameter("cls_token", torch::zeros({1, 1, D}));
  pos_embed_ = register_parameter("pos_embed", torch::zeros({1, M * M + 1, D}));
  if (config.num_register_tokens > 0)
    register_tokens_ = register_parameter("register_tokens", torch::zeros({1, config.num_register_tokens, D}));
  mask_token_ = register_parameter("mask_token", torch::zeros({1, D}));
  auto patch_embed = std::make_shared<torch::nn::Module>();
  proj_ = patch_embed->register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, D, config.patch_size).stride(config.patch_size)));
  register_module("patch_embed", patch_embed);
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.depth; ++i) {
    block_list_.push_back(DinoV2Block(config));
    blocks_->push_back(block_list_.back());
  }
  norm_ = register_module("norm", layer_norm(D));
}

void DinoVisionTransformerImpl::check_size(int64_t H, int64_t W) const {
  const int64_t p = config_.patch_size;
  if (H % p != 0 || W % p != 0 || H < p || W < p)
    throw Error("dinov2: input " + std::to_string(H) + "x" + std::to_string(W) + " is not a positive multiple of "
                "the patch size " + std::to_string(p) + " in both dimensions (resize or crop to e.g. " +
                std::to_string(std::max<int64_t>(1, H / p) * p) + "x" + std::to_string(std::max<int64_t>(1, W / p) * p) + ")");
}

torch::Tensor DinoVisionTransformerImpl::interpolate_pos_encoding(int64_t num_patches, int64_t H, int64_t W) {
  const int64_t N = pos_embed_.size(1) - 1;
  // The hub compares w == h where (w, h) are the input's (height, width).
  if (num_patches == N && H == W) return pos_embed_;
  const torch::Tensor pos = pos_embed_.to(torch::kFloat32);
  const int64_t dim = pos.size(2);
  const int64_t h0 = H / config_.patch_size, w0 = W / config_.patch_size;
  const int64_t M = static_cast<int64_t>(std::sqrt(static_cast<double>(N)));
  if (M * M != N) throw Error("dinov2: position embedding of " + std::to_string(N) + " patches is not square");
  const torch::Tensor grid = pos.slice(1, 1).reshape({1, M, M, dim}).permute({0, 3, 1, 2});
  std::vector<int64_t> size = {h0, w0};
  c10::optional<double> sh, sw;
  if (config_.interpolate_offset != 0.0) {
    // Scale-factor mode: output size floor(M * s), sampling ratio 1/s (not M / out).
    const double sx = (static_cast<double>(h0) + config_.interpolate_offset) / static_cast<double>(M);
    const double sy = (static_cast<double>(w0) + config_.interpolate_offset) / static_cast<double>(M);
    size = {static_cast<int64_t>(static_cast<double>(M) * sx), static_cast<int64_t>(static_cast<double>(M) * sy)};
    sh = sx;
    sw = sy;
  }
  torch::Tensor out = config_.interpolate_antialias ? at::_upsample_bicubic2d_aa(grid, size, false, sh, sw)
                                                    : at::upsample_bicubic2d(grid, size, false, sh, sw);
  if (out.size(2) != h0 || out.size(3) != w0)
    throw Error("dinov2: interpolated position embedding has the wrong size");
  out = out.permute({0, 2, 3, 1}).reshape({1, -1, dim});
  return torch::cat({pos.select(1, 0).unsqueeze(0), out}, 1).to(pos_embed_.scalar_type());
}

torch::Tensor DinoVisionTransformerImpl::prepare_tokens(const torch::Tensor& x) {
  backbone::check_input(x, "dinov2");
  const int64_t H = x.size(2), W = x.size(3);
  check_size(H, W);
  torch::Tensor t = proj_(x).flatten(2).transpose(1, 2);
  t = torch::cat({cls_token_.expand({t.size(0), -1, -1}), t}, 1);
  t = t + interpolate_pos_encoding(t.size(1) - 1, H, W);
  if (register_tokens_.defined())
    t = torch::cat({t.slice(1, 0, 1), register_tokens_.expand({t.size(0), -1, -1}), t.slice(1, 1)}, 1);
  return t;
}

DinoV2Features DinoVisionTransformerImpl::forward_features(const torch::Tensor& x) {
  torch::Tensor t = prepare_tokens(x);
  for (auto& b : block_list_) t = b->forward(t);
  const torch::Tensor n = norm_(t);
  const int64_t R = config_.num_register_tokens;
  return {n.select(1, 0), n.slice(1, 1, R + 1), n.slice(1, R + 1), t};
}

std::vector<int64_t> DinoVisionTransformerImpl::last_blocks(int64_t n) const {
  std::vector<int64_t> out;
  for (int64_t i = std::max<int64_t>(0, config_.depth - n); i < config_.depth; ++i) out.push_back(i);
  return out;
}

std::vector<DinoV2Layer> DinoVisionTransformerImpl::get_intermediate_layers(const torch::Tensor& x,
                                                                           const std::vector<int64_t>& blocks,
                                                                           bool reshape, bool norm) {
  for (int64_t b : blocks)
    if (b < 0 || b >= config_.depth)
      throw Error("dinov2: block " + std::to_string(b) + " does not exist (the model has " +
                  std::to_string(config_.depth) + " blocks)");
  const int64_t last = blocks.empty() ? -1 : *std::max_element(blocks.begin(), blocks.end());
  std::vector<DinoV2Layer> out;
  if (last < 0) return out;
  torch::Tensor t = prepare_tokens(x);
  std::map<int64_t, torch::Tensor> kept;
  for (int64_t i = 0; i <= last; ++i) {
    t = block_list_[i]->forward(t);
    if (std::find(blocks.begin(), blocks.end(), i) != blocks.end()) kept[i] = t;
  }
  const int64_t B = x.size(0), h = x.size(2) / config_.patch_size, w = x.size(3) / config_.patch_size;
  for (const auto& [i, raw] : kept) {
    const torch::Tensor y = norm ? norm_(raw) : raw;
    DinoV2Layer layer{y.slice(1, 1 + config_.num_register_tokens), y.select(1, 0)};
    if (reshape) layer.patches = layer.patches.reshape({B, h, w, -1}).permute({0, 3, 1, 2}).contiguous();
    out.push_back(std::move(layer));
  }
  return out;
}

void DinoVisionTransformerImpl::reset_random(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  auto trunc_normal = [&](torch::Tensor t, double std) {
    t.normal_(0.0, std, gen);
    t.clamp_(-2.0, 2.0);
  };
  trunc_normal(pos_embed_, 0.02);
  cls_token_.normal_(0.0, 1e-6, gen);
  if (register_tokens_.defined()) register_tokens_.normal_(0.0, 1e-6, gen);
  mask_token_.zero_();
  for (auto& p : named_parameters(true)) {
    const std::string& k = p.key();
    torch::Tensor t = p.value();
    const bool is_bias = k.size() > 5 && k.compare(k.size() - 5, 5, ".bias") == 0;
    if (k.find(".gamma") != std::string::npos) t.fill_(1.0);
    else if (k.find("norm") != std::string::npos) t.fill_(is_bias ? 0.0 : 1.0);
    else if (k.rfind("blocks.", 0) == 0) is_bias ? (void)t.zero_() : trunc_normal(t, 0.02);
    else if (k == "patch_embed.proj.weight") trunc_normal(t, 0.02);
    else if (k == "patch_embed.proj.bias") t.zero_();
  }
}

DinoV2Backbone::DinoV2Backbone(const Options& options) : options_(options) {
  DinoV2Config config = DinoV2Config::for_arch(options.arch);
  if (options.depth > 0) config.depth = options.depth;
  net_ = DinoVisionTransformer(config);
  const std::vector<std::string> all = taps();
  selected_ = backbone::select_taps(options.layers, all, {all.back()}, "layers");
  for (const auto& s : selected_) selected_blocks_.push_back(std::stoll(s.substr(7)));
  const bool reg = config.num_register_tokens > 0;
  const std::string base = reg ? options.arch.substr(0, options.arch.size() - 4) : options.arch;
  weights_path_ = backbone::resolve_weights(options.weights, options.arch,
                                            {base + (reg ? "_reg4" : "") + "_pretrain.pth"});
  if (weights_path_.empty()) net_->reset_random(static_cast<uint64_t>(options.seed));
  else load_checkpoint(*net_, weights_path_);
  backbone::set_trainable(*net_, options.trainable);
}

std::vector<std::string> DinoV2Backbone::taps() const {
  std::vector<std::string> out;
  for (int64_t i = 0; i < net_->config().depth; ++i) out.push_back("blocks." + std::to_string(i));
  return out;
}

std::map<std::string, torch::Tensor> DinoV2Backbone::forward(const torch::Tensor& x) {
  ScopedStage stage("backbone");  // test-time stage times (core/stages.hpp)
  c10::optional<torch::NoGradGuard> no_grad;
  if (!options_.trainable) no_grad.emplace();
  const auto layers = net_->get_intermediate_layers(fit(x), selected_blocks_, options_.reshape, options_.norm);
  std::map<std::string, torch::Tensor> out;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    out[selected_[i]] = layers[i].patches;
    if (options_.class_token) out[selected_[i] + ".cls"] = layers[i].cls;
  }
  return out;
}

torch::Tensor DinoV2Backbone::fit(const torch::Tensor& x) const {
  const int64_t p = net_->config().patch_size;
  if (options_.fit_input == "error" || x.dim() != 4) return x;
  const int64_t H = x.size(2), W = x.size(3);
  const int64_t H2 = backbone::nearest_multiples(H, p).second, W2 = backbone::nearest_multiples(W, p).second;
  if (H2 == H && W2 == W) return x;
  namespace F = torch::nn::functional;
  if (options_.fit_input == "pad") return F::pad(x, F::PadFuncOptions({0, W2 - W, 0, H2 - H}));
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{H2, W2})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

InputSizeRule DinoV2Backbone::input_rule() const {
  return {net_->config().patch_size, options_.fit_input, "fit_input"};
}

GridGeometry DinoV2Backbone::grid(const std::string& tap, int64_t height, int64_t /*width*/) const {
  const int64_t p = stride(tap);
  if (p <= 0) throw ConfigError("backbone tap '" + tap + "' has no spatial grid");
  if (options_.fit_input != "resize" || height % p == 0) return GridGeometry::centred(p);
  // Cell i is centred on resized pixel (i + 1/2) p - 1/2, i.e. on input pixel (i + 1/2) s - 1/2.
  const double s = static_cast<double>(p) * static_cast<double>(height) /
                   static_cast<double>(backbone::nearest_multiples(height, p).second);
  const double o = s / 2.0 - 0.5;
  return {o, o, s};
}

int64_t DinoV2Backbone::channels(const std::string& tap) const {
  backbone::select_taps({tap.size() > 4 && tap.compare(tap.size() - 4, 4, ".cls") == 0 ? tap.substr(0, tap.size() - 4) : tap},
                        taps(), {}, "tap");
  return net_->config().embed_dim;
}

int64_t DinoV2Backbone::stride(const std::string& tap) const {
  const bool cls = tap.size() > 4 && tap.compare(tap.size() - 4, 4, ".cls") == 0;
  backbone::select_taps({cls ? tap.substr(0, tap.size() - 4) : tap}, taps(), {}, "tap");
  return cls ? 0 : net_->config().patch_size;
}

}  // namespace adfw
