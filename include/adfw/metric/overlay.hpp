// Anomaly maps drawn over their images: one colour scale and blend shared by the run's overlays
// (maps/), the report gallery and `adfw predict`, so a colour means the same thing everywhere.
#pragma once

#include <opencv2/core.hpp>

namespace adfw {

/// The map (CV_32F, the image's size) as a JET heat colour, `lo` -> blue and `hi` -> red (values
/// outside clipped; hi <= lo draws everything blue), blended half and half over `bgr` (CV_8UC3).
cv::Mat heat_blend(const cv::Mat& bgr, const cv::Mat& map, double lo, double hi);

/// Four panels side by side, each the map's size: the input | the input with the ground-truth
/// contour (red) | heat_blend(lo, hi) | the pixels with map >= threshold (yellow) and the contour.
/// `input` is resized to the map's size (a grey panel when empty); `gt` is CV_8U (non-zero =
/// defect) or empty.
cv::Mat overlay_panels(const cv::Mat& input, const cv::Mat& map, const cv::Mat& gt, double lo, double hi,
                       double threshold);

}  // namespace adfw
