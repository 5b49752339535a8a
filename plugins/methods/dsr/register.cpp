// DSR and its VQ-VAE pretraining.
#include "adfw/core/registry.hpp"
#include "methods/dsr/dsr.hpp"

ADFW_REGISTER(adfw::Method, adfw::Dsr, "dsr",
              "DSR (ECCV 2022): latent-space anomalies in a frozen VQ-VAE, subspace re-projection, two training stages");
ADFW_REGISTER(adfw::Method, adfw::DsrVqPretrain, "dsr_vq_pretrain",
              "DSR's two-level VQ-VAE with EMA codebooks trained on an image folder (the vq_checkpoint of dsr)");
