#include "adfw/core/safetensors.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "adfw/core/error.hpp"

namespace adfw::safetensors {
namespace fs = std::filesystem;

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  std::size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i;
  throw Error("safetensors: invalid dtype enum value " + std::to_string(static_cast<int>(d)));
}

std::vector<std::string> dtype_names() {
  std::vector<std::string> out;
  for (const auto& i : kDTypes) out.emplace_back(i.name);
  return out;
}

// IEEE 754 binary16 -> binary32, including subnormals, infinities and NaN payloads.
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string where(const std::string& label) { return "safetensors file '" + label + "'"; }

// Reads a non-negative integer that fits in int64 from a JSON value, or throws naming `what`.
int64_t nonneg_int(const nlohmann::json& v, const std::string& label, const std::string& what) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw Error(where(label) + ": " + what + " " + std::to_string(u) + " is too large");
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    const auto s = v.get<int64_t>();
    if (s < 0) throw Error(where(label) + ": " + what + " is negative (" + std::to_string(s) + ")");
    return s;
  }
  throw Error(where(label) + ": " + what + " must be a non-negative integer, got " + v.dump());
}

}  // namespace

std::size_t dtype_size(DType d) { return info(d).size; }
const char* dtype_name(DType d) { return info(d).name; }

DType dtype_from_name(const std::string& name) {
  for (const auto& i : kDTypes)
    if (name == i.name) return i.dtype;
  throw Error("unknown safetensors dtype '" + name + "'." + suggest_from(name, dtype_names()));
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

File File::open(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open safetensors file '" + path.string() + "' (missing or unreadable)");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error("cannot read safetensors file '" + path.string() + "'");
  in.seekg(0, std::ios::beg);
  std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw Error("cannot read safetensors file '" + path.string() + "' (read failed)");
  File f = from_bytes(std::move(bytes), path.string());
  f.path_ = path;
  return f;
}

File File::from_bytes(std::vector<unsigned char> bytes, const std::string& label) {
  File f;
  f.path_ = label;
  f.buffer_ = std::make_shared<std::vector<unsigned char>>(std::move(bytes));
  const auto& buf = *f.buffer_;
  const uint64_t file_size = buf.size();
  if (file_size < 8)
    throw Error(where(label) + ": file is " + std::to_string(file_size) +
                " bytes, shorter than the 8-byte header length; not a safetensors file or truncated");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | buf[static_cast<std::size_t>(i)];
  if (header_len > file_size - 8)
    throw Error(where(label) + ": header length " + std::to_string(header_len) + " (bytes 0-7) exceeds the " +
                std::to_string(file_size - 8) + " bytes after it; truncated or not a safetensors file");
  const char* hbegin = reinterpret_cast<const char*>(buf.data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hbegin, hbegin + header_len);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(where(label) + ": invalid JSON header at byte offset " + std::to_string(8 + e.byte) +
                " of the file: " + e.what());
  }
  if (!header.is_object())
    throw Error(where(label) + ": the JSON header (byte offset 8) must be an object, got " +
                std::string(header.type_name()));

  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = file_size - data_begin;
  const unsigned char* data = buf.data() + data_begin;

  struct Extent {
    uint64_t begin, end;
    std::size_t index;
  };
  std::vector<Extent> extents;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(where(label) + ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw Error(where(label) + ": __metadata__." + m.key() + " must be a string, got " + m.value().dump());
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tname = "tensor '" + name + "'";
    if (!v.is_object()) throw Error(where(label) + ": " + tname + ": entry must be an object, got " + v.dump());
    for (auto k = v.begin(); k != v.end(); ++k)
      if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
        throw Error(where(label) + ": " + tname + ": unexpected key '" + k.key() +
                    "' (expected dtype, shape, data_offsets)");
    if (!v.contains("dtype") || !v["dtype"].is_string())
      throw Error(where(label) + ": " + tname + ": missing or non-string 'dtype'");
    if (!v.contains("shape") || !v["shape"].is_array())
      throw Error(where(label) + ": " + tname + ": missing or non-array 'shape'");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      throw Error(where(label) + ": " + tname + ": 'data_offsets' must be an array [begin, end]");
    TensorView t;
    t.name = name;
    try {
      t.dtype = dtype_from_name(v["dtype"].get<std::string>());
    } catch (const Error& e) {
      throw Error(where(label) + ": " + tname + ": " + e.what());
    }
    // numel * size computed with overflow checks: a hostile shape must not wrap around.
    unsigned __int128 expected = dtype_size(t.dtype);
    for (const auto& d : v["shape"]) {
      const int64_t dim = nonneg_int(d, label, tname + " shape entry");
      t.shape.push_back(dim);
      expected *= static_cast<uint64_t>(dim);
      if (expected > (static_cast<unsigned __int128>(1) << 64)) expected = (static_cast<unsigned __int128>(1) << 64);
    }
    const auto begin = static_cast<uint64_t>(nonneg_int(v["data_offsets"][0], label, tname + " data_offsets[0]"));
    const auto end = static_cast<uint64_t>(nonneg_int(v["data_offsets"][1], label, tname + " data_offsets[1]"));
    if (end < begin)
      throw Error(where(label) + ": " + tname + ": data_offsets [" + std::to_string(begin) + ", " +
                  std::to_string(end) + "] end before begin");
    if (end > data_size)
      throw Error(where(label) + ": " + tname + ": data_offsets end " + std::to_string(end) + " (file offset " +
                  std::to_string(data_begin + end) + ") is beyond the end of the file (" +
                  std::to_string(file_size) + " bytes); truncated?");
    if (static_cast<unsigned __int128>(end - begin) != expected) {
      std::ostringstream s;
      s << where(label) << ": " << tname << ": " << (end - begin) << " data bytes but shape [";
      for (std::size_t i = 0; i < t.shape.size(); ++i) s << (i ? ", " : "") << t.shape[i];
      s << "] of " << dtype_name(t.dtype) << " needs numel * " << dtype_size(t.dtype) << " bytes";
      throw Error(s.str());
    }
    t.data = data + begin;
    t.nbytes = static_cast<std::size_t>(end - begin);
    extents.push_back({begin, end, f.tensors_.size()});
    f.tensors_.push_back(std::move(t));
  }

  // The buffer must be covered exactly, without holes or overlaps (safetensors' own rule).
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& e : extents) {
    const std::string& name = f.tensors_[e.index].name;
    if (e.begin < cursor)
      throw Error(where(label) + ": tensor '" + name + "' data_offsets begin " + std::to_string(e.begin) +
                  " overlaps the previous tensor (which ends at " + std::to_string(cursor) + ")");
    if (e.begin > cursor)
      throw Error(where(label) + ": tensor '" + name + "' starts at data offset " + std::to_string(e.begin) +
                  " leaving a hole of " + std::to_string(e.begin - cursor) + " unused bytes before it");
    cursor = e.end;
  }
  if (cursor != data_size)
    throw Error(where(label) + ": tensors cover " + std::to_string(cursor) + " of the " + std::to_string(data_size) +
                " data bytes (file offset " + std::to_string(data_begin + cursor) + " onward is unaccounted for)");

  std::vector<TensorView> ordered;
  ordered.reserve(f.tensors_.size());
  for (const auto& e : extents) ordered.push_back(std::move(f.tensors_[e.index]));
  f.tensors_ = std::move(ordered);
  for (std::size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
  return f;
}

std::vector<std::string> File::names() const {
  std::vector<std::string> out;
  for (const auto& t : tensors_) out.push_back(t.name);
  return out;
}

bool File::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorView& File::at(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw Error("safetensors file '" + path_.string() + "' has no tensor '" + name + "'." +
                suggest_from(name, names()));
  return tensors_[it->second];
}

std::vector<float> File::to_float(const std::string& name) const {
  const TensorView& t = at(name);
  const std::size_t n = t.nbytes / dtype_size(t.dtype);
  std::vector<float> out(n);
  const unsigned char* p = t.data;
  switch (t.dtype) {
    case DType::F64: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load<double>(p + 8 * i)); break;
    case DType::F32: if (n) std::memcpy(out.data(), p, n * 4); break;
    case DType::F16: for (std::size_t i = 0; i < n; ++i) out[i] = half_to_float(load<uint16_t>(p + 2 * i)); break;
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        const uint32_t bits = static_cast<uint32_t>(load<uint16_t>(p + 2 * i)) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
      break;
    case DType::I64: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load<int64_t>(p + 8 * i)); break;
    case DType::I32: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load<int32_t>(p + 4 * i)); break;
    case DType::I16: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load<int16_t>(p + 2 * i)); break;
    case DType::I8: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int8_t>(p[i])); break;
    case DType::U8: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]); break;
    case DType::BOOL: for (std::size_t i = 0; i < n; ++i) out[i] = p[i] ? 1.f : 0.f; break;
  }
  return out;
}

std::vector<int64_t> File::to_int64(const std::string& name) const {
  const TensorView& t = at(name);
  const std::size_t n = t.nbytes / dtype_size(t.dtype);
  std::vector<int64_t> out(n);
  const unsigned char* p = t.data;
  switch (t.dtype) {
    case DType::I64: if (n) std::memcpy(out.data(), p, n * 8); break;
    case DType::I32: for (std::size_t i = 0; i < n; ++i) out[i] = load<int32_t>(p + 4 * i); break;
    case DType::I16: for (std::size_t i = 0; i < n; ++i) out[i] = load<int16_t>(p + 2 * i); break;
    case DType::I8: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(p[i]); break;
    case DType::U8: for (std::size_t i = 0; i < n; ++i) out[i] = p[i]; break;
    case DType::BOOL: for (std::size_t i = 0; i < n; ++i) out[i] = p[i] ? 1 : 0; break;
    default:
      throw Error("safetensors file '" + path_.string() + "': tensor '" + name + "' has floating-point dtype " +
                  dtype_name(t.dtype) + "; an integer or BOOL tensor is required here");
  }
  return out;
}

namespace {
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int16_t>() { return DType::I16; }
template <> constexpr DType dtype_of<int8_t>() { return DType::I8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }
template <> constexpr DType dtype_of<bool>() { return DType::BOOL; }
}  // namespace

template <class T>
TensorData make_tensor(const std::string& name, const std::vector<int64_t>& shape, const T* values,
                       std::size_t count) {
  TensorData t;
  t.name = name;
  t.dtype = dtype_of<T>();
  t.shape = shape;
  t.bytes.resize(count * sizeof(T));
  if (count) std::memcpy(t.bytes.data(), values, count * sizeof(T));
  return t;
}
template TensorData make_tensor<double>(const std::string&, const std::vector<int64_t>&, const double*, std::size_t);
template TensorData make_tensor<float>(const std::string&, const std::vector<int64_t>&, const float*, std::size_t);
template TensorData make_tensor<int64_t>(const std::string&, const std::vector<int64_t>&, const int64_t*, std::size_t);
template TensorData make_tensor<int32_t>(const std::string&, const std::vector<int64_t>&, const int32_t*, std::size_t);
template TensorData make_tensor<int16_t>(const std::string&, const std::vector<int64_t>&, const int16_t*, std::size_t);
template TensorData make_tensor<int8_t>(const std::string&, const std::vector<int64_t>&, const int8_t*, std::size_t);
template TensorData make_tensor<uint8_t>(const std::string&, const std::vector<int64_t>&, const uint8_t*, std::size_t);
template TensorData make_tensor<bool>(const std::string&, const std::vector<int64_t>&, const bool*, std::size_t);

void write(const fs::path& path, const std::vector<TensorData>& tensors,
           const std::map<std::string, std::string>& metadata) {
  std::vector<TensorView> views;
  views.reserve(tensors.size());
  for (const auto& t : tensors) views.push_back({t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
  write(path, views, metadata);
}

void write(const fs::path& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const std::string tname = "writing '" + path.string() + "': tensor '" + t.name + "'";
    if (t.name == "__metadata__") throw Error(tname + ": the name __metadata__ is reserved");
    if (t.name.empty()) throw Error("writing '" + path.string() + "': a tensor has an empty name");
    if (header.contains(t.name)) throw Error(tname + " appears twice");
    unsigned __int128 expected = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) throw Error(tname + ": negative dimension " + std::to_string(d));
      expected *= static_cast<uint64_t>(d);
    }
    if (expected != t.nbytes)
      throw Error(tname + ": " + std::to_string(t.nbytes) + " bytes do not match its shape and dtype " +
                  dtype_name(t.dtype));
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string json = header.dump();
  // Pad so the data starts 8-byte aligned (the reference writer does the same).
  while ((8 + json.size()) % 8 != 0) json.push_back(' ');

  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot create '" + tmp.string() + "' (is the folder writable?)");
    unsigned char len[8];
    uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xffu);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(json.data(), static_cast<std::streamsize>(json.size()));
    for (const auto& t : tensors)
      if (t.nbytes > 0) out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
    out.flush();
    if (!out) {
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error("writing '" + tmp.string() + "' failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("cannot move '" + tmp.string() + "' into place as '" + path.string() + "': " + ec.message());
  }
}

}  // namespace adfw::safetensors
