#include "adfw/data/sample.hpp"

#include <sstream>

#include "adfw/core/error.hpp"

namespace adfw {

const char* to_string(Supervision s) {
  switch (s) {
    case Supervision::normal: return "normal";
    case Supervision::image_label: return "image_label";
    case Supervision::pixel_mask: return "pixel_mask";
  }
  return "?";
}

Supervision supervision_from_string(const std::string& s) {
  if (s == "normal") return Supervision::normal;
  if (s == "image_label") return Supervision::image_label;
  if (s == "pixel_mask") return Supervision::pixel_mask;
  throw ConfigError("unknown supervision level '" + s + "'." +
                    suggest_from(s, {"normal", "image_label", "pixel_mask"}));
}

const char* to_string(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::test: return "test";
    case Split::val: return "val";
  }
  return "?";
}

Split split_from_string(const std::string& s) {
  if (s == "train") return Split::train;
  if (s == "test") return Split::test;
  if (s == "val" || s == "validation") return Split::val;
  throw ConfigError("unknown split '" + s + "'." + suggest_from(s, {"train", "test", "val"}));
}

namespace {
std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}
}  // namespace

Batch collate(std::vector<Sample> samples) {
  Batch b;
  if (samples.empty()) {
    b.images = torch::zeros({0, 3, 0, 0});
    b.masks = torch::zeros({0, 1, 0, 0});
    b.labels = torch::zeros({0}, torch::kInt64);
    b.has_mask = torch::zeros({0}, torch::kBool);
    return b;
  }
  const auto ref = samples.front().image.sizes().vec();
  std::vector<torch::Tensor> images, masks;
  images.reserve(samples.size());
  masks.reserve(samples.size());
  auto labels = torch::empty({static_cast<int64_t>(samples.size())}, torch::kInt64);
  auto has_mask = torch::empty({static_cast<int64_t>(samples.size())}, torch::kBool);
  auto* lp = labels.data_ptr<int64_t>();
  auto* hp = has_mask.data_ptr<bool>();
  for (std::size_t i = 0; i < samples.size(); ++i) {
    Sample& s = samples[i];
    if (s.image.sizes().vec() != ref)
      throw Error("cannot batch images of different sizes: " + samples.front().info.path + " is " +
                  shape_str(samples.front().image) + " but " + s.info.path + " is " + shape_str(s.image) +
                  ". Set a resize in the transforms.");
    torch::Tensor m = s.mask.defined() ? s.mask
                                       : torch::zeros({1, s.image.size(-2), s.image.size(-1)}, torch::kFloat32);
    if (m.size(-1) != s.image.size(-1) || m.size(-2) != s.image.size(-2))
      throw Error("mask of " + s.info.path + " is " + shape_str(m) + " but the image is " + shape_str(s.image));
    images.push_back(s.image);
    masks.push_back(m.reshape({1, m.size(-2), m.size(-1)}));
    lp[i] = s.info.label;
    hp[i] = s.has_mask;
    b.info.push_back(std::move(s.info));
  }
  for (const auto& [name, ref_extra] : samples.front().extras) {
    std::vector<torch::Tensor> xs;
    xs.reserve(samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i) {
      auto it = samples[i].extras.find(name);
      if (it == samples[i].extras.end() || it->second.sizes() != ref_extra.sizes())
        throw Error("cannot batch extra '" + name + "': " + b.info.front().path + " has " + shape_str(ref_extra) +
                    " but " + b.info[i].path +
                    (it == samples[i].extras.end() ? " has none" : " has " + shape_str(it->second)));
      xs.push_back(it->second);
    }
    b.extras[name] = torch::stack(xs);
  }
  for (std::size_t i = 0; i < samples.size(); ++i)
    if (samples[i].extras.size() != samples.front().extras.size())
      throw Error("cannot batch samples with different extras: " + b.info.front().path + " has " +
                  std::to_string(samples.front().extras.size()) + ", " + b.info[i].path + " has " +
                  std::to_string(samples[i].extras.size()));
  b.images = torch::stack(images);
  b.masks = torch::stack(masks);
  b.labels = labels;
  b.has_mask = has_mask;
  return b;
}

}  // namespace adfw
