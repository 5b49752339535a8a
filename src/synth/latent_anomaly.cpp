#include "adfw/synth/latent_anomaly.hpp"

#include <algorithm>
#include <cmath>

#include "adfw/core/error.hpp"
#include "adfw/synth/perlin.hpp"

namespace adfw {

DsrLatentAnomaly::DsrLatentAnomaly(const Options& o) : options_(o) {
  if (o.strength_min > o.strength_max)
    throw ConfigError("latent_anomaly.strength_min (" + std::to_string(o.strength_min) +
                      ") must not exceed strength_max (" + std::to_string(o.strength_max) + ")");
}

int64_t DsrLatentAnomaly::nearest_kept(float strength, int64_t codes) {
  const float scaled = strength * static_cast<float>(codes);
  return std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(scaled) + 1, codes - 1));
}

int64_t DsrLatentAnomaly::skipped(int64_t codes) const {
  return static_cast<int64_t>(static_cast<double>(codes) * options_.skip_fraction);
}

int64_t DsrLatentAnomaly::candidates(float strength, int64_t codes) const {
  const int64_t n = nearest_kept(strength, codes) - skipped(codes);
  if (n < 1)
    throw Error("latent anomaly: strength " + std::to_string(strength) + " keeps " +
                std::to_string(nearest_kept(strength, codes)) + " of " + std::to_string(codes) +
                " codes, all within the skipped nearest " + std::to_string(skipped(codes)) +
                "; raise latent_anomaly.strength_min or lower skip_fraction");
  return n;
}

LatentAnomalyDraws DsrLatentAnomaly::draw(int64_t n, int64_t positions, int64_t codes, std::mt19937_64& rng,
                                          const torch::Tensor& strength) const {
  LatentAnomalyDraws d;
  if (strength.defined() && strength.numel() != n)
    throw Error("latent anomaly: " + std::to_string(strength.numel()) + " strengths given for " + std::to_string(n) +
                " samples");
  d.strength = strength.defined() ? strength.to(torch::kCPU).to(torch::kFloat32).contiguous().clone()
                                  : torch::empty({n}, torch::kFloat32);
  d.ranks = torch::empty({n, positions}, torch::kInt64);
  auto s = d.strength.accessor<float, 1>();
  auto r = d.ranks.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    if (!strength.defined()) s[i] = static_cast<float>(uniform(rng, options_.strength_min, options_.strength_max));
    const int64_t c = candidates(s[i], codes);
    for (int64_t p = 0; p < positions; ++p) r[i][p] = uniform_int(rng, 0, c);
  }
  return d;
}

LatentLevels DsrLatentAnomaly::draw_levels(int64_t n, std::mt19937_64& rng) const {
  LatentLevels l;
  l.use_both = torch::zeros({n, 1, 1, 1});
  l.use_lo = torch::zeros({n, 1, 1, 1});
  for (int64_t i = 0; i < n; ++i) {
    const std::string& m = options_.levels;
    const bool both = m == "both" || (m == "reference" && uniform01(rng) < 0.5);
    const bool lo = m == "lo" || (m == "reference" && uniform01(rng) < 0.5);
    l.use_both[i].fill_(both ? 1.0 : 0.0);
    l.use_lo[i].fill_(lo ? 1.0 : 0.0);
  }
  return l;
}

LatentAnomalyResult DsrLatentAnomaly::apply(const torch::Tensor& features, const torch::Tensor& quantized,
                                            const torch::Tensor& codebook, const torch::Tensor& mask,
                                            const LatentAnomalyDraws& draws) const {
  torch::NoGradGuard ng;
  const int64_t n = features.size(0), dim = features.size(1), h = features.size(2), w = features.size(3);
  const int64_t k = codebook.size(0);
  if (codebook.dim() != 2 || codebook.size(1) != dim)
    throw Error("latent anomaly: the codebook (" + std::to_string(codebook.size(0)) + " x " +
                std::to_string(codebook.dim() > 1 ? codebook.size(1) : 0) + ") does not match " + std::to_string(dim) +
                "-channel features");
  if (mask.dim() != 4 || mask.size(0) != n || mask.size(2) % h != 0 || mask.size(3) % w != 0)
    throw Error("latent anomaly: the mask must be (N,1,H,W) with H, W multiples of the feature grid " +
                std::to_string(h) + " x " + std::to_string(w));
  if (draws.strength.numel() != n || draws.ranks.size(0) != n || draws.ranks.size(1) != h * w)
    throw Error("latent anomaly: the draws do not match " + std::to_string(n) + " samples of " +
                std::to_string(h * w) + " positions");
  const torch::Tensor cb = codebook.detach();
  const int64_t skip = skipped(k);
  LatentAnomalyResult r;
  r.candidates = torch::empty({n}, torch::kInt64);
  std::vector<torch::Tensor> drawn_codes;
  const torch::Tensor strength = draws.strength.to(torch::kCPU).to(torch::kFloat32).contiguous();
  for (int64_t i = 0; i < n; ++i) {
    const torch::Tensor flat = features[i].detach().permute({1, 2, 0}).reshape({-1, dim});
    // |z|^2 + |e|^2 - 2 z.e, in the reference's order.
    const torch::Tensor dist = flat.pow(2).sum(1, true) + cb.pow(2).sum(1) - 2 * torch::matmul(flat, cb.t());
    const float s = strength[i].item<float>();
    const int64_t kept = nearest_kept(s, k);
    const int64_t c = candidates(s, k);
    r.candidates[i] = c;
    const torch::Tensor nearest = std::get<1>(torch::topk(dist, kept, 1, /*largest=*/false, /*sorted=*/true));
    const torch::Tensor ranks = draws.ranks[i].to(nearest.device()).to(torch::kInt64);
    if (ranks.numel() > 0 && (ranks.min().item<int64_t>() < 0 || ranks.max().item<int64_t>() >= c))
      throw Error("latent anomaly: sample " + std::to_string(i) + " has ranks outside [0, " + std::to_string(c) + ")");
    drawn_codes.push_back(nearest.slice(1, skip).gather(1, ranks.unsqueeze(1)).squeeze(1));
  }
  const torch::Tensor codes = torch::stack(drawn_codes).view({n, h, w});
  const torch::Tensor replacement = cb.index_select(0, codes.reshape({-1})).view({n, h, w, dim}).permute({0, 3, 1, 2});
  r.mask = torch::max_pool2d(mask.to(features.device()).to(features.scalar_type()),
                             {mask.size(2) / h, mask.size(3) / w});
  r.features = r.mask * replacement + (1.0 - r.mask) * quantized.detach();
  r.codes = torch::where(r.mask.squeeze(1) > 0, codes, torch::full_like(codes, -1));
  return r;
}

}  // namespace adfw
