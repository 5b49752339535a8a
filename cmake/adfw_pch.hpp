// Precompiled once for libadfw and reused by plugins, the CLI, tests and benchmarks.
#pragma once
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <toml++/toml.h>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
