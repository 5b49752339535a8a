#include "adfw/backbone/dinov2.hpp"
#include "adfw/backbone/mobilenet.hpp"
#include "adfw/backbone/resnet.hpp"
#include "adfw/core/registry.hpp"

ADFW_REGISTER(adfw::Backbone, adfw::ResNetBackbone, "resnet",
              "torchvision ResNet-18/34/50/101/152 and Wide-ResNet-50/101-2, ImageNet normalisation");
ADFW_REGISTER(adfw::Backbone, adfw::DinoV2Backbone, "dinov2",
              "DINOv2 ViT-S/B/L/g 14 (with or without registers), block taps, ImageNet normalisation");
ADFW_REGISTER(adfw::Backbone, adfw::MobileNetV1Backbone, "mobilenet_v1",
              "Keras MobileNet v1 1.0 (TF SAME padding) up to conv_pw_12, x/127.5-1 normalisation");
