// AnomalyDINO.
#include "adfw/core/registry.hpp"
#include "methods/anomalydino/anomalydino.hpp"

ADFW_REGISTER(adfw::Method, adfw::AnomalyDINO, "anomalydino",
              "AnomalyDINO (2024): DINOv2 patch tokens, cosine nearest neighbour, mean of the top 1%");
