// DRAEM.
#include "adfw/core/registry.hpp"
#include "methods/draem/draem.hpp"

ADFW_REGISTER(adfw::Method, adfw::Draem, "draem",
              "DRAEM (ICCV 2021): reconstructive + discriminative U-Nets trained on synthetic anomalies");
