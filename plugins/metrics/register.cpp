// Evaluation parts: metrics, image-score reducers, map post-processing.
#include "adfw/core/registry.hpp"
#include "adfw/metric/metric.hpp"
#include "adfw/metric/reducers.hpp"

using namespace adfw;
using namespace adfw::metric;

ADFW_REGISTER(Metric, ImageAuroc, "image_auroc", "area under the ROC curve of image scores (ties = half credit)");
ADFW_REGISTER(Metric, ImageAp, "image_ap", "average precision of image scores, step-wise as sklearn");
ADFW_REGISTER(Metric, ImageF1Max, "image_f1_max", "best F1 over all image-score thresholds, with the threshold");
ADFW_REGISTER(Metric, PixelAuroc, "pixel_auroc", "ROC AUC over all pixels of the test set");
ADFW_REGISTER(Metric, PixelAp, "pixel_ap", "average precision over all pixels of the test set");
ADFW_REGISTER(Metric, PixelF1Max, "pixel_f1_max", "best pixel F1 over all thresholds, with the threshold");
ADFW_REGISTER(Metric, Aupro, "aupro", "exact area under the PRO curve up to an FPR limit (MVTec AD definition)");

ADFW_REGISTER(ImageScoreReducer, MaxReducer, "max", "maximum of the anomaly map");
ADFW_REGISTER(ImageScoreReducer, AvgPoolMaxReducer, "avgpool_max", "maximum of the k x k mean-pooled map (DRAEM)");
ADFW_REGISTER(ImageScoreReducer, TopKMeanReducer, "topk_mean", "mean of the top q of the map (AnomalyDINO)");
ADFW_REGISTER(ImageScoreReducer, MethodScoreReducer, "method", "the method's own image scores");

ADFW_REGISTER(MapPostprocess, UpsamplePostprocess, "upsample", "bilinear resize to the input size (optionally onto the patch grid)");
ADFW_REGISTER(MapPostprocess, Log1pPostprocess, "log1p", "log(1 + score), for maps >= 0 (before smoothing)");
ADFW_REGISTER(MapPostprocess, GaussianPostprocess, "gaussian", "Gaussian smoothing (sigma, mirrored borders)");
ADFW_REGISTER(MapPostprocess, MeanFilterPostprocess, "mean_filter", "k x k box filter (mirrored or zero borders)");
