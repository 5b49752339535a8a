// RIAD.
#include "adfw/core/registry.hpp"
#include "methods/riad/riad.hpp"

ADFW_REGISTER(adfw::Method, adfw::Riad, "riad",
              "RIAD (PR 2021): inpainting of random mosaic masks, multi-scale gradient-similarity map");
