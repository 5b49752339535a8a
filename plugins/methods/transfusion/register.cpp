// TransFusion.
#include "adfw/core/registry.hpp"
#include "methods/transfusion/transfusion.hpp"

ADFW_REGISTER(adfw::Method, adfw::TransFusion, "transfusion",
              "TransFusion (ECCV 2024): transparency-based diffusion predicting appearance, mask and normal image");
