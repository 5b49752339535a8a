// Registers the anomaly synthesizers (image space), feature-noise generators and latent-space
// (vector-quantised) anomaly generators.
#include "adfw/core/registry.hpp"
#include "adfw/synth/cutpaste.hpp"
#include "adfw/synth/feature_noise.hpp"
#include "adfw/synth/perlin_blend.hpp"
#include "adfw/synth/transparency.hpp"

ADFW_REGISTER(adfw::Synthesizer, adfw::PerlinTextureSynthesizer, "perlin_texture",
              "DRAEM: folder textures (DTD) with 3 of 10 augmentations, blended through a Perlin mask");
ADFW_REGISTER(adfw::Synthesizer, adfw::PerlinSelfSynthesizer, "perlin_self",
              "the image's own shuffled patches blended through a Perlin mask (TransFusion structure)");
ADFW_REGISTER(adfw::Synthesizer, adfw::PerlinColorSynthesizer, "perlin_color",
              "a random solid colour blended through a Perlin mask (DSR stage 2)");
ADFW_REGISTER(adfw::Synthesizer, adfw::PerlinNoiseSynthesizer, "perlin_noise",
              "Gaussian-noised copy of the image blended through a Perlin mask");
ADFW_REGISTER(adfw::Synthesizer, adfw::CutPasteSynthesizer, "cutpaste",
              "CutPaste normal / scar patches (Li et al. 2021) with their exact masks");
ADFW_REGISTER(adfw::Synthesizer, adfw::TransparencySynthesizer, "transparency",
              "TransFusion: Perlin mask, texture or structure source, per-pixel transparency map");
ADFW_REGISTER(adfw::FeatureNoise, adfw::SimpleNetNoise, "simplenet",
              "SimpleNet: duplicated batch, Gaussian noise over the whole second half");
ADFW_REGISTER(adfw::FeatureNoise, adfw::SuperSimpleNetNoise, "supersimplenet",
              "SuperSimpleNet: Gaussian noise inside binarised Perlin masks at feature resolution");

#include "adfw/synth/latent_anomaly.hpp"
ADFW_REGISTER(adfw::LatentAnomaly, adfw::DsrLatentAnomaly, "dsr",
              "DSR: codes inside a Perlin mask replaced by codes drawn among the strength*K nearest, skipping the nearest 5%");
