// Built-in methods.
#include "adfw/core/registry.hpp"
#include "adfw/method/training_free.hpp"

ADFW_REGISTER(adfw::Method, adfw::PatchCore, "patchcore",
              "PatchCore (CVPR 2022): patch features, coreset memory bank, nearest-neighbour distance");
ADFW_REGISTER(adfw::Method, adfw::PaDiM, "padim",
              "PaDiM (ICPR 2021): per-position Gaussians of patch embeddings, Mahalanobis distance");
ADFW_REGISTER(adfw::Method, adfw::AnomalyDINO, "anomalydino",
              "AnomalyDINO (2024): DINOv2 patch tokens, cosine nearest neighbour, mean of the top 1%");
