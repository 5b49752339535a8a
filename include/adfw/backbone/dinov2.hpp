// DINOv2 vision transformers as published on torch.hub (facebookresearch/dinov2,
// dinov2/models/vision_transformer.py and dinov2/layers/*; Oquab et al. 2023, "DINOv2"; Darcet
// et al. 2023, "Vision Transformers Need Registers"), with parameter names equal to the hub
// state_dict keys. Computes what the hub code computes without xFormers: plain softmax attention,
// exact GELU, LayerNorm eps 1e-6, layerscale, and position-embedding interpolation with the hub's
// semantics (bicubic, interpolate_offset as a scale-factor kludge, optional antialiasing).
#pragma once

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/options.hpp"

namespace adfw {

struct DinoV2Config {
  int64_t embed_dim = 384;
  int64_t depth = 12;
  int64_t num_heads = 6;
  double mlp_ratio = 4.0;
  int64_t patch_size = 14;
  int64_t img_size = 518;
  bool swiglu = false;  ///< ViT-g: fused SwiGLU FFN (mlp.w12, mlp.w3)
  int64_t num_register_tokens = 0;
  bool interpolate_antialias = false;
  double interpolate_offset = 0.1;
  /// dinov2_vit{s,b,l,g}14 and dinov2_vit{s,b,l,g}14_reg (the hub's settings); ConfigError otherwise.
  static DinoV2Config for_arch(const std::string& arch);
};

/// forward_features() of the hub model.
struct DinoV2Features {
  torch::Tensor x_norm_clstoken;     ///< (N, D)
  torch::Tensor x_norm_regtokens;    ///< (N, R, D)
  torch::Tensor x_norm_patchtokens;  ///< (N, h*w, D)
  torch::Tensor x_prenorm;           ///< (N, 1+R+h*w, D)
};

/// One intermediate layer as get_intermediate_layers() returns it.
struct DinoV2Layer {
  torch::Tensor patches;  ///< (N, h*w, D), or (N, D, h, w) when reshaped
  torch::Tensor cls;      ///< (N, D)
};

class DinoV2BlockImpl;
TORCH_MODULE(DinoV2Block);

class DinoVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit DinoVisionTransformerImpl(const DinoV2Config& config);
  const DinoV2Config& config() const { return config_; }

  /// Patch embedding + class token + (interpolated) position embedding + register tokens.
  torch::Tensor prepare_tokens(const torch::Tensor& x);
  /// The hub's interpolate_pos_encoding(x, w, h) for an input of height `H` and width `W`.
  torch::Tensor interpolate_pos_encoding(int64_t num_patches, int64_t H, int64_t W);
  DinoV2Features forward_features(const torch::Tensor& x);
  /// get_intermediate_layers(x, n=blocks, reshape, return_class_token=True, norm): the outputs of
  /// the given block indices (ascending), running only as deep as the last of them.
  std::vector<DinoV2Layer> get_intermediate_layers(const torch::Tensor& x, const std::vector<int64_t>& blocks,
                                                   bool reshape, bool norm);
  /// Indices of the last `n` blocks (the hub's integer `n`).
  std::vector<int64_t> last_blocks(int64_t n) const;
  /// Random init as the hub's init_weights (trunc-normal 0.02, cls token normal 1e-6, layerscale 1).
  void reset_random(uint64_t seed);

 private:
  void check_size(int64_t H, int64_t W) const;
  DinoV2Config config_;
  torch::Tensor cls_token_, pos_embed_, register_tokens_, mask_token_;
  torch::nn::Conv2d proj_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  std::vector<DinoV2Block> block_list_;
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(DinoVisionTransformer);

struct DinoV2Options {
  std::string arch = "dinov2_vits14";
  std::string weights = "";
  int64_t seed = 0;
  std::vector<std::string> layers = {};
  int64_t depth = 0;
  bool norm = true;
  bool reshape = true;
  bool class_token = false;
  bool trainable = false;
  std::string fit_input = "error";

  template <class V>
  void fields(V& v) {
    v("arch", arch, "architecture (the _reg variants have 4 register tokens)",
      Check::one_of({"dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14", "dinov2_vits14_reg",
                     "dinov2_vitb14_reg", "dinov2_vitl14_reg", "dinov2_vitg14_reg"}));
    v("weights", weights,
      "checkpoint (.pth from torch.save, or .safetensors); \"\" = the official file in "
      "$TORCH_HOME/hub/checkpoints (e.g. dinov2_vits14_pretrain.pth); \"random\" = random init");
    v("seed", seed, "random-init seed (weights = \"random\" only)", Check::at_least(0));
    v("layers", layers, "taps to return: blocks.<i> (0-based block outputs); [] = the last block");
    v("depth", depth, "number of blocks, for cut-down checkpoints; 0 = the arch's own", Check::at_least(0));
    v("norm", norm, "apply the final LayerNorm to every tap (get_intermediate_layers norm=True)");
    v("reshape", reshape, "return patch tokens as (N, D, h, w) maps; false = (N, h*w, D) tokens");
    v("class_token", class_token, "also return each tap's class token as \"<tap>.cls\" (N, D)");
    v("trainable", trainable, "fine-tune: gradients on and train mode (default frozen, eval mode)");
    v("fit_input", fit_input,
      "input sides that are not multiples of the patch size (14): \"error\" refuses them when the method is "
      "built (default); \"pad\" zero-pads the normalised input at the bottom and right to the next multiple (the "
      "grid then reaches past the image by under one patch); \"resize\" resizes it bilinearly to the next "
      "multiple (the grid then covers exactly the image)",
      Check::one_of({"error", "pad", "resize"}));
  }
};

class DinoV2Backbone : public Backbone {
 public:
  using Options = DinoV2Options;
  explicit DinoV2Backbone(const Options& options);

  std::vector<std::string> taps() const override;
  std::vector<std::string> selected_taps() const override { return selected_; }
  /// Selected "blocks.<i>" (maps or tokens, see reshape) and "blocks.<i>.cls" when class_token.
  std::map<std::string, torch::Tensor> forward(const torch::Tensor& x) override;
  int64_t channels(const std::string& tap) const override;
  int64_t stride(const std::string& tap) const override;
  /// Multiples of the patch size, or any size with fit_input "pad" / "resize".
  InputSizeRule input_rule() const override;
  /// With fit_input "resize" the cells are spread over the image (stride 14 x side / resized side,
  /// from the height axis); otherwise centred patches of the patch size.
  GridGeometry grid(const std::string& tap, int64_t height, int64_t width) const override;
  Normalization normalization() const override { return Normalization::imagenet(); }
  torch::nn::Module& module() override { return *net_; }
  DinoVisionTransformer& net() { return net_; }
  /// The input as the ViT sees it: unchanged, or padded / resized to the next multiple of the
  /// patch size as fit_input says (fit_input "error" leaves a bad size to the ViT's own check).
  torch::Tensor fit(const torch::Tensor& x) const;
  const std::filesystem::path& weights_path() const { return weights_path_; }

 private:
  Options options_;
  DinoVisionTransformer net_{nullptr};
  std::vector<std::string> selected_;
  std::vector<int64_t> selected_blocks_;
  std::filesystem::path weights_path_;
};

}  // namespace adfw
