// SuperSimpleNet; SimpleNet is an experiment file over "supersimplenet"
// (experiments/simplenet.toml), not a separate class.
#include "adfw/core/registry.hpp"
#include "methods/supersimplenet/supersimplenet.hpp"

ADFW_REGISTER(adfw::Method, adfw::SuperSimpleNet, "supersimplenet",
              "SuperSimpleNet (ICPR 2024) / SimpleNet (CVPR 2023): frozen features, adaptor, feature noise, heads");
