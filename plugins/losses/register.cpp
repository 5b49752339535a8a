#include "adfw/core/registry.hpp"
#include "adfw/train/losses.hpp"

ADFW_REGISTER(adfw::Loss, adfw::L1Loss, "l1", "mean absolute error |p - t|");
ADFW_REGISTER(adfw::Loss, adfw::L2Loss, "l2", "mean squared error (p - t)^2");
ADFW_REGISTER(adfw::Loss, adfw::SmoothL1Loss, "smooth_l1", "torch's SmoothL1 (Huber / beta), option beta");
ADFW_REGISTER(adfw::Loss, adfw::BCELoss, "bce", "binary cross-entropy on logits or probabilities");
ADFW_REGISTER(adfw::Loss, adfw::FocalLoss, "focal",
              "focal loss (Lin et al. 2017) on sigmoid logits, probabilities or a K-class softmax (DRAEM)");
ADFW_REGISTER(adfw::Loss, adfw::SSIMLoss, "ssim", "1 - SSIM, Gaussian window 11 / sigma 1.5 (DRAEM)");
ADFW_REGISTER(adfw::Loss, adfw::MSGMSLoss, "msgms", "multi-scale gradient magnitude dissimilarity (RIAD)");
ADFW_REGISTER(adfw::Loss, adfw::TruncatedL1Loss, "truncated_l1",
              "margin loss on scores: normal below -margin, anomalous above +margin (SimpleNet, SuperSimpleNet)");
ADFW_REGISTER(adfw::Loss, adfw::HardFeatureLoss, "hard_feature",
              "mean of the squared errors at or above their q-quantile (EfficientAD student loss, q 0.999)");
