// PaDiM.
#include "adfw/core/registry.hpp"
#include "methods/padim/padim.hpp"

ADFW_REGISTER(adfw::Method, adfw::PaDiM, "padim",
              "PaDiM (ICPR 2021): per-position Gaussians of patch embeddings, Mahalanobis distance");
