// The networks of DSR (Zavrtanik, Kristan, Skočaj, "DSR – A dual subspace re-projection network
// for surface anomaly detection", ECCV 2022; VitjanZ/DSR_anomaly_detection discrete_model.py and
// dsr_model.py). Every module and parameter carries the reference's state_dict name, so the
// official checkpoints (vq_model_pretrained_128_4096.pckl and the per-object .pckl files of
// train_dsr.py) load strictly without a renaming table.
//
//   DiscreteLatentModel          two-level VQ-VAE: _encoder_b (1/4), _encoder_t (1/8),
//                                _pre_vq_conv_top/bot, _vq_vae_top/bot (EMA codebooks),
//                                upsample_t, _decoder_b ("general appearance decoder")
//   SubspaceRestrictionModule    unet.{encoder,decoder}: features -> features, re-quantised
//   ImageReconstructionNetwork   object-specific decoder of the restored features
//   AnomalyDetectionModule       unet: U-Net on [object-specific, general] reconstructions
//   UpsamplingModule             unet: U-Net on [both reconstructions, softmax(mask)]
//
// The reference's residual blocks start with nn.ReLU(inplace=True) applied to their own input,
// so `x + block(x)` adds the *rectified* input: out = relu(x) + block(x). The port does the same.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace adfw {

/// What VectorQuantizerEMA.forward returns.
struct VqOutput {
  torch::Tensor loss;        ///< commitment_cost * mse(quantized (no grad), inputs)
  torch::Tensor quantized;   ///< (N,D,h,w) straight-through: inputs + (e - inputs).detach()
  torch::Tensor perplexity;  ///< exp(-sum p log(p + 1e-10)) of the code usage
  torch::Tensor indices;     ///< (N,h,w) int64 nearest code
};

/// Nearest-code index of every row of `flat` (P,D) in `codebook` (K,D), with the distance written
/// as |z|^2 + |e|^2 - 2 z.e in the reference's order (the ties it breaks are the reference's).
torch::Tensor nearest_codes(const torch::Tensor& flat, const torch::Tensor& codebook);
/// The squared distances (P,K) nearest_codes() minimises.
torch::Tensor code_distances(const torch::Tensor& flat, const torch::Tensor& codebook);

/// discrete_model.VectorQuantizerEMA (zalandoresearch/pytorch-vq-vae). In train mode every forward
/// updates the codebook by exponential moving averages (decay, Laplace-smoothed cluster sizes);
/// the returned values use the codebook from before the update. The codebook gets no gradient.
class VectorQuantizerEMAImpl : public torch::nn::Module {
 public:
  VectorQuantizerEMAImpl(int64_t num_embeddings, int64_t embedding_dim, double commitment_cost, double decay,
                         double epsilon = 1e-5);
  VqOutput forward(const torch::Tensor& inputs);
  /// The codebook (K,D).
  torch::Tensor codebook() const { return _embedding->weight; }
  int64_t num_embeddings() const { return num_embeddings_; }

  torch::nn::Embedding _embedding{nullptr};
  torch::Tensor _ema_cluster_size;  ///< (K,) buffer
  torch::Tensor _ema_w;             ///< (K,D) (a Parameter in the reference; no gradient reaches it)

 private:
  int64_t num_embeddings_, embedding_dim_;
  double commitment_cost_, decay_, epsilon_;
};
TORCH_MODULE(VectorQuantizerEMA);

/// discrete_model.ResidualStack / dsr_model.ResidualStack: `_layers.i._block.{1,3}` convs, a ReLU
/// at the end.
class DsrResidualStackImpl : public torch::nn::Module {
 public:
  DsrResidualStackImpl(int64_t channels, int64_t layers, int64_t residual_hiddens);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList _layers{nullptr};
};
TORCH_MODULE(DsrResidualStack);

/// discrete_model.EncoderBot (two stride-2 4x4 convs: 1/4), EncoderTop (one: 1/2 of its input)
/// and DecoderBot (two stride-2 transposed convs back to 3 channels).
class DsrEncoderImpl : public torch::nn::Module {
 public:
  /// bottom: EncoderBot(in, hiddens), else EncoderTop(in, hiddens).
  DsrEncoderImpl(bool bottom, int64_t in_channels, int64_t num_hiddens, int64_t layers, int64_t residual_hiddens);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d _conv_1{nullptr}, _conv_2{nullptr}, _conv_3{nullptr};
  DsrResidualStack _residual_stack{nullptr};
};
TORCH_MODULE(DsrEncoder);

class DsrDecoderImpl : public torch::nn::Module {
 public:
  DsrDecoderImpl(int64_t in_channels, int64_t num_hiddens, int64_t layers, int64_t residual_hiddens);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d _conv_1{nullptr};
  DsrResidualStack _residual_stack{nullptr};
  torch::nn::ConvTranspose2d _conv_trans_1{nullptr}, _conv_trans_2{nullptr};
};
TORCH_MODULE(DsrDecoder);

struct DiscreteLatentModelOptions {
  int64_t num_hiddens = 128;
  int64_t num_residual_layers = 2;
  int64_t num_residual_hiddens = 64;
  int64_t num_embeddings = 4096;
  int64_t embedding_dim = 128;
  double commitment_cost = 0.25;
  double decay = 0.99;
};

/// Every intermediate of DiscreteLatentModel.forward.
struct DiscreteLatentOutput {
  torch::Tensor enc_b, enc_t, zt, up_quantized_t, zb, recon;
  VqOutput top, bot;
};

class DiscreteLatentModelImpl : public torch::nn::Module {
 public:
  explicit DiscreteLatentModelImpl(const DiscreteLatentModelOptions& o);
  /// The VQ-VAE forward pass (quantisers update their codebooks in train mode).
  DiscreteLatentOutput forward(const torch::Tensor& x);
  /// The general appearance decoder on the quantised lo (N,D,h/2,w/2) and hi (N,D,h,w) features:
  /// _decoder_b(cat(upsample_t(lo), hi)).
  torch::Tensor decode(const torch::Tensor& quantized_lo, const torch::Tensor& quantized_hi);
  /// The parameters that training of the VQ-VAE updates by gradient (codebooks excluded: they
  /// follow the EMA).
  std::vector<torch::Tensor> gradient_parameters();

  DsrEncoder _encoder_t{nullptr}, _encoder_b{nullptr};
  torch::nn::Conv2d _pre_vq_conv_bot{nullptr}, _pre_vq_conv_top{nullptr};
  VectorQuantizerEMA _vq_vae_top{nullptr}, _vq_vae_bot{nullptr};
  DsrDecoder _decoder_b{nullptr};
  torch::nn::ConvTranspose2d upsample_t{nullptr};
  DiscreteLatentModelOptions options;
};
TORCH_MODULE(DiscreteLatentModel);

/// dsr_model.FeatureEncoder / FeatureDecoder: the encoder-decoder without skips of the subspace
/// restriction module (two poolings, InstanceNorm).
class FeatureEncoderImpl : public torch::nn::Module {
 public:
  FeatureEncoderImpl(int64_t in_channels, int64_t base_width);
  torch::Tensor forward(const torch::Tensor& x);  ///< the deepest block (the decoder uses only it)
  torch::nn::Sequential block1{nullptr}, block2{nullptr}, block3{nullptr};
};
TORCH_MODULE(FeatureEncoder);

class FeatureDecoderImpl : public torch::nn::Module {
 public:
  FeatureDecoderImpl(int64_t base_width, int64_t out_channels);
  torch::Tensor forward(const torch::Tensor& b3);
  torch::nn::Sequential up2{nullptr}, db2{nullptr}, up3{nullptr}, db3{nullptr}, fin_out{nullptr};
};
TORCH_MODULE(FeatureDecoder);

class SubspaceRestrictionNetworkImpl : public torch::nn::Module {
 public:
  SubspaceRestrictionNetworkImpl(int64_t in_channels, int64_t out_channels, int64_t base_width);
  torch::Tensor forward(const torch::Tensor& x);
  FeatureEncoder encoder{nullptr};
  FeatureDecoder decoder{nullptr};
};
TORCH_MODULE(SubspaceRestrictionNetwork);

/// dsr_model.SubspaceRestrictionModule (`unet.`): base width = input = output channels =
/// embedding size.
class SubspaceRestrictionModuleImpl : public torch::nn::Module {
 public:
  explicit SubspaceRestrictionModuleImpl(int64_t embedding_size);
  /// SubspaceRestrictionModule.forward: the restored features (before quantisation) and their
  /// quantisation with `quantizer` (its forward: straight-through, commitment loss).
  std::pair<torch::Tensor, VqOutput> forward(const torch::Tensor& x, VectorQuantizerEMAImpl& quantizer);
  SubspaceRestrictionNetwork unet{nullptr};
};
TORCH_MODULE(SubspaceRestrictionModule);

/// dsr_model.ImageReconstructionNetwork(in_channels, num_hiddens, layers, residual hiddens) with
/// its hard-coded 64-channel bottleneck (`pre_vq_conv` output, upblock1/2, `_conv_1` input) as
/// `bottleneck`.
class ImageReconstructionNetworkImpl : public torch::nn::Module {
 public:
  ImageReconstructionNetworkImpl(int64_t in_channels, int64_t num_hiddens, int64_t num_residual_layers,
                                 int64_t num_residual_hiddens, int64_t bottleneck = 64);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential block1{nullptr}, block2{nullptr};
  torch::nn::Conv2d pre_vq_conv{nullptr};
  torch::nn::ConvTranspose2d upblock1{nullptr}, upblock2{nullptr};
  torch::nn::Conv2d _conv_1{nullptr};
  DsrResidualStack _residual_stack{nullptr};
  torch::nn::ConvTranspose2d _conv_trans_1{nullptr}, _conv_trans_2{nullptr};
};
TORCH_MODULE(ImageReconstructionNetwork);

/// dsr_model.UnetEncoder / UnetDecoder / UnetModel: 4-level U-Net with skips, InstanceNorm.
class DsrUnetEncoderImpl : public torch::nn::Module {
 public:
  DsrUnetEncoderImpl(int64_t in_channels, int64_t base_width);
  std::vector<torch::Tensor> forward(const torch::Tensor& x);  ///< b1, b2, b3, b4
  torch::nn::Sequential block1{nullptr}, block2{nullptr}, block3{nullptr}, block4{nullptr};
};
TORCH_MODULE(DsrUnetEncoder);

class DsrUnetDecoderImpl : public torch::nn::Module {
 public:
  DsrUnetDecoderImpl(int64_t base_width, int64_t out_channels);
  torch::Tensor forward(const std::vector<torch::Tensor>& b);
  torch::nn::Sequential up1{nullptr}, db1{nullptr}, up2{nullptr}, db2{nullptr}, up3{nullptr}, db3{nullptr},
      fin_out{nullptr};
};
TORCH_MODULE(DsrUnetDecoder);

class DsrUnetModelImpl : public torch::nn::Module {
 public:
  DsrUnetModelImpl(int64_t in_channels, int64_t out_channels, int64_t base_width);
  torch::Tensor forward(const torch::Tensor& x);
  DsrUnetEncoder encoder{nullptr};
  DsrUnetDecoder decoder{nullptr};
};
TORCH_MODULE(DsrUnetModel);

/// AnomalyDetectionModule (in 6: [object-specific, general] reconstructions) and UpsamplingModule
/// (in 8: both reconstructions and the softmax mask): a UnetModel as `unet.`, out 2 logits. The
/// reference fixes base_width at 64. forward() takes the inputs it concatenates.
class DsrUnetModuleImpl : public torch::nn::Module {
 public:
  DsrUnetModuleImpl(int64_t in_channels, int64_t base_width);
  torch::Tensor forward(const std::vector<torch::Tensor>& inputs);
  DsrUnetModel unet{nullptr};
};
TORCH_MODULE(DsrUnetModule);

/// weights_init of train_dsr.py: every Conv2d / ConvTranspose2d weight ~ N(0, 0.02^2) (biases
/// keep their default init).
void dsr_weights_init(torch::nn::Module& module);

}  // namespace adfw
