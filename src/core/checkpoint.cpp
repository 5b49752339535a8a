// State-dict reading and writing; see include/adfw/core/checkpoint.hpp.
#include "adfw/core/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <torch/serialize.h>

#include "adfw/core/error.hpp"
#include "adfw/core/safetensors.hpp"

namespace adfw {
namespace {

namespace st = adfw::safetensors;

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "(";
  for (std::size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

bool is_bookkeeping(const std::string& key) {
  static const std::string tail = "num_batches_tracked";
  return key.size() >= tail.size() && key.compare(key.size() - tail.size(), tail.size(), tail) == 0;
}

std::vector<char> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open checkpoint for reading");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(in.tellg());
  if (size < 0) throw Error(path.string() + ": cannot determine the file size");
  std::vector<char> bytes(static_cast<std::size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(bytes.data(), size)) throw Error(path.string() + ": read error");
  return bytes;
}

torch::ScalarType torch_dtype(st::DType d, const std::string& where) {
  switch (d) {
    case st::DType::F64: return torch::kFloat64;
    case st::DType::F32: return torch::kFloat32;
    case st::DType::F16: return torch::kFloat16;
    case st::DType::BF16: return torch::kBFloat16;
    case st::DType::I64: return torch::kInt64;
    case st::DType::I32: return torch::kInt32;
    case st::DType::I16: return torch::kInt16;
    case st::DType::I8: return torch::kInt8;
    case st::DType::U8: return torch::kUInt8;
    case st::DType::BOOL: return torch::kBool;
  }
  throw Error(where + ": unsupported safetensors dtype");
}

st::DType safetensors_dtype(torch::ScalarType t, const std::string& where) {
  switch (t) {
    case torch::kFloat64: return st::DType::F64;
    case torch::kFloat32: return st::DType::F32;
    case torch::kFloat16: return st::DType::F16;
    case torch::kBFloat16: return st::DType::BF16;
    case torch::kInt64: return st::DType::I64;
    case torch::kInt32: return st::DType::I32;
    case torch::kInt16: return st::DType::I16;
    case torch::kInt8: return st::DType::I8;
    case torch::kUInt8: return st::DType::U8;
    case torch::kBool: return st::DType::BOOL;
    default: break;
  }
  throw Error(where + ": dtype " + std::string(c10::toString(t)) + " cannot be stored in safetensors");
}

StateDict load_safetensors(const std::filesystem::path& path) {
  const st::File file = st::File::open(path);  // validates header and offsets, names the file
  StateDict out;
  for (const auto& name : file.names()) {
    const st::TensorView& v = file.at(name);
    const auto dtype = torch_dtype(v.dtype, path.string() + ": tensor '" + name + "'");
    torch::Tensor t = torch::empty(v.shape, torch::TensorOptions().dtype(dtype));
    if (static_cast<std::size_t>(t.nbytes()) != v.nbytes)
      throw Error(path.string() + ": tensor '" + name + "' holds " + std::to_string(v.nbytes) +
                  " bytes, its shape " + shape_str(v.shape) + " needs " + std::to_string(t.nbytes()));
    if (v.nbytes) std::memcpy(t.data_ptr(), v.data, v.nbytes);
    out.emplace(name, std::move(t));
  }
  return out;
}

StateDict dict_to_state(const c10::IValue& value, const std::string& label, int depth = 0) {
  if (!value.isGenericDict()) throw Error(label + ": the pickled object is " + value.tagKind() + ", not a dict of tensors");
  const auto dict = value.toGenericDict();
  if (depth == 0) {
    for (const char* wrapper : {"state_dict", "model"}) {
      for (const auto& item : dict) {
        if (item.key().isString() && item.key().toStringRef() == wrapper && item.value().isGenericDict())
          return dict_to_state(item.value(), label + " [" + wrapper + "]", depth + 1);
      }
    }
  }
  StateDict out;
  for (const auto& item : dict) {
    if (!item.key().isString()) throw Error(label + ": a key of the state dict is " + item.key().tagKind() + ", not a string");
    const std::string key = item.key().toStringRef();
    if (!item.value().isTensor())
      throw Error(label + ": entry '" + key + "' is " + item.value().tagKind() + ", not a tensor");
    out.emplace(key, item.value().toTensor().contiguous());
  }
  return out;
}

StateDict load_torch_zip(const std::filesystem::path& path) {
  const std::vector<char> bytes = read_bytes(path);
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw Error(path.string() + ": not a readable torch.save archive (truncated or corrupted?): " +
                first_line(e.what()));
  }
  return dict_to_state(value, path.string());
}

}  // namespace

StateDict load_state_dict(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(path.string() + ": checkpoint file not found");
  char magic[2] = {0, 0};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path.string() + ": cannot open checkpoint for reading");
    in.read(magic, 2);
  }
  if (magic[0] == 'P' && magic[1] == 'K') return load_torch_zip(path);
  return load_safetensors(path);
}

StateDict state_dict_of(const torch::nn::Module& module) {
  StateDict out;
  for (const auto& p : module.named_parameters(true)) out.emplace(p.key(), p.value().detach());
  for (const auto& b : module.named_buffers(true))
    if (b.value().defined()) out.emplace(b.key(), b.value().detach());
  return out;
}

std::string KeyReport::describe(const std::string& source) const {
  std::ostringstream o;
  o << source << ": the checkpoint does not match the model:";
  auto list = [&](const char* what, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    o << "\n  " << keys.size() << " " << what << ":";
    for (const auto& k : keys) o << "\n    " << k;
  };
  list("missing key(s) (in the model, not in the file)", missing);
  list("unexpected key(s) (in the file, not in the model)", unexpected);
  list("shape mismatch(es)", mismatched);
  o << "\n  Check that the architecture options (arch, blocks, depth ...) match the file.";
  return o.str();
}

KeyReport compare_keys(const torch::nn::Module& module, const StateDict& state) {
  const StateDict own = state_dict_of(module);
  KeyReport r;
  for (const auto& [k, t] : own) {
    auto it = state.find(k);
    if (it == state.end()) {
      if (!is_bookkeeping(k)) r.missing.push_back(k);
    } else if (it->second.sizes() != t.sizes()) {
      r.mismatched.push_back(k + ": file " + shape_str(it->second.sizes()) + " vs model " + shape_str(t.sizes()));
    }
  }
  for (const auto& [k, t] : state)
    if (!own.count(k) && !is_bookkeeping(k)) r.unexpected.push_back(k);
  return r;
}

void load_into(torch::nn::Module& module, const StateDict& state, const std::string& source, bool strict) {
  const KeyReport report = compare_keys(module, state);
  if (!report.ok(strict)) throw Error(report.describe(source));
  torch::NoGradGuard no_grad;
  for (auto& [k, dst] : state_dict_of(module)) {
    auto it = state.find(k);
    if (it == state.end()) continue;
    dst.copy_(it->second.to(dst.scalar_type()));
  }
}

void load_checkpoint(torch::nn::Module& module, const std::filesystem::path& path, bool strict) {
  load_into(module, load_state_dict(path), path.string(), strict);
}

void save_state_dict(const StateDict& state, const std::filesystem::path& path,
                     const std::map<std::string, std::string>& metadata) {
  // The file is written from the tensors' own storage (a copy only where a tensor is not a
  // contiguous CPU tensor), so a PaDiM state of several GB is not held twice while it is saved.
  std::vector<torch::Tensor> keep;
  std::vector<st::TensorView> views;
  keep.reserve(state.size());
  views.reserve(state.size());
  for (const auto& [name, t] : state) {
    st::TensorView v;
    v.name = name;
    v.dtype = safetensors_dtype(t.scalar_type(), path.string() + ": tensor '" + name + "'");
    keep.push_back(t.detach().to(torch::kCPU).contiguous());
    const torch::Tensor& c = keep.back();
    v.shape.assign(c.sizes().begin(), c.sizes().end());
    v.data = static_cast<const unsigned char*>(c.data_ptr());
    v.nbytes = static_cast<std::size_t>(c.nbytes());
    views.push_back(std::move(v));
  }
  st::write(path, views, metadata);
}

void save_checkpoint(const torch::nn::Module& module, const std::filesystem::path& path,
                     const std::map<std::string, std::string>& metadata) {
  save_state_dict(state_dict_of(module), path, metadata);
}

StateLayout& StateLayout::module(const std::string& prefix, torch::nn::Module& module) {
  modules_.emplace_back(prefix, &module);
  return *this;
}

StateLayout& StateLayout::tensor(const std::string& name, torch::Tensor& tensor) {
  tensors_.emplace_back(name, &tensor);
  return *this;
}

StateDict StateLayout::save() const {
  StateDict out;
  for (const auto& [prefix, m] : modules_)
    for (const auto& [k, t] : state_dict_of(*m)) out.emplace(prefix + "." + k, t);
  for (const auto& [name, t] : tensors_) {
    if (!t->defined()) throw Error("state: '" + name + "' is empty (save the state after fitting)");
    out.emplace(name, t->detach());
  }
  return out;
}

void StateLayout::load(const StateDict& state, const std::string& source, const torch::Device& device) const {
  KeyReport all;
  std::set<std::string> used;
  std::vector<StateDict> parts(modules_.size());
  for (std::size_t i = 0; i < modules_.size(); ++i) {
    const std::string p = modules_[i].first + ".";
    for (const auto& [k, t] : state)
      if (k.rfind(p, 0) == 0) {
        parts[i].emplace(k.substr(p.size()), t);
        used.insert(k);
      }
    const KeyReport r = compare_keys(*modules_[i].second, parts[i]);
    for (const auto& k : r.missing) all.missing.push_back(p + k);
    for (const auto& k : r.mismatched) all.mismatched.push_back(p + k);
  }
  for (const auto& [name, t] : tensors_) {
    if (state.count(name)) used.insert(name);
    else all.missing.push_back(name);
  }
  for (const auto& [k, t] : state)
    if (!used.count(k) && !is_bookkeeping(k)) all.unexpected.push_back(k);
  if (!all.ok(true)) throw Error(all.describe(source));
  for (std::size_t i = 0; i < modules_.size(); ++i) load_into(*modules_[i].second, parts[i], source, false);
  for (const auto& [name, t] : tensors_) *t = state.at(name).to(device).clone();
}

}  // namespace adfw
