// Built-in trained methods. SimpleNet is an experiment file over "supersimplenet"
// (experiments/simplenet.toml), not a separate class.
#include "adfw/core/registry.hpp"
#include "adfw/method/trained.hpp"

ADFW_REGISTER(adfw::Method, adfw::Draem, "draem",
              "DRAEM (ICCV 2021): reconstructive + discriminative U-Nets trained on synthetic anomalies");
ADFW_REGISTER(adfw::Method, adfw::Riad, "riad",
              "RIAD (PR 2021): inpainting of random mosaic masks, multi-scale gradient-similarity map");
ADFW_REGISTER(adfw::Method, adfw::SuperSimpleNet, "supersimplenet",
              "SuperSimpleNet (ICPR 2024) / SimpleNet (CVPR 2023): frozen features, adaptor, feature noise, heads");

#include "adfw/method/transfusion.hpp"
ADFW_REGISTER(adfw::Method, adfw::TransFusion, "transfusion",
              "TransFusion (ECCV 2024): transparency-based diffusion predicting appearance, mask and normal image");
