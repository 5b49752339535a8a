// EfficientAD and its teacher pretraining.
#include "adfw/core/registry.hpp"
#include "methods/efficientad/efficientad.hpp"

ADFW_REGISTER(adfw::Method, adfw::EfficientAd, "efficientad",
              "EfficientAD (WACV 2024): PDN student-teacher with hard-feature loss, autoencoder, quantile-normalised maps");
ADFW_REGISTER(adfw::Method, adfw::EfficientAdTeacher, "efficientad_teacher",
              "EfficientAD teacher pretraining: a PDN distils a frozen backbone's normalised patch features");
