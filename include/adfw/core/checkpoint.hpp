// Model checkpoints (state dicts) without Python.
//
// Reads the two formats researchers already have on disk:
//  - PyTorch `torch.save` zip archives (.pth/.pt), as torchvision and DINOv2 publish them: a zip of
//    `<name>/data.pkl` (a pickled dict of tensors) plus one stored entry per tensor storage;
//  - safetensors files (any float or integer dtype; F16/BF16 are kept as stored and converted when
//    copied into a module).
// and writes state dicts as safetensors, atomically (temporary file + rename).
// Loading into a module is strict by default: every missing, unexpected and shape-mismatched key is
// reported at once, naming the file, and nothing is copied unless everything matches.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace adfw {

/// Tensor name -> tensor (CPU, contiguous), sorted by name.
using StateDict = std::map<std::string, torch::Tensor>;

/// Reads a checkpoint: a torch.save zip archive (recognised by its "PK" magic) or a safetensors
/// file. A dict nested under "state_dict" or "model" (training checkpoints) is unwrapped.
/// Throws adfw::Error naming `path` (and the key or byte offset) for unreadable, truncated or
/// malformed files and for entries that are not tensors.
StateDict load_state_dict(const std::filesystem::path& path);

/// Every parameter and buffer of `module` under its PyTorch state_dict name (detached views).
StateDict state_dict_of(const torch::nn::Module& module);

/// What load_into() found when comparing a state dict with a module.
struct KeyReport {
  std::vector<std::string> missing;     ///< in the module, not in the file
  std::vector<std::string> unexpected;  ///< in the file, not in the module
  std::vector<std::string> mismatched;  ///< "name: file (a, b) vs model (c, d)"
  bool ok(bool strict) const { return mismatched.empty() && (!strict || (missing.empty() && unexpected.empty())); }
  /// One message listing every problem, prefixed with `source`.
  std::string describe(const std::string& source) const;
};

/// Compares names and shapes only (nothing is copied). `num_batches_tracked` buffers (BatchNorm
/// bookkeeping that inference never reads) may be absent on either side.
KeyReport compare_keys(const torch::nn::Module& module, const StateDict& state);

/// Copies `state` into the parameters and buffers of `module` (dtype converted to the module's,
/// device kept). strict: missing or unexpected keys are errors; shape mismatches always are.
/// Throws adfw::Error (message from KeyReport::describe naming `source`) before copying anything.
void load_into(torch::nn::Module& module, const StateDict& state, const std::string& source,
               bool strict = true);

/// load_state_dict(path) + load_into(module, ..., path).
void load_checkpoint(torch::nn::Module& module, const std::filesystem::path& path, bool strict = true);

/// Writes `state` as a safetensors file (tensors moved to CPU, dtype kept: F32/F64/F16/BF16/I64/
/// I32/I16/I8/U8/BOOL), atomically. Throws adfw::Error for unsupported dtypes.
void save_state_dict(const StateDict& state, const std::filesystem::path& path,
                     const std::map<std::string, std::string>& metadata = {});

/// save_state_dict(state_dict_of(module), path, metadata).
void save_checkpoint(const torch::nn::Module& module, const std::filesystem::path& path,
                     const std::map<std::string, std::string>& metadata = {});

/// The fitted state of something made of several parts (a method's networks, memory bank,
/// Gaussians ...) as one flat state dict, and back. Modules are stored under "<prefix>.<key>",
/// tensors under their name. Restoring is strict and all-or-nothing: every missing, unexpected
/// or mis-shaped entry is reported at once, naming the file, and nothing is copied unless all
/// match. Tensors registered with tensor() take the stored value whatever its shape (a memory
/// bank's size depends on the data); use a module for fixed shapes.
class StateLayout {
 public:
  StateLayout& module(const std::string& prefix, torch::nn::Module& module);
  StateLayout& tensor(const std::string& name, torch::Tensor& tensor);
  /// Every registered entry (detached views, devices kept).
  StateDict save() const;
  /// Copies `state` into the registered modules and tensors (tensors on `device`).
  void load(const StateDict& state, const std::string& source, const torch::Device& device = torch::kCPU) const;

 private:
  std::vector<std::pair<std::string, torch::nn::Module*>> modules_;
  std::vector<std::pair<std::string, torch::Tensor*>> tensors_;
};

}  // namespace adfw
