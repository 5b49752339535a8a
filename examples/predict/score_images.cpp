// Scores images with a fitted run and writes each anomaly map as an 8-bit heat image:
//   score_images <run-folder> <image>...
// prints "<image>,<score>" per line (the run's image scores, larger = more anomalous).
#include <iostream>

#include <adfw/predictor.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: score_images <run-folder> <image>...\n";
    return 2;
  }
  try {
    adfw::Predictor predictor(argv[1]);  // config.toml + model.safetensors of the run
    int failed = 0;
    for (int i = 2; i < argc; ++i) {
      const cv::Mat image = cv::imread(argv[i], cv::IMREAD_UNCHANGED);
      if (image.empty()) {
        std::cerr << argv[i] << ": cannot read the image\n";
        ++failed;
        continue;
      }
      const adfw::PredictResult r = predictor(image);
      std::cout << argv[i] << "," << r.score << "\n";
      // The map has the image's size; scale it by its maximum for a quick look.
      double hi = 0;
      cv::minMaxLoc(r.map, nullptr, &hi);
      cv::Mat u8, heat;
      r.map.convertTo(u8, CV_8U, hi > 0 ? 255.0 / hi : 0.0);
      cv::applyColorMap(u8, heat, cv::COLORMAP_JET);
      cv::imwrite(std::string(argv[i]) + ".heat.png", heat);
    }
    return failed ? 1 : 0;
  } catch (const adfw::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
