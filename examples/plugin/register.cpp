// The plugin's registrations: the name experiment files use and the line `adfw list` prints.
#include <adfw/core/registry.hpp>

#include "mean_image.hpp"

ADFW_REGISTER(adfw::Method, example::MeanImage, "example_mean_image",
              "distance from the mean training image (out-of-tree plugin example)");
