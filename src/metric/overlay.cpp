#include "adfw/metric/overlay.hpp"

#include <vector>

#include <opencv2/imgproc.hpp>

namespace adfw {

cv::Mat heat_blend(const cv::Mat& bgr, const cv::Mat& map, double lo, double hi) {
  const double scale = hi > lo ? 255.0 / (hi - lo) : 0.0;
  cv::Mat u8, heat, blend;
  map.convertTo(u8, CV_8U, scale, -lo * scale);  // saturating: values outside [lo, hi] clip
  cv::applyColorMap(u8, heat, cv::COLORMAP_JET);
  cv::addWeighted(bgr, 0.5, heat, 0.5, 0, blend);
  return blend;
}

cv::Mat overlay_panels(const cv::Mat& input_image, const cv::Mat& map, const cv::Mat& gt, double lo, double hi,
                       double threshold) {
  const cv::Size size(map.cols, map.rows);
  cv::Mat input;
  if (input_image.empty())
    input = cv::Mat(size, CV_8UC3, cv::Scalar(128, 128, 128));
  else if (input_image.size() == size)
    input = input_image;
  else
    cv::resize(input_image, input, size, 0, 0, cv::INTER_AREA);

  std::vector<std::vector<cv::Point>> contours;
  if (!gt.empty()) {
    cv::Mat binary = gt != 0;
    cv::findContours(binary, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  }
  cv::Mat contour = input.clone();
  cv::drawContours(contour, contours, -1, cv::Scalar(0, 0, 255), 1);

  cv::Mat pred_panel = input.clone();
  pred_panel.setTo(cv::Scalar(0, 255, 255), map >= static_cast<float>(threshold));
  cv::drawContours(pred_panel, contours, -1, cv::Scalar(0, 0, 255), 1);

  cv::Mat row;
  cv::hconcat(std::vector<cv::Mat>{input, contour, heat_blend(input, map, lo, hi), pred_panel}, row);
  return row;
}

}  // namespace adfw
