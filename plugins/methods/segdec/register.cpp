// Mixed-supervision SegDecNet.
#include "adfw/core/registry.hpp"
#include "methods/segdec/segdec.hpp"

ADFW_REGISTER(adfw::Method, adfw::SegDec, "segdec",
              "Mixed-supervision SegDecNet (Computers in Industry 2021): segmentation + decision networks trained on "
              "pixel- and image-labelled defects");
