// The one header a program that scores images with a fitted run needs: adfw::Predictor and
// adfw::PredictResult (see adfw/engine/predictor.hpp), plus adfw::Error for its exceptions.
#pragma once

#include "adfw/core/error.hpp"
#include "adfw/engine/predictor.hpp"
