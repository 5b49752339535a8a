// PatchCore.
#include "adfw/core/registry.hpp"
#include "methods/patchcore/patchcore.hpp"

ADFW_REGISTER(adfw::Method, adfw::PatchCore, "patchcore",
              "PatchCore (CVPR 2022): patch features, coreset memory bank, nearest-neighbour distance");
