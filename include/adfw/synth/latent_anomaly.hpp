// Anomalies synthesised in a vector-quantised latent space (family "latent_anomaly"): inside a
// mask, each quantised feature is replaced by another code of the codebook. Unlike image-space
// synthesizers (family "synthesizer") they act on a batch of features during the training step,
// since they need the codebook and the encoder's output.
//
//   dsr (DSR, ECCV 2022; VitjanZ/DSR_anomaly_detection train_dsr.py generate_fake_anomalies_joined):
//     per sample a strength s ~ U(strength_min, strength_max) (anom_par 0.2: U(0.2, 1)); for each
//     position the K codes are ranked by their distance to the *unquantised* feature, the
//     topk = max(1, min(int(s K) + 1, K - 1)) nearest are kept, the nearest int(0.05 K) of them
//     dropped, and one of the rest is drawn uniformly. The image-resolution mask is max-pooled to
//     the feature grid; out = mask * drawn code + (1 - mask) * quantised feature. Which level gets
//     anomalies (hi, lo, both) is drawn per sample: both with probability 1/2, otherwise lo or hi
//     with probability 1/2 each (torch.randint(0, 2) twice in train_on_device).
//   Every draw can be given instead of drawn (LatentAnomalyDraws, LatentLevels), so a test can
//   replay the reference's.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include <torch/torch.h>

#include "adfw/core/options.hpp"

namespace adfw {

/// The random part of one application to a batch.
struct LatentAnomalyDraws {
  torch::Tensor strength;  ///< (N,) float32 in [0, 1]: fraction of the codebook that are candidates
  torch::Tensor ranks;     ///< (N, h*w) int64: the rank drawn among the candidates after the skipped nearest
};

/// Which level(s) each sample's anomaly goes to.
struct LatentLevels {
  torch::Tensor use_both;  ///< (N,1,1,1) float 0/1
  torch::Tensor use_lo;    ///< (N,1,1,1) float 0/1; with use_both = 0: lo if 1, else hi
};

struct LatentAnomalyResult {
  torch::Tensor features;  ///< (N,D,h,w): the drawn code inside the mask, the quantised feature outside
  torch::Tensor codes;     ///< (N,h,w) int64: the codebook row placed at each position, -1 outside the mask
  torch::Tensor mask;      ///< (N,1,h,w) the mask at feature resolution
  torch::Tensor candidates;  ///< (N,) int64: how many codes each sample's draw chose from
};

class LatentAnomaly {
 public:
  static constexpr const char* family = "latent_anomaly";
  virtual ~LatentAnomaly() = default;
  /// Draws for `n` samples of `positions` features each with a codebook of `codes` rows; with
  /// `strength` (N,) given, only the ranks are drawn (DSR draws the hi level twice with one strength).
  virtual LatentAnomalyDraws draw(int64_t n, int64_t positions, int64_t codes, std::mt19937_64& rng,
                                  const torch::Tensor& strength = {}) const = 0;
  /// The per-sample level choice.
  virtual LatentLevels draw_levels(int64_t n, std::mt19937_64& rng) const = 0;
  /// `features` (N,D,h,w) unquantised, `quantized` (N,D,h,w), `codebook` (K,D), `mask`
  /// (N,1,H,W) with H, W multiples of h, w. Runs without gradients.
  virtual LatentAnomalyResult apply(const torch::Tensor& features, const torch::Tensor& quantized,
                                    const torch::Tensor& codebook, const torch::Tensor& mask,
                                    const LatentAnomalyDraws& draws) const = 0;
};

struct DsrLatentAnomalyOptions {
  double strength_min = 0.2;
  double strength_max = 1.0;
  double skip_fraction = 0.05;
  std::string levels = "reference";

  template <class V>
  void fields(V& v) {
    v("strength_min", strength_min,
      "the strength (fraction of the codebook among which the code is drawn) is U(strength_min, strength_max) "
      "per sample (DSR anom_par: 0.2)",
      Check::range(0, 1));
    v("strength_max", strength_max, "upper end of the strength range (DSR: 1)", Check::range(0, 1));
    v("skip_fraction", skip_fraction,
      "the nearest int(skip_fraction * K) codes are never drawn, so a replaced feature really changes (DSR: 0.05)",
      Check::range(0, 1));
    v("levels", levels,
      "where anomalies go: reference (both levels with probability 1/2, else lo or hi with 1/2 each, as "
      "train_dsr.py), both, hi, lo",
      Check::one_of({"reference", "both", "hi", "lo"}));
  }
};

class DsrLatentAnomaly final : public LatentAnomaly {
 public:
  using Options = DsrLatentAnomalyOptions;
  explicit DsrLatentAnomaly(const Options& options);
  LatentAnomalyDraws draw(int64_t n, int64_t positions, int64_t codes, std::mt19937_64& rng,
                          const torch::Tensor& strength = {}) const override;
  LatentLevels draw_levels(int64_t n, std::mt19937_64& rng) const override;
  LatentAnomalyResult apply(const torch::Tensor& features, const torch::Tensor& quantized,
                            const torch::Tensor& codebook, const torch::Tensor& mask,
                            const LatentAnomalyDraws& draws) const override;
  /// topk = max(1, min(int(strength * K) + 1, K - 1)) (strength * K in float32, as the reference's
  /// tensor arithmetic).
  static int64_t nearest_kept(float strength, int64_t codes);
  /// How many codes a sample of this strength draws from: nearest_kept - int(skip_fraction * K).
  /// Throws adfw::Error when none are left.
  int64_t candidates(float strength, int64_t codes) const;
  /// int(skip_fraction * K): the nearest codes never drawn.
  int64_t skipped(int64_t codes) const;

 private:
  Options options_;
};

}  // namespace adfw
