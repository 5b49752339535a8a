#include "adfw/core/registry.hpp"
#include "adfw/train/networks/diffusion_unet.hpp"
#include "adfw/train/networks/draem_unets.hpp"
#include "adfw/train/networks/feature_heads.hpp"
#include "adfw/train/networks/riad_unet.hpp"

ADFW_REGISTER(adfw::Network, adfw::DraemReconstructive, "draem_reconstructive",
              "DRAEM reconstructive sub-network: encoder/decoder without skips, (N,3,H,W) -> (N,3,H,W)");
ADFW_REGISTER(adfw::Network, adfw::DraemDiscriminative, "draem_discriminative",
              "DRAEM discriminative sub-network: U-Net, (N,6,H,W) -> (N,2,H,W) logits");
ADFW_REGISTER(adfw::Network, adfw::RiadUNet, "riad_unet",
              "RIAD inpainting U-Net, (N,3,H,W) -> (N,3,H,W) (tanh)");
ADFW_REGISTER(adfw::Network, adfw::FeatureAdaptor, "feature_adaptor",
              "C -> C linear map of feature vectors (1x1 conv): SuperSimpleNet adaptor, SimpleNet pre-projection");
ADFW_REGISTER(adfw::Network, adfw::SsnSegmentationHead, "ssn_segmentation_head",
              "SuperSimpleNet segmentation head: 1x1 conv, BatchNorm, LeakyReLU, 1x1 conv -> (N,1,h,w) logits");
ADFW_REGISTER(adfw::Network, adfw::SsnClassificationHead, "ssn_classification_head",
              "SuperSimpleNet classification head: features + map (condition) -> (N) logits");
ADFW_REGISTER(adfw::Network, adfw::SimpleNetDiscriminator, "simplenet_discriminator",
              "SimpleNet discriminator MLP over patch features, (N,C,h,w) -> (N,1,h,w) or (M,C) -> (M,1)");
ADFW_REGISTER(adfw::Network, adfw::DiffusionUNet, "diffusion_unet",
              "TransFusion denoising U-Net: x_t + mask (N,4,H,W), timesteps (N) -> noise | normal image | mask logit");
