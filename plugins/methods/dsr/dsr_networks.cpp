#include "methods/dsr/dsr_networks.hpp"

#include "adfw/core/error.hpp"

namespace adfw {

namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = 0, bool bias = true) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(bias));
}
nn::ConvTranspose2d deconv(int64_t in, int64_t out) {
  return nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, out, 4).stride(2).padding(1));
}
// Conv3x3 -> InstanceNorm (no affine, no running stats) -> ReLU, appended to `s`.
void add_cnr(nn::Sequential& s, int64_t in, int64_t out) {
  s->push_back(conv(in, out, 3, 1, 1));
  s->push_back(nn::InstanceNorm2d(nn::InstanceNorm2dOptions(out)));
  s->push_back(nn::ReLU(nn::ReLUOptions(true)));
}
nn::Sequential double_block(int64_t in, int64_t mid, int64_t out) {
  nn::Sequential s;
  add_cnr(s, in, mid);
  add_cnr(s, mid, out);
  return s;
}
// nn.Sequential(nn.Upsample(x2, bilinear, align_corners=True), conv3x3, InstanceNorm, ReLU).
nn::Sequential up_block(int64_t in, int64_t out) {
  nn::Sequential s;
  s->push_back(nn::Upsample(
      nn::UpsampleOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kBilinear).align_corners(true)));
  add_cnr(s, in, out);
  return s;
}
nn::Sequential dsr_fin_out(int64_t in, int64_t out) {
  nn::Sequential s;
  s->push_back(conv(in, out, 3, 1, 1));
  return s;
}

// discrete_model.Residual: nn.Sequential(ReLU(inplace), conv3x3 no bias, ReLU(inplace), conv1x1 no bias).
class DsrResidualImpl : public nn::Module {
 public:
  DsrResidualImpl(int64_t channels, int64_t hiddens) {
    _block = register_module("_block", nn::Sequential(nn::ReLU(nn::ReLUOptions(true)), conv(channels, hiddens, 3, 1, 1, false),
                                                      nn::ReLU(nn::ReLUOptions(true)), conv(hiddens, channels, 1, 1, 0, false)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    // `x + self._block(x)` in the reference: the block's first ReLU rectifies x in place before
    // the addition reads it.
    // The block's own first ReLU is then a no-op and is skipped.
    const torch::Tensor r = torch::relu(x);
    torch::Tensor y = _block->ptr(1)->as<nn::Conv2dImpl>()->forward(r);
    y = _block->ptr(3)->as<nn::Conv2dImpl>()->forward(torch::relu(y));
    return r + y;
  }
  nn::Sequential _block{nullptr};
};
TORCH_MODULE(DsrResidual);

}  // namespace

// ---- vector quantiser --------------------------------------------------------------------------

torch::Tensor code_distances(const torch::Tensor& flat, const torch::Tensor& codebook) {
  return flat.pow(2).sum(1, true) + codebook.pow(2).sum(1) - 2 * torch::matmul(flat, codebook.t());
}

torch::Tensor nearest_codes(const torch::Tensor& flat, const torch::Tensor& codebook) {
  return code_distances(flat, codebook).argmin(1);
}

VectorQuantizerEMAImpl::VectorQuantizerEMAImpl(int64_t num_embeddings, int64_t embedding_dim, double commitment_cost,
                                               double decay, double epsilon)
    : num_embeddings_(num_embeddings),
      embedding_dim_(embedding_dim),
      commitment_cost_(commitment_cost),
      decay_(decay),
      epsilon_(epsilon) {
  _embedding = register_module("_embedding", nn::Embedding(num_embeddings, embedding_dim));
  {
    torch::NoGradGuard ng;
    _embedding->weight.normal_();
  }
  _embedding->weight.set_requires_grad(false);
  _ema_cluster_size = register_buffer("_ema_cluster_size", torch::zeros({num_embeddings}));
  _ema_w = register_buffer("_ema_w", torch::randn({num_embeddings, embedding_dim}));
}

VqOutput VectorQuantizerEMAImpl::forward(const torch::Tensor& in) {
  if (in.dim() != 4 || in.size(1) != embedding_dim_)
    throw Error("vector quantiser: expected (N," + std::to_string(embedding_dim_) + ",h,w) features, got " +
                std::to_string(in.dim()) + "-d input with " + std::to_string(in.dim() > 1 ? in.size(1) : 0) +
                " channels");
  const torch::Tensor inputs = in.permute({0, 2, 3, 1}).contiguous();
  const torch::Tensor flat = inputs.view({-1, embedding_dim_});
  const torch::Tensor weight = _embedding->weight.detach();
  torch::Tensor idx, counts;
  {
    torch::NoGradGuard ng;
    idx = nearest_codes(flat, weight);
    counts = torch::bincount(idx, {}, num_embeddings_).to(flat.scalar_type());
  }
  const torch::Tensor quantized = weight.index_select(0, idx).view(inputs.sizes());
  if (is_training()) {
    // EMA of the code counts and of the summed features per code (decay), Laplace-smoothed
    // cluster sizes, codebook = ema_w / size.
    torch::NoGradGuard ng;
    torch::Tensor size = _ema_cluster_size * decay_ + (1 - decay_) * counts;
    const torch::Tensor n = size.sum();
    size = (size + epsilon_) / (n + static_cast<double>(num_embeddings_) * epsilon_) * n;
    torch::Tensor dw = torch::zeros_like(_ema_w).index_add_(0, idx, flat.detach());
    const torch::Tensor w = _ema_w * decay_ + (1 - decay_) * dw;
    _ema_cluster_size.copy_(size);
    _ema_w.copy_(w);
    _embedding->weight.copy_(w / size.unsqueeze(1));
  }
  VqOutput out;
  out.loss = commitment_cost_ * F::mse_loss(quantized.detach(), inputs);
  const torch::Tensor st = inputs + (quantized - inputs).detach();
  {
    torch::NoGradGuard ng;
    const torch::Tensor p = counts / static_cast<double>(flat.size(0));
    out.perplexity = torch::exp(-(p * torch::log(p + 1e-10)).sum());
  }
  out.quantized = st.permute({0, 3, 1, 2}).contiguous();
  out.indices = idx.view({inputs.size(0), inputs.size(1), inputs.size(2)});
  return out;
}

// ---- VQ-VAE --------------------------------------------------------------------------------------

DsrResidualStackImpl::DsrResidualStackImpl(int64_t channels, int64_t layers, int64_t residual_hiddens) {
  _layers = register_module("_layers", nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) _layers->push_back(DsrResidual(channels, residual_hiddens));
}

torch::Tensor DsrResidualStackImpl::forward(torch::Tensor x) {
  for (const auto& m : *_layers) x = m->as<DsrResidualImpl>()->forward(x);
  return torch::relu(x);
}

DsrEncoderImpl::DsrEncoderImpl(bool bottom, int64_t in, int64_t hiddens, int64_t layers, int64_t residual_hiddens) {
  if (bottom) {
    _conv_1 = register_module("_conv_1", conv(in, hiddens / 2, 4, 2, 1));
    _conv_2 = register_module("_conv_2", conv(hiddens / 2, hiddens, 4, 2, 1));
    _conv_3 = register_module("_conv_3", conv(hiddens, hiddens, 3, 1, 1));
  } else {
    _conv_1 = register_module("_conv_1", conv(in, hiddens, 4, 2, 1));
    _conv_2 = register_module("_conv_2", conv(hiddens, hiddens, 3, 1, 1));
  }
  _residual_stack = register_module("_residual_stack", DsrResidualStack(hiddens, layers, residual_hiddens));
}

torch::Tensor DsrEncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::relu(_conv_1->forward(x));
  if (_conv_3) y = _conv_3->forward(torch::relu(_conv_2->forward(y)));
  else y = torch::relu(_conv_2->forward(y));
  return _residual_stack->forward(y);
}

DsrDecoderImpl::DsrDecoderImpl(int64_t in, int64_t hiddens, int64_t layers, int64_t residual_hiddens) {
  _conv_1 = register_module("_conv_1", conv(in, hiddens, 3, 1, 1));
  _residual_stack = register_module("_residual_stack", DsrResidualStack(hiddens, layers, residual_hiddens));
  _conv_trans_1 = register_module("_conv_trans_1", deconv(hiddens, hiddens / 2));
  _conv_trans_2 = register_module("_conv_trans_2", deconv(hiddens / 2, 3));
}

torch::Tensor DsrDecoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = _residual_stack->forward(_conv_1->forward(x));
  return _conv_trans_2->forward(torch::relu(_conv_trans_1->forward(y)));
}

DiscreteLatentModelImpl::DiscreteLatentModelImpl(const DiscreteLatentModelOptions& o) : options(o) {
  const int64_t h = o.num_hiddens, d = o.embedding_dim;
  _encoder_t = register_module("_encoder_t", DsrEncoder(false, h, h, o.num_residual_layers, o.num_residual_hiddens));
  _encoder_b = register_module("_encoder_b", DsrEncoder(true, 3, h, o.num_residual_layers, o.num_residual_hiddens));
  _pre_vq_conv_bot = register_module("_pre_vq_conv_bot", conv(h + d, d, 1));
  _pre_vq_conv_top = register_module("_pre_vq_conv_top", conv(h, d, 1));
  _vq_vae_top = register_module("_vq_vae_top", VectorQuantizerEMA(o.num_embeddings, d, o.commitment_cost, o.decay));
  _vq_vae_bot = register_module("_vq_vae_bot", VectorQuantizerEMA(o.num_embeddings, d, o.commitment_cost, o.decay));
  _decoder_b = register_module("_decoder_b", DsrDecoder(2 * d, h, o.num_residual_layers, o.num_residual_hiddens));
  upsample_t = register_module("upsample_t", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(d, d, 4).stride(2).padding(1)));
}

DiscreteLatentOutput DiscreteLatentModelImpl::forward(const torch::Tensor& x) {
  DiscreteLatentOutput o;
  o.enc_b = _encoder_b->forward(x);
  o.enc_t = _encoder_t->forward(o.enc_b);
  o.zt = _pre_vq_conv_top->forward(o.enc_t);
  o.top = _vq_vae_top->forward(o.zt);
  o.up_quantized_t = upsample_t->forward(o.top.quantized);
  o.zb = _pre_vq_conv_bot->forward(torch::cat({o.enc_b, o.up_quantized_t}, 1));
  o.bot = _vq_vae_bot->forward(o.zb);
  o.recon = _decoder_b->forward(torch::cat({o.up_quantized_t, o.bot.quantized}, 1));
  return o;
}

torch::Tensor DiscreteLatentModelImpl::decode(const torch::Tensor& lo, const torch::Tensor& hi) {
  return _decoder_b->forward(torch::cat({upsample_t->forward(lo), hi}, 1));
}

std::vector<torch::Tensor> DiscreteLatentModelImpl::gradient_parameters() {
  std::vector<torch::Tensor> out;
  for (const auto& p : named_parameters())
    if (p.key().find("_embedding") == std::string::npos) out.push_back(p.value());
  return out;
}

// ---- subspace restriction ------------------------------------------------------------------------

FeatureEncoderImpl::FeatureEncoderImpl(int64_t in, int64_t bw) {
  block1 = register_module("block1", double_block(in, bw, bw));
  block2 = register_module("block2", double_block(bw, bw * 2, bw * 2));
  block3 = register_module("block3", double_block(bw * 2, bw * 4, bw * 4));
}

torch::Tensor FeatureEncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor b1 = block1->forward(x);
  torch::Tensor b2 = block2->forward(F::max_pool2d(b1, F::MaxPool2dFuncOptions(2)));
  return block3->forward(F::max_pool2d(b2, F::MaxPool2dFuncOptions(2)));
}

FeatureDecoderImpl::FeatureDecoderImpl(int64_t bw, int64_t out) {
  up2 = register_module("up2", up_block(bw * 4, bw * 2));
  db2 = register_module("db2", double_block(bw * 2, bw * 2, bw * 2));
  up3 = register_module("up3", up_block(bw * 2, bw));
  db3 = register_module("db3", double_block(bw, bw, bw));
  fin_out = register_module("fin_out", dsr_fin_out(bw, out));
}

torch::Tensor FeatureDecoderImpl::forward(const torch::Tensor& b3) {
  return fin_out->forward(db3->forward(up3->forward(db2->forward(up2->forward(b3)))));
}

SubspaceRestrictionNetworkImpl::SubspaceRestrictionNetworkImpl(int64_t in, int64_t out, int64_t bw) {
  encoder = register_module("encoder", FeatureEncoder(in, bw));
  decoder = register_module("decoder", FeatureDecoder(bw, out));
}

torch::Tensor SubspaceRestrictionNetworkImpl::forward(const torch::Tensor& x) { return decoder->forward(encoder->forward(x)); }

SubspaceRestrictionModuleImpl::SubspaceRestrictionModuleImpl(int64_t e) {
  unet = register_module("unet", SubspaceRestrictionNetwork(e, e, e));
}

std::pair<torch::Tensor, VqOutput> SubspaceRestrictionModuleImpl::forward(const torch::Tensor& x,
                                                                          VectorQuantizerEMAImpl& quantizer) {
  torch::Tensor restored = unet->forward(x);
  VqOutput q = quantizer.forward(restored);
  return {restored, q};
}

// ---- image reconstruction ------------------------------------------------------------------------

ImageReconstructionNetworkImpl::ImageReconstructionNetworkImpl(int64_t in, int64_t hiddens, int64_t layers,
                                                               int64_t residual_hiddens, int64_t bottleneck) {
  block1 = register_module("block1", double_block(in, in, in * 2));
  block2 = register_module("block2", double_block(in * 2, in * 2, in * 4));
  pre_vq_conv = register_module("pre_vq_conv", conv(in * 4, bottleneck, 1));
  upblock1 = register_module("upblock1", deconv(bottleneck, bottleneck));
  upblock2 = register_module("upblock2", deconv(bottleneck, bottleneck));
  _conv_1 = register_module("_conv_1", conv(bottleneck, hiddens, 3, 1, 1));
  _residual_stack = register_module("_residual_stack", DsrResidualStack(hiddens, layers, residual_hiddens));
  _conv_trans_1 = register_module("_conv_trans_1", deconv(hiddens, hiddens / 2));
  _conv_trans_2 = register_module("_conv_trans_2", deconv(hiddens / 2, 3));
}

torch::Tensor ImageReconstructionNetworkImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = F::max_pool2d(block1->forward(x), F::MaxPool2dFuncOptions(2));
  y = F::max_pool2d(block2->forward(y), F::MaxPool2dFuncOptions(2));
  y = pre_vq_conv->forward(y);
  y = torch::relu(upblock1->forward(y));
  y = torch::relu(upblock2->forward(y));
  y = _residual_stack->forward(_conv_1->forward(y));
  return _conv_trans_2->forward(torch::relu(_conv_trans_1->forward(y)));
}

// ---- U-Nets --------------------------------------------------------------------------------------

DsrUnetEncoderImpl::DsrUnetEncoderImpl(int64_t in, int64_t bw) {
  block1 = register_module("block1", double_block(in, bw, bw));
  block2 = register_module("block2", double_block(bw, bw * 2, bw * 2));
  block3 = register_module("block3", double_block(bw * 2, bw * 4, bw * 4));
  block4 = register_module("block4", double_block(bw * 4, bw * 4, bw * 4));
}

std::vector<torch::Tensor> DsrUnetEncoderImpl::forward(const torch::Tensor& x) {
  const auto pool = F::MaxPool2dFuncOptions(2);
  torch::Tensor b1 = block1->forward(x);
  torch::Tensor b2 = block2->forward(F::max_pool2d(b1, pool));
  torch::Tensor b3 = block3->forward(F::max_pool2d(b2, pool));
  torch::Tensor b4 = block4->forward(F::max_pool2d(b3, pool));
  return {b1, b2, b3, b4};
}

DsrUnetDecoderImpl::DsrUnetDecoderImpl(int64_t bw, int64_t out) {
  up1 = register_module("up1", up_block(bw * 4, bw * 4));
  db1 = register_module("db1", double_block(bw * 8, bw * 4, bw * 4));
  up2 = register_module("up2", up_block(bw * 4, bw * 2));
  db2 = register_module("db2", double_block(bw * 4, bw * 2, bw * 2));
  up3 = register_module("up3", up_block(bw * 2, bw));
  db3 = register_module("db3", double_block(bw * 2, bw, bw));
  fin_out = register_module("fin_out", dsr_fin_out(bw, out));
}

torch::Tensor DsrUnetDecoderImpl::forward(const std::vector<torch::Tensor>& b) {
  torch::Tensor d1 = db1->forward(torch::cat({up1->forward(b[3]), b[2]}, 1));
  torch::Tensor d2 = db2->forward(torch::cat({up2->forward(d1), b[1]}, 1));
  torch::Tensor d3 = db3->forward(torch::cat({up3->forward(d2), b[0]}, 1));
  return fin_out->forward(d3);
}

DsrUnetModelImpl::DsrUnetModelImpl(int64_t in, int64_t out, int64_t bw) {
  encoder = register_module("encoder", DsrUnetEncoder(in, bw));
  decoder = register_module("decoder", DsrUnetDecoder(bw, out));
}

torch::Tensor DsrUnetModelImpl::forward(const torch::Tensor& x) { return decoder->forward(encoder->forward(x)); }

DsrUnetModuleImpl::DsrUnetModuleImpl(int64_t in, int64_t bw) { unet = register_module("unet", DsrUnetModel(in, 2, bw)); }

torch::Tensor DsrUnetModuleImpl::forward(const std::vector<torch::Tensor>& inputs) {
  return unet->forward(torch::cat(inputs, 1));
}

void dsr_weights_init(torch::nn::Module& module) {
  torch::NoGradGuard ng;
  for (auto& m : module.modules()) {
    if (auto* c = m->as<nn::Conv2dImpl>()) c->weight.normal_(0.0, 0.02);
    else if (auto* t = m->as<nn::ConvTranspose2dImpl>()) t->weight.normal_(0.0, 0.02);
  }
}

}  // namespace adfw
